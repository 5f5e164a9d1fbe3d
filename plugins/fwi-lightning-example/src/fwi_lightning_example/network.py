"""MLPNet: a fully connected backbone, the earliest DL-FWI design (pooled gathers -> MLP -> grid)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fwi_lightning.networks.base import VelocityNetwork, resize
from fwi_lightning.problem import Problem


class MLPNet(VelocityNetwork):
    """Fully connected network: area-pooled gathers -> MLP -> coarse grid -> bilinear upsampling.

    The gathers [S, T, R] are area-averaged to ``pooled`` (time, receivers) samples per
    shot and flattened; hidden layers of ``hidden`` units (GELU) give the features; a
    linear layer maps them to a ``coarse`` (depth, lateral) grid that is bilinearly
    upsampled to (NZ, NX) and bounded by tanh.

    Args:
        problem: survey and scaling (injected).
        hidden: units of each hidden layer.
        pooled: (time, receivers) samples per shot after pooling.
        coarse: (depth, lateral) cells of the predicted grid before upsampling.
        dropout: dropout probability after each hidden layer.
    """

    def __init__(self, problem: Problem, hidden: Sequence[int] = (256, 256), pooled: Sequence[int] = (32, 16),
                 coarse: Sequence[int] = (16, 16), dropout: float = 0.0):
        super().__init__(problem)
        shots, nt, nr = self.data_shape
        self.pooled = (min(int(pooled[0]), nt), min(int(pooled[1]), nr))
        self.coarse = (min(int(coarse[0]), self.velocity_shape[0]), min(int(coarse[1]), self.velocity_shape[1]))
        layers: list[nn.Module] = []
        width = shots * self.pooled[0] * self.pooled[1]
        for units in hidden:
            layers += [nn.Linear(width, int(units)), nn.GELU(), nn.Dropout(dropout)]
            width = int(units)
        self.encoder = nn.Sequential(nn.Flatten(), *layers)
        self.head = nn.Linear(width, self.coarse[0] * self.coarse[1])

    def encode(self, data: torch.Tensor) -> torch.Tensor:
        """Normalised data [B, S, T, R] -> features [B, hidden[-1]]."""
        return self.encoder(resize(data, self.pooled))

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Features [B, H] -> normalised velocity [B, 1, NZ, NX] in [-1, 1]."""
        grid = self.head(features).view(-1, 1, *self.coarse)
        return torch.tanh(F.interpolate(grid, size=self.velocity_shape, mode="bilinear", align_corners=False))
