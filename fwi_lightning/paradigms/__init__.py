"""Learning paradigms: each a LightningModule built on `ParadigmBase`."""

from fwi_lightning.paradigms.base import ParadigmBase

__all__ = ["ParadigmBase"]
