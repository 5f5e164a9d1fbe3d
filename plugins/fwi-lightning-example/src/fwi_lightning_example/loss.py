"""Gradient-difference loss: compares how sharply velocity changes, not its values."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from fwi_lightning.errors import ConfigError
from fwi_lightning.losses.base import VelocityLoss
from fwi_lightning.problem import Problem


class GradientDifference(VelocityLoss):
    """Mean | |dv_pred| - |dv_true| |^alpha along depth and lateral axes, on the [-1, 1] scale.

    Penalises blurred or misplaced interfaces (Mathieu et al., 2016): a prediction with
    the right jumps in the right cells scores 0 even if offset by a constant, so use it
    beside a value loss such as ``l1``.

    Args:
        problem: velocity range (injected).
        alpha: exponent of the difference (1: absolute, 2: squared).

    Raises:
        ConfigError: alpha <= 0.
    """

    def __init__(self, problem: Problem, alpha: float = 1.0):
        super().__init__(problem)
        if not alpha > 0:
            raise ConfigError(f"expected alpha > 0, got {alpha}", key="alpha")
        self.alpha = float(alpha)

    def forward(self, prediction: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Prediction [B, 1, NZ, NX] in m/s -> scalar (0 when the gradients match)."""
        predicted = self.problem.normalise_velocity(prediction)
        target = self.normalised_target(batch)
        total = prediction.new_zeros(())
        for axis in (-2, -1):
            difference = predicted.diff(dim=axis).abs() - target.diff(dim=axis).abs()
            total = total + difference.abs().pow(self.alpha).mean()
        return total
