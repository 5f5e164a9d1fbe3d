"""A U-Net in the style of FCNVMB (Yang & Ma, 2019): shots as channels, skip connections."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from fwi_lightning.networks.base import ConvBlock, Norm, OutputHead, VelocityNetwork, check_channels, resize
from fwi_lightning.problem import Problem


class DoubleConv(nn.Sequential):
    """Two 3x3 conv blocks: the unit of every U-Net level."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm):
        super().__init__(ConvBlock(in_channels, out_channels, norm=norm), ConvBlock(out_channels, out_channels, norm=norm))


class UpLevel(nn.Module):
    """x2 transposed conv, concatenation with the skip of the same level, `DoubleConv`."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """[B, C_in, h, w], skip [B, C_out, 2h, 2w] -> [B, C_out, 2h, 2w]."""
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(VelocityNetwork):
    """FCNVMB-style U-Net: gathers resampled to the grid, shots as channels, skip connections.

    The gathers [S, T, R] are resampled (area average along time) to
    ``ceil(time_scale * NZ) x NX`` rounded up to a multiple of ``2^(levels - 1)``, so
    the time axis stands in for depth as in FCNVMB; the U-Net output is resampled to
    (NZ, NX) before the tanh head.

    Args:
        problem: survey and scaling (injected).
        channels: width of each level, shallowest first (FCNVMB: 64 ... 1024).
        time_scale: input rows per depth cell; above 1 keeps more of the waveform.
        norm: normalisation of every block.
    """

    def __init__(self, problem: Problem, channels: Sequence[int] = (32, 64, 128, 256), time_scale: float = 1.0,
                 norm: Norm = "batch"):
        super().__init__(problem)
        channels = check_channels(channels, network="unet", at_least=2)
        multiple = 2 ** (len(channels) - 1)
        nz, nx = self.velocity_shape
        self.input_size = tuple(math.ceil(n / multiple) * multiple for n in (max(1.0, time_scale * nz), nx))
        shots = self.data_shape[0]
        self.down = nn.ModuleList([DoubleConv(shots, channels[0], norm)])
        self.down.extend(nn.Sequential(nn.MaxPool2d(2), DoubleConv(c_in, c_out, norm))
                         for c_in, c_out in zip(channels[:-1], channels[1:]))
        self.up = nn.ModuleList(UpLevel(c_in, c_out, norm) for c_in, c_out in zip(channels[:0:-1], channels[-2::-1]))
        self.head = OutputHead(channels[0], norm=norm)

    def encode(self, data: torch.Tensor) -> list:
        """Normalised data [B, S, T, R] -> one feature map per level, shallowest first, deepest last."""
        x = resize(data, self.input_size)
        skips = []
        for level in self.down:
            x = level(x)
            skips.append(x)
        return skips

    def decode(self, features: list) -> torch.Tensor:
        """Level feature maps -> normalised velocity [B, 1, NZ, NX] in [-1, 1]."""
        x = features[-1]
        for level, skip in zip(self.up, features[-2::-1]):
            x = level(x, skip)
        return self.head(resize(x, self.velocity_shape))
