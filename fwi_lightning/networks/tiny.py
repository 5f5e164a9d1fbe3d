"""TinyNet: the smallest useful backbone, for tests, plugin contract checks and the quickstart."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from fwi_lightning.networks.base import ConvBlock, GridDecoder, VelocityNetwork, resize
from fwi_lightning.problem import Problem


class TinyNet(VelocityNetwork):
    """A few-thousand-parameter CNN: pooled gathers, two conv blocks, a one-stage decoder.

    The gathers are area-averaged to a small (time x receiver) map first, so the cost
    hardly depends on the survey size.

    Args:
        problem: survey and scaling (injected).
        width: channels of every block (12 gives about 4,000 parameters for 5 shots).
        pooled: (time, receivers) size the gathers are averaged to before the first conv.
    """

    def __init__(self, problem: Problem, width: int = 12, pooled: Sequence[int] = (32, 32)):
        super().__init__(problem)
        shots, nt, nr = self.data_shape
        self.pooled = (min(int(pooled[0]), nt), min(int(pooled[1]), nr))
        self.encoder = nn.Sequential(ConvBlock(shots, width), ConvBlock(width, width, stride=2))
        self.decoder = GridDecoder(width, (width, width), self.velocity_shape)

    def encode(self, data: torch.Tensor) -> torch.Tensor:
        """Normalised data [B, S, T, R] -> feature map [B, width, pooled_t / 2, pooled_r / 2]."""
        return self.encoder(resize(data, self.pooled))

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map -> normalised velocity [B, 1, NZ, NX] in [-1, 1]."""
        return self.decoder(features)
