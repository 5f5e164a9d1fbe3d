"""Regularisers on the predicted velocity alone: they need no labels."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from fwi_lightning.losses.base import VelocityLoss
from fwi_lightning.problem import Problem


class TotalVariation(VelocityLoss):
    """Total variation of the prediction on the [-1, 1] scale: favours blocky, layered models.

    Anisotropic: mean |dv/dz| + mean |dv/dx| over neighbouring cells. Isotropic: mean
    sqrt((dv/dz)^2 + (dv/dx)^2 + eps) over cells with both neighbours.

    Args:
        problem: velocity range (injected).
        isotropic: use the isotropic form.
        eps: smoothing inside the square root of the isotropic form.
    """

    reads_labels = False

    def __init__(self, problem: Problem, isotropic: bool = False, eps: float = 1e-8):
        super().__init__(problem)
        self.isotropic = isotropic
        self.eps = eps

    def forward(self, prediction: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Prediction [B, 1, NZ, NX] in m/s -> scalar total variation (batch ignored)."""
        v = self.problem.normalise_velocity(prediction)
        dz = v[..., 1:, :] - v[..., :-1, :]
        dx = v[..., :, 1:] - v[..., :, :-1]
        if self.isotropic:
            return torch.sqrt(dz[..., :, :-1] ** 2 + dx[..., :-1, :] ** 2 + self.eps).mean()
        return dz.abs().mean() + dx.abs().mean()
