"""A small CNN generator: latent map -> velocity, the deep prior's default network."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fwi_lightning.networks.base import GridDecoder, Norm, VelocityNetwork, check_channels
from fwi_lightning.problem import Problem


class Generator(VelocityNetwork):
    """CNN decoder from a latent map [B, C, h, w] to velocity; its encoder is a pooled 1x1 convolution.

    `decode` is the generator: x2 upsampling conv stages from a ``latent`` channels map
    to the grid, ending in the tanh head (`GridDecoder`). The deep-prior paradigm feeds
    it a fixed latent (`latent_shape`). As a data -> velocity network (`encode`), the
    gathers are area-averaged to ``latent_size`` and mapped to ``latent`` channels by a
    1x1 convolution, so it also trains like any backbone.

    Args:
        problem: survey and scaling (injected).
        latent: channels C of the latent map.
        latent_size: (h, w) of the latent map.
        channels: channels of the decoder's first block and of each x2 stage.
        norm: normalisation of every block (``none`` by default: with one model per
            batch, batch statistics would differ between training and evaluation).
    """

    def __init__(self, problem: Problem, latent: int = 8, latent_size: Sequence[int] = (4, 8),
                 channels: Sequence[int] = (32, 32, 16), norm: Norm = "none"):
        super().__init__(problem)
        channels = check_channels(channels, network="generator", at_least=1)
        check_channels([latent, *latent_size], network="generator", exactly=3)
        self.latent_shape = (int(latent), int(latent_size[0]), int(latent_size[1]))
        self.encoder = nn.Conv2d(self.data_shape[0], latent, kernel_size=1)
        self.decoder = GridDecoder(latent, channels, self.velocity_shape, norm=norm)

    def encode(self, data: torch.Tensor) -> torch.Tensor:
        """Normalised data [B, S, T, R] -> latent map [B, C, h, w]."""
        return self.encoder(F.adaptive_avg_pool2d(data, self.latent_shape[1:]))

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Latent map [B, C, h, w] -> normalised velocity [B, 1, NZ, NX] in [-1, 1]."""
        return self.decoder(features)
