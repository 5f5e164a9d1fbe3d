"""The velocity-family contract: deterministic velocity models from (seed, split, index).

A family is registered in the ``fwi_lightning.velocity`` entry-point group. The
framework builds it with the injected ``shape``, ``spacing`` and ``velocity_range``
plus its own YAML parameters, then calls ``sample(seed, split, index)`` from any
process, in any order: the model depends on those three numbers only.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from fwi_lightning.errors import ConfigError

#: The data splits a family draws for; ``split_id`` keys each into the sample seed.
SPLITS: tuple[str, ...] = ("train", "val", "test")


def split_id(split: str) -> int:
    """The integer that keys `split` into sample seeds.

    Raises:
        ConfigError: `split` is not one of `SPLITS`.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; expected one of {', '.join(SPLITS)}", key="split")
    return SPLITS.index(split)


def sample_seed(seed: int, split: str, index: int, stream: str) -> np.random.SeedSequence:
    """The seed sequence of one sample's random `stream` (e.g. ``"velocity"``, ``"noise"``).

    Distinct (seed, split, index, stream) give statistically independent streams.
    """
    if index < 0:
        raise ValueError(f"sample index must be >= 0, got {index}")
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, split_id(split), int(index), zlib.crc32(stream.encode())])


def sample_rng(seed: int, split: str, index: int, stream: str = "velocity") -> np.random.Generator:
    """A numpy Generator for one sample's random `stream`."""
    return np.random.Generator(np.random.PCG64(sample_seed(seed, split, index, stream)))


class VelocityFamily:
    """Base of velocity families: validates the injected arguments and clips to the range.

    Subclasses implement `generate`.

    Args:
        shape: (NZ, NX) cells of one model.
        spacing: grid spacing in m.
        velocity_range: (v_min, v_max) in m/s; every sample lies within it.

    Raises:
        ConfigError: a non-positive shape or spacing, or an empty velocity range.
    """

    def __init__(self, shape: Sequence[int], spacing: float, velocity_range: Sequence[float]):
        shape = tuple(int(n) for n in shape)
        if len(shape) != 2 or min(shape) < 2:
            raise ConfigError(f"expected a model shape (NZ, NX) of at least 2 x 2 cells, got {shape}", key="survey")
        if not spacing > 0:
            raise ConfigError(f"expected a grid spacing > 0 m, got {spacing}", key="survey.spacing")
        v_min, v_max = (float(v) for v in velocity_range)
        if not 0 < v_min < v_max:
            raise ConfigError(f"expected [v_min, v_max] with 0 < v_min < v_max m/s, got {list(velocity_range)}", key="velocity_range")
        self.shape: tuple[int, int] = shape
        self.spacing = float(spacing)
        self.velocity_range = (v_min, v_max)

    def sample(self, seed: int, split: str, index: int) -> np.ndarray:
        """One velocity model, deterministic from (seed, split, index).

        Returns:
            [NZ, NX] float32 velocities in m/s within `velocity_range`.
        """
        model = self.generate(sample_rng(seed, split, index), split)
        return np.clip(model, *self.velocity_range).astype(np.float32)

    def generate(self, rng: np.random.Generator, split: str) -> np.ndarray:
        """Draw one [NZ, NX] model in m/s with `rng` (values outside the range are clipped)."""
        raise NotImplementedError

    def uniform_velocities(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` velocities drawn uniformly from the range, m/s."""
        return rng.uniform(*self.velocity_range, size=n)


def fraction_range(values: Sequence[float], key: str, upper: float = 1.0) -> tuple[float, float]:
    """Validate a [lo, hi] pair of fractions with 0 <= lo <= hi <= upper.

    Raises:
        ConfigError: anything else, naming `key`.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != 2:
        raise ConfigError(f"expected [low, high], got {values!r}", key=key)
    lo, hi = (float(v) for v in values)
    if not 0 <= lo <= hi <= upper:
        raise ConfigError(f"expected 0 <= low <= high <= {upper:g}, got [{lo:g}, {hi:g}]", key=key)
    return lo, hi
