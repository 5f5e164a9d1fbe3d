"""OpenFWI's own npy files, memory-mapped and never preloaded.

OpenFWI stores each family as pairs of files: ``data*.npy`` [N, S, T, R] (shot, time,
receiver) and ``model*.npy`` [N, 1, NZ, NX] in m/s. This module reads them exactly as
downloaded, from globs or from OpenFWI's split list files (one ``data_path<TAB>model_path``
line per pair, as in OpenFWI's ``split_files/*.txt``). Each process maps each file
on first use; only the rows of a batch are read.
"""

from __future__ import annotations

import bisect
import glob
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fwi_lightning.data.base import SplitDataModule
from fwi_lightning.data.families.base import SPLITS
from fwi_lightning.data.normalisation import log_amplitude_range
from fwi_lightning.data.sampling import ResumableLoader, SampleSampler
from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.physics.survey import Survey
from fwi_lightning.problem import Problem


def natural_key(path: str) -> list:
    """Sort key that orders data2.npy before data10.npy."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def expand(pattern: str, key: str) -> list[str]:
    """Files matching a glob, naturally sorted.

    Raises:
        DataError: nothing matches.
    """
    found = sorted(glob.glob(str(Path(pattern).expanduser())), key=natural_key)
    if not found:
        raise DataError(f"no files match '{pattern}'; check the path and the glob", file=key)
    return found


def read_split_file(path: str) -> tuple[list[str], list[Optional[str]]]:
    """OpenFWI split list: lines ``data.npy<TAB>model.npy`` (model optional).

    Relative paths are taken relative to the list file's directory.

    Raises:
        DataError: the list is missing or empty.
    """
    listing = Path(path).expanduser()
    if not listing.is_file():
        raise DataError("split list file not found", file=str(listing))
    data, models = [], []
    for line in listing.read_text().splitlines():
        parts = [p for p in re.split(r"[\t ]+", line.strip()) if p]
        if not parts:
            continue
        resolve = lambda p: str(p if Path(p).is_absolute() else listing.parent / p)  # noqa: E731
        data.append(resolve(parts[0]))
        models.append(resolve(parts[1]) if len(parts) > 1 else None)
    if not data:
        raise DataError("split list file is empty; expected lines 'data.npy<TAB>model.npy'", file=str(listing))
    return data, models


def open_npy(path: str, ndim: int, what: str) -> np.ndarray:
    """Memory-map an npy file and check its rank.

    Raises:
        DataError: missing, unreadable or of the wrong rank, naming the file and the
            expected layout.
    """
    try:
        array = np.load(path, mmap_mode="r")
    except FileNotFoundError as exc:
        raise DataError(f"file not found; expected {what}", file=path) from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"not a readable npy file ({exc}); expected {what}", file=path) from exc
    if array.ndim != ndim or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"got shape {list(array.shape)} of {array.dtype}; expected {what}", file=path)
    return array


class OpenFWIDataset(Dataset):
    """Rows of OpenFWI file pairs as batch items, read lazily through memory maps.

    Args:
        data_files: ``data*.npy`` files, each [N_i, S, T, R].
        model_files: matching ``model*.npy`` files, each [N_i, 1, NZ, NX] m/s, or None
            for unlabelled data.

    Raises:
        DataError: unreadable files, unequal row counts within a pair, or shapes that
            differ between files.
    """

    def __init__(self, data_files: Sequence[str], model_files: Optional[Sequence[str]]):
        if model_files is not None and len(model_files) != len(data_files):
            raise DataError(f"{len(data_files)} data files but {len(model_files)} model files; they must pair up one to one")
        self.data_files, self.model_files = list(data_files), None if model_files is None else list(model_files)
        counts, data_shape, model_shape = [], None, None
        for i, path in enumerate(self.data_files):
            data = open_npy(path, 4, "OpenFWI data [N, shots, time, receivers]")
            if data_shape is not None and data.shape[1:] != data_shape:
                raise DataError(f"gathers of shape {list(data.shape[1:])} differ from {list(data_shape)} in {self.data_files[0]}", file=path)
            data_shape = data.shape[1:]
            if self.model_files is not None:
                model = open_npy(self.model_files[i], 4, "OpenFWI velocity [N, 1, NZ, NX] in m/s")
                if model.shape[1] != 1 or (model_shape is not None and model.shape[1:] != model_shape):
                    raise DataError(f"expected models [N, 1, NZ, NX] matching the other files, got {list(model.shape)}", file=self.model_files[i])
                if model.shape[0] != data.shape[0]:
                    raise DataError(f"{model.shape[0]} models but {data.shape[0]} gathers in {path}", file=self.model_files[i])
                model_shape = model.shape[1:]
            counts.append(data.shape[0])
        self.data_shape: tuple[int, int, int] = tuple(data_shape)  # (S, T, R)
        self.model_shape: Optional[tuple[int, int]] = None if model_shape is None else tuple(model_shape[1:])  # (NZ, NX)
        self.offsets = np.cumsum([0] + counts).tolist()
        self._maps: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self.offsets[-1]

    def _map(self, path: str) -> np.ndarray:
        if path not in self._maps:
            self._maps[path] = np.load(path, mmap_mode="r")
        return self._maps[path]

    def locate(self, index: int) -> tuple[int, int]:
        """(file number, row) of a global sample index."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} outside 0..{len(self) - 1}")
        file = bisect.bisect_right(self.offsets, index) - 1
        return file, index - self.offsets[file]

    def gather(self, index: int) -> torch.Tensor:
        """The gathers of one sample, [S, T, R] float32 raw amplitudes."""
        file, row = self.locate(index)
        return torch.from_numpy(np.array(self._map(self.data_files[file])[row], dtype=np.float32))

    def velocity(self, index: int) -> torch.Tensor:
        """The velocity model of one sample, [1, NZ, NX] float32 m/s."""
        file, row = self.locate(index)
        return torch.from_numpy(np.array(self._map(self.model_files[file])[row], dtype=np.float32))

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``data`` [S, T, R] float32, ``velocity`` [1, NZ, NX] float32 m/s (if labelled), ``family`` 0, ``index``."""
        item: dict[str, Any] = {"data": self.gather(index), "family": 0, "index": index}
        if self.model_files is not None:
            item["velocity"] = self.velocity(index)
        return item


class OpenFWIDataModule(SplitDataModule):
    """OpenFWI npy files (data*.npy with model*.npy) read by memory map, never preloaded.

    Give each split either globs (``data_files`` and ``model_files``, paired in natural
    sort order) or an OpenFWI split list (``split_files``). The survey's shapes (shots,
    time samples, receivers, NZ, NX) come from the files; its other fields (spacing, dt,
    peak frequency, depths) from ``survey`` (OpenFWI's by default).

    Args:
        seed: the experiment seed (injected); shuffles the training order.
        data_files: {split: glob of data*.npy}.
        model_files: {split: glob of model*.npy} (omit a split for unlabelled data).
        split_files: {split: OpenFWI list file of 'data.npy<TAB>model.npy' lines}.
        survey: geometry fields not given by the files.
        velocity_range: [v_min, v_max] m/s; None: the min and max of sampled training models.
        batch_size, num_workers: DataLoader settings.
        stats_samples: training samples (spread over the files) the data range and a
            missing velocity range are computed from.
        label: the family label of every sample (``problem.extra["families"]``).

    Raises:
        ConfigError: no training files, unknown splits, a split given twice.
        DataError: unreadable or mismatched files.
    """

    def __init__(
        self,
        seed: int = 0,
        data_files: Optional[Mapping[str, str]] = None,
        model_files: Optional[Mapping[str, str]] = None,
        split_files: Optional[Mapping[str, str]] = None,
        survey: Survey = Survey(),
        velocity_range: Optional[Sequence[float]] = None,
        batch_size: int = 16,
        num_workers: int = 0,
        stats_samples: int = 64,
        label: str = "openfwi",
    ):
        super().__init__()
        self.seed, self.batch_size, self.num_workers, self.stats_samples, self.label = int(seed), batch_size, num_workers, stats_samples, label
        self.datasets = self._datasets(data_files or {}, model_files or {}, split_files or {})
        train = self.datasets["train"]
        if train.model_shape is not None:
            nz, nx = train.model_shape
        else:
            nz, nx = survey.nz, survey.nx
        shots, nt, receivers = train.data_shape
        keep = {k: v for k, v in survey.to_dict().items() if k not in ("nz", "nx", "nt", "n_shots", "n_receivers")}
        self.survey = Survey(**{**keep, "nz": nz, "nx": nx, "nt": nt, "n_shots": shots, "n_receivers": receivers})
        for split, dataset in self.datasets.items():
            if dataset.data_shape != train.data_shape or dataset.model_shape != train.model_shape:
                raise DataError(f"{split} files have gathers {list(dataset.data_shape)} / models {dataset.model_shape}, unlike the training files")
        self._velocity_range = None if velocity_range is None else (float(velocity_range[0]), float(velocity_range[1]))
        self._problem: Optional[Problem] = None

    @staticmethod
    def _datasets(data_files: Mapping[str, str], model_files: Mapping[str, str], split_files: Mapping[str, str]) -> dict[str, OpenFWIDataset]:
        for name, mapping in (("data_files", data_files), ("model_files", model_files), ("split_files", split_files)):
            for split in mapping:
                if split not in SPLITS:
                    raise ConfigError(f"unknown split '{split}'; expected {', '.join(SPLITS)}", key=f"data.{name}.{split}")
        datasets = {}
        for split in SPLITS:
            if split in split_files:
                if split in data_files:
                    raise ConfigError(f"split '{split}' is given both as split_files and data_files; keep one", key=f"data.split_files.{split}")
                data, models = read_split_file(split_files[split])
                labelled = None if any(m is None for m in models) else models
                datasets[split] = OpenFWIDataset(data, labelled)
            elif split in data_files:
                models = expand(model_files[split], f"data.model_files.{split}") if split in model_files else None
                datasets[split] = OpenFWIDataset(expand(data_files[split], f"data.data_files.{split}"), models)
        if "train" not in datasets:
            raise ConfigError("no training files: set data_files.train (a glob of data*.npy) or split_files.train", key="data")
        return datasets

    def _stats_indices(self) -> list[int]:
        n = len(self.datasets["train"])
        return sorted(set(np.linspace(0, n - 1, min(n, self.stats_samples)).round().astype(int).tolist()))

    @property
    def problem(self) -> Problem:
        """Survey from the file shapes, velocity range (given or sampled), sampled data range."""
        if self._problem is None:
            train = self.datasets["train"]
            indices = self._stats_indices()
            velocity_range = self._velocity_range
            if velocity_range is None:
                if train.model_shape is None:
                    raise ConfigError("unlabelled training data: set velocity_range [v_min, v_max] in m/s", key="data.velocity_range")
                models = [train.velocity(i) for i in indices]
                velocity_range = (float(min(m.min() for m in models)), float(max(m.max() for m in models)))
            data_range = log_amplitude_range(train.gather(i) for i in indices)
            self._problem = Problem(self.survey, velocity_range, data_range, extra={"families": [self.label]})
        return self._problem

    def dataloader(self, split: str) -> DataLoader:
        """The loader of `split`; training order shuffled from the seed.

        Raises:
            ConfigError: no files were given for `split`.
        """
        if split not in self.datasets:
            raise ConfigError(f"no {split} files: set data_files.{split} or split_files.{split}", key=f"data.data_files.{split}")
        rank, world = self.ranks()
        dataset = self.datasets[split]
        sampler = SampleSampler(len(dataset), rank, world, shuffle=split == "train", seed=self.seed)
        return ResumableLoader(dataset, sampler, self.batch_size, seed=self.seed, num_workers=self.num_workers)

