"""Acquisition geometry and numerics of a 2D surface seismic survey, in SI units.

A `Survey` is validated when it is built: sizes must be positive, every source and
receiver must lie on the grid, and the finite-difference numerics must be stable. It
imports neither torch nor deepwave, so the config validator can build it cheaply.

Numerics presets (`NUMERICS`) are applied with `Survey.with_numerics`; a value set
explicitly on the survey always wins over the preset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional

from fwi_lightning.errors import ConfigError, suggestion

#: Numerics presets. ``accurate`` is deepwave's defaults (PML 20 cells, Courant 0.6);
#: ``fast`` (the training default) takes one time step per sample up to 4950 m/s at
#: 10 m / 1 ms and a thinner PML: 2.3x cheaper per OpenFWI-size sample, changing the
#: data by 0.2-0.6 % (benchmarks/README.md, "Simulation").
NUMERICS: dict[str, dict[str, Any]] = {
    "fast": {"courant_number": 0.7, "pml_width": 10},
    "accurate": {"courant_number": None, "pml_width": None},
}

#: deepwave's Courant number when none is given (``deepwave.DEFAULT_COURANT_NUMBER``).
DEEPWAVE_COURANT_NUMBER = 0.6

#: Largest stable Courant number of deepwave's regular-grid scalar scheme per accuracy
#: order (``deepwave.discretisation.critical_courant_number(a, propagator="scalar")``).
CRITICAL_COURANT = {2: 1.0, 4: math.sqrt(3.0) / 2.0, 6: 0.8134892168024669, 8: 0.7843687748745656}

#: Fewest grid cells per wavelength of the slowest wave at the peak frequency.
MIN_CELLS_PER_WAVELENGTH = 5.0

#: Ricker wavelets carry energy up to about this multiple of their peak frequency.
RICKER_BANDWIDTH = 2.5

#: Default number of shots (OpenFWI: 5 sources at cells 0, 17, 34, 52, 69).
DEFAULT_SHOTS = 5


@dataclass(frozen=True)
class Survey:
    """A 2D survey on a regular grid. Defaults reproduce OpenFWI's geometry.

    Lateral positions are in m from the first column; depths in m from the first row.
    Positions are snapped to the nearest grid cell.

    Attributes:
        nz: depth cells. nx: lateral cells.
        spacing: grid spacing in m (dz = dx).
        nt: time samples. dt: sample interval in s.
        peak_freq: Ricker peak frequency in Hz.
        n_shots: number of shots, one source each. Default: ``len(source_x)`` when given,
            else 5, spread evenly from the first to the last column (OpenFWI: cells
            0, 17, 34, 52, 69), or every ``source_spacing`` m from x = 0.
        source_depth: source depth in m.
        n_receivers: receivers per shot (the same for every shot). Default:
            ``len(receiver_x)``, else one per ``receiver_spacing`` m, else one per column.
        receiver_depth: receiver depth in m.
        accuracy: finite-difference order in space (2, 4, 6 or 8).
        pml_width: absorbing-layer width in cells; None: the numerics preset, else
            deepwave's 20.
        courant_number: target Courant number; None: the preset, else deepwave's 0.6.
        max_vel: velocity in m/s that fixes the time step and the PML; None: the
            simulator takes the top of the configured velocity range.
        source_x: explicit lateral source positions in m (one per shot).
        receiver_x: explicit lateral receiver positions in m.
        source_spacing: sources every this many m from x = 0 (instead of spreading).
        receiver_spacing: receivers every this many m from x = 0.
    """

    nz: int = 70
    nx: int = 70
    spacing: float = 10.0
    nt: int = 1000
    dt: float = 0.001
    peak_freq: float = 15.0
    n_shots: Optional[int] = None
    source_depth: float = 10.0
    n_receivers: Optional[int] = None
    receiver_depth: float = 10.0
    accuracy: int = 4
    pml_width: Optional[int] = None
    courant_number: Optional[float] = None
    max_vel: Optional[float] = None
    source_x: Optional[Sequence[float]] = None
    receiver_x: Optional[Sequence[float]] = None
    source_spacing: Optional[float] = None
    receiver_spacing: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("nz", "nx", "nt"):
            _positive_int(self, name)
        for name in ("spacing", "dt", "peak_freq"):
            _positive_float(self, name)
        for name in ("source_depth", "receiver_depth"):
            if not _is_number(getattr(self, name)) or getattr(self, name) < 0:
                raise ConfigError(f"expected a depth >= 0 in m, got {getattr(self, name)!r}", key=f"survey.{name}")
        if self.accuracy not in CRITICAL_COURANT:
            raise ConfigError(f"expected 2, 4, 6 or 8, got {self.accuracy!r}", key="survey.accuracy")
        if self.pml_width is not None and (isinstance(self.pml_width, bool) or not isinstance(self.pml_width, int) or self.pml_width < 0):
            raise ConfigError(f"expected a whole number of cells >= 0, got {self.pml_width!r}", key="survey.pml_width")
        if self.courant_number is not None:
            _positive_float(self, "courant_number")
            critical = CRITICAL_COURANT[self.accuracy]
            if self.courant_number > critical:
                raise ConfigError(
                    f"{self.courant_number} is unstable at accuracy {self.accuracy}: use at most {critical:.4f}",
                    key="survey.courant_number",
                )
        if self.max_vel is not None:
            _positive_float(self, "max_vel")
        for name in ("source_spacing", "receiver_spacing"):
            if getattr(self, name) is not None:
                _positive_float(self, name)
        _row(self, "source_depth")
        _row(self, "receiver_depth")
        shots = self._positions("source", "n_shots", DEFAULT_SHOTS)
        receivers = self._positions("receiver", "n_receivers", None)
        if len(set(receivers)) != len(receivers):
            raise ConfigError(
                f"{len(receivers)} receivers do not fit on {self.nx} columns at {self.spacing} m without two "
                "sharing a cell; use fewer receivers or a larger spacing between them",
                key="survey.n_receivers",
            )
        for name, value in (("n_shots", len(shots)), ("n_receivers", len(receivers))):
            object.__setattr__(self, name, value)
        for name in ("source_x", "receiver_x"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(float(x) for x in getattr(self, name)))

    # -- geometry ---------------------------------------------------------------

    def _positions(self, kind: str, count_name: str, default_count: Optional[int]) -> list[int]:
        """Columns of the sources or receivers, validating count, positions and spacing."""
        count = getattr(self, count_name)
        explicit = getattr(self, f"{kind}_x")
        step = getattr(self, f"{kind}_spacing")
        if count is not None:
            _positive_int(self, count_name)
        width = (self.nx - 1) * self.spacing
        if explicit is not None:
            if isinstance(explicit, (str, bytes)) or not isinstance(explicit, Sequence) or not explicit:
                raise ConfigError(f"expected a non-empty list of positions in m, got {explicit!r}", key=f"survey.{kind}_x")
            if step is not None:
                raise ConfigError(f"give either {kind}_x or {kind}_spacing, not both", key=f"survey.{kind}_spacing")
            if count is not None and count != len(explicit):
                raise ConfigError(
                    f"{count_name}={count} disagrees with {kind}_x ({len(explicit)} positions); drop {count_name} "
                    f"or set it to {len(explicit)}",
                    key=f"survey.{count_name}",
                )
            xs = list(explicit)
        elif step is not None:
            fit = int(math.floor(width / step + 1e-9)) + 1
            count = fit if count is None else count
            xs = [k * step for k in range(count)]
        else:
            count = (default_count or self.nx) if count is None else count
            xs = [width * k / (count - 1) for k in range(count)] if count > 1 else [0.0]
        columns = []
        for x in xs:
            if not _is_number(x):
                raise ConfigError(f"expected positions in m, got {x!r}", key=f"survey.{kind}_x")
            col = round(x / self.spacing)
            if not 0 <= col < self.nx:
                raise ConfigError(
                    f"a {kind} at x = {x} m lies outside the grid (0 to {width} m: nx={self.nx} cells of "
                    f"{self.spacing} m); move it inside or enlarge the grid",
                    key=f"survey.{kind}_x" if explicit is not None else f"survey.{count_name}",
                )
            columns.append(col)
        return columns

    @property
    def source_row(self) -> int:
        """Grid row of every source (depth / spacing, rounded)."""
        return round(self.source_depth / self.spacing)

    @property
    def receiver_row(self) -> int:
        """Grid row of every receiver (depth / spacing, rounded)."""
        return round(self.receiver_depth / self.spacing)

    @property
    def source_columns(self) -> list[int]:
        """Grid column of each shot's source, [S]."""
        return self._positions("source", "n_shots", DEFAULT_SHOTS)

    @property
    def receiver_columns(self) -> list[int]:
        """Grid columns of the receivers, [R] (the same for every shot)."""
        return self._positions("receiver", "n_receivers", None)

    # -- numerics ---------------------------------------------------------------

    def with_numerics(self, preset: Optional[str]) -> "Survey":
        """This survey with a numerics preset filled into the fields it leaves unset.

        Args:
            preset: a key of `NUMERICS` (``"fast"`` or ``"accurate"``), or None for no change.

        Raises:
            ConfigError: unknown preset name.
        """
        if preset is None:
            return self
        if preset not in NUMERICS:
            raise ConfigError(
                f"unknown numerics preset '{preset}'{suggestion(preset, NUMERICS)}; choose one of {', '.join(NUMERICS)}",
                key="numerics",
            )
        updates = {k: v for k, v in NUMERICS[preset].items() if getattr(self, k) is None and v is not None}
        return replace(self, **updates)

    def resolved_courant_number(self) -> float:
        """The Courant number deepwave will target (the survey's, else deepwave's 0.6)."""
        return self.courant_number if self.courant_number is not None else DEEPWAVE_COURANT_NUMBER

    def step_ratio(self, max_vel: float) -> int:
        """Internal time steps per sample deepwave takes for velocities up to `max_vel` m/s."""
        limit = self.resolved_courant_number() * self.spacing / (max_vel * math.sqrt(2.0))
        return max(1, math.ceil(self.dt / limit - 1e-9))

    def check_velocity_range(self, v_min: float, v_max: float) -> None:
        """Check that this survey can simulate velocities in [v_min, v_max] m/s.

        Raises:
            ConfigError: an empty or non-positive range, a `max_vel` below `v_max`
                (unstable), a grid too coarse for the slowest wave (dispersion), or a
                sample interval too long for the wavelet (aliasing).
        """
        if not (_is_number(v_min) and _is_number(v_max) and 0 < v_min < v_max):
            raise ConfigError(f"expected [v_min, v_max] in m/s with 0 < v_min < v_max, got [{v_min}, {v_max}]", key="velocity_range")
        if self.max_vel is not None and self.max_vel < v_max:
            raise ConfigError(
                f"max_vel={self.max_vel} m/s is below the top of the velocity range ({v_max} m/s): the simulation "
                f"would be unstable; raise max_vel to at least {v_max} or leave it unset",
                key="survey.max_vel",
            )
        cells = v_min / (self.peak_freq * self.spacing)
        if cells < MIN_CELLS_PER_WAVELENGTH:
            raise ConfigError(
                f"grid too coarse: a {v_min} m/s wave at {self.peak_freq} Hz spans {cells:.1f} cells, need at least "
                f"{MIN_CELLS_PER_WAVELENGTH:g}; use spacing <= {v_min / (self.peak_freq * MIN_CELLS_PER_WAVELENGTH):.3g} m "
                f"or peak_freq <= {v_min / (self.spacing * MIN_CELLS_PER_WAVELENGTH):.3g} Hz",
                key="survey.spacing",
            )
        nyquist = 0.5 / self.dt
        if RICKER_BANDWIDTH * self.peak_freq > nyquist:
            raise ConfigError(
                f"dt={self.dt} s aliases a {self.peak_freq} Hz Ricker (energy up to {RICKER_BANDWIDTH * self.peak_freq:g} Hz, "
                f"Nyquist {nyquist:g} Hz); use dt <= {0.5 / (RICKER_BANDWIDTH * self.peak_freq):.3g} s",
                key="survey.dt",
            )

    # -- serialisation ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML/JSON-serialisable form; `from_dict` rebuilds an equal survey."""
        values = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Survey":
        """Build a survey from a mapping (YAML section or `to_dict` output).

        Raises:
            ConfigError: an unknown key (with the closest valid key) or an invalid value.
        """
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown survey key '{key}'{suggestion(str(key), known)}", key=f"survey.{key}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(survey: Survey, name: str) -> None:
    value = getattr(survey, name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"expected a whole number > 0, got {value!r}", key=f"survey.{name}")


def _positive_float(survey: Survey, name: str) -> None:
    value = getattr(survey, name)
    if not _is_number(value) or value <= 0:
        raise ConfigError(f"expected a number > 0, got {value!r}", key=f"survey.{name}")


def _row(survey: Survey, name: str) -> None:
    depth = getattr(survey, name)
    if round(depth / survey.spacing) >= survey.nz:
        raise ConfigError(
            f"{depth} m lies below the grid (nz={survey.nz} cells of {survey.spacing} m reach "
            f"{(survey.nz - 1) * survey.spacing} m); use a shallower depth",
            key=f"survey.{name}",
        )
