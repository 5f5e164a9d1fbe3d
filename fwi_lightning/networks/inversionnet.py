"""InversionNet (Wu & Lin, 2019), laid out as in OpenFWI.

At OpenFWI's geometry (5 shots x 1000 samples x 70 receivers -> 70 x 70 cells) the
layers, their shapes and the parameter count (24,409,123) are OpenFWI's. Other
survey shapes keep every layer: the encoder's feature map is resized to OpenFWI's
8 x 9 latent before the last convolution, and the decoder's 70 x 70 crop is resized
to the velocity grid, so no shape makes the network fail.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch
from torch import nn

from fwi_lightning.networks.base import ConvBlock, Norm, OutputHead, VelocityNetwork, check_channels, resize
from fwi_lightning.problem import Problem

#: Encoder map before the last convolution at OpenFWI's 1000 x 70 gathers (time, receivers).
LATENT = (8, 9)
#: Cells cropped from each side of the decoder's 80 x 80 output (OpenFWI: 80 -> 70).
CROP = 5


def _time_block(c_in: int, c_out: int, stride: int, norm: Norm, kernel: int = 3) -> ConvBlock:
    """A (k x 1) convolution along time only, optionally halving the time axis."""
    return ConvBlock(c_in, c_out, kernel_size=(kernel, 1), stride=(stride, 1), padding=(kernel // 2, 0), norm=norm)


class InversionNet(VelocityNetwork):
    """OpenFWI's InversionNet: a CNN encoder over gathers, a 1x1 latent, a deconvolution decoder.

    Args:
        problem: survey and scaling (injected).
        channels: the five widths (dim1..dim5); OpenFWI: 32, 64, 128, 256, 512.
        width: shorthand for OpenFWI's proportions: channels = width x (1, 2, 4, 8, 16);
            when set it replaces `channels` (width 32 is OpenFWI's network).
        norm: normalisation of every block; OpenFWI: batch (instance norm cannot
            normalise the 1 x 1 latent).
    """

    def __init__(self, problem: Problem, channels: Sequence[int] = (32, 64, 128, 256, 512),
                 width: Optional[int] = None, norm: Literal["batch", "none"] = "batch"):
        super().__init__(problem)
        if width is not None:
            channels = tuple(width * k for k in (1, 2, 4, 8, 16))
        d1, d2, d3, d4, d5 = check_channels(channels, network="inversionnet", exactly=5)
        shots = self.data_shape[0]
        self.encoder = nn.Sequential(
            _time_block(shots, d1, 2, norm, kernel=7),  # T/2
            _time_block(d1, d2, 2, norm), _time_block(d2, d2, 1, norm),  # T/4
            _time_block(d2, d2, 2, norm), _time_block(d2, d2, 1, norm),  # T/8
            _time_block(d2, d3, 2, norm), _time_block(d3, d3, 1, norm),  # T/16
            ConvBlock(d3, d3, stride=2, norm=norm), ConvBlock(d3, d3, norm=norm),  # T/32, R/2
            ConvBlock(d3, d4, stride=2, norm=norm), ConvBlock(d4, d4, norm=norm),  # T/64, R/4
            ConvBlock(d4, d4, stride=2, norm=norm), ConvBlock(d4, d4, norm=norm),  # T/128, R/8: 8 x 9
        )
        self.bottleneck = ConvBlock(d4, d5, kernel_size=LATENT, padding=0, norm=norm)  # 1 x 1
        self.decoder = nn.Sequential(
            ConvBlock(d5, d5, kernel_size=5, stride=2, padding=0, norm=norm, transpose=True), ConvBlock(d5, d5, norm=norm),  # 5
            ConvBlock(d5, d4, kernel_size=4, stride=2, padding=1, norm=norm, transpose=True), ConvBlock(d4, d4, norm=norm),  # 10
            ConvBlock(d4, d3, kernel_size=4, stride=2, padding=1, norm=norm, transpose=True), ConvBlock(d3, d3, norm=norm),  # 20
            ConvBlock(d3, d2, kernel_size=4, stride=2, padding=1, norm=norm, transpose=True), ConvBlock(d2, d2, norm=norm),  # 40
            ConvBlock(d2, d1, kernel_size=4, stride=2, padding=1, norm=norm, transpose=True), ConvBlock(d1, d1, norm=norm),  # 80
        )
        self.head = OutputHead(d1, norm=norm)

    def encode(self, data: torch.Tensor) -> torch.Tensor:
        """Normalised data [B, S, T, R] -> latent [B, dim5, 1, 1]."""
        return self.bottleneck(resize(self.encoder(data), LATENT))

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Latent [B, dim5, 1, 1] -> normalised velocity [B, 1, NZ, NX] in [-1, 1]."""
        x = self.decoder(features)[..., CROP:-CROP, CROP:-CROP]  # 80 x 80 -> 70 x 70
        return self.head(resize(x, self.velocity_shape))
