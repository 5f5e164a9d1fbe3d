"""A ViT-style Transformer encoder over gather patches, with a convolutional decoder."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from fwi_lightning.errors import ConfigError
from fwi_lightning.networks.base import GridDecoder, Norm, VelocityNetwork, check_channels, resize
from fwi_lightning.problem import Problem


class TransformerNet(VelocityNetwork):
    """ViT-style encoder over (time x receiver) patches of the gathers, shots as channels.

    The gathers are cut into a ``tokens[0] x tokens[1]`` grid of patches (resampled to
    a whole number of samples per patch); each patch is one token, embedded by a
    strided convolution, given a learned position embedding and passed through
    pre-norm Transformer layers. ``tokens: [n, R]`` makes every token a time segment
    of one trace (trace tokens). The token grid is decoded to the velocity grid by
    x2 upsampling stages.

    Args:
        problem: survey and scaling (injected).
        tokens: token grid (along time, along receivers); clipped to (T, R).
        dim: token width. depth: Transformer layers. heads: attention heads.
        mlp_ratio: hidden width of each feed-forward block, in units of `dim`.
        dropout: dropout inside the Transformer layers.
        channels: decoder widths, first block then each x2 upsampling stage.
        norm: normalisation of the decoder blocks.
    """

    def __init__(self, problem: Problem, tokens: Sequence[int] = (25, 10), dim: int = 128, depth: int = 4,
                 heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.0,
                 channels: Sequence[int] = (128, 64, 32, 16), norm: Norm = "batch"):
        super().__init__(problem)
        channels = check_channels(channels, network="transformer")
        if dim % heads:
            raise ConfigError(f"dim {dim} must be a multiple of heads {heads}", key="heads")
        shots, nt, nr = self.data_shape
        self.grid = (min(int(tokens[0]), nt), min(int(tokens[1]), nr))
        patch = (max(1, round(nt / self.grid[0])), max(1, round(nr / self.grid[1])))
        self.input_size = (self.grid[0] * patch[0], self.grid[1] * patch[1])
        self.embed = nn.Conv2d(shots, dim, kernel_size=patch, stride=patch)
        self.position = nn.Parameter(torch.randn(1, self.grid[0] * self.grid[1], dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.decoder = GridDecoder(dim, channels, self.velocity_shape, norm=norm)

    def encode(self, data: torch.Tensor) -> torch.Tensor:
        """Normalised data [B, S, T, R] -> tokens [B, N, dim], N = tokens[0] * tokens[1]."""
        patches = self.embed(resize(data, self.input_size))  # [B, dim, gt, gr]
        return self.norm(self.encoder(patches.flatten(2).transpose(1, 2) + self.position))

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Tokens [B, N, dim] -> normalised velocity [B, 1, NZ, NX] in [-1, 1]."""
        grid = features.transpose(1, 2).reshape(features.shape[0], -1, *self.grid)
        return self.decoder(grid)
