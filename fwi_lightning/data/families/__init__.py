"""Velocity families: deterministic [NZ, NX] velocity models (m/s) from (seed, split, index).

Registered in the ``fwi_lightning.velocity`` entry-point group (see pyproject.toml).
"""

from fwi_lightning.data.families.base import SPLITS, VelocityFamily, sample_rng, sample_seed
from fwi_lightning.data.families.faulted import CurveFault, FlatFault
from fwi_lightning.data.families.layered import CurveVel, FlatVel
from fwi_lightning.data.families.model_file import Marmousi, Marmousi2, ModelFile
from fwi_lightning.data.families.style import Style

__all__ = [
    "SPLITS", "VelocityFamily", "sample_rng", "sample_seed",
    "FlatVel", "CurveVel", "FlatFault", "CurveFault", "Style", "ModelFile", "Marmousi", "Marmousi2",
]
