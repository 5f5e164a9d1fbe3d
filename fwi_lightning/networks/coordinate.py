"""Coordinate networks for the ``pinn`` paradigm: normalised coordinates -> one field value.

Unlike the data -> velocity backbones of `fwi_lightning.networks.base`, a coordinate
network maps points to values: ``[N, D]`` coordinates, each scaled to [-1, 1] by the
paradigm (``(x, z)`` for the velocity, ``(x, z, t)`` for the wavefield), to ``[N, 1]``
values on the paradigm's nondimensional scale. Physical units stay in the paradigm.

Both are registered in ``fwi_lightning.networks``; `in_features` is injected by the
paradigm that builds them (``pinn``), so a data -> velocity paradigm (``supervised``)
naming one fails at build time with one line instead of mis-shaping a batch.

* `TanhMLP` (``pinn_mlp``): fully connected, tanh, Xavier initialisation, optionally
  preceded by random Fourier features (Tancik et al. 2020) against spectral bias.
* `Siren` (``pinn_siren``): sine activations with Sitzmann et al.'s (2020)
  initialisation; ``first_omega`` sets the frequencies the first layer starts with.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from fwi_lightning.errors import ConfigError
from fwi_lightning.problem import Problem


class CoordinateNetwork(nn.Module):
    """Base of the coordinate networks: ``[N, in_features]`` in [-1, 1] -> ``[N, 1]``.

    Args:
        problem: the survey and scaling (injected; unused by the layers themselves).
        in_features: coordinates per point (injected by the paradigm: 2 for ``(x, z)``,
            3 for ``(x, z, t)``); None means a paradigm that does not build coordinate
            networks named this one.
        width: units of every hidden layer.
        depth: number of hidden layers.

    Raises:
        ConfigError: built without `in_features` (a data -> velocity paradigm), or a
            width or depth below 1.
    """

    def __init__(self, problem: Problem | None = None, width: int = 64, depth: int = 4, *, in_features: Optional[int] = None):
        super().__init__()
        if in_features is None:
            raise ConfigError(
                f"{type(self).__name__} is a coordinate network (points -> values) for the pinn paradigm; "
                "a data -> velocity paradigm needs a velocity backbone (tiny, inversionnet, unet, ...)", key="name")
        for name, value in (("width", width), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"expected a whole number >= 1, got {value!r}", key=name)
        self.in_features = int(in_features)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Coordinates [N, in_features] scaled to [-1, 1] -> values [N, 1] (nondimensional)."""
        if points.dim() != 2 or points.shape[1] != self.in_features:
            raise ValueError(f"{type(self).__name__} expects points [N, {self.in_features}], got {list(points.shape)}")
        return self.body(points)

    def zero_output(self) -> None:
        """Set the last layer to zero, so the network starts as the zero field."""
        last = [m for m in self.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()


class FourierFeatures(nn.Module):
    """Fixed random Fourier features: [N, D] -> [N, 2 F] = [cos(2 pi x B), sin(2 pi x B)], B ~ N(0, scale^2).

    The projection is a buffer drawn from a generator seeded by `seed`, so a
    checkpoint restores it and two builds with one seed agree.
    """

    def __init__(self, in_features: int, features: int, scale: float, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", torch.randn(in_features, features, generator=generator) * scale)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        angles = 2.0 * math.pi * points @ self.projection.to(points.dtype)
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class TanhMLP(CoordinateNetwork):
    """Tanh multilayer perceptron on coordinates, optionally on random Fourier features of them.

    Args:
        problem: survey and scaling (injected).
        in_features: coordinates per point (injected by the paradigm).
        width: units of every hidden layer.
        depth: number of hidden layers.
        fourier_features: number F of random Fourier frequencies (0: the raw coordinates).
        fourier_scale: standard deviation of those frequencies, cycles per unit of the
            [-1, 1] coordinates (the domain spans 2 units).
    """

    def __init__(self, problem: Problem | None = None, width: int = 64, depth: int = 4, fourier_features: int = 0,
                 fourier_scale: float = 2.0, *, in_features: Optional[int] = None):
        super().__init__(problem, width, depth, in_features=in_features)
        if isinstance(fourier_features, bool) or not isinstance(fourier_features, int) or fourier_features < 0:
            raise ConfigError(f"expected a whole number >= 0, got {fourier_features!r}", key="fourier_features")
        if not fourier_scale > 0:
            raise ConfigError(f"expected a number > 0, got {fourier_scale!r}", key="fourier_scale")
        layers: list[nn.Module] = []
        features = self.in_features
        if fourier_features:
            layers.append(FourierFeatures(self.in_features, fourier_features, float(fourier_scale)))
            features = 2 * fourier_features
        for _ in range(depth):
            linear = nn.Linear(features, width)
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.Tanh()]
            features = width
        layers.append(nn.Linear(features, 1))
        self.body = nn.Sequential(*layers)


class Sine(nn.Module):
    """sin(omega * x)."""

    def __init__(self, omega: float):
        super().__init__()
        self.omega = float(omega)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * x)


class Siren(CoordinateNetwork):
    """SIREN: linear layers with sine activations (Sitzmann et al. 2020).

    First layer: weights uniform in +-1/in_features, activation sin(first_omega x), so
    the network starts with frequencies up to about first_omega / (2 pi) cycles per
    unit of the [-1, 1] coordinates. Hidden layers: uniform in +-sqrt(6 / width) /
    hidden_omega, activation sin(hidden_omega x).

    Args:
        problem: survey and scaling (injected).
        in_features: coordinates per point (injected by the paradigm).
        width: units of every hidden layer.
        depth: number of hidden (sine) layers after the first.
        first_omega: frequency factor of the first layer.
        hidden_omega: frequency factor of the hidden layers.
    """

    def __init__(self, problem: Problem | None = None, width: int = 64, depth: int = 3, first_omega: float = 30.0,
                 hidden_omega: float = 30.0, *, in_features: Optional[int] = None):
        super().__init__(problem, width, depth, in_features=in_features)
        for name, value in (("first_omega", first_omega), ("hidden_omega", hidden_omega)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"expected a number > 0, got {value!r}", key=name)
        first = nn.Linear(self.in_features, width)
        with torch.no_grad():
            first.weight.uniform_(-1.0 / self.in_features, 1.0 / self.in_features)
        layers: list[nn.Module] = [first, Sine(first_omega)]
        bound = math.sqrt(6.0 / width) / hidden_omega
        for _ in range(depth):
            linear = nn.Linear(width, width)
            with torch.no_grad():
                linear.weight.uniform_(-bound, bound)
            layers += [linear, Sine(hidden_omega)]
        last = nn.Linear(width, 1)
        with torch.no_grad():
            last.weight.uniform_(-bound, bound)
        layers.append(last)
        self.body = nn.Sequential(*layers)
