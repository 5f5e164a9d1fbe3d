"""The one schedule helper of every curriculum: a value as a function of the epoch or step.

A schedule is given in YAML as a mapping:

* ``{kind: step, stages: [[0, 5.0], [4, 10.0], [8, 20.0]]}``: the value of the last stage
  whose position has been reached (the first stage's value before it); positions are
  whole numbers, strictly increasing;
* ``{kind: linear, start: 5.0, end: 20.0, length: 8}``: from `start` to `end` over
  `length` units, then `end`;
* ``{kind: cosine, start: 5.0, end: 20.0, length: 8}``: the same along a half cosine
  (slow, fast, slow).

Every kind takes ``by`` (``epoch``, the default, or ``step``: the optimiser steps,
``trainer.global_step``) and ``warmup`` (units holding the first value before the
schedule starts; positions and ramps count from its end). A value is a number, a list
of numbers or a ``{name: number}`` mapping; linear and cosine schedules interpolate
lists and mappings entry by entry, so `start` and `end` must have the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fwi_lightning.errors import ConfigError

#: The schedule kinds.
KINDS = ("step", "linear", "cosine")

#: What a schedule counts: epochs or optimiser steps.
UNITS = ("epoch", "step")


@dataclass(frozen=True)
class Schedule:
    """A value as a function of the epoch or optimiser step; build it with `from_spec`.

    Attributes:
        kind: ``step``, ``linear`` or ``cosine``.
        by: ``epoch`` or ``step``.
        warmup: units the first value is held before the schedule starts.
        stages: (position, value) pairs of a ``step`` schedule, positions increasing.
        start, end: the end values of a ``linear`` / ``cosine`` ramp.
        length: units of the ramp (>= 1).
    """

    kind: str
    by: str = "epoch"
    warmup: int = 0
    stages: tuple[tuple[int, Any], ...] = ()
    start: Any = None
    end: Any = None
    length: int = 1

    @classmethod
    def from_spec(cls, spec: Any, key: str = "schedule") -> "Schedule":
        """Build a schedule from its YAML mapping (see the module docstring).

        Raises:
            ConfigError: an unknown kind or unit, stages not strictly increasing, a ramp
                length < 1, a negative warm-up, or values of different shapes; keyed by
                `key` and the entry.
        """
        if isinstance(spec, Schedule):
            return spec
        if not isinstance(spec, Mapping):
            raise ConfigError(f"expected a schedule mapping such as {{kind: linear, start: 5, end: 20, length: 10}}, got {spec!r}", key=key)
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind not in KINDS:
            raise ConfigError(f"expected a schedule kind among {', '.join(KINDS)}, got {kind!r}", key=f"{key}.kind")
        by = spec.pop("by", "epoch")
        if by not in UNITS:
            raise ConfigError(f"expected by: {' or '.join(UNITS)}, got {by!r}", key=f"{key}.by")
        warmup = _whole(spec.pop("warmup", 0), f"{key}.warmup", minimum=0)
        allowed = ("stages",) if kind == "step" else ("start", "end", "length")
        unknown = [name for name in spec if name not in allowed]
        if unknown:
            raise ConfigError(f"a {kind} schedule takes {', '.join(('by', 'warmup') + allowed)}; got '{unknown[0]}'", key=f"{key}.{unknown[0]}")
        if kind == "step":
            return cls(kind, by, warmup, stages=_stages(spec.get("stages"), f"{key}.stages"))
        for name in ("start", "end"):
            if name not in spec:
                raise ConfigError(f"a {kind} schedule needs '{name}'", key=f"{key}.{name}")
            _check_value(spec[name], f"{key}.{name}")
        if _shape(spec["start"]) != _shape(spec["end"]):
            raise ConfigError(f"start {spec['start']!r} and end {spec['end']!r} differ in shape", key=f"{key}.end")
        length = _whole(spec.get("length", 1), f"{key}.length", minimum=1)
        return cls(kind, by, warmup, start=spec["start"], end=spec["end"], length=length)

    def value(self, t: int) -> Any:
        """The value at epoch or step `t` (>= 0)."""
        t = t - self.warmup
        if self.kind == "step":
            current = self.stages[0][1]
            for position, value in self.stages:
                if t >= position:
                    current = value
            return current
        progress = min(max(t / self.length, 0.0), 1.0)
        if self.kind == "cosine":
            progress = (1.0 - math.cos(math.pi * progress)) / 2.0
        return _interpolate(self.start, self.end, progress)

    def now(self, trainer: Any) -> int:
        """The trainer's position in this schedule's unit: ``current_epoch`` or ``global_step``."""
        return int(trainer.current_epoch if self.by == "epoch" else trainer.global_step)

    def values(self) -> list[Any]:
        """Every value the schedule can reach at its ends: the stages, or start and end
        (with numbers, a linear or cosine value always lies between these)."""
        return [value for _, value in self.stages] if self.kind == "step" else [self.start, self.end]


def _whole(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"expected a whole number >= {minimum}, got {value!r}", key=key)
    return value


def _stages(stages: Any, key: str) -> tuple[tuple[int, Any], ...]:
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or not stages:
        raise ConfigError("expected a non-empty list of [position, value] stages, e.g. [[0, 5.0], [4, 10.0]]", key=key)
    pairs = []
    for number, stage in enumerate(stages):
        if isinstance(stage, (str, bytes)) or not isinstance(stage, Sequence) or len(stage) != 2:
            raise ConfigError(f"expected a [position, value] pair, got {stage!r}", key=f"{key}.{number}")
        position = _whole(stage[0], f"{key}.{number}", minimum=0)
        if pairs and position <= pairs[-1][0]:
            raise ConfigError(
                f"stages must be strictly increasing in position: stage {number} at {position} follows one at {pairs[-1][0]}",
                key=f"{key}.{number}",
            )
        pairs.append((position, stage[1]))
    return tuple(pairs)


def _check_value(value: Any, key: str) -> None:
    entries = value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else [value]
    for entry in entries:
        if isinstance(entry, bool) or not isinstance(entry, (int, float)) or not math.isfinite(entry):
            raise ConfigError(f"a linear or cosine schedule interpolates numbers; got {value!r}", key=key)


def _shape(value: Any) -> Any:
    if isinstance(value, Mapping):
        return ("mapping", tuple(sorted(value)))
    if isinstance(value, (list, tuple)):
        return ("list", len(value))
    return "number"


def _interpolate(start: Any, end: Any, progress: float) -> Any:
    if isinstance(start, Mapping):
        return {name: _interpolate(start[name], end[name], progress) for name in start}
    if isinstance(start, (list, tuple)):
        return [_interpolate(a, b, progress) for a, b in zip(start, end)]
    return float(start) + (float(end) - float(start)) * progress
