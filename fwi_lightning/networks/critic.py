"""Critics (discriminators) of the ``fwi_lightning.critics`` group: velocity map -> realism score.

A critic is built as ``Critic(problem, **params)`` like a network, and maps a batch of
normalised velocity maps [B, 1, NZ, NX] in [-1, 1] to one unbounded score per sample
[B]. The adversarial paradigm trains it against a generator (any registered network).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from fwi_lightning.errors import ConfigError
from fwi_lightning.networks.base import Norm, check_channels, norm_layer
from fwi_lightning.problem import Problem

#: Side of the last convolution, which pools the deepest map into the score (OpenFWI: 5).
SCORE_KERNEL = 5


class Critic(nn.Module):
    """Base class of the critics.

    Args:
        problem: the survey the critic judges velocity models of; sets (NZ, NX).
    """

    def __init__(self, problem: Problem):
        super().__init__()
        self.problem = problem

    @property
    def velocity_shape(self) -> tuple[int, int]:
        """(NZ, NX) of the velocity maps judged."""
        return self.problem.velocity_shape

    def forward(self, velocity: torch.Tensor) -> torch.Tensor:
        """Normalised velocity [B, 1, NZ, NX] in [-1, 1] -> scores [B] (higher: more realistic)."""
        raise NotImplementedError


class VelocityGANCritic(Critic):
    """A strided CNN critic after OpenFWI's VelocityGAN discriminator (1.18 M parameters at 70 x 70).

    Each stage halves the map (3x3 convolution, stride 2) and refines it (3x3
    convolution), both followed by LeakyReLU(0.2) and the chosen normalisation; a last
    convolution of side ``min(5, map side)`` without padding turns the deepest map into
    a score map, averaged into one score per sample. With the default widths at 70 x 70
    the deepest map is 5 x 5 and the score is one number, as in OpenFWI; other grids keep
    every stage and average whatever score map remains.

    There is no batch normalisation by default: the WGAN gradient penalty is defined per
    sample, and batch statistics couple the samples.

    Args:
        problem: survey and grid (injected).
        channels: widths of the stages, one x2 downsampling each; the grid needs at
            least ``2 ** len(channels)`` cells along each axis.
        norm: normalisation after every convolution: ``none`` (default), ``instance`` or ``batch``.

    Raises:
        ConfigError: the grid is too small for the stages.
    """

    def __init__(self, problem: Problem, channels: Sequence[int] = (32, 64, 128, 256), norm: Norm = "none"):
        super().__init__(problem)
        channels = check_channels(channels, network="velocitygan critic")
        nz, nx = self.velocity_shape
        smallest = 2 ** len(channels)
        if min(nz, nx) < smallest:
            raise ConfigError(
                f"a critic with {len(channels)} stride-2 stages needs at least {smallest} x {smallest} cells; "
                f"the grid is {nz} x {nx}: give fewer 'channels' (at most {max(1, min(nz, nx).bit_length() - 1)})",
                key="channels",
            )
        layers: list[nn.Module] = []
        width = 1
        for out in channels:
            layers += [_block(width, out, stride=2, norm=norm), _block(out, out, stride=1, norm=norm)]
            width = out
        self.features = nn.Sequential(*layers)
        deepest = [_halved(side, len(channels)) for side in (nz, nx)]
        self.score = nn.Conv2d(width, 1, kernel_size=min(SCORE_KERNEL, *deepest))

    def forward(self, velocity: torch.Tensor) -> torch.Tensor:
        """Normalised velocity [B, 1, NZ, NX] in [-1, 1] -> scores [B]."""
        return self.score(self.features(velocity)).flatten(1).mean(dim=1)


def _block(in_channels: int, out_channels: int, *, stride: int, norm: Norm) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1),
                         norm_layer(norm, out_channels), nn.LeakyReLU(0.2))


def _halved(side: int, times: int) -> int:
    """A side after `times` 3x3 stride-2 convolutions with padding 1: ceil(side / 2) each."""
    for _ in range(times):
        side = (side + 1) // 2
    return side
