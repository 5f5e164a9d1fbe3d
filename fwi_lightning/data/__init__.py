"""Data: velocity families, the simulated, OpenFWI and source + target data modules, normalisation statistics.

Submodules load on first access, so building one velocity family does not import Lightning.
"""

from typing import Any

_LAZY = {
    "SimulatedDataModule": "fwi_lightning.data.simulated",
    "OpenFWIDataModule": "fwi_lightning.data.openfwi",
    "SourceTargetDataModule": "fwi_lightning.data.combined",
    "log_amplitude_range": "fwi_lightning.data.normalisation",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fwi_lightning.data' has no attribute '{name}'")
