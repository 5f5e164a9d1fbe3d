"""Losses on predicted velocity, combined by `WeightedLoss` from a name-keyed YAML mapping."""

from fwi_lightning.losses.base import VelocityLoss, WeightedLoss

__all__ = ["VelocityLoss", "WeightedLoss"]
