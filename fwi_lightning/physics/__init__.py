"""Wave physics: acquisition geometry (`Survey`), the differentiable deepwave `Simulator`,
and the one `ForwardOperator` (simulation + processing) every re-simulation uses.

`Survey` imports neither torch nor deepwave; the rest is loaded on
first access, so the command line can validate a survey without importing torch.
"""

from typing import Any

from fwi_lightning.physics.survey import NUMERICS, Survey

__all__ = ["NUMERICS", "Survey", "Simulator", "ForwardOperator", "add_noise", "bandpass"]

_LAZY = {
    "Simulator": "fwi_lightning.physics.simulator",
    "ForwardOperator": "fwi_lightning.physics.operator",
    "add_noise": "fwi_lightning.physics.filters",
    "bandpass": "fwi_lightning.physics.filters",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fwi_lightning.physics' has no attribute '{name}'")
