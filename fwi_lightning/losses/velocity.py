"""Supervised losses between predicted and true velocity, on the normalised [-1, 1] scale."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from fwi_lightning.losses.base import VelocityLoss
from fwi_lightning.metrics.velocity import largest_window, structural_similarity
from fwi_lightning.problem import Problem


class L1(VelocityLoss):
    """Mean absolute error on velocity normalised to [-1, 1] (OpenFWI's default loss)."""

    def forward(self, prediction: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Prediction [B, 1, NZ, NX] in m/s -> mean |v_pred - v_true| on the [-1, 1] scale."""
        return F.l1_loss(self.problem.normalise_velocity(prediction), self.normalised_target(batch))


class L2(VelocityLoss):
    """Mean squared error on velocity normalised to [-1, 1]."""

    def forward(self, prediction: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Prediction [B, 1, NZ, NX] in m/s -> mean (v_pred - v_true)^2 on the [-1, 1] scale."""
        return F.mse_loss(self.problem.normalise_velocity(prediction), self.normalised_target(batch))


class SSIMLoss(VelocityLoss):
    """1 - SSIM of velocity scaled to [0, 1], Gaussian window (the metric's definition).

    Args:
        problem: velocity range and grid (injected).
        window: odd Gaussian window in cells, shrunk to fit small grids.
        sigma: Gaussian standard deviation in cells.
    """

    def __init__(self, problem: Problem, window: int = 11, sigma: float = 1.5):
        super().__init__(problem)
        self.window = largest_window(window, problem.velocity_shape)
        self.sigma = sigma

    def forward(self, prediction: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Prediction [B, 1, NZ, NX] in m/s -> 1 - mean SSIM, in [0, 2]."""
        predicted = (self.problem.normalise_velocity(prediction) + 1.0) / 2.0
        target = (self.normalised_target(batch) + 1.0) / 2.0
        return 1.0 - structural_similarity(predicted, target, window=self.window, sigma=self.sigma).mean()


class EdgeWeightedL1(VelocityLoss):
    """L1 on the [-1, 1] scale, weighted up where the true model has interfaces.

    The weight of a cell is ``1 + edge_weight * g / max(g)``, with g the size of the
    true model's velocity jump to its neighbours (per sample, `edge_strength`), so sharp layer
    boundaries and faults count up to ``1 + edge_weight`` times as much as flat
    regions. The weighted mean keeps the loss on the L1 scale.

    Args:
        problem: velocity range (injected).
        edge_weight: extra weight at the strongest interface (0 gives plain L1).
    """

    def __init__(self, problem: Problem, edge_weight: float = 4.0):
        super().__init__(problem)
        self.edge_weight = edge_weight

    def forward(self, prediction: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Prediction [B, 1, NZ, NX] in m/s -> weighted mean |error| on the [-1, 1] scale."""
        target = self.normalised_target(batch)
        weights = 1.0 + self.edge_weight * edge_strength(target)
        error = (self.problem.normalise_velocity(prediction) - target).abs()
        return (weights * error).sum() / weights.sum()


def edge_strength(velocity: torch.Tensor) -> torch.Tensor:
    """Interface strength of [B, 1, NZ, NX], scaled to [0, 1] per sample (0 for a constant model).

    Along each axis a cell takes the larger of its jumps to the two neighbours, so both
    cells touching an interface are marked; the two axes combine as a vector norm.
    """
    jumps = []
    for axis in (-2, -1):
        step = velocity.diff(dim=axis).abs()
        before = torch.cat([torch.zeros_like(step.narrow(axis, 0, 1)), step], dim=axis)
        after = torch.cat([step, torch.zeros_like(step.narrow(axis, 0, 1))], dim=axis)
        jumps.append(torch.maximum(before, after))
    magnitude = torch.sqrt(jumps[0] ** 2 + jumps[1] ** 2)
    peak = magnitude.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return magnitude / peak
