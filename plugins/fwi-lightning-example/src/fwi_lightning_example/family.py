"""A Gaussian velocity anomaly (a salt body or gas pocket stand-in) in a depth-gradient background."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fwi_lightning.data.families.base import VelocityFamily, fraction_range
from fwi_lightning.errors import ConfigError


class GaussianAnomaly(VelocityFamily):
    """Velocity increasing linearly with depth plus one Gaussian anomaly, faster or slower.

    Per model: a top velocity drawn from the lower half of the range and a bottom one
    between it and v_max give the background; an anomaly of peak ``±amplitude x (v_max
    - v_min)`` and width sigma = ``radius`` x NZ cells sits at a uniform random cell.

    Args:
        shape, spacing, velocity_range: injected ((NZ, NX) cells, m, m/s).
        amplitude: [min, max] size of the anomaly, fraction of the velocity range.
        radius: [min, max] Gaussian sigma, fraction of the model depth NZ.
        slower: probability that the anomaly is slower than its background.

    Raises:
        ConfigError: fractions outside [0, 1], or a zero radius.
    """

    def __init__(self, shape: Sequence[int], spacing: float, velocity_range: Sequence[float],
                 amplitude: Sequence[float] = (0.1, 0.3), radius: Sequence[float] = (0.1, 0.25), slower: float = 0.5):
        super().__init__(shape, spacing, velocity_range)
        self.amplitude = fraction_range(amplitude, "amplitude")
        self.radius = fraction_range(radius, "radius")
        if self.radius[0] <= 0:
            raise ConfigError(f"expected a radius > 0 (fraction of the depth), got {list(radius)}", key="radius")
        if not 0 <= slower <= 1:
            raise ConfigError(f"expected a probability in [0, 1], got {slower}", key="slower")
        self.slower = float(slower)

    def generate(self, rng: np.random.Generator, split: str) -> np.ndarray:
        """One model, [NZ, NX] in m/s."""
        nz, nx = self.shape
        v_min, v_max = self.velocity_range
        top = rng.uniform(v_min, (v_min + v_max) / 2)
        bottom = rng.uniform(top, v_max)
        background = np.linspace(top, bottom, nz)[:, None] * np.ones((1, nx))
        z0, x0 = rng.uniform(0, nz - 1), rng.uniform(0, nx - 1)
        sigma = rng.uniform(*self.radius) * nz
        sign = -1.0 if rng.random() < self.slower else 1.0
        peak = sign * rng.uniform(*self.amplitude) * (v_max - v_min)
        z, x = np.mgrid[0:nz, 0:nx]
        return background + peak * np.exp(-((z - z0) ** 2 + (x - x0) ** 2) / (2 * sigma**2))
