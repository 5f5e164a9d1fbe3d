"""Smooth random velocity fields over a layered trend (a geology-free 'style' family)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from fwi_lightning.data.families.base import VelocityFamily, fraction_range
from fwi_lightning.errors import ConfigError


class Style(VelocityFamily):
    """Smooth anisotropic random field over a smoothed, depth-increasing layered trend.

    The trend has 2-6 flat layers with increasing velocities, blurred over `blur` of
    the depth; on top lies Gaussian noise smoothed with a random vertical correlation
    length (`correlation`, fractions of NZ) stretched laterally by a random factor
    (`stretch`), scaled to a standard deviation of `contrast` times the velocity
    range's width. The sum is clipped to the range.

    Args:
        shape, spacing, velocity_range: injected (see `VelocityFamily`).
        correlation: [min, max] vertical correlation length, fractions of NZ.
        stretch: [min, max] lateral / vertical correlation ratio.
        contrast: standard deviation of the field, fraction of (v_max - v_min).
        blur: Gaussian blur of the layered trend, fraction of NZ.
    """

    def __init__(
        self,
        shape: Sequence[int],
        spacing: float,
        velocity_range: Sequence[float],
        correlation: Sequence[float] = (0.03, 0.15),
        stretch: Sequence[float] = (1.0, 6.0),
        contrast: float = 0.1,
        blur: float = 0.05,
    ):
        super().__init__(shape, spacing, velocity_range)
        self.correlation = fraction_range(correlation, "correlation")
        self.stretch = fraction_range(stretch, "stretch", upper=np.inf)
        if self.stretch[0] <= 0 or self.correlation[0] <= 0:
            raise ConfigError("correlation and stretch must be > 0", key="correlation")
        if not 0 <= contrast <= 1 or not 0 <= blur <= 1:
            raise ConfigError(f"expected contrast and blur in [0, 1], got {contrast}, {blur}", key="contrast")
        self.contrast = float(contrast)
        self.blur = float(blur)

    def generate(self, rng: np.random.Generator, split: str) -> np.ndarray:
        """One smooth random model, [NZ, NX] m/s."""
        nz, nx = self.shape
        v_min, v_max = self.velocity_range
        n_layers = int(rng.integers(2, 7))
        tops = np.sort(rng.choice(np.arange(1, nz), size=min(n_layers, nz) - 1, replace=False))
        velocities = np.sort(rng.uniform(v_min, v_max, size=len(tops) + 1))
        trend = velocities[np.searchsorted(tops, np.arange(nz), side="right")]
        trend = gaussian_filter(trend, self.blur * nz, mode="nearest") if self.blur > 0 else trend
        sigma_z = rng.uniform(*self.correlation) * nz
        sigma_x = sigma_z * rng.uniform(*self.stretch)
        field = gaussian_filter(rng.standard_normal((nz, nx)), (sigma_z, sigma_x), mode="wrap")
        field *= self.contrast * (v_max - v_min) / max(field.std(), 1e-12)
        return trend[:, None] + field
