"""Wave physics: acquisition geometry (`Survey`) and the differentiable deepwave `Simulator`.

`Survey` imports neither torch nor deepwave; `Simulator` and the filters are loaded on
first access, so the command line can validate a survey without importing torch.
"""

from typing import Any

from fwi_lightning.physics.survey import NUMERICS, Survey

__all__ = ["NUMERICS", "Survey", "Simulator", "add_noise", "bandpass"]

_LAZY = {
    "Simulator": "fwi_lightning.physics.simulator",
    "add_noise": "fwi_lightning.physics.filters",
    "bandpass": "fwi_lightning.physics.filters",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fwi_lightning.physics' has no attribute '{name}'")
