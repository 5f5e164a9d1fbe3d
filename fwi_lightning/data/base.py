"""What every built-in data module shares: one `dataloader(split)` behind Lightning's four hooks."""

from __future__ import annotations

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader


class SplitDataModule(LightningDataModule):
    """A data module whose loaders differ only by split.

    A subclass implements ``dataloader(split)`` for ``"train"``, ``"val"`` and ``"test"``
    and a ``problem`` property; prediction runs over the test split.
    """

    def dataloader(self, split: str) -> DataLoader:
        raise NotImplementedError

    def ranks(self) -> tuple[int, int]:
        """(global rank, world size) of this process; (0, 1) before a trainer is attached."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train")

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.dataloader("test")
