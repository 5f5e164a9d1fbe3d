"""Random windows from a 2D velocity model file (npy), e.g. Marmousi.

The file is resampled once to the survey's grid spacing. Its columns are cut into
lateral regions, one per split: contiguous shares in the order train, val, test
(`fractions`), or lateral extents in metres (`regions_m`, several per split if need
be, e.g. a benchmark window held out with training data on both sides). Each window
lies wholly inside one region of its split, so no training window overlaps a
validation or test window.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from fwi_lightning.data.families.base import SPLITS, VelocityFamily
from fwi_lightning.data.npyfiles import open_npy
from fwi_lightning.errors import ConfigError, DataError

#: Default lateral share of the model per split.
DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}

#: Where Marmousi is looked for, relative to a data directory.
MARMOUSI_FILE = "marmousi/marmousi_vp_z751_x2301_d4m_f32.npy"
MARMOUSI_SHAPE = (751, 2301)
MARMOUSI_SPACING = 4.0
MARMOUSI2_FILE = "marmousi2/marmousi2_vp_z176_x851_d20m_f32.npy"
MARMOUSI2_SHAPE = (176, 851)
MARMOUSI2_SPACING = 20.0

#: Environment variable naming the data directory.
DATA_ENV = "FWI_LIGHTNING_DATA"

#: Most memory resampling may ask for, bytes (see `resampling_bytes`).
MAX_RESAMPLE_BYTES = 4 * 2**30

#: Bytes per output cell while resampling: two float64 coordinate grids, the float64
#: interpolated values and the float32 result.
RESAMPLE_BYTES_PER_CELL = 8 + 8 + 8 + 4

#: Files whose clipping was reported in this process (one warning per file).
_clip_reported: set[str] = set()


def user_cache() -> Path:
    """The per-user data directory searched after $FWI_LIGHTNING_DATA."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fwi-lightning"


def resample(model: np.ndarray, file_spacing: float, spacing: float) -> np.ndarray:
    """Resample a [NZ, NX] model from `file_spacing` to `spacing` m on the same origin.

    The output keeps every node within the file's extent; when coarsening, the model
    is first smoothed with a Gaussian of sigma 0.5 * (ratio - 1) file cells against
    aliasing. Linear interpolation.
    """
    ratio = spacing / file_spacing
    if np.isclose(ratio, 1.0):
        return np.asarray(model, dtype=np.float32)
    source = np.asarray(model, dtype=np.float64)
    if ratio > 1:
        source = gaussian_filter(source, 0.5 * (ratio - 1), mode="nearest")
    shape = resampled_shape(source.shape, file_spacing, spacing)
    grid = np.meshgrid(*(np.arange(n) * ratio for n in shape), indexing="ij")
    return map_coordinates(source, grid, order=1, mode="nearest").astype(np.float32)


def resampled_shape(shape: Sequence[int], file_spacing: float, spacing: float) -> tuple[int, ...]:
    """Cells of a model of `shape` cells at `file_spacing` m once resampled to `spacing` m."""
    ratio = spacing / file_spacing
    if np.isclose(ratio, 1.0):
        return tuple(int(n) for n in shape)
    return tuple(int(np.floor((n - 1) / ratio + 1e-9)) + 1 for n in shape)


def resampling_bytes(shape: Sequence[int]) -> int:
    """Peak memory in bytes of `resample` producing a model of `shape` cells."""
    return int(np.prod(shape, dtype=np.int64)) * RESAMPLE_BYTES_PER_CELL


def clip_report(values: np.ndarray, velocity_range: Sequence[float]) -> Optional[str]:
    """How many cells of `values` lie outside `velocity_range` and the range that covers them; None if none do.

    Args:
        values: velocities in m/s, any shape.
        velocity_range: (v_min, v_max) in m/s.
    """
    v_min, v_max = velocity_range
    outside = int(np.count_nonzero((values < v_min) | (values > v_max)))
    if not outside:
        return None
    lo, hi = float(np.min(values)), float(np.max(values))
    return (
        f"{outside} of {values.size} cells ({100.0 * outside / values.size:.2f}%) lie outside velocity_range "
        f"[{v_min:g}, {v_max:g}] m/s (the file spans {lo:g} to {hi:g} m/s); "
        f"set velocity_range: [{min(lo, v_min):g}, {max(hi, v_max):g}] to cover it"
    )


class ModelFile(VelocityFamily):
    """Random windows from any 2D velocity model in an npy file, resampled to the survey grid.

    Velocities outside `velocity_range` are clipped to it (``clip: true``, the default;
    a warning, once per file, says how many cells were clipped and which range would
    cover the file) or refused with a DataError (``clip: false``).

    Args:
        shape, spacing, velocity_range: injected (see `VelocityFamily`).
        path: the npy file, [NZ_file, NX_file] (depth first) float velocities in m/s.
        file_spacing: the file's grid spacing in m.
        fractions: lateral share of the model per split (train, val, test regions in
            that order, left to right).
        regions_m: instead of `fractions`: per split, a list of lateral extents
            ``[x_start, x_end]`` in m from the file's first column (a window's columns
            all lie in one extent); splits left out get none. Extents of different
            splits may not overlap.
        depth: ``"top"``: windows start at the surface; ``"random"``: at a random depth.
        clip: clip out-of-range velocities (True) or refuse the file (False).

    Raises:
        DataError: a missing, unreadable, non-2D or non-numeric file (at construction);
            non-finite or non-positive values, or a model too small for the window of a
            split (at the first sample).
        ConfigError: invalid fractions, regions or spacing, both `fractions` and
            `regions_m`, or a `file_spacing` that would resample the file into more
            than `MAX_RESAMPLE_BYTES` of memory.
    """

    def __init__(
        self,
        shape: Sequence[int],
        spacing: float,
        velocity_range: Sequence[float],
        path: str,
        file_spacing: float,
        fractions: Optional[Mapping[str, float]] = None,
        depth: Literal["top", "random"] = "top",
        clip: bool = True,
        regions_m: Optional[Mapping[str, Sequence[Sequence[float]]]] = None,
    ):
        super().__init__(shape, spacing, velocity_range)
        if not file_spacing > 0:
            raise ConfigError(f"expected the file's grid spacing in m (> 0), got {file_spacing}", key="file_spacing")
        if fractions is not None and regions_m is not None:
            raise ConfigError("give the split regions either as 'fractions' or as 'regions_m', not both", key="regions_m")
        self.path = Path(path).expanduser()
        self.file_spacing = float(file_spacing)
        self.fractions = _fractions(fractions) if regions_m is None else None
        self.regions_m = _regions_m(regions_m) if regions_m is not None else None
        if depth not in ("top", "random"):
            raise ConfigError(f"expected 'top' or 'random', got {depth!r}", key="depth")
        self.depth = depth
        self.clip = bool(clip)
        self.file_shape = _npy_shape(self.path)
        self._check_resampled_size()
        self._model: Optional[np.ndarray] = None

    def _check_resampled_size(self) -> None:
        """Refuse a resampling that would not fit in memory, before allocating anything."""
        shape = resampled_shape(self.file_shape, self.file_spacing, self.spacing)
        needed = resampling_bytes(shape)
        if needed > MAX_RESAMPLE_BYTES:
            raise ConfigError(
                f"resampling {self.path} ({self.file_shape[0]} x {self.file_shape[1]} cells at {self.file_spacing:g} m) to the "
                f"survey spacing {self.spacing:g} m gives {shape[0]} x {shape[1]} cells and needs {needed / 2**30:.1f} GiB "
                f"(limit {MAX_RESAMPLE_BYTES / 2**30:.0f} GiB); set file_spacing to the file's own grid spacing in m "
                "or use a coarser survey.spacing",
                key="file_spacing",
            )

    @property
    def model(self) -> np.ndarray:
        """The whole file resampled to the survey spacing, [NZ', NX'] float32 m/s (loaded once)."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> np.ndarray:
        raw = open_npy(self.path, "a 2D float array of velocities in m/s")
        try:
            values = np.asarray(raw, dtype=np.float64)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the velocity model: {exc}", file=str(self.path)) from exc
        if not np.isfinite(values).all() or values.min() <= 0:
            raise DataError("expected finite velocities > 0 m/s; the file holds NaN, infinite or non-positive values", file=str(self.path))
        report = clip_report(values, self.velocity_range)
        if report is not None and not self.clip:
            raise DataError(f"{report}, or set clip: true to clip them", file=str(self.path))
        if report is not None and str(self.path) not in _clip_reported:
            _clip_reported.add(str(self.path))
            warnings.warn(f"{self.path}: clipping velocities: {report}, or clip: false to refuse the file", UserWarning, stacklevel=2)
        model = resample(values, self.file_spacing, self.spacing)
        nz, nx = self.shape
        if model.shape[0] < nz:
            raise DataError(
                f"at {self.spacing} m the model is {model.shape[0]} cells deep, fewer than the survey's nz={nz}",
                file=str(self.path),
            )
        for split in SPLITS:
            for lo, hi in self.regions(split, model.shape[1]):
                if hi - lo < nx:
                    raise DataError(
                        f"a {split} region is {hi - lo} columns wide at {self.spacing} m, narrower than the window "
                        f"(nx={nx}); widen it in '{self.region_setting}' or use a smaller survey",
                        file=str(self.path),
                    )
        return model

    @property
    def region_setting(self) -> str:
        """The setting that defines the split regions: ``fractions`` or ``regions_m``."""
        return "fractions" if self.regions_m is None else "regions_m"

    def regions(self, split: str, width: int) -> list[tuple[int, int]]:
        """Column ranges [start, stop) of `split`'s lateral regions in a model `width` columns wide.

        A region of ``regions_m`` holds the columns whose x (column * spacing, m) lies
        in its extent, clipped to the model. A split without a region gets none.
        """
        if self.regions_m is None:
            edges = np.round(np.cumsum([0.0] + [self.fractions[s] for s in SPLITS]) * width).astype(int)
            i = SPLITS.index(split)
            return [(int(edges[i]), int(edges[i + 1]))] if self.fractions[split] > 0 else []
        return [
            (max(0, int(np.ceil(start / self.spacing - 1e-9))), min(width, int(np.floor(end / self.spacing + 1e-9)) + 1))
            for start, end in self.regions_m.get(split, [])
        ]

    def generate(self, rng: np.random.Generator, split: str) -> np.ndarray:
        """One window of the resampled model inside one of `split`'s regions, [NZ, NX] m/s.

        The window's left column is uniform over every position that fits in a region.
        """
        model = self.model
        nz, nx = self.shape
        starts = [np.arange(lo, hi - nx + 1) for lo, hi in self.regions(split, model.shape[1])]
        if not starts:
            raise DataError(f"no {split} region in '{self.region_setting}'", file=str(self.path))
        starts = np.concatenate(starts)
        x0 = int(starts[rng.integers(0, starts.size)])
        z0 = int(rng.integers(0, model.shape[0] - nz + 1)) if self.depth == "random" else 0
        return model[z0 : z0 + nz, x0 : x0 + nx]


class KnownModel(ModelFile):
    """Windows of a published model found on disk under a known relative path.

    A subclass names the file (`FILE`, relative to a data directory), its shape
    (`SHAPE`, depth first), spacing (`SPACING`, m) and title (`TITLE`). The file is
    looked for as `path` (the file, or a directory holding ``FILE``), then under
    ``$FWI_LIGHTNING_DATA``, then under the user cache (``~/.cache/fwi-lightning``).
    Velocities outside the velocity range are clipped unless ``clip: false``.

    Raises:
        DataError: the file is in none of those places (the message says where to put
            it), or is not an array of `SHAPE`.
    """

    FILE: str
    SHAPE: tuple[int, int]
    SPACING: float
    TITLE: str

    def __init__(
        self,
        shape: Sequence[int],
        spacing: float,
        velocity_range: Sequence[float],
        path: Optional[str] = None,
        fractions: Optional[Mapping[str, float]] = None,
        depth: Literal["top", "random"] = "top",
        clip: bool = True,
        regions_m: Optional[Mapping[str, Sequence[Sequence[float]]]] = None,
    ):
        found = find_model_file(self.FILE, self.SHAPE, self.SPACING, self.TITLE, path)
        super().__init__(
            shape, spacing, velocity_range, path=str(found), file_spacing=self.SPACING, fractions=fractions, depth=depth, clip=clip, regions_m=regions_m
        )
        if self.file_shape != self.SHAPE:
            raise DataError(f"expected the {self.TITLE} model of shape {self.SHAPE} (depth, lateral), got {self.file_shape}", file=str(found))


class Marmousi(KnownModel):
    """Windows of the original IFP Marmousi model (751 x 2301 at 4 m, 9.2 km x 3 km,
    1500-5500 m/s), at ``$FWI_LIGHTNING_DATA/marmousi/marmousi_vp_z751_x2301_d4m_f32.npy``."""

    FILE, SHAPE, SPACING, TITLE = MARMOUSI_FILE, MARMOUSI_SHAPE, MARMOUSI_SPACING, "Marmousi"


class Marmousi2(KnownModel):
    """Windows of the Marmousi2 (AGL Elastic Marmousi) P-velocity model (176 x 851 at 20 m,
    17 km x 3.5 km, 1028-4700 m/s, a water layer of about 450 m on top), at
    ``$FWI_LIGHTNING_DATA/marmousi2/marmousi2_vp_z176_x851_d20m_f32.npy``. Geology of the
    same style as Marmousi but another model: training on it never sees a Marmousi window."""

    FILE, SHAPE, SPACING, TITLE = MARMOUSI2_FILE, MARMOUSI2_SHAPE, MARMOUSI2_SPACING, "Marmousi2"


def find_model_file(file: str, shape: Sequence[int], spacing: float, title: str, path: Optional[str] = None) -> Path:
    """A known model's npy file: `path`, then $FWI_LIGHTNING_DATA, then the user cache.

    Args:
        file: the file's path relative to a data directory.
        shape, spacing, title: what the file holds, for the message.
        path: a file or a directory given by the user (None: none).

    Raises:
        DataError: not found; the message lists the places tried and where to put it.
    """
    candidates = []
    if path:
        given = Path(path).expanduser()
        candidates += [given / file, given / Path(file).name] if given.is_dir() else [given]
    if os.environ.get(DATA_ENV):
        candidates.append(Path(os.environ[DATA_ENV]).expanduser() / file)
    candidates.append(user_cache() / file)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"{title} model not found (tried {tried}). Put {Path(file).name} ({shape[0]} x {shape[1]} float32 m/s at "
        f"{spacing:g} m, depth first) at ${DATA_ENV}/{file} (or {user_cache() / file}), or set 'path' to the file"
    )

def _npy_shape(path: Path) -> tuple[int, ...]:
    """The shape of a 2D numeric npy file, read from its header only."""
    if not path.is_file():
        raise DataError("velocity model file not found; check 'path'", file=str(path))
    array = open_npy(path, "a 2D float array [depth, lateral] of velocities in m/s")
    if array.ndim != 2:
        raise DataError(f"expected a 2D numeric array [depth, lateral] in m/s, got shape {array.shape} of {array.dtype}", file=str(path))
    return tuple(array.shape)


def _fractions(fractions: Optional[Mapping[str, float]]) -> dict[str, float]:
    values = dict(DEFAULT_FRACTIONS if fractions is None else {s: 0.0 for s in SPLITS} | dict(fractions))
    unknown = set(values) - set(SPLITS)
    if unknown:
        raise ConfigError(f"unknown split(s) {sorted(unknown)}; expected {', '.join(SPLITS)}", key="fractions")
    if any(v < 0 for v in values.values()) or not 0 < sum(values.values()) <= 1 + 1e-9:
        raise ConfigError(f"expected shares >= 0 summing to at most 1, got {values}", key="fractions")
    return values


def _regions_m(regions_m: Mapping[str, Sequence[Sequence[float]]]) -> dict[str, list[tuple[float, float]]]:
    """Validate ``regions_m``: per split, extents [x_start, x_end] in m, none shared between splits."""
    unknown = set(regions_m) - set(SPLITS)
    if unknown:
        raise ConfigError(f"unknown split(s) {sorted(unknown)}; expected {', '.join(SPLITS)}", key="regions_m")
    extents: dict[str, list[tuple[float, float]]] = {}
    for split, spans in regions_m.items():
        try:
            extents[split] = [(float(start), float(end)) for start, end in spans]
        except (TypeError, ValueError):
            raise ConfigError(f"expected a list of [x_start, x_end] pairs in m, got {spans!r}", key=f"regions_m.{split}") from None
        if any(not 0 <= start < end for start, end in extents[split]):
            raise ConfigError(f"expected 0 <= x_start < x_end (m), got {spans!r}", key=f"regions_m.{split}")
    spans = [(split, start, end) for split in SPLITS for start, end in extents.get(split, [])]
    for (a, s0, e0), (b, s1, e1) in itertools.combinations(spans, 2):
        if a != b and s0 <= e1 and s1 <= e0:
            raise ConfigError(
                f"the {a} extent [{s0:g}, {e0:g}] m overlaps the {b} extent [{s1:g}, {e1:g}] m; "
                "windows of different splits must not share columns",
                key="regions_m",
            )
    if not any(extents.values()):
        raise ConfigError("expected at least one extent [x_start, x_end] in m", key="regions_m")
    return extents
