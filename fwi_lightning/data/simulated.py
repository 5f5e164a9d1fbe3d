"""On-the-fly simulated data: velocity families -> deepwave gathers, never stored on disk.

Walk of one batch:

1. `SampleSampler` (main process) yields global sample indices for this split, rank and
   epoch. Validation and test use indices 0..N-1 every epoch; training uses a fresh
   block of N indices per epoch (``fresh_train``), so every epoch sees new models.
   Each DDP rank takes every world_size-th index: ranks never share a sample.
2. `VelocityDataset` turns an index into a velocity model: the family is picked with
   the family weights and the model drawn, both from seeds derived from
   (seed, split, index) alone; so is the sample's noise seed.
3. `SimulationPipeline` simulates the whole batch in one deepwave call, band-passes it
   and adds noise from the per-sample seeds. It runs in exactly one of two places:
   - on a GPU (``simulate_on: device``, or ``auto`` with a non-CPU trainer), in
     `on_after_batch_transfer`, on the device, the loaders yielding velocity only;
   - on CPU (``workers``, or ``auto`` otherwise), inside the DataLoader's collate, so
     it is spread over worker processes. Every CPU simulation uses one thread, in the
     workers and in the main process alike: deepwave's own threads give ~1.15x on 2
     idle cores and slow it down many times over on a busy CPU (see `Simulator`),
     while processes give ~1.8x.
   The same pipeline function runs either way, and a model's gathers do not depend on
   its batch (max_vel is pinned per CFL step bucket, see `Simulator`), so the numbers do
   not depend on num_workers or batch size.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from fwi_lightning import registry
from fwi_lightning.data.base import SplitDataModule
from fwi_lightning.data.families.base import SPLITS, VelocityFamily, sample_rng, sample_seed
from fwi_lightning.data.normalisation import log_amplitude_range
from fwi_lightning.data.sampling import ResumableLoader, SampleSampler
from fwi_lightning.errors import ConfigError
from fwi_lightning.physics import filters
from fwi_lightning.physics.simulator import Simulator
from fwi_lightning.physics.survey import Survey
from fwi_lightning.problem import Problem
from fwi_lightning.specs import FamiliesSpec

DEFAULT_SIZES = {"train": 1024, "val": 128, "test": 128}


class SimulationPipeline(nn.Module):
    """Batch of velocity models -> batch with simulated, filtered, noisy gathers.

    Args:
        simulator: the `Simulator`.
        snr_db: signal-to-noise ratio of added white noise in dB; None: no noise.
        bandpass: (low, high) corners in Hz (either may be None); None: no filter.
    """

    def __init__(self, simulator: Simulator, snr_db: Optional[float] = None, bandpass: Optional[Sequence[Optional[float]]] = None):
        super().__init__()
        self.simulator = simulator
        self.snr_db = snr_db
        self.bandpass = filters.check_band(bandpass, simulator.survey.dt)

    @torch.no_grad()
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Add ``data`` [B, S, T, R] (raw amplitudes) to a batch and drop its ``noise_seed``.

        Args:
            batch: ``velocity`` [B, 1, NZ, NX] m/s, ``noise_seed`` [B], plus any keys,
                which are passed through.
        """
        out = dict(batch)
        seeds = out.pop("noise_seed")
        data = self.simulator(out["velocity"][:, 0])
        if self.bandpass is not None:
            data = filters.bandpass(data, self.simulator.survey.dt, *self.bandpass)
        if self.snr_db is not None:
            data = filters.add_noise(data, self.snr_db, seeds.tolist())
        out["data"] = data
        return out


class VelocityDataset(Dataset):
    """Sample index -> velocity model of one split, deterministic from (seed, split, index).

    Args:
        families: (label, family, weight) triples; a sample's family is drawn with
            probability proportional to its weight.
        seed: the experiment seed.
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: nominal number of samples per epoch (the sampler decides the indices).
    """

    def __init__(self, families: Sequence[tuple[str, VelocityFamily, float]], seed: int, split: str, size: int):
        self.families = [f for _, f, _ in families]
        weights = np.array([w for _, _, w in families], dtype=np.float64)
        self.probabilities = weights / weights.sum()
        self.seed, self.split, self.size = seed, split, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``velocity`` [1, NZ, NX] float32 m/s, ``family`` and ``index`` ints, ``noise_seed``."""
        choice = int(sample_rng(self.seed, self.split, index, "family").choice(len(self.families), p=self.probabilities))
        model = self.families[choice].sample(self.seed, self.split, index)
        noise_seed = int(sample_seed(self.seed, self.split, index, "noise").generate_state(1)[0])
        return {"velocity": torch.from_numpy(model)[None], "family": choice, "index": index, "noise_seed": noise_seed}


class CachedDataset(Dataset):
    """Sample index -> a batch item simulated once and kept in memory."""

    def __init__(self, items: Mapping[int, dict[str, torch.Tensor]]):
        self.items = dict(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


class BatchCollate:
    """DataLoader collate: stack items, then run the pipeline if it runs in the loader."""

    def __init__(self, pipeline: Optional[SimulationPipeline]):
        self.pipeline = pipeline

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = default_collate(items)
        return self.pipeline(batch) if self.pipeline is not None and "data" not in batch else batch


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


class SimulatedDataModule(SplitDataModule):
    """Velocity families simulated on the fly with deepwave: unlimited, deterministic, no disk.

    Batches: ``data`` [B, S, T, R] raw amplitudes, ``velocity`` [B, 1, NZ, NX] m/s,
    ``family`` [B] (index into ``problem.extra["families"]``), ``index`` [B] (the global
    sample index; with the seed and split it determines the model and its noise).
    Validation and test samples are the same every epoch; training samples are new
    each epoch unless ``fresh_train: false`` or ``cache: true``. Under DDP each rank gets
    its own samples. Where the simulation runs: see the module docstring.
    ``problem.survey`` records the resolved numerics with max_vel at the top of the
    velocity range; the pipeline itself gives each model its fewest CFL sub-steps
    (`Simulator` ``step_buckets``).

    Args:
        seed: the experiment seed (injected).
        survey: acquisition geometry (``data.survey``).
        families: velocity families by registered name, with weights, e.g.
            ``{flatvel: 1.0, curvefault: {weight: 0.5, variant: B}}``; default ``{flatvel: 1}``.
        velocity_range: [v_min, v_max] m/s of every model; pins the simulator's max_vel.
        sizes: samples per epoch per split, e.g. ``{train: 1024, val: 128, test: 128}``.
        batch_size: models per batch (one deepwave call per CFL step bucket in it).
        num_workers: DataLoader worker processes (one torch thread each).
        numerics: ``fast`` (Courant 0.7, PML 10; the default) or ``accurate`` (deepwave's defaults).
        snr_db: add white noise at this SNR in dB (None: none). Settable between epochs.
        bandpass: [low, high] Hz zero-phase band-pass (either may be null). Settable.
        cache: simulate each split's samples once and keep them in memory (training
            then reuses the same samples every epoch).
        fresh_train: new training samples every epoch (ignored with cache).
        simulate_on: ``auto`` (device when the trainer is on a GPU, else workers),
            ``device`` or ``workers``.
        reference_size: clean training samples the data range is computed from.

    Raises:
        ConfigError: invalid sizes, weights, velocity range or survey.
    """

    def __init__(
        self,
        seed: int = 0,
        survey: Survey = Survey(),
        families: FamiliesSpec = None,
        velocity_range: Sequence[float] = (1500.0, 4500.0),
        sizes: Optional[Mapping[str, int]] = None,
        batch_size: int = 16,
        num_workers: int = 0,
        numerics: Literal["fast", "accurate"] = "fast",
        snr_db: Optional[float] = None,
        bandpass: Optional[Sequence[Optional[float]]] = None,
        cache: bool = False,
        fresh_train: bool = True,
        simulate_on: Literal["auto", "device", "workers"] = "auto",
        reference_size: int = 16,
    ):
        super().__init__()
        if len(velocity_range) != 2:
            raise ConfigError(f"expected [v_min, v_max] in m/s, got {velocity_range!r}", key="data.velocity_range")
        self.seed = int(seed)
        self.velocity_range = (float(velocity_range[0]), float(velocity_range[1]))
        simulator = Simulator(survey, self.velocity_range, numerics, step_buckets=True, cpu_threads=1)
        self.pipeline = SimulationPipeline(simulator, snr_db, bandpass)
        self.families = self._build_families(families, simulator.survey)
        self.sizes = _sizes(sizes)
        for name, value in (("batch_size", batch_size), ("reference_size", reference_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"expected a whole number >= 1, got {value!r}", key=f"data.{name}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"expected a whole number >= 0, got {num_workers!r}", key="data.num_workers")
        if simulate_on not in ("auto", "device", "workers"):
            raise ConfigError(f"expected auto, device or workers, got {simulate_on!r}", key="data.simulate_on")
        self.batch_size, self.num_workers, self.reference_size = batch_size, num_workers, reference_size
        self.cache, self.fresh_train, self.simulate_on = bool(cache), bool(fresh_train) and not cache, simulate_on
        self._cached: dict[str, CachedDataset] = {}
        self._data_range: Optional[tuple[float, float]] = None

    # -- configuration ------------------------------------------------------------

    def _build_families(self, spec: Optional[Mapping[str, Any]], survey: Survey) -> list[tuple[str, VelocityFamily, float]]:
        built = registry.build_mapping(
            "velocity", spec if spec is not None else {"flatvel": 1.0}, key="data.families", weighted=True,
            shape=(survey.nz, survey.nx), spacing=survey.spacing, velocity_range=self.velocity_range,
        )
        if not built:
            raise ConfigError("no velocity families: name at least one, e.g. {flatvel: 1.0}", key="data.families")
        families = [(label, family, 1.0 if weight is None else float(weight)) for label, (family, weight) in built.items()]
        if any(w < 0 or not math.isfinite(w) for _, _, w in families) or sum(w for _, _, w in families) <= 0:
            raise ConfigError(f"expected weights >= 0 with a positive sum, got { {l: w for l, _, w in families} }", key="data.families")
        return families

    @property
    def snr_db(self) -> Optional[float]:
        """SNR in dB of the added noise (None: none); takes effect from the next loader iteration."""
        return self.pipeline.snr_db

    @snr_db.setter
    def snr_db(self, value: Optional[float]) -> None:
        self.pipeline.snr_db = value

    @property
    def bandpass(self) -> Optional[tuple[Optional[float], Optional[float]]]:
        """(low, high) Hz of the band-pass (None: none); takes effect from the next loader iteration."""
        return self.pipeline.bandpass

    @bandpass.setter
    def bandpass(self, band: Optional[Sequence[Optional[float]]]) -> None:
        self.pipeline.bandpass = filters.check_band(band, self.pipeline.simulator.survey.dt)

    # -- problem ------------------------------------------------------------------

    @property
    def problem(self) -> Problem:
        """The survey (with resolved numerics), velocity range, data range and family labels."""
        if self._data_range is None:
            self._data_range = self._reference_range()
        return Problem(
            survey=self.pipeline.simulator.survey,
            velocity_range=self.velocity_range,
            data_range=self._data_range,
            extra={"families": [label for label, _, _ in self.families]},
        )

    def _reference_range(self) -> tuple[float, float]:
        """Log-amplitude range of the first `reference_size` clean (noise-free, unfiltered) training gathers."""
        dataset = self._dataset("train")
        chunks = []
        for start in range(0, self.reference_size, self.batch_size):
            batch = default_collate([dataset[i] for i in range(start, min(start + self.batch_size, self.reference_size))])
            with torch.no_grad():
                chunks.append(self.pipeline.simulator(batch["velocity"][:, 0]))
        return log_amplitude_range(chunks)

    # -- loaders ------------------------------------------------------------------

    def _dataset(self, split: str) -> VelocityDataset:
        return VelocityDataset(self.families, self.seed, split, self.sizes[split])

    def simulates_on_device(self) -> bool:
        """True when `on_after_batch_transfer` simulates (on the trainer's device)."""
        if self.simulate_on != "auto":
            return self.simulate_on == "device"
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type != "cpu"

    def _loader(self, split: str, dataset: Dataset, pipeline: Optional[SimulationPipeline]) -> DataLoader:
        rank, world = self.ranks()
        sampler = SampleSampler(self.sizes[split], rank, world, fresh=self.fresh_train and split == "train")
        workers = self.num_workers
        context = "fork" if workers and "fork" in multiprocessing.get_all_start_methods() else None
        return ResumableLoader(
            dataset, sampler, self.batch_size, seed=self.seed, num_workers=workers,
            collate_fn=BatchCollate(pipeline), worker_init_fn=init_worker if workers else None,
            multiprocessing_context=context,
        )

    def dataloader(self, split: str) -> DataLoader:
        """The loader of `split` for this rank: simulated batches, or velocity-only ones
        when simulation happens on the device (`simulates_on_device`)."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; expected one of {', '.join(SPLITS)}", key="split")
        if self.cache:
            if split not in self._cached:
                self._cached[split] = self._simulate_split(split)
            return self._loader(split, self._cached[split], None)
        return self._loader(split, self._dataset(split), None if self.simulates_on_device() else self.pipeline)

    def _simulate_split(self, split: str) -> CachedDataset:
        """Simulate this rank's samples of `split` once, on the device when there is one."""
        device = self.trainer.strategy.root_device if self.simulates_on_device() else None
        loader = self._loader(split, self._dataset(split), None if device is not None else self.pipeline)
        items: dict[int, dict[str, torch.Tensor]] = {}
        for batch in loader:
            if device is not None:
                batch = {k: v.cpu() for k, v in self.pipeline({k: v.to(device) for k, v in batch.items()}).items()}
            for b, index in enumerate(batch["index"].tolist()):
                items[index] = {k: v[b] for k, v in batch.items()}
        return CachedDataset(items)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        """Simulate a velocity-only batch on its device (one batched deepwave call)."""
        return self.pipeline(batch) if "data" not in batch else batch

    # -- checkpoint ---------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The data range, so a resumed run normalises exactly as it did."""
        return {"data_range": list(self.problem.data_range)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the data range saved by `state_dict`."""
        if "data_range" in state_dict:
            self._data_range = tuple(float(v) for v in state_dict["data_range"])


def _sizes(sizes: Optional[Mapping[str, int]]) -> dict[str, int]:
    values = dict(DEFAULT_SIZES)
    for split, size in (sizes or {}).items():
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; expected {', '.join(SPLITS)}", key=f"data.sizes.{split}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"expected a whole number of samples >= 1, got {size!r}", key=f"data.sizes.{split}")
        values[split] = size
    return values
