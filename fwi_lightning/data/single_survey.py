"""One survey: a single velocity model (or none) and its observed gathers, for FWI-style paradigms.

Classical FWI and deep-prior FWI fit one model to one survey, so every training step
sees the same one-sample batch: ``data`` [1, S, T, R] raw amplitudes, ``velocity``
[1, 1, NZ, NX] m/s when the true model is known, ``family`` and ``index`` [1]. An
"epoch" is `steps_per_epoch` steps over that batch, so a schedule in epochs (frequency
bands, figures) is a schedule in blocks of iterations.

The observed gathers are either simulated once from the true model by this module's
own `ForwardOperator` (``problem.forward_operator()``, the one the physics loss
re-simulates with), or read from an npy file [S, T, R]. Either way they are the
*clean* record: the operator's processing (band-pass, aperture masks, noise from a
fixed seed) is applied per batch in `on_after_batch_transfer` with the knob values of
that moment, so a frequency-continuation schedule turning ``bandpass`` filters the
observed data and the re-simulated data with the same band.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fwi_lightning import registry
from fwi_lightning.data.base import OperatorDataModule
from fwi_lightning.data.families.base import SPLITS, sample_seed
from fwi_lightning.data.families.model_file import ModelFile
from fwi_lightning.data.normalisation import log_amplitude_range
from fwi_lightning.data.npyfiles import open_npy
from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.physics.operator import ForwardOperator
from fwi_lightning.physics.simulator import Simulator
from fwi_lightning.physics.survey import Survey
from fwi_lightning.problem import Problem
from fwi_lightning.specs import ComponentRef

#: One velocity family section, ``{name: marmousi, **params}``.
VelocityModelSpec = Annotated[Optional[dict], ComponentRef("velocity")]


class RepeatedSample(Dataset):
    """The same item `length` times (one survey, served every step)."""

    def __init__(self, item: dict[str, torch.Tensor], length: int):
        self.item, self.length = item, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.item


class SingleSurveyDataModule(OperatorDataModule):
    """One velocity model (or none) and its observed gathers, served as the same batch every step.

    The true model is a sample of any registered velocity family (``model``), drawn at
    (`seed`, `sample_split`, `sample_index`), or, for a file-backed family
    (``model_file``, ``marmousi``), the window whose top-left corner lies at
    `window_origin_m` (depth, lateral) in m in the resampled file. Without ``model`` the
    survey is unlabelled and `observed` must be given.

    Batches (train: `steps_per_epoch` per epoch; val and test: one): ``data`` [1, S, T, R]
    raw amplitudes after the operator's processing, ``velocity`` [1, 1, NZ, NX] m/s when
    the true model is known, ``family`` [1] (0) and ``index`` [1] (0).

    Runtime knobs (`knobs`, `set_knob`): the `ForwardOperator` settings ``bandpass``,
    ``snr_db``, ``active_shots``, ``max_offset_m``, ``record_time_s``; they act from the
    next batch on the observed data and, through ``problem.forward_operator()``, on every
    re-simulation. The noise has one fixed seed (from `seed`), so it is the same noise
    every step.

    Loaders are plain `DataLoader`s over `RepeatedSample`: every batch is the same, so a
    run resumed mid-epoch sees exactly what it would have (no `ResumableLoader` needed)
    and nothing is drawn from any RNG.

    Args:
        seed: the experiment seed (injected).
        survey: acquisition geometry (``data.survey``).
        model: the true model's velocity family, ``{name: marmousi, **params}``; None: unknown.
        sample_split, sample_index: which sample of the family is the true model.
        window_origin_m: (depth, lateral) in m of the window's top-left cell in a file-backed
            family's resampled model; None: the family's own sample.
        observed: npy file of observed gathers [S, T, R] (raw amplitudes, the survey's
            sampling); None: simulate them from the true model.
        velocity_range: [v_min, v_max] m/s of every model; pins the simulator's max_vel.
        numerics: ``fast`` or ``accurate`` (see `Survey.with_numerics`).
        steps_per_epoch: training steps (iterations) per epoch.
        snr_db, bandpass, active_shots, max_offset_m, record_time_s: the operator's
            processing (knobs, see `ForwardOperator`).

    Raises:
        ConfigError: no model and no observed file, a window outside the model, a bad
            sample split or steps per epoch, a velocity family that is not file-backed
            with `window_origin_m`, or invalid processing.
        DataError: a missing or unreadable observed file, or one whose shape is not the
            survey's [S, T, R] (keyed ``observed``).
    """

    def __init__(
        self,
        seed: int = 0,
        survey: Survey = Survey(),
        model: VelocityModelSpec = None,
        sample_split: Literal["train", "val", "test"] = "test",
        sample_index: int = 0,
        window_origin_m: Optional[Sequence[float]] = None,
        observed: Optional[str] = None,
        velocity_range: Sequence[float] = (1500.0, 4500.0),
        numerics: Literal["fast", "accurate"] = "fast",
        steps_per_epoch: int = 1,
        snr_db: Optional[float] = None,
        bandpass: Optional[Sequence[Optional[float]]] = None,
        active_shots: Optional[Sequence[int]] = None,
        max_offset_m: Optional[float] = None,
        record_time_s: Optional[float] = None,
    ):
        super().__init__()
        if len(velocity_range) != 2:
            raise ConfigError(f"expected [v_min, v_max] in m/s, got {velocity_range!r}", key="velocity_range")
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise ConfigError(f"expected a whole number >= 1, got {steps_per_epoch!r}", key="steps_per_epoch")
        if sample_split not in SPLITS:
            raise ConfigError(f"expected one of {', '.join(SPLITS)}, got {sample_split!r}", key="sample_split")
        if model is None and observed is None:
            raise ConfigError("no true model and no observed data: give 'model' (simulate the data) or 'observed' (an npy file)",
                              key="model")
        self.seed = int(seed)
        self.velocity_range = (float(velocity_range[0]), float(velocity_range[1]))
        self.steps_per_epoch = steps_per_epoch
        simulator = Simulator(survey, self.velocity_range, numerics, step_buckets=True, cpu_threads=1)
        self.operator = ForwardOperator(
            simulator, bandpass=bandpass, snr_db=snr_db, active_shots=active_shots, max_offset_m=max_offset_m, record_time_s=record_time_s,
        )
        self.label = model.get("name", "model") if isinstance(model, dict) else "observed"
        self.true_velocity = None if model is None else self._true_model(model, sample_split, sample_index, window_origin_m)
        self.observed_path = observed
        self.noise_seed = int(sample_seed(self.seed, sample_split, sample_index, "survey-noise").generate_state(1)[0])
        self._clean: Optional[torch.Tensor] = None
        self._data_range: Optional[tuple[float, float]] = None

    # -- the model and its data -----------------------------------------------------

    def _true_model(self, spec: dict, split: str, index: int, origin: Optional[Sequence[float]]) -> torch.Tensor:
        """The true velocity [1, 1, NZ, NX] m/s: a family sample or a window of a file-backed family."""
        survey = self.operator.survey
        family = registry.build("velocity", spec, key="model", shape=(survey.nz, survey.nx), spacing=survey.spacing,
                                velocity_range=self.velocity_range)
        if origin is None:
            model = family.sample(self.seed, split, index)
        else:
            model = self._window(family, origin)
        return torch.from_numpy(np.ascontiguousarray(model, dtype=np.float32))[None, None]

    def _window(self, family: Any, origin: Sequence[float]) -> np.ndarray:
        if not isinstance(family, ModelFile):
            raise ConfigError(f"window_origin_m needs a file-backed family (model_file, marmousi), not {type(family).__name__}",
                              key="window_origin_m")
        if isinstance(origin, (str, bytes)) or len(origin) != 2:
            raise ConfigError(f"expected [depth, lateral] in m, got {origin!r}", key="window_origin_m")
        survey = self.operator.survey
        full = np.clip(family.model, *self.velocity_range)
        z0, x0 = (int(round(float(o) / survey.spacing)) for o in origin)
        nz, nx = survey.nz, survey.nx
        if z0 < 0 or x0 < 0 or z0 + nz > full.shape[0] or x0 + nx > full.shape[1]:
            extent = ((full.shape[0] - nz) * survey.spacing, (full.shape[1] - nx) * survey.spacing)
            raise ConfigError(
                f"a {nz} x {nx} window at {list(origin)} m leaves the model ({full.shape[0]} x {full.shape[1]} cells at "
                f"{survey.spacing:g} m); the origin must lie within [0, {extent[0]:g}] x [0, {extent[1]:g}] m",
                key="window_origin_m",
            )
        return full[z0 : z0 + nz, x0 : x0 + nx]

    def clean_data(self) -> torch.Tensor:
        """The observed gathers before processing, [1, S, T, R] raw amplitudes (read or simulated once)."""
        if self._clean is None:
            self._clean = self._read_observed() if self.observed_path is not None else self._simulate()
        return self._clean

    def _simulate(self) -> torch.Tensor:
        with torch.no_grad():
            return self.operator.simulate(self.true_velocity).float()

    def _read_observed(self) -> torch.Tensor:
        path = Path(self.observed_path).expanduser()
        try:
            array = open_npy(path, "observed gathers [shots, time, receivers] as raw amplitudes")
        except DataError as exc:
            raise DataError(exc.message, key="observed", file=exc.file) from None
        expected = self.operator.survey
        shape = (expected.n_shots, expected.nt, expected.n_receivers)
        if tuple(array.shape) != shape:
            raise DataError(f"expected gathers of shape {list(shape)} [shots, time, receivers] (the survey's), got "
                            f"{list(array.shape)}; make the survey match the file", key="observed", file=str(path))
        values = np.asarray(array, dtype=np.float32)
        if not np.isfinite(values).all():
            raise DataError("the observed gathers hold NaN or infinite amplitudes", key="observed", file=str(path))
        return torch.from_numpy(values.copy())[None]

    # -- knobs ----------------------------------------------------------------------

    # -- problem and loaders --------------------------------------------------------

    @property
    def problem(self) -> Problem:
        """The survey, velocity range, the data range of the clean observed gathers, and the operator."""
        if self._data_range is None:
            self._data_range = log_amplitude_range([self.clean_data()])
        return Problem(
            survey=self.operator.survey,
            velocity_range=self.velocity_range,
            data_range=self._data_range,
            extra={"families": [self.label]},
            operator_settings=self.operator.settings(),
            operator=self.operator,
        )

    def item(self) -> dict[str, torch.Tensor]:
        """The one sample before processing: ``data`` [S, T, R], ``velocity`` [1, NZ, NX] (when known),
        ``family``, ``index``, ``noise_seed``."""
        item = {"data": self.clean_data()[0], "family": torch.tensor(0), "index": torch.tensor(0),
                "noise_seed": torch.tensor(self.noise_seed)}
        if self.true_velocity is not None:
            item["velocity"] = self.true_velocity[0]
        return item

    def dataloader(self, split: str) -> DataLoader:
        """`steps_per_epoch` copies of the sample for training, one for validation and test."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; expected one of {', '.join(SPLITS)}", key="split")
        length = self.steps_per_epoch if split == "train" else 1
        return DataLoader(RepeatedSample(self.item(), length), batch_size=1, shuffle=False, num_workers=0)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        """Apply the operator's processing with the current knobs (band-pass, aperture, the fixed noise)."""
        if "noise_seed" not in batch:
            return batch
        out = dict(batch)
        seeds = out.pop("noise_seed")
        with torch.no_grad():
            out["data"] = self.operator.process(out["data"], seeds.tolist())
        return out

    def processed(self) -> dict[str, torch.Tensor]:
        """The batch a step receives now (knobs as they are), for use outside a trainer."""
        loader = self.dataloader("val")
        return self.on_after_batch_transfer(next(iter(loader)), 0)

