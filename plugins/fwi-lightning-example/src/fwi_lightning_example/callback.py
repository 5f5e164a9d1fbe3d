"""Saturation monitor: how much of the predicted velocity sits at the bounds of the range."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from fwi_lightning.errors import ConfigError


class SaturationMonitor(Callback):
    """Log the share of predicted cells pinned at the velocity bounds (``val/saturation``).

    Networks end in a tanh; cells within ``margin`` x (v_max - v_min) of v_min or v_max
    sit where its gradient vanishes, so a rising ``val/saturation`` warns of a model
    that stopped learning there (often too high a learning rate). Also logs
    ``val/velocity_std_mps``, the spread of the predictions in m/s (near 0: collapse to
    one mean model). Predictions come from ``pl_module(batch["data"])``.

    Args:
        margin: distance from a bound, fraction of the velocity range, counted as saturated.

    Raises:
        ConfigError: margin outside (0, 0.5).
    """

    def __init__(self, margin: float = 0.01):
        if not 0 < margin < 0.5:
            raise ConfigError(f"expected a fraction in (0, 0.5), got {margin}", key="margin")
        self.margin = float(margin)

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        with torch.no_grad():
            velocity = pl_module(batch["data"])
        lo, hi = pl_module.problem.velocity_range
        band = self.margin * (hi - lo)
        saturated = ((velocity <= lo + band) | (velocity >= hi - band)).float().mean()
        size = len(velocity)
        pl_module.log("val/saturation", saturated, on_step=False, on_epoch=True, batch_size=size)
        pl_module.log("val/velocity_std_mps", velocity.std(), on_step=False, on_epoch=True, batch_size=size)
