"""Curriculum callbacks: training from easy to hard by turning data-module knobs on a schedule.

Each curriculum is a Lightning callback holding one `Schedule` (``by: epoch`` or
``by: step``). It applies the schedule's value at the start of training and of every
training epoch and, for a schedule by step, after every optimiser step, so the value
of step s acts from batch s on (processing knobs) or after the loader's prefetch
(``family_weights``, ``index_weights``: see `SimulatedDataModule`; at once at an epoch
start, as each epoch's loader iteration starts after it). The knobs are turned through the data
module's public ``set_knob`` only; their values are in the data module's state_dict,
and each curriculum keeps the schedule position it applied last in its own, so a
resumed run continues the schedule from the same point. Each logs the value it set as
``train/curriculum/<name>`` (per epoch for an epoch schedule, per step otherwise).

Several curricula run together, one per knob. With a combined data module
(``source_target``), ``domain: source`` (or ``target``) names the stream they act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from lightning.pytorch.callbacks import Callback

from fwi_lightning.callbacks.schedules import Schedule
from fwi_lightning.data.families.base import SPLITS
from fwi_lightning.errors import ConfigError


#: The knobs `aperture_curriculum` may turn.
APERTURE_KNOBS = ("active_shots", "max_offset_m", "record_time_s")

#: The streams of a combined data module a curriculum may act on.
DOMAINS = ("source", "target")


class Curriculum(Callback):
    """Shared base: apply `schedule`'s value at train and epoch starts and (by step) after each step.

    A subclass implements `check` (validate every value the schedule reaches against
    the run, in ``setup``), `apply` (set the value) and `logged` (the scalars to log).

    Args:
        schedule: the schedule mapping (`Schedule.from_spec`).

    Attributes:
        position: the epoch or step whose value was applied last (None: none yet); saved
            in checkpoints.
    """

    #: The curriculum's name in logged values and messages.
    name = "curriculum"

    def __init__(self, schedule: Mapping[str, Any]):
        self.schedule = Schedule.from_spec(schedule)
        self.position: Optional[int] = None
        self.value: Any = None
        self._restored = False

    # -- to implement ----------------------------------------------------------------

    def check(self, trainer: Any, pl_module: Any) -> None:
        """Raise `ConfigError` if a value of the schedule cannot be applied to this run."""

    def apply(self, trainer: Any, pl_module: Any, value: Any) -> None:
        """Set the schedule's value of now."""
        raise NotImplementedError

    def logged(self, value: Any) -> dict[str, float]:
        """The scalars logged for the value last applied, by name under ``train/curriculum/``."""
        raise NotImplementedError

    # -- hooks -----------------------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            self.check(trainer, pl_module)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # also the first hook of a run resumed mid-epoch, which gets no on_train_epoch_start
        self._advance(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._advance(trainer, pl_module)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.schedule.by == "step":
            self._advance(trainer, pl_module)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        by_step = self.schedule.by == "step"
        for name, number in self.logged(self.value).items():
            if number is None:  # a knob switched off (e.g. no aperture limit)
                continue
            pl_module.log(f"train/curriculum/{name}", float(number), on_step=by_step, on_epoch=not by_step, batch_size=1)

    def _advance(self, trainer: Any, pl_module: Any) -> None:
        now = self.schedule.now(trainer)
        if now == self.position and not self._replays():
            return
        self.value = self.schedule.value(now)
        self.apply(trainer, pl_module, self.value)
        self.position, self._restored = now, False

    def _replays(self) -> bool:
        """Whether to apply again a position already applied (first time after a resume):
        yes by default, as a knob value is a function of the position alone."""
        return self._restored

    # -- checkpoint ------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "value": self.value}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.position, self.value = state_dict.get("position"), state_dict.get("value")
        self._restored = True


class KnobCurriculum(Curriculum):
    """A curriculum turning one runtime knob of the data module.

    Args:
        schedule: the schedule of the knob's value (a subclass maps it with `knob_value`).
        domain: with a combined data module (``source_target``), the stream to act on
            (``source`` or ``target``); None: the data module itself.
    """

    #: The knob this curriculum turns.
    knob = ""

    def __init__(self, schedule: Mapping[str, Any], domain: Optional[str] = None):
        super().__init__(schedule)
        if domain is not None and domain not in DOMAINS:
            raise ConfigError(f"expected domain: {' or '.join(DOMAINS)} (or null), got {domain!r}", key="domain")
        self.domain = domain

    def datamodule(self, trainer: Any) -> Any:
        """The data module whose knob this turns.

        Raises:
            ConfigError: it has no runtime knobs, or not this one (listing the ones it has).
        """
        module = trainer.datamodule
        if self.domain is not None:
            if not hasattr(module, self.domain):
                raise ConfigError(f"{self.name}: domain '{self.domain}' needs a combined data module (source_target)", key="domain")
            module = getattr(module, self.domain)
        if not callable(getattr(module, "knobs", None)) or not callable(getattr(module, "set_knob", None)):
            hint = " (with source_target, set domain: source or target)" if all(hasattr(module, d) for d in DOMAINS) else ""
            raise ConfigError(
                f"{self.name}: data module {type(module).__name__} has no runtime knobs{hint}; curricula need one such as simulated",
                key="knob",
            )
        knobs = module.knobs()
        if self.knob not in knobs:
            raise ConfigError(f"{self.name}: the data module has no knob '{self.knob}'; its knobs: {', '.join(knobs)}", key="knob")
        return module

    def knob_value(self, trainer: Any, pl_module: Any, value: Any) -> Any:
        """The knob setting of a schedule value (default: the value itself)."""
        return value

    def check(self, trainer: Any, pl_module: Any) -> None:
        """Try every value the schedule reaches on the knob, then restore its setting.

        Raises:
            ConfigError: a value the knob refuses (e.g. a cut-off above Nyquist), keyed ``schedule``.
        """
        module = self.datamodule(trainer)
        before = module.knobs()[self.knob]
        try:
            for value in self.schedule.values():
                module.set_knob(self.knob, self.knob_value(trainer, pl_module, value))
        except ConfigError as error:
            raise ConfigError(f"{self.name}: schedule value refused by knob '{self.knob}': {error.args[0]}", key="schedule") from None
        finally:
            module.set_knob(self.knob, before)

    def apply(self, trainer: Any, pl_module: Any, value: Any) -> None:
        self.datamodule(trainer).set_knob(self.knob, self.knob_value(trainer, pl_module, value))


class FrequencyCurriculum(KnobCurriculum):
    """Frequency continuation: the low-pass cut-off of the data rises on a schedule.

    Sets the ``bandpass`` knob to ``[low_hz, cut-off]``: a zero-phase Butterworth
    (order `filters.BUTTERWORTH_ORDER`) in torch, acting from the next batch. Logs
    ``train/curriculum/cutoff_hz`` (the Nyquist frequency once the low-pass is lifted).

    Args:
        schedule: the cut-off in Hz, e.g. ``{kind: step, stages: [[0, 8], [5, 15], [10, null]]}``;
            every value below the Nyquist frequency of the survey; null (in a step
            schedule) lifts the low-pass, e.g. to end on the unfiltered data.
        low_hz: the high-pass corner kept meanwhile, Hz (None: none).
        domain: see `KnobCurriculum`.

    Raises:
        ConfigError: a bad schedule; at setup, a cut-off at or above Nyquist or below `low_hz`.
    """

    name, knob = "frequency_curriculum", "bandpass"

    def __init__(self, schedule: Mapping[str, Any], low_hz: Optional[float] = None, domain: Optional[str] = None):
        super().__init__(schedule, domain)
        self.low_hz = None if low_hz is None else float(low_hz)
        self.nyquist_hz: Optional[float] = None

    def check(self, trainer: Any, pl_module: Any) -> None:
        super().check(trainer, pl_module)
        self.nyquist_hz = 0.5 / pl_module.problem.survey.dt

    def knob_value(self, trainer: Any, pl_module: Any, value: Any) -> Any:
        return [self.low_hz, value]

    def logged(self, value: Any) -> dict[str, float]:
        return {"cutoff_hz": self.nyquist_hz if value is None else value}


class NoiseCurriculum(KnobCurriculum):
    """Clean data before noisy: the SNR of the added white noise falls on a schedule.

    Sets the ``snr_db`` knob (noise drawn from each sample's own seed). Logs
    ``train/curriculum/snr_db``.

    Args:
        schedule: the SNR in dB, e.g. ``{kind: linear, start: 40, end: 5, length: 10}``.
        domain: see `KnobCurriculum`.
    """

    name, knob = "noise_curriculum", "snr_db"

    def logged(self, value: Any) -> dict[str, float]:
        return {"snr_db": value}


class ApertureCurriculum(KnobCurriculum):
    """Few traces before many: fewer shots, nearer offsets or shorter records first.

    Logs ``train/curriculum/<knob>`` (for ``active_shots``, the number of shots).

    Args:
        schedule: the knob's value: for ``active_shots`` a number of shots, spread evenly
            over the survey's shots (rounded); for ``max_offset_m`` metres; for
            ``record_time_s`` seconds; null (in a step schedule): the whole aperture.
        knob: ``active_shots``, ``max_offset_m`` or ``record_time_s``.
        domain: see `KnobCurriculum`.

    Raises:
        ConfigError: at setup, a knob the data module does not have (listing the ones it
            has) or that is no aperture knob, or a value the knob refuses (more shots than
            the survey has, a non-positive offset or time).
    """

    name = "aperture_curriculum"

    def __init__(self, schedule: Mapping[str, Any], knob: str = "max_offset_m", domain: Optional[str] = None):
        super().__init__(schedule, domain)
        self.knob = str(knob)

    def check(self, trainer: Any, pl_module: Any) -> None:
        self.datamodule(trainer)
        if self.knob not in APERTURE_KNOBS:
            raise ConfigError(f"{self.name}: '{self.knob}' is no aperture knob; expected one of {', '.join(APERTURE_KNOBS)}", key="knob")
        super().check(trainer, pl_module)

    def knob_value(self, trainer: Any, pl_module: Any, value: Any) -> Any:
        if self.knob != "active_shots" or value is None:
            return value
        shots, count = pl_module.problem.survey.n_shots, int(round(value))
        if not 1 <= count <= shots:
            raise ConfigError(f"expected a number of shots in 1..{shots}, got {value!r}", key="active_shots")
        return sorted({int(round(k * (shots - 1) / max(count - 1, 1))) for k in range(count)})

    def logged(self, value: Any) -> dict[str, float]:
        return {self.knob: round(value) if self.knob == "active_shots" and value is not None else value}


class FamilyCurriculum(KnobCurriculum):
    """Simple geology before complex: the mixing weights of the velocity families change.

    Sets the ``family_weights`` knob of one split (acting on the indices the sampler
    draws next: with W workers after 2 W prefetched batches, and one more that
    Lightning prefetches). Logs ``train/curriculum/weight_<label>``, the share of each
    family named.

    Args:
        schedule: ``{label: weight}`` mappings, e.g. ``{kind: step, stages: [[0, {flatvel:
            1, curvefault: 0}], [5, {flatvel: 1, curvefault: 1}]]}``; linear and cosine
            schedules interpolate each weight. Labels not named keep their weight.
        split: the split whose mix changes.
        domain: see `KnobCurriculum`.
    """

    name, knob = "family_curriculum", "family_weights"

    def __init__(self, schedule: Mapping[str, Any], split: str = "train", domain: Optional[str] = None):
        super().__init__(schedule, domain)
        for value in self.schedule.values():
            if not isinstance(value, Mapping):
                raise ConfigError(f"expected {{family label: weight}} values, got {value!r}", key="schedule")
        if split not in SPLITS:
            raise ConfigError(f"expected split: one of {', '.join(SPLITS)}, got {split!r}", key="split")
        self.split = split

    def knob_value(self, trainer: Any, pl_module: Any, value: Any) -> Any:
        return {self.split: dict(value)}

    def logged(self, value: Any) -> dict[str, float]:
        total = sum(value.values()) or 1.0
        return {f"weight_{label}": weight / total for label, weight in value.items()}


class TaskCurriculum(Curriculum):
    """Simple tasks before more tasks: the weights of named loss terms change on a schedule.

    Acts on the paradigm's `WeightedLoss` (``pl_module.criterion.weights``, keyed by the
    loss labels of ``model.losses``), so it works with any paradigm built on
    `ParadigmBase`, the multitask one included: a task enters when its loss weight
    leaves 0. Logs ``train/curriculum/loss_weight_<label>``.

    Args:
        schedule: ``{loss label: weight}`` mappings, e.g. ``{kind: step, stages: [[0,
            {l1: 1, ssim: 0}], [5, {l1: 1, ssim: 0.2}]]}``; labels not named keep their weight.

    Raises:
        ConfigError: a value that is not a mapping of numbers >= 0; at setup, a label the
            paradigm's losses do not have (listing the ones it has).
    """

    name = "task_curriculum"

    def __init__(self, schedule: Mapping[str, Any]):
        super().__init__(schedule)
        for value in self.schedule.values():
            bad = not isinstance(value, Mapping) or any(
                isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 for w in value.values()
            )
            if bad:
                raise ConfigError(f"expected {{loss label: weight >= 0}} values, got {value!r}", key="schedule")

    def check(self, trainer: Any, pl_module: Any) -> None:
        weights = getattr(getattr(pl_module, "criterion", None), "weights", None)
        if not isinstance(weights, dict):
            raise ConfigError(f"{self.name}: paradigm {type(pl_module).__name__} has no weighted loss (criterion.weights)", key="schedule")
        for value in self.schedule.values():
            for label in value:
                if label not in weights:
                    raise ConfigError(f"{self.name}: the paradigm has no loss '{label}'; its losses: {', '.join(weights)}", key="schedule")

    def apply(self, trainer: Any, pl_module: Any, value: Any) -> None:
        for label, weight in value.items():
            pl_module.criterion.weights[label] = float(weight)

    def logged(self, value: Any) -> dict[str, float]:
        return {f"loss_weight_{label}": weight for label, weight in value.items()}
