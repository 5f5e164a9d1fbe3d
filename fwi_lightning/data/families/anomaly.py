"""A constant background with one Gaussian velocity anomaly: the classic small FWI / PINN test model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from fwi_lightning.data.families.base import VelocityFamily
from fwi_lightning.errors import ConfigError


class GaussianAnomaly(VelocityFamily):
    """A constant background velocity plus one Gaussian anomaly, faster or slower.

    ``v(z, x) = background + amplitude * exp(-((z - z0)^2 + (x - x0)^2) / (2 sigma^2))``,
    clipped to the velocity range. Every value left unset is drawn per sample (so the
    family varies with seed and index); set them all for one fixed model, and
    ``amplitude_mps: 0`` for a homogeneous one.

    Args:
        shape, spacing, velocity_range: injected ((NZ, NX) cells, m, m/s).
        background_mps: background velocity in m/s; None: drawn in the middle half of the range.
        amplitude_mps: anomaly peak minus background in m/s (negative: slower); None: drawn
            with magnitude 10-25 % of the range and a random sign.
        sigma_m: Gaussian standard deviation in m; None: drawn in 5-15 % of the smaller side.
        center_m: (depth, lateral) of the peak in m; None: drawn in the middle half of the model.

    Raises:
        ConfigError: a background outside the range, a sigma <= 0 or a centre that is not
            two numbers.
    """

    def __init__(self, shape: Sequence[int], spacing: float, velocity_range: Sequence[float], *,
                 background_mps: Optional[float] = None, amplitude_mps: Optional[float] = None,
                 sigma_m: Optional[float] = None, center_m: Optional[Sequence[float]] = None):
        super().__init__(shape, spacing, velocity_range)
        v_min, v_max = self.velocity_range
        if background_mps is not None and not v_min <= background_mps <= v_max:
            raise ConfigError(f"expected a background inside the velocity range [{v_min:g}, {v_max:g}] m/s, got {background_mps}",
                              key="background_mps")
        if sigma_m is not None and not sigma_m > 0:
            raise ConfigError(f"expected a sigma > 0 in m, got {sigma_m!r}", key="sigma_m")
        if center_m is not None and (isinstance(center_m, (str, bytes)) or len(center_m) != 2):
            raise ConfigError(f"expected [depth, lateral] in m, got {center_m!r}", key="center_m")
        self.background_mps, self.amplitude_mps, self.sigma_m = background_mps, amplitude_mps, sigma_m
        self.center_m = None if center_m is None else (float(center_m[0]), float(center_m[1]))

    def generate(self, rng: np.random.Generator, split: str) -> np.ndarray:
        """One model, [NZ, NX] float32 in m/s."""
        v_min, v_max = self.velocity_range
        span = v_max - v_min
        nz, nx = self.shape
        h = self.spacing
        background = self.background_mps if self.background_mps is not None else rng.uniform(v_min + span / 4, v_max - span / 4)
        amplitude = self.amplitude_mps if self.amplitude_mps is not None else rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.25) * span
        sigma = self.sigma_m if self.sigma_m is not None else rng.uniform(0.05, 0.15) * min(nz, nx) * h
        if self.center_m is not None:
            z0, x0 = self.center_m
        else:
            z0, x0 = rng.uniform(0.25, 0.75) * (nz - 1) * h, rng.uniform(0.25, 0.75) * (nx - 1) * h
        z, x = np.meshgrid(np.arange(nz) * h, np.arange(nx) * h, indexing="ij")
        model = background + amplitude * np.exp(-((z - z0) ** 2 + (x - x0) ** 2) / (2.0 * sigma**2))
        return np.clip(model, v_min, v_max).astype(np.float32)
