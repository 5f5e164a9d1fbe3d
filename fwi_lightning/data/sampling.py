"""Sample order for every data module, and a training loader Lightning can resume mid-epoch.

`SampleSampler` gives each rank its own deterministic sequence of sample indices per
epoch. `ResumableLoader` is the training DataLoader: Lightning saves the state of every
training loader that implements ``state_dict`` / ``load_state_dict`` (its ``_Stateful``
protocol) in each checkpoint and hands it back before iterating on resume. A loader
without them restarts the interrupted epoch from its first batch, so a resumed run
would train on some batches twice and differ from an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Optional

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler


class SampleSampler(DistributedSampler):
    """Sample indices of one split for one rank and epoch.

    Subclasses `DistributedSampler` so Lightning keeps it under DDP instead of wrapping
    it: it splits the indices over ranks itself. Every rank gets ceil(size / world)
    indices (equal batch counts). Rank r takes positions r, r + world, ...; with
    `fresh`, epoch e offsets them by e * world * ceil(size / world), so no sample repeats
    across ranks or epochs; without it, positions wrap modulo `size` (the few padding
    duplicates of `DistributedSampler`) and, with `shuffle`, index a permutation drawn
    from (seed, epoch).

    Args:
        size: samples per epoch over all ranks.
        rank: this process's global rank. world_size: number of ranks.
        fresh: new indices every epoch (simulated training data) or the same ones.
        shuffle: permute the `size` indices every epoch (not with `fresh`).
        seed: seed of the permutations.
        key: maps each index to what the dataset receives for it, called in the main
            process as the index is drawn (e.g. the index with the family
            probabilities of that moment); None: the index itself.

    Attributes:
        skip: positions the next iteration leaves out at its start (`ResumableLoader`
            sets it on resume); reset to 0 once that iteration starts.
    """

    def __init__(
        self,
        size: int,
        rank: int = 0,
        world_size: int = 1,
        fresh: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        key: Optional[Callable[[int], Any]] = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        if fresh and shuffle:
            raise ValueError("fresh indices are new every epoch already; shuffle applies to a fixed set")
        self.size, self.rank, self.num_replicas, self.fresh = size, rank, world_size, fresh
        self.num_samples = math.ceil(size / world_size)
        self.total_size = self.num_samples * world_size
        self.epoch, self.shuffle, self.drop_last, self.seed = 0, shuffle, False, int(seed)
        self.skip = 0
        self.key = key

    def __iter__(self) -> Iterator[Any]:
        indices = self._indices()
        return indices if self.key is None else map(self.key, indices)

    def _indices(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        order = None
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        offset = self.epoch * self.total_size if self.fresh else 0
        for k in range(skip, self.num_samples):
            position = self.rank + k * self.num_replicas
            if self.fresh:
                yield offset + position
            else:
                yield order[position % self.size] if order is not None else position % self.size

    def __len__(self) -> int:
        return self.num_samples


class ResumableLoader(DataLoader):
    """Training DataLoader over `dataset` in `sampler`'s order, resumable mid-epoch.

    It records how many batches of which epoch it has handed out; after
    `load_state_dict` the next iteration of that same epoch starts that many batches in,
    skipping their indices only (no model is drawn, simulated or read for them).
    Iteration is lazy: the DataLoader iterator (and its worker processes) starts at the
    first ``next()``, after Lightning has set the sampler's epoch, so a resumed
    multi-worker loader never prefetches indices of a stale epoch.

    Args:
        dataset: map-style dataset.
        sampler: the `SampleSampler` of this rank.
        batch_size: samples per batch.
        seed: seeds the loader's own generator (worker base seeds), so iterating never
            draws from the global RNG, which a resumed run restores from its checkpoint.
        **kwargs: any other `DataLoader` argument (num_workers, collate_fn, ...).
    """

    def __init__(self, dataset: Dataset, sampler: SampleSampler, batch_size: int, seed: int = 0, **kwargs: Any):
        kwargs.setdefault("generator", torch.Generator().manual_seed(int(seed)))
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self._epoch: Optional[int] = None
        self._handed_out = 0
        self._resume: Optional[tuple[Optional[int], int]] = None

    def __iter__(self) -> Iterator[Any]:
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        self._epoch, self._handed_out = int(self.sampler.epoch), 0
        if self._resume is not None:
            (epoch, batches), self._resume = self._resume, None
            if epoch == self._epoch and 0 < batches < len(self):
                self.sampler.skip = batches * self.batch_size
                self._handed_out = batches
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """The epoch being iterated and the batches handed out in it (skipped ones included)."""
        return {"epoch": self._epoch, "batches": self._handed_out}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Start the next iteration of the saved epoch after the batches it handed out."""
        self._resume = (state_dict.get("epoch"), int(state_dict.get("batches", 0)))
