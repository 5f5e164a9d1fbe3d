"""Wave physics: acquisition geometry (`Survey`) and the differentiable deepwave `Simulator`."""

from fwi_lightning.physics.survey import Survey

__all__ = ["Survey"]
