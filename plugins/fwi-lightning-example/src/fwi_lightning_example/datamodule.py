"""Dead traces: any registered data module, with some receivers recording nothing (as in field data)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningDataModule

from fwi_lightning import registry
from fwi_lightning.data.families.base import sample_rng
from fwi_lightning.errors import ConfigError
from fwi_lightning.specs import DataModuleSpec


class DeadTraces(LightningDataModule):
    """Wraps any data module (``base``) and zeroes a random ``fraction`` of receivers in every gather.

    The dead receivers of a sample are the same in all its shots (a dead channel) and
    are drawn from (seed, split, sample index) alone, so every epoch, worker and device
    sees the same ones. Batches, the `Problem` and checkpoint state are the base's;
    the traces die in ``on_after_batch_transfer``, on the device, after the base's own.

    Args:
        seed: the experiment seed (injected; passed on to the base).
        base: the wrapped data module's section, ``{name: simulated, ...}``.
        fraction: share of receivers to zero, in [0, 1).

    Raises:
        ConfigError: no base section, or a fraction outside [0, 1).
    """

    def __init__(self, seed: int = 0, base: DataModuleSpec = None, fraction: float = 0.1):
        super().__init__()
        if not base:
            raise ConfigError("name the wrapped data module, e.g. base: {name: simulated, ...}", key="base")
        if not 0 <= fraction < 1:
            raise ConfigError(f"expected a fraction in [0, 1), got {fraction}", key="fraction")
        self.seed, self.fraction = int(seed), float(fraction)
        self.base = registry.build("datamodules", base, key="base", seed=seed)

    @property
    def problem(self):
        """The base's `Problem` (dead traces change neither shapes nor scaling)."""
        return self.base.problem

    def prepare_data(self) -> None:
        self.base.prepare_data()

    def setup(self, stage: str) -> None:
        self.base.trainer = self.trainer
        self.base.setup(stage)

    def train_dataloader(self):
        return self.base.train_dataloader()

    def val_dataloader(self):
        return self.base.val_dataloader()

    def test_dataloader(self):
        return self.base.test_dataloader()

    def predict_dataloader(self):
        return self.base.predict_dataloader()

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """The base's batch with the dead receivers of each sample zeroed in ``data`` [B, S, T, R]."""
        batch = dict(self.base.on_after_batch_transfer(batch, dataloader_idx))
        receivers = batch["data"].shape[-1]
        dead = round(self.fraction * receivers)
        alive = torch.ones(batch["data"].shape[0], 1, 1, receivers, dtype=batch["data"].dtype)
        split = self._split()
        for b, index in enumerate(batch["index"].tolist()):
            alive[b, 0, 0, sample_rng(self.seed, split, index, "dead_traces").choice(receivers, dead, replace=False)] = 0
        batch["data"] = batch["data"] * alive.to(batch["data"].device)
        return batch

    def _split(self) -> str:
        """The split being read, from the trainer's state ("train" outside a trainer)."""
        trainer = self.trainer
        if trainer is None or trainer.training:
            return "train"
        return "test" if trainer.testing or trainer.predicting else "val"

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
