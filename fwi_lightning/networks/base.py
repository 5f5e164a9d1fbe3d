"""The contract every backbone follows, and the building blocks they share.

A backbone maps raw seismic data to velocity in m/s. It is written once here as
normalise -> `encode` -> `decode` -> denormalise, so every network

* takes physical amplitudes ``[B, S, T, R]`` and returns velocity ``[B, 1, NZ, NX]`` in m/s,
* ends in a tanh, so its output stays inside ``problem.velocity_range``,
* exposes `encode` (normalised data -> features) and `decode` (features -> normalised
  velocity) for paradigms that reuse one half (GAN discriminators on features,
  multi-task heads, domain adaptation on the encoder output).

A subclass implements `encode` and `decode` only.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from fwi_lightning.errors import ConfigError
from fwi_lightning.precision import full_precision
from fwi_lightning.problem import Problem

#: What `encode` returns: one feature tensor, or a list of them (deepest last) for skip connections.
Features = Union[torch.Tensor, list]

Norm = Literal["batch", "instance", "none"]


class VelocityNetwork(nn.Module):
    """Base class of the data -> velocity backbones.

    Args:
        problem: the survey and scaling the network is built for; sets the input
            shape (S, T, R), the output shape (NZ, NX) and the velocity range.
    """

    def __init__(self, problem: Problem):
        super().__init__()
        self.problem = problem

    @property
    def data_shape(self) -> tuple[int, int, int]:
        """(S, T, R) of the input gathers."""
        return self.problem.data_shape

    @property
    def velocity_shape(self) -> tuple[int, int]:
        """(NZ, NX) of the output velocity grid."""
        return self.problem.velocity_shape

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        """Invert gathers for velocity.

        Args:
            data: [B, S, T, R] raw amplitudes.

        Returns:
            [B, 1, NZ, NX] velocity in m/s, inside ``problem.velocity_range``; at least
            float32 even under mixed precision (bfloat16 would round 4500 m/s to 16 m/s
            steps, and losses and metrics would inherit the rounding).
        """
        return self.problem.denormalise_velocity(full_precision(self.normalised(data)))

    def normalised(self, data: torch.Tensor) -> torch.Tensor:
        """Raw amplitudes [B, S, T, R] -> normalised velocity [B, 1, NZ, NX] in [-1, 1]."""
        expected = tuple(self.data_shape)
        if data.dim() != 4 or tuple(data.shape[1:]) != expected:
            raise ValueError(f"{type(self).__name__} expects data [B, {', '.join(map(str, expected))}], got {list(data.shape)}")
        return self.decode(self.encode(self.problem.normalise_data(data)))

    def encode(self, data: torch.Tensor) -> Features:
        """Normalised data [B, S, T, R] in [-1, 1] -> features (network specific)."""
        raise NotImplementedError

    def decode(self, features: Features) -> torch.Tensor:
        """Features from `encode` -> normalised velocity [B, 1, NZ, NX] in [-1, 1]."""
        raise NotImplementedError

    @staticmethod
    def embedding(features: Features) -> torch.Tensor:
        """One vector per sample from `encode`'s output: [B, C].

        The deepest feature tensor is averaged over every axis after the channel axis
        (spatial maps [B, C, H, W], token sequences are [B, N, C] and averaged over N).
        """
        deepest = features[-1] if isinstance(features, (list, tuple)) else features
        if deepest.dim() == 3:
            return deepest.mean(dim=1)
        return deepest.flatten(2).mean(dim=2) if deepest.dim() > 2 else deepest


def norm_layer(norm: Norm, channels: int) -> nn.Module:
    """The normalisation named in a network's YAML (``batch``, ``instance``, ``none``)."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm '{norm}'; choose batch, instance or none", key="norm")


class ConvBlock(nn.Sequential):
    """Conv2d -> normalisation -> LeakyReLU(0.2): OpenFWI's basic block.

    Args:
        transpose: use a transposed convolution (upsampling) instead.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=1, norm: Norm = "batch",
                 transpose: bool = False):
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        super().__init__(
            conv(in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding),
            norm_layer(norm, out_channels),
            nn.LeakyReLU(0.2, inplace=True),
        )


class OutputHead(nn.Sequential):
    """3x3 conv to one channel -> normalisation -> tanh: normalised velocity in [-1, 1].

    Runs in float32 under mixed precision (autocast off, input cast up): a bfloat16 tanh
    would quantise the velocity to steps of up to 12 m/s over 1500-4500 m/s.
    """

    def __init__(self, in_channels: int, norm: Norm = "batch"):
        super().__init__(nn.Conv2d(in_channels, 1, kernel_size=3, padding=1), norm_layer(norm, 1), nn.Tanh())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):
            return super().forward(full_precision(features))


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize the last two axes of [B, C, H, W] to `size`.

    Unchanged when the size already matches; area averaging when both axes shrink
    (no aliasing); bilinear interpolation otherwise.
    """
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class GridDecoder(nn.Module):
    """Feature map -> normalised velocity grid by x2 upsampling stages.

    The input map [B, C, h, w] is resized to ``ceil(NZ / 2^k) x ceil(NX / 2^k)``
    (k = ``len(channels) - 1``), upsampled k times (nearest x2, 3x3 conv block),
    cropped to (NZ, NX) and passed through the tanh head.

    Args:
        in_channels: C of the input map.
        channels: output channels of the first block and of each upsampling stage.
        shape: (NZ, NX) of the output.
        norm: normalisation of every block.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], shape: Sequence[int], norm: Norm = "batch"):
        super().__init__()
        channels = [int(c) for c in channels]
        stages = len(channels) - 1
        self.shape = tuple(int(s) for s in shape)
        self.start = tuple(math.ceil(s / 2**stages) for s in self.shape)
        self.stem = ConvBlock(in_channels, channels[0], norm=norm)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), ConvBlock(c_in, c_out, norm=norm))
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.head = OutputHead(channels[-1], norm=norm)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> [B, 1, NZ, NX] in [-1, 1]."""
        x = self.stem(resize(features, self.start))
        for stage in self.stages:
            x = stage(x)
        return self.head(x[..., : self.shape[0], : self.shape[1]])


def check_channels(channels: Sequence[int], *, network: str, exactly: int | None = None, at_least: int = 1) -> list[int]:
    """Validate a network's ``channels`` list from YAML.

    Raises:
        ConfigError: not a list of positive integers of the expected length.
    """
    values = list(channels)
    count_ok = len(values) == exactly if exactly is not None else len(values) >= at_least
    if not count_ok or any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in values):
        wanted = f"exactly {exactly}" if exactly is not None else f"at least {at_least}"
        raise ConfigError(
            f"network '{network}' parameter 'channels' expects {wanted} positive integers, got {values!r}",
            key="channels",
        )
    return values
