"""Layered velocity families in the manner of OpenFWI's Vel and Fault families.

Layer interfaces are flat or folded (one shared sine fold) and may be offset by one
fault (see `fwi_lightning.data.families.faulted`). Layer velocities are drawn uniformly
from the velocity range, sorted to increase with depth unless ``increasing`` is false.
Variants: ``A`` has 2-5 layers, ``B`` 6-10 thinner ones (capped at NZ).
Geometric sizes are fractions of the model's depth (NZ) or width (NX), so one
configuration suits any grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Optional

import numpy as np

from fwi_lightning.data.families.base import VelocityFamily, fraction_range
from fwi_lightning.errors import ConfigError

#: Layer-count range [min, max] of each variant.
VARIANTS: dict[str, tuple[int, int]] = {"A": (2, 5), "B": (6, 10)}


class LayeredFamily(VelocityFamily):
    """Shared machinery of the layered families; use a concrete family below.

    Args:
        shape, spacing, velocity_range: injected (see `VelocityFamily`).
        variant: ``"A"`` (2-5 layers) or ``"B"`` (6-10 thinner layers).
        layers: [min, max] layer count, overriding the variant's.
        increasing: sort layer velocities to increase with depth.
        amplitude: largest fold amplitude, fraction of NZ (0: flat interfaces).
        wavelength: [min, max] fold wavelength, fractions of NX.
        throw: [min, max] fault throw, fractions of NZ (None: no fault).
        dip: [min, max] fault dip from horizontal, degrees.
    """

    def __init__(
        self,
        shape: Sequence[int],
        spacing: float,
        velocity_range: Sequence[float],
        *,
        variant: str = "A",
        layers: Optional[Sequence[int]] = None,
        increasing: bool = True,
        amplitude: float = 0.0,
        wavelength: Sequence[float] = (0.5, 2.0),
        throw: Optional[Sequence[float]] = None,
        dip: Sequence[float] = (30.0, 80.0),
    ):
        super().__init__(shape, spacing, velocity_range)
        if variant not in VARIANTS:
            raise ConfigError(f"unknown variant '{variant}'; choose one of {', '.join(VARIANTS)}", key="variant")
        lo, hi = VARIANTS[variant] if layers is None else (int(n) for n in _pair(layers, "layers"))
        if not 1 <= lo <= hi:
            raise ConfigError(f"expected 1 <= min <= max layers, got [{lo}, {hi}]", key="layers")
        nz = self.shape[0]
        self.layers = (min(lo, nz), min(hi, nz))
        self.increasing = bool(increasing)
        if not 0 <= amplitude <= 1:
            raise ConfigError(f"expected a fraction of the depth in [0, 1], got {amplitude}", key="amplitude")
        self.amplitude = float(amplitude)
        self.wavelength = fraction_range(wavelength, "wavelength", upper=math.inf)
        if self.wavelength[0] <= 0:
            raise ConfigError(f"expected wavelengths > 0, got {list(wavelength)}", key="wavelength")
        self.throw = None if throw is None else fraction_range(throw, "throw")
        self.dip = fraction_range(dip, "dip", upper=90.0)
        if self.dip[0] <= 0:
            raise ConfigError(f"expected dips in (0, 90] degrees, got {list(dip)}", key="dip")

    def interfaces(self, rng: np.random.Generator, n_layers: int) -> np.ndarray:
        """Depths of the n_layers - 1 interfaces at every column, [n_layers - 1, NX] in cells."""
        nz, nx = self.shape
        base = np.sort(rng.choice(np.arange(1, nz), size=n_layers - 1, replace=False)).astype(np.float64)
        fold = np.zeros(nx)
        if self.amplitude > 0:
            height = rng.uniform(0, self.amplitude) * nz
            wavelength = rng.uniform(*self.wavelength) * nx
            fold = height * np.sin(2 * np.pi * np.arange(nx) / wavelength + rng.uniform(0, 2 * np.pi))
        return base[:, None] + fold[None, :]

    def fault_shift(self, rng: np.random.Generator) -> np.ndarray:
        """Downward shift of the hanging wall of one normal fault, [NZ, NX] in cells."""
        nz, nx = self.shape
        z0, x0 = rng.uniform(0.25, 0.75) * nz, rng.uniform(0.25, 0.75) * nx
        dip = math.radians(rng.uniform(*self.dip))
        direction = rng.choice([-1.0, 1.0])
        throw = rng.uniform(*self.throw) * nz
        z, x = np.mgrid[0:nz, 0:nx].astype(np.float64)
        fault_x = x0 + direction * (z - z0) / math.tan(dip)
        return np.where(direction * (x - fault_x) > 0, throw, 0.0)

    def generate(self, rng: np.random.Generator, split: str) -> np.ndarray:
        """One layered (possibly folded and faulted) model, [NZ, NX] m/s."""
        nz, nx = self.shape
        n_layers = int(rng.integers(self.layers[0], self.layers[1] + 1))
        surfaces = self.interfaces(rng, n_layers)
        depth = np.arange(nz, dtype=np.float64)[:, None] - (self.fault_shift(rng) if self.throw else 0.0)
        layer = (depth[None, :, :] >= surfaces[:, None, :]).sum(axis=0)  # [NZ, NX] layer index
        velocities = self.uniform_velocities(rng, n_layers)
        if self.increasing:
            velocities = np.sort(velocities)
        return velocities[layer]


class FlatVel(LayeredFamily):
    """Flat layers (OpenFWI FlatVel-like); variant A: 2-5 layers, B: 6-10 thinner ones."""

    def __init__(
        self,
        shape: Sequence[int],
        spacing: float,
        velocity_range: Sequence[float],
        variant: Literal["A", "B"] = "A",
        layers: Optional[Sequence[int]] = None,
        increasing: bool = True,
    ):
        super().__init__(shape, spacing, velocity_range, variant=variant, layers=layers, increasing=increasing)


class CurveVel(LayeredFamily):
    """Folded layers (OpenFWI CurveVel-like): one sine fold of random height, length and phase."""

    def __init__(
        self,
        shape: Sequence[int],
        spacing: float,
        velocity_range: Sequence[float],
        variant: Literal["A", "B"] = "A",
        layers: Optional[Sequence[int]] = None,
        increasing: bool = True,
        amplitude: float = 0.15,
        wavelength: Sequence[float] = (0.5, 2.0),
    ):
        super().__init__(
            shape, spacing, velocity_range, variant=variant, layers=layers, increasing=increasing,
            amplitude=amplitude, wavelength=wavelength,
        )


def _pair(values: Sequence[int], key: str) -> tuple[int, int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != 2:
        raise ConfigError(f"expected [min, max], got {values!r}", key=key)
    return int(values[0]), int(values[1])
