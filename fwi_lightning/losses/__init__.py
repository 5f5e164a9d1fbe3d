"""Losses on a paradigm's named outputs, combined by `WeightedLoss` from a name-keyed YAML mapping."""

from fwi_lightning.losses.base import OutputLoss, VelocityLoss, WeightedLoss

__all__ = ["OutputLoss", "VelocityLoss", "WeightedLoss"]
