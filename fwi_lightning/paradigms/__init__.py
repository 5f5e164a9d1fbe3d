"""Learning paradigms: each a LightningModule built on `ParadigmBase`."""

from fwi_lightning.paradigms.base import OptimizerGroup, ParadigmBase

__all__ = ["OptimizerGroup", "ParadigmBase"]
