"""Acquisition geometry and numerics of a 2D surface seismic survey, in SI units.

SKELETON (owned by the physics work of Step 2): the field names below are the
contract other modules rely on; extend, validate and document, keep the names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Optional


@dataclass(frozen=True)
class Survey:
    """A 2D survey on a regular grid. Defaults reproduce OpenFWI's geometry.

    Attributes:
        nz: depth cells. nx: lateral cells.
        spacing: grid spacing in m (dz = dx).
        nt: time samples. dt: sample interval in s.
        peak_freq: Ricker peak frequency in Hz.
        n_shots: number of sources, spread evenly across the surface (OpenFWI: cells 0, 17, 34, 52, 69).
        source_depth: source depth in m. n_receivers: receivers. receiver_depth: in m.
    """

    nz: int = 70
    nx: int = 70
    spacing: float = 10.0
    nt: int = 1000
    dt: float = 0.001
    peak_freq: float = 15.0
    n_shots: int = 5
    source_depth: float = 10.0
    n_receivers: int = 70
    receiver_depth: float = 10.0
    accuracy: int = 4
    pml_width: Optional[int] = None
    courant_number: Optional[float] = None
    max_vel: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Survey":
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in known})
