"""On-the-fly simulated data: velocity families -> deepwave gathers, never stored on disk.

Walk of one batch:

1. `SampleSampler` (main process) yields global sample indices for this split, rank and
   epoch. Validation and test use indices 0..N-1 every epoch; training uses a fresh
   block of N indices per epoch (``fresh_train``), so every epoch sees new models.
   Each DDP rank takes every world_size-th index: ranks never share a sample.
2. `VelocityDataset` turns an index into a velocity model: the family is picked with
   the split's family probabilities, which the sampler attaches to each index as it
   draws it (the ``family_weights`` knob), and the model drawn, both from seeds derived
   from (seed, split, index) alone; so is the sample's noise seed.
3. The forward operator (`ForwardOperator`, ``problem.forward_operator()``) simulates
   the clean gathers of the whole batch in one deepwave call per CFL step bucket, in
   exactly one of two places:
   - on a GPU (``simulate_on: device``, or ``auto`` with a non-CPU trainer), in
     `on_after_batch_transfer`, on the device, the loaders yielding velocity only;
   - on CPU (``workers``, or ``auto`` otherwise), inside the DataLoader's collate, so
     it is spread over worker processes. Every CPU simulation uses one thread, in the
     workers and in the main process alike: deepwave's own threads give ~1.15x on 2
     idle cores and slow it down many times over on a busy CPU (see `Simulator`),
     while processes give ~1.8x.
   With ``cache: true`` these clean gathers are simulated once and kept.
4. `on_after_batch_transfer` (main process, on the batch's device) applies the
   operator's cheap processing with the knob values of that moment: band-pass,
   aperture masks, noise from the per-sample seeds (then dropped). So the processing
   knobs act at the very next batch, whatever the workers and the cache.
   The same operator runs either way, and a model's gathers do not depend on its batch
   (max_vel is pinned per CFL step bucket, see `Simulator`), so the numbers do not
   depend on num_workers or batch size.
"""

from __future__ import annotations

import ctypes
import functools
import math
import multiprocessing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Optional, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from fwi_lightning import registry
from fwi_lightning.data.augment import check_mirror_symmetric, mirror, mirror_flags
from fwi_lightning.data.base import OperatorDataModule
from fwi_lightning.data.families.base import SPLITS, VelocityFamily, sample_rng, sample_seed
from fwi_lightning.data.normalisation import log_amplitude_range
from fwi_lightning.data.sampling import ResumableLoader, SampleSampler
from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.physics.operator import PROCESSING, ForwardOperator
from fwi_lightning.physics.simulator import Simulator
from fwi_lightning.physics.survey import Survey
from fwi_lightning.problem import Problem
from fwi_lightning.specs import FamiliesSpec, SplitFamiliesSpec

DEFAULT_SIZES = {"train": 1024, "val": 128, "test": 128}


#: Every runtime knob of `SimulatedDataModule`: the forward operator's processing
#: settings, then the family weights and the training index weights.
KNOBS = (*PROCESSING, "family_weights", "index_weights")


def choose_family(seed: int, split: str, index: int, probabilities: Sequence[float]) -> int:
    """Position of the family sample `index` of `split` draws, with `probabilities` over the split's families."""
    return int(sample_rng(seed, split, index, "family").choice(len(probabilities), p=np.asarray(probabilities)))


class VelocityDataset(Dataset):
    """Sample key -> velocity model of one split, deterministic from (seed, split, index, probabilities).

    A key is an index, or ``(index, probabilities)``: the family probabilities of the
    moment the sampler drew it (`SimulatedDataModule` family-weight knob); a bare index
    uses `probabilities`.

    Args:
        families: (label, family) pairs; label is the family's position in
            ``problem.extra["families"]``, returned as the sample's ``family``.
        probabilities: the chance of each family, summing to 1.
        seed: the experiment seed.
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: nominal number of samples per epoch (the sampler decides the indices).
    """

    def __init__(self, families: Sequence[tuple[int, VelocityFamily]], probabilities: Sequence[float], seed: int, split: str, size: int):
        self.labels = [label for label, _ in families]
        self.families = [family for _, family in families]
        self.probabilities = tuple(probabilities)
        self.seed, self.split, self.size = seed, split, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: Union[int, tuple[int, Sequence[float]]]) -> dict[str, Any]:
        """``velocity`` [1, NZ, NX] float32 m/s, ``family`` and ``index`` ints, ``noise_seed``."""
        index, probabilities = key if isinstance(key, tuple) else (key, self.probabilities)
        choice = choose_family(self.seed, self.split, index, probabilities)
        model = self.families[choice].sample(self.seed, self.split, index)
        noise_seed = int(sample_seed(self.seed, self.split, index, "noise").generate_state(1)[0])
        return {"velocity": torch.from_numpy(model)[None], "family": self.labels[choice], "index": index, "noise_seed": noise_seed}


class CachedDataset(Dataset):
    """Sample key -> a clean batch item simulated once and kept in memory.

    A key ``(index, probabilities)`` redraws the sample's family with those
    probabilities (the same draw as `VelocityDataset`); when it lands on another family
    than the cached item's, a cached item of that family is served instead, picked
    from (seed, split, index). So the served mix follows the current family weights,
    and the weights the cache was filled with serve exactly the cached items.

    Args:
        items: clean items (``velocity``, ``data``, ``family``, ``index``, ``noise_seed``) by index.
        labels: the split's family labels (positions in ``problem.extra["families"]``),
            in the order of the probabilities.
        seed: the experiment seed. split: the split.
    """

    def __init__(self, items: Mapping[int, dict[str, torch.Tensor]], labels: Sequence[int], seed: int, split: str):
        self.items = dict(items)
        self.labels, self.seed, self.split = list(labels), seed, split
        self.by_family: dict[int, list[int]] = {}
        for index in sorted(self.items):
            self.by_family.setdefault(int(self.items[index]["family"]), []).append(index)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: Union[int, tuple[int, Sequence[float]]]) -> dict[str, torch.Tensor]:
        if not isinstance(key, tuple):
            return self.items[key]
        index, probabilities = key
        item = self.items[index]
        label = self.labels[choose_family(self.seed, self.split, index, probabilities)]
        if label == int(item["family"]):
            return item
        candidates = self.by_family.get(label)
        if not candidates:
            raise DataError(f"the {self.split} cache holds no sample of family {label}; it had weight 0 when the cache was filled")
        return self.items[candidates[int(sample_rng(self.seed, self.split, index, "cache").integers(len(candidates)))]]


class BatchCollate:
    """DataLoader collate: stack items, then simulate their clean gathers if the loader simulates.

    Args:
        operator: the forward operator whose `simulate` runs here; None: velocity only
            (the device simulates in `on_after_batch_transfer`).
    """

    def __init__(self, operator: Optional[ForwardOperator]):
        self.operator = operator

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = default_collate(items)
        if self.operator is not None and "data" not in batch:
            with torch.no_grad():
                batch["data"] = self.operator.simulate(batch["velocity"])
        return batch


#: glibc ``mallopt`` parameter number of the mmap threshold.
M_MMAP_THRESHOLD = -3


def init_worker(worker_id: int) -> None:
    """DataLoader worker init: one torch thread, and a fixed malloc mmap threshold.

    glibc raises its mmap threshold each time a large block is freed, after which
    deepwave's megabyte-sized wavefields come from the heap and fragment it: a worker
    then grew by ~25 MB per 80 OpenFWI-size samples. Fixing the threshold at 128 KiB
    (glibc's initial value) keeps workers flat (benchmarks/memory.py). Not glibc: skipped.
    """
    torch.set_num_threads(1)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)


def worker_options(workers: int) -> dict[str, Any]:
    """DataLoader arguments for `workers` simulating processes: each set up by `init_worker`,
    forked where the platform can (they inherit the operator instead of unpickling it)."""
    context = "fork" if workers and "fork" in multiprocessing.get_all_start_methods() else None
    return {"num_workers": workers, "worker_init_fn": init_worker if workers else None, "multiprocessing_context": context}


class SimulatedDataModule(OperatorDataModule):
    """Velocity families simulated on the fly with deepwave: unlimited, deterministic, no disk.

    Batches: ``data`` [B, S, T, R] raw amplitudes, ``velocity`` [B, 1, NZ, NX] m/s,
    ``family`` [B] (index into ``problem.extra["families"]``), ``index`` [B] (the global
    sample index; with the seed and split it determines the model and its noise).
    Validation and test samples are the same every epoch; training samples are new
    each epoch unless ``fresh_train: false`` or ``cache: true``. Under DDP each rank gets
    its own samples. Where the simulation runs: see the module docstring.
    ``problem.survey`` records the resolved numerics with max_vel at the top of the
    velocity range; the operator itself gives each model its fewest CFL sub-steps
    (`Simulator` ``step_buckets``). ``problem.forward_operator()`` is this module's
    live `ForwardOperator`.

    Runtime knobs (`knobs`, `set_knob`): ``bandpass``, ``snr_db``, ``active_shots``,
    ``max_offset_m``, ``record_time_s`` act from the next batch on, with any number of
    workers and with ``cache: true``; ``family_weights`` acts on the indices the sampler
    draws next, i.e. with W workers after the ``2 * W`` batches already dispatched to
    them (DataLoader's default prefetch), at once without workers. ``index_weights``
    (None, or ``{index: weight}``) makes the training sampler draw, at each position, an
    index of that pool with chance proportional to its weight (with replacement), from
    (seed, epoch, nominal index) alone; it acts with the same lag as ``family_weights``
    (a difficulty curriculum turns it). Their values are in `state_dict`, so a resumed
    run continues with them.

    Args:
        seed: the experiment seed (injected).
        survey: acquisition geometry (``data.survey``).
        families: velocity families by registered name, with weights, e.g.
            ``{flatvel: 1.0, curvefault: {weight: 0.5, variant: B}}``; default ``{flatvel: 1}``.
        split_families: families of individual splits, overriding ``families`` there,
            e.g. ``{test: {marmousi: {name: model_file, path: ...}}}``. The family labels of
            ``problem.extra["families"]`` are those of ``families`` then the new ones here.
        velocity_range: [v_min, v_max] m/s of every model; pins the simulator's max_vel.
        sizes: samples per epoch per split, e.g. ``{train: 1024, val: 128, test: 128}``.
        batch_size: models per batch (one deepwave call per CFL step bucket in it).
        num_workers: DataLoader worker processes (one torch thread each).
        numerics: ``fast`` (Courant 0.7, PML 10; the default) or ``accurate`` (deepwave's defaults).
        snr_db: add white noise at this SNR in dB (None: none). A knob.
        bandpass: [low, high] Hz zero-phase band-pass (either may be null). A knob.
        active_shots: indices of the recorded shots, the others zeroed (None: all). A knob.
        max_offset_m: zero receivers farther than this from the source, m (None: all). A knob.
        record_time_s: zero samples after this time, s (None: the whole record). A knob.
        cache: simulate each split's clean gathers once and keep them in memory, drawn
            with the configured family weights whatever the knobs then (training then
            reuses the same samples every epoch; knobs still act).
        fresh_train: new training samples every epoch (ignored with cache).
        simulate_on: ``auto`` (device when the trainer is on a GPU, else workers),
            ``device`` or ``workers``.
        reference_size: clean training samples the data range is computed from.
        mirror: chance (0-1) that a training sample is mirrored left-right in an epoch,
            model and gathers together (`augment.mirror`: exact, no extra simulation),
            drawn from (seed, index, epoch) alone; cached samples are mirrored in some
            epochs and not in others. Needs a mirror-symmetric acquisition. 0: never.

    Raises:
        ConfigError: invalid sizes, weights, velocity range, survey or processing.
    """

    def __init__(
        self,
        seed: int = 0,
        survey: Survey = Survey(),
        families: FamiliesSpec = None,
        split_families: SplitFamiliesSpec = None,
        velocity_range: Sequence[float] = (1500.0, 4500.0),
        sizes: Optional[Mapping[str, int]] = None,
        batch_size: int = 16,
        num_workers: int = 0,
        numerics: Literal["fast", "accurate"] = "fast",
        snr_db: Optional[float] = None,
        bandpass: Optional[Sequence[Optional[float]]] = None,
        active_shots: Optional[Sequence[int]] = None,
        max_offset_m: Optional[float] = None,
        record_time_s: Optional[float] = None,
        cache: bool = False,
        fresh_train: bool = True,
        simulate_on: Literal["auto", "device", "workers"] = "auto",
        reference_size: int = 16,
        mirror: float = 0.0,
    ):
        super().__init__()
        if len(velocity_range) != 2:
            raise ConfigError(f"expected [v_min, v_max] in m/s, got {velocity_range!r}", key="velocity_range")
        self.seed = int(seed)
        self.velocity_range = (float(velocity_range[0]), float(velocity_range[1]))
        simulator = Simulator(survey, self.velocity_range, numerics, step_buckets=True, cpu_threads=1)
        self.operator = ForwardOperator(
            simulator, bandpass=bandpass, snr_db=snr_db, active_shots=active_shots, max_offset_m=max_offset_m, record_time_s=record_time_s,
        )
        self.labels: list[str] = []
        self.split_families = self._build_split_families(families, split_families, simulator.survey)
        self.family_weights = {split: {self.labels[l]: w for l, _, w in entries} for split, entries in self.split_families.items()}
        self.configured_probabilities = {split: self.probabilities(split) for split in SPLITS}
        self.sizes = _sizes(sizes)
        for name, value in (("batch_size", batch_size), ("reference_size", reference_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"expected a whole number >= 1, got {value!r}", key=name)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"expected a whole number >= 0, got {num_workers!r}", key="num_workers")
        if simulate_on not in ("auto", "device", "workers"):
            raise ConfigError(f"expected auto, device or workers, got {simulate_on!r}", key="simulate_on")
        self.batch_size, self.num_workers, self.reference_size = batch_size, num_workers, reference_size
        if isinstance(mirror, bool) or not isinstance(mirror, (int, float)) or not 0.0 <= mirror <= 1.0:
            raise ConfigError(f"expected a chance from 0 to 1, got {mirror!r}", key="mirror")
        if mirror > 0:
            check_mirror_symmetric(simulator.survey)
        self.mirror = float(mirror)
        self.cache, self.fresh_train, self.simulate_on = bool(cache), bool(fresh_train) and not cache, simulate_on
        self._cached: dict[str, CachedDataset] = {}
        self.index_weights: Optional[dict[int, float]] = None
        self._pool: Optional[tuple[np.ndarray, np.ndarray]] = None
        self._data_range: Optional[tuple[float, float]] = None

    # -- configuration ------------------------------------------------------------

    def _build_split_families(
        self, families: Optional[Mapping[str, Any]], split_families: Optional[Mapping[str, Any]], survey: Survey,
    ) -> dict[str, list[tuple[int, VelocityFamily, float]]]:
        """(label position, family, weight) per split; fills `labels` with the union of labels."""
        overrides = dict(split_families or {})
        for split in overrides:
            if split not in SPLITS:
                raise ConfigError(f"unknown split '{split}'; expected {', '.join(SPLITS)}", key=f"split_families.{split}")
        shared = self._build_families(families if families is not None else {"flatvel": 1.0}, "families", survey)
        built = {}
        for split in SPLITS:
            built[split] = shared if split not in overrides else self._build_families(overrides[split], f"split_families.{split}", survey)
        return built

    def _build_families(self, spec: Any, key: str, survey: Survey) -> list[tuple[int, VelocityFamily, float]]:
        built = registry.build_mapping(
            "velocity", spec, key=key, weighted=True,
            shape=(survey.nz, survey.nx), spacing=survey.spacing, velocity_range=self.velocity_range,
        )
        if not built:
            raise ConfigError("no velocity families: name at least one, e.g. {flatvel: 1.0}", key=key)
        weights = {label: 1.0 if weight is None else float(weight) for label, (_, weight) in built.items()}
        _check_weights(weights, key)
        for label in built:
            if label not in self.labels:
                self.labels.append(label)
        return [(self.labels.index(label), family, weights[label]) for label, (family, _) in built.items()]

    # -- knobs --------------------------------------------------------------------

    def knobs(self) -> dict[str, Any]:
        """Current value of every runtime knob, by name (see the class docstring).

        ``family_weights`` is ``{split: {label: weight}}``; the others are the
        `ForwardOperator` settings of the same name.
        """
        values = super().knobs()
        values["family_weights"] = {split: dict(weights) for split, weights in self.family_weights.items()}
        values["index_weights"] = None if self.index_weights is None else dict(self.index_weights)
        return values

    def set_knob(self, name: str, value: Any) -> None:
        """Set a runtime knob; it acts from the next batch (see the class docstring for the
        prefetch lag of ``family_weights`` with workers).

        ``family_weights`` takes ``{split: {label: weight}}``, naming only the splits and
        labels that change. ``index_weights`` takes None or ``{index: weight}``, the
        whole training pool.

        Raises:
            ConfigError: an unknown knob (naming the knobs there are) or an invalid value.
        """
        if name == "family_weights":
            self.family_weights = self._merged_weights(value)
        elif name == "index_weights":
            self.index_weights, self._pool = self._checked_pool(value)
        else:
            super().set_knob(name, value)

    def _merged_weights(self, value: Any) -> dict[str, dict[str, float]]:
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected {{split: {{label: weight}}}}, got {value!r}", key="family_weights")
        merged = {split: dict(weights) for split, weights in self.family_weights.items()}
        for split, weights in value.items():
            if split not in SPLITS:
                raise ConfigError(f"unknown split '{split}'; expected {', '.join(SPLITS)}", key=f"family_weights.{split}")
            if not isinstance(weights, Mapping):
                raise ConfigError(f"expected {{label: weight}}, got {weights!r}", key=f"family_weights.{split}")
            for label, weight in weights.items():
                if label not in merged[split]:
                    drawn = ", ".join(merged[split])
                    raise ConfigError(f"split '{split}' draws no family '{label}'; its families: {drawn}", key=f"family_weights.{split}.{label}")
                if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                    raise ConfigError(f"expected a weight >= 0, got {weight!r}", key=f"family_weights.{split}.{label}")
                merged[split][label] = float(weight)
            _check_weights(merged[split], f"family_weights.{split}")
            cached = self._cached.get(split)
            if cached is not None:
                for label, weight in merged[split].items():
                    if weight > 0 and not cached.by_family.get(self.labels.index(label)):
                        raise ConfigError(
                            f"the {split} cache holds no '{label}' sample (its weight was 0 when the cache was filled)",
                            key=f"family_weights.{split}.{label}",
                        )
        return merged

    def _checked_pool(self, value: Any) -> tuple[Optional[dict[int, float]], Optional[tuple[np.ndarray, np.ndarray]]]:
        """The index weights and the (indices, cumulative probabilities) the sampler draws from."""
        if value is None:
            return None, None
        if not isinstance(value, Mapping) or not value:
            raise ConfigError(f"expected null or a non-empty {{index: weight}} mapping, got {value!r}", key="index_weights")
        weights = {}
        for index, weight in value.items():
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise ConfigError(f"expected sample indices >= 0, got {index!r}", key="index_weights")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ConfigError(f"expected a weight >= 0, got {weight!r}", key=f"index_weights.{index}")
            weights[index] = float(weight)
        _check_weights({str(i): w for i, w in weights.items()}, "index_weights")
        cached = self._cached.get("train")
        missing = [i for i, w in weights.items() if w > 0 and cached is not None and i not in cached.items]
        if missing:
            raise ConfigError(f"the training cache holds no sample {missing[0]}; weigh only cached indices", key="index_weights")
        indices = np.array(sorted(weights), dtype=np.int64)
        cumulative = np.cumsum([weights[i] for i in indices])
        return weights, (indices, cumulative / cumulative[-1])

    def probabilities(self, split: str) -> tuple[float, ...]:
        """The current family probabilities of `split`, in the order of its families."""
        weights = np.array(list(self.family_weights[split].values()), dtype=np.float64)
        return tuple((weights / weights.sum()).tolist())

    def _sample_key(self, split: str, sampler: SampleSampler, index: int) -> tuple[int, tuple[float, ...]]:
        """The dataset key of an index the sampler draws: it (or, for training with
        ``index_weights``, the pool index drawn in its place from (seed, epoch, index))
        with the family probabilities of now."""
        if split == "train" and self._pool is not None:
            indices, cumulative = self._pool
            u = sample_rng(self.seed, split, index, f"pool-epoch{sampler.epoch}").random()
            index = int(indices[min(int(np.searchsorted(cumulative, u, side="right")), len(indices) - 1)])
        return index, self.probabilities(split)

    @property
    def snr_db(self) -> Optional[float]:
        """SNR in dB of the added noise (None: none); the ``snr_db`` knob."""
        return self.operator.snr_db

    @snr_db.setter
    def snr_db(self, value: Optional[float]) -> None:
        self.set_knob("snr_db", value)

    @property
    def bandpass(self) -> Optional[tuple[Optional[float], Optional[float]]]:
        """(low, high) Hz of the band-pass (None: none); the ``bandpass`` knob."""
        return self.operator.bandpass

    @bandpass.setter
    def bandpass(self, band: Optional[Sequence[Optional[float]]]) -> None:
        self.set_knob("bandpass", band)

    # -- problem ------------------------------------------------------------------

    @property
    def problem(self) -> Problem:
        """The survey (with resolved numerics), velocity range, data range, family labels and operator."""
        if self._data_range is None:
            self._data_range = self._reference_range()
        return Problem(
            survey=self.operator.survey,
            velocity_range=self.velocity_range,
            data_range=self._data_range,
            extra={"families": list(self.labels)},
            operator_settings=self.operator.settings(),
            operator=self.operator,
        )

    def _reference_range(self) -> tuple[float, float]:
        """Log-amplitude range of the first `reference_size` clean (noise-free, unfiltered) training gathers."""
        dataset = self.velocity_dataset("train")
        chunks = []
        for start in range(0, self.reference_size, self.batch_size):
            batch = default_collate([dataset[i] for i in range(start, min(start + self.batch_size, self.reference_size))])
            with torch.no_grad():
                chunks.append(self.operator.simulate(batch["velocity"]))
        return log_amplitude_range(chunks)

    # -- loaders ------------------------------------------------------------------

    def velocity_dataset(self, split: str, probabilities: Optional[Sequence[float]] = None) -> VelocityDataset:
        """The velocity models of `split` (no gathers), drawn with `probabilities` over its families (default: the current family weights)."""
        families = [(label, family) for label, family, _ in self.split_families[split]]
        probabilities = self.probabilities(split) if probabilities is None else probabilities
        return VelocityDataset(families, probabilities, self.seed, split, self.sizes[split])

    def simulates_on_device(self) -> bool:
        """True when `on_after_batch_transfer` simulates (on the trainer's device)."""
        if self.simulate_on != "auto":
            return self.simulate_on == "device"
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type != "cpu"

    def _loader(self, split: str, dataset: Dataset, operator: Optional[ForwardOperator], knobs: bool = True) -> DataLoader:
        """The loader of `split`; with `knobs`, its sampler draws with the sampling knobs of
        the moment (`_sample_key`), else the plain indices (filling a cache)."""
        rank, world = self.ranks()
        sampler = SampleSampler(self.sizes[split], rank, world, fresh=self.fresh_train and split == "train")
        if knobs:
            sampler.key = functools.partial(self._sample_key, split, sampler)
        return ResumableLoader(dataset, sampler, self.batch_size, seed=self.seed, collate_fn=BatchCollate(operator),
                               **worker_options(self.num_workers))

    def dataloader(self, split: str) -> DataLoader:
        """The loader of `split` for this rank: batches with clean gathers (processed in
        `on_after_batch_transfer`), or velocity-only ones when simulation happens on the
        device (`simulates_on_device`)."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; expected one of {', '.join(SPLITS)}", key="split")
        if self.cache:
            if split not in self._cached:
                self._cached[split] = self._simulate_split(split)
            return self._loader(split, self._cached[split], None)
        return self._loader(split, self.velocity_dataset(split), None if self.simulates_on_device() else self.operator)

    def _simulate_split(self, split: str) -> CachedDataset:
        """Simulate the clean gathers of this rank's samples of `split` once, on the device when there is one."""
        device = self.trainer.strategy.root_device if self.simulates_on_device() else None
        dataset = self.velocity_dataset(split, self.configured_probabilities[split])
        loader = self._loader(split, dataset, None if device is not None else self.operator, knobs=False)
        items: dict[int, dict[str, torch.Tensor]] = {}
        for batch in loader:
            if device is not None:
                with torch.no_grad():
                    batch["data"] = self.operator.simulate(batch["velocity"].to(device)).cpu()
            for b, index in enumerate(batch["index"].tolist()):
                items[index] = {k: v[b] for k, v in batch.items()}
        return CachedDataset(items, dataset.labels, self.seed, split)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        """Finish a batch on its device: simulate it if it is velocity-only (one batched
        deepwave call), mirror training samples (``mirror``), then apply the operator's
        processing with the current knobs (band-pass, aperture, noise from the per-sample
        ``noise_seed``, which is dropped). A batch without ``noise_seed`` is already
        finished and comes back unchanged."""
        if "noise_seed" not in batch:
            return batch
        out = dict(batch)
        seeds = out.pop("noise_seed")
        with torch.no_grad():
            clean = out["data"] if "data" in out else self.operator.simulate(out["velocity"])
            if self.mirror > 0 and self.trainer is not None and self.trainer.training:
                flags = mirror_flags(self.seed, out["index"].tolist(), self.trainer.current_epoch, self.mirror)
                out["velocity"], clean = mirror(out["velocity"], clean, flags)
            out["data"] = self.operator.process(clean, seeds.tolist())
        return out


def _check_weights(weights: Mapping[str, float], key: str) -> None:
    if any(w < 0 or not math.isfinite(w) for w in weights.values()) or sum(weights.values()) <= 0:
        raise ConfigError(f"expected weights >= 0 with a positive sum, got {dict(weights)}", key=key)


def _sizes(sizes: Optional[Mapping[str, int]]) -> dict[str, int]:
    values = dict(DEFAULT_SIZES)
    for split, size in (sizes or {}).items():
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; expected {', '.join(SPLITS)}", key=f"sizes.{split}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"expected a whole number of samples >= 1, got {size!r}", key=f"sizes.{split}")
        values[split] = size
    return values
