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
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fwi_lightning.data.base import SplitDataModule
from fwi_lightning.data.families.base import SPLITS
from fwi_lightning.data.families.model_file import clip_report
from fwi_lightning.data.normalisation import log_amplitude_range
from fwi_lightning.data.npyfiles import open_npy
from fwi_lightning.data.sampling import ResumableLoader, SampleSampler
from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.physics.survey import Survey
from fwi_lightning.problem import Problem


#: OpenFWI's normalisation range of its Vel, Fault and Style datasets, m/s.
OPENFWI_VELOCITY_RANGE: tuple[float, float] = (1500.0, 4500.0)

#: Share of a data_dir's files per split: OpenFWI's own (FlatVel-A: data1-48 train,
#: data49-60 test); without a val share, validation runs on the test files as in OpenFWI.
DEFAULT_FILE_SPLIT: dict[str, float] = {"train": 0.8, "test": 0.2}

#: Rows of a model file read at once when checking its range.
CHUNK_ROWS = 256


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


def open_array(path: str, ndim: int, what: str) -> np.ndarray:
    """Memory-map an npy file and check its rank.

    Raises:
        DataError: missing, not an npy file (e.g. a SEG-Y), unreadable or of the wrong
            rank, naming the file and the expected layout.
    """
    array = open_npy(path, what)
    if array.ndim != ndim:
        raise DataError(f"got shape {list(array.shape)} of {array.dtype}; expected {what}", file=path)
    return array


def paired_model(data_file: str) -> Optional[str]:
    """The ``model*.npy`` that pairs with a ``data*.npy`` by name, if it exists.

    ``.../data7.npy`` pairs with ``.../model7.npy`` beside it, or, in OpenFWI's download
    layout (``data/data7.npy``, ``model/model7.npy``), in the sibling ``model`` folder.
    """
    path = Path(data_file)
    if not path.name.startswith("data"):
        return None
    name = "model" + path.name[len("data"):]
    candidates = [path.with_name(name)]
    if path.parent.name == "data":
        candidates.append(path.parent.parent / "model" / name)
    return next((str(c) for c in candidates if c.is_file()), None)


def dir_files(data_dir: str) -> list[str]:
    """The ``data*.npy`` files of an OpenFWI folder (in it, or in its ``data`` subfolder), naturally sorted.

    Raises:
        DataError: the folder is missing or holds no ``data*.npy``.
    """
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise DataError("data_dir is not a folder; expected one holding OpenFWI's data*.npy and model*.npy (or data/ and model/ subfolders)", file=str(folder))
    for place in (folder, folder / "data"):
        found = sorted((str(p) for p in place.glob("data*.npy")), key=natural_key)
        if found:
            return found
    raise DataError("no data*.npy in data_dir or its data/ subfolder; expected OpenFWI's layout (data1.npy, model1.npy, ...)", file=str(folder))


def split_by_file(files: Sequence[str], fractions: Mapping[str, float], where: str) -> dict[str, list[str]]:
    """Cut naturally sorted files into splits by file count: train first, then val, then test.

    Args:
        files: the data files.
        fractions: share of the files per split; a split left out gets none, except
            val, which then reuses the test files (OpenFWI's convention).
        where: the folder, for error messages.

    Raises:
        DataError: too few files for a split with a positive share.
    """
    edges = np.round(np.cumsum([0.0] + [fractions.get(s, 0.0) for s in SPLITS]) * len(files)).astype(int)
    splits = {}
    for i, split in enumerate(SPLITS):
        chosen = list(files[edges[i]:edges[i + 1]])
        if fractions.get(split, 0.0) > 0 and not chosen:
            raise DataError(
                f"{len(files)} data files are too few for file_split {dict(fractions)}: {split} gets none; "
                f"give {split} a larger share or add files",
                file=where,
            )
        if chosen:
            splits[split] = chosen
    if "val" not in fractions and "test" in splits:
        splits["val"] = splits["test"]
    return splits


def check_file_split(fractions: Optional[Mapping[str, float]]) -> dict[str, float]:
    """Validate `file_split` (default `DEFAULT_FILE_SPLIT`).

    Raises:
        ConfigError: unknown splits, negative shares, shares summing above 1, or no training share.
    """
    values = dict(DEFAULT_FILE_SPLIT if fractions is None else fractions)
    for split, share in values.items():
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; expected {', '.join(SPLITS)}", key=f"file_split.{split}")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or share < 0:
            raise ConfigError(f"expected a share of the files >= 0, got {share!r}", key=f"file_split.{split}")
    if not values.get("train", 0) > 0 or sum(values.values()) > 1 + 1e-9:
        raise ConfigError(f"expected a training share > 0 and shares summing to at most 1, got {values}", key="file_split")
    return {k: float(v) for k, v in values.items()}


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
            data = open_array(path, 4, "OpenFWI data [N, shots, time, receivers]")
            if data_shape is not None and data.shape[1:] != data_shape:
                raise DataError(f"gathers of shape {list(data.shape[1:])} differ from {list(data_shape)} in {self.data_files[0]}", file=path)
            data_shape = data.shape[1:]
            if self.model_files is not None:
                model = open_array(self.model_files[i], 4, "OpenFWI velocity [N, 1, NZ, NX] in m/s")
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
        """The gathers of one sample, [S, T, R] float32 raw amplitudes.

        Raises:
            DataError: the row holds NaN or infinite amplitudes (naming the file and row).
        """
        file, row = self.locate(index)
        values = np.array(self._map(self.data_files[file])[row], dtype=np.float32)
        if not np.isfinite(values).all():
            bad = int(np.count_nonzero(~np.isfinite(values)))
            raise DataError(
                f"row {row} holds {bad} NaN or infinite amplitudes; repair or re-download the file, or leave it out of the split",
                file=self.data_files[file],
            )
        return torch.from_numpy(values)

    def velocity(self, index: int) -> torch.Tensor:
        """The velocity model of one sample, [1, NZ, NX] float32 m/s."""
        file, row = self.locate(index)
        return torch.from_numpy(np.array(self._map(self.model_files[file])[row], dtype=np.float32))

    def range_reports(self, velocity_range: Sequence[float]) -> dict[str, str]:
        """{model file: what lies outside `velocity_range`} for every model file with cells outside it.

        Reads each file once, `CHUNK_ROWS` rows at a time.

        Raises:
            DataError: a model file holds NaN, infinite or non-positive velocities.
        """
        reports = {}
        for path in self.model_files or []:
            array = self._map(path)
            lo, hi = np.inf, -np.inf
            for start in range(0, len(array), CHUNK_ROWS):
                chunk = np.asarray(array[start:start + CHUNK_ROWS])
                if not np.isfinite(chunk).all():
                    raise DataError("holds NaN or infinite velocities; repair or re-download the file", file=path)
                lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
            if lo <= 0:
                raise DataError(f"holds velocities down to {lo:g} m/s; expected velocities > 0 m/s", file=path)
            if lo < velocity_range[0] or hi > velocity_range[1]:
                reports[path] = clip_report(np.asarray(array), velocity_range)
        return reports

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``data`` [S, T, R] float32, ``velocity`` [1, NZ, NX] float32 m/s (if labelled), ``family`` 0, ``index``."""
        item: dict[str, Any] = {"data": self.gather(index), "family": 0, "index": index}
        if self.model_files is not None:
            item["velocity"] = self.velocity(index)
        return item


class OpenFWIDataModule(SplitDataModule):
    """OpenFWI npy files (data*.npy with model*.npy) read by memory map, never preloaded.

    Where the files come from, per split (a split given in ``split_files`` or
    ``data_files`` overrides ``data_dir``'s):

    * ``data_dir``: a folder in OpenFWI's layout (``data1.npy``, ``model1.npy``, ... in
      it, or in its ``data/`` and ``model/`` subfolders); its files, naturally sorted,
      are cut into splits by ``file_split`` (OpenFWI's by default: the first 80 % of the
      files train, the last 20 % test and validate; FlatVel-A: data1-48 / data49-60).
    * ``data_files``: {split: glob of data*.npy}, with ``model_files`` {split: glob of
      model*.npy} paired in natural sort order.
    * ``split_files``: {split: OpenFWI list file of 'data.npy<TAB>model.npy' lines}.

    Without model files for a split, each ``dataN.npy`` is paired by name with the
    ``modelN.npy`` beside it (or in the sibling ``model/`` folder). A null entry counts
    as not given. The survey's shapes (shots, time samples, receivers, NZ, NX) come
    from the files; its other fields (spacing, dt, peak frequency, depths) from
    ``survey`` (OpenFWI's by default).

    Velocities are normalised over ``velocity_range``, OpenFWI's fixed 1500-4500 m/s by
    default, so results compare with OpenFWI's published tables. Model files with cells
    outside it are reported (one warning per file, with the count and the range that
    would cover them); their velocities are left as they are.

    Args:
        seed: the experiment seed (injected); shuffles the training order.
        data_dir: a folder of OpenFWI files, split by ``file_split``.
        file_split: share of ``data_dir``'s files per split, by file count, in the order
            train, val, test; without ``val``, validation uses the test files.
        data_files: {split: glob of data*.npy}.
        model_files: {split: glob of model*.npy} (default: paired by name).
        split_files: {split: OpenFWI list file of 'data.npy<TAB>model.npy' lines}.
        survey: geometry fields not given by the files.
        velocity_range: [v_min, v_max] m/s of the normalisation; null: the min and max
            of the sampled training models (not comparable across datasets).
        labels: read velocity models (every data file needs its model file); false:
            unlabelled data, no ``velocity`` in the batches.
        batch_size, num_workers: DataLoader settings.
        stats_samples: training samples (spread over the files) the data range and a
            missing velocity range are computed from.
        label: the family label of every sample (``problem.extra["families"]``).

    Raises:
        ConfigError: no training files, unknown splits, a split given twice, a bad
            ``file_split`` or velocity range.
        DataError: unreadable, unpaired or mismatched files.
    """

    def __init__(
        self,
        seed: int = 0,
        data_dir: Optional[str] = None,
        file_split: Optional[Mapping[str, float]] = None,
        data_files: Optional[Mapping[str, Optional[str]]] = None,
        model_files: Optional[Mapping[str, Optional[str]]] = None,
        split_files: Optional[Mapping[str, Optional[str]]] = None,
        survey: Survey = Survey(),
        velocity_range: Optional[Sequence[float]] = OPENFWI_VELOCITY_RANGE,
        labels: bool = True,
        batch_size: int = 16,
        num_workers: int = 0,
        stats_samples: int = 64,
        label: str = "openfwi",
    ):
        super().__init__()
        self.seed, self.batch_size, self.num_workers, self.stats_samples, self.label = int(seed), batch_size, num_workers, stats_samples, label
        self.labels = bool(labels)
        self._velocity_range = _velocity_range(velocity_range, self.labels)
        sources = self._sources(data_dir, check_file_split(file_split), data_files or {}, model_files or {}, split_files or {})
        built: dict[tuple, OpenFWIDataset] = {}  # val and test may share files (OpenFWI's split)
        self.datasets = {}
        for split, (data, models) in sources.items():
            files = (tuple(data), None if models is None else tuple(models))
            self.datasets[split] = built[files] = built.get(files) or OpenFWIDataset(data, models)
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
                raise DataError(
                    f"{split} files have gathers {list(dataset.data_shape)} / models {dataset.model_shape}, unlike the training files",
                    file=dataset.data_files[0],
                )
        self._problem: Optional[Problem] = None

    def _sources(
        self, data_dir: Optional[str], file_split: dict[str, float], data_files: Mapping[str, Optional[str]],
        model_files: Mapping[str, Optional[str]], split_files: Mapping[str, Optional[str]],
    ) -> dict[str, tuple[list[str], Optional[list[str]]]]:
        """{split: (data files, model files or None)} from the four ways of naming files."""
        given = {}
        for name, mapping in (("data_files", data_files), ("model_files", model_files), ("split_files", split_files)):
            for split in mapping:
                if split not in SPLITS:
                    raise ConfigError(f"unknown split '{split}'; expected {', '.join(SPLITS)}", key=f"{name}.{split}")
            given[name] = {split: value for split, value in mapping.items() if value is not None}
        data_files, model_files, split_files = given["data_files"], given["model_files"], given["split_files"]
        from_dir = split_by_file(dir_files(data_dir), file_split, str(data_dir)) if data_dir is not None else {}
        sources = {}
        for split in SPLITS:
            if split in split_files:
                if split in data_files:
                    raise ConfigError(f"split '{split}' is given both as split_files and data_files; keep one", key=f"split_files.{split}")
                data, models = read_split_file(split_files[split])
                missing = [d for d, m in zip(data, models) if m is None]
                models = [m if m is not None else paired_model(d) for d, m in zip(data, models)] if missing else models
            elif split in data_files:
                data = expand(data_files[split], f"data_files.{split}")
                models = expand(model_files[split], f"model_files.{split}") if split in model_files else [paired_model(d) for d in data]
            elif split in from_dir:
                data = from_dir[split]
                models = [paired_model(d) for d in data]
            else:
                continue
            sources[split] = (data, self._labelled(split, data, models))
        if "train" not in sources:
            raise ConfigError(
                "no training files: set data_dir (a folder of OpenFWI data*.npy and model*.npy), data_files.train "
                "(a glob of data*.npy) or split_files.train",
                key="data_dir",
            )
        return sources

    def _labelled(self, split: str, data: list[str], models: list[Optional[str]]) -> Optional[list[str]]:
        """The model files of a split, or None for unlabelled data (``labels: false``).

        Raises:
            DataError: a data file without a model file while `labels` is on.
        """
        if not self.labels:
            return None
        for data_file, model_file in zip(data, models):
            if model_file is None:
                open_array(data_file, 4, "OpenFWI data [N, shots, time, receivers]")
                raise DataError(
                    f"no model file pairs with this data file (looked for model{Path(data_file).name[4:]} beside it and in a "
                    f"sibling model/ folder); set model_files.{split} to a glob of model*.npy, or labels: false for unlabelled data",
                    file=data_file,
                )
        return list(models)

    def _stats_indices(self) -> list[int]:
        n = len(self.datasets["train"])
        return sorted(set(np.linspace(0, n - 1, min(n, self.stats_samples)).round().astype(int).tolist()))

    @property
    def problem(self) -> Problem:
        """Survey from the file shapes, velocity range (given or sampled), sampled data range.

        The first call also checks every model file against the velocity range (a
        warning per file with cells outside it).
        """
        if self._problem is None:
            train = self.datasets["train"]
            indices = self._stats_indices()
            velocity_range = self._velocity_range
            if velocity_range is None:
                models = [train.velocity(i) for i in indices]
                velocity_range = (float(min(m.min() for m in models)), float(max(m.max() for m in models)))
            else:
                self._report_outside(velocity_range)
            data_range = log_amplitude_range(train.gather(i) for i in indices)
            self._problem = Problem(self.survey, velocity_range, data_range, extra={"families": [self.label]})
        return self._problem

    def _report_outside(self, velocity_range: tuple[float, float]) -> None:
        """Warn once per model file with velocities outside `velocity_range`."""
        for dataset in {id(d): d for d in self.datasets.values()}.values():
            for path, report in dataset.range_reports(velocity_range).items():
                warnings.warn(f"{path}: {report} (normalised targets then leave [-1, 1])", UserWarning, stacklevel=3)

    def dataloader(self, split: str) -> DataLoader:
        """The loader of `split`; training order shuffled from the seed.

        Raises:
            ConfigError: no files were given for `split`.
        """
        if split not in self.datasets:
            raise ConfigError(f"no {split} files: set data_dir, data_files.{split} or split_files.{split}", key=f"data_files.{split}")
        rank, world = self.ranks()
        dataset = self.datasets[split]
        sampler = SampleSampler(len(dataset), rank, world, shuffle=split == "train", seed=self.seed)
        return ResumableLoader(dataset, sampler, self.batch_size, seed=self.seed, num_workers=self.num_workers)


def _velocity_range(values: Optional[Sequence[float]], labels: bool) -> Optional[tuple[float, float]]:
    """Validate the normalisation range; None (from the files) needs labelled data.

    Raises:
        ConfigError: not [v_min, v_max] with 0 < v_min < v_max, or None without labels.
    """
    if values is None:
        if not labels:
            raise ConfigError("unlabelled data (labels: false): set velocity_range [v_min, v_max] in m/s, e.g. OpenFWI's [1500, 4500]", key="velocity_range")
        return None
    if isinstance(values, (str, bytes)) or len(values) != 2 or not 0 < float(values[0]) < float(values[1]):
        raise ConfigError(f"expected [v_min, v_max] in m/s with 0 < v_min < v_max, got {values!r}", key="velocity_range")
    return float(values[0]), float(values[1])
