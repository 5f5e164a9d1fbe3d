"""What the built-in data modules share: one `dataloader(split)` behind Lightning's four
hooks (`SplitDataModule`) and, for those that simulate, the operator's runtime knobs and
their checkpoint state (`OperatorDataModule`)."""

from __future__ import annotations

from typing import Any, Optional

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from fwi_lightning.errors import ConfigError, suggestion
from fwi_lightning.physics.operator import PROCESSING


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


class OperatorDataModule(SplitDataModule):
    """A data module that simulates with a live `ForwardOperator` (``self.operator``).

    It offers the operator's processing settings as runtime knobs (`knobs`, `set_knob`)
    and saves the data range (``self._data_range``) and the knob values with each
    checkpoint, so a resumed run normalises and processes as before. A subclass with
    knobs of its own extends `knobs` and handles them in `set_knob` before calling this one.
    """

    operator: Any
    _data_range: Optional[tuple[float, float]] = None

    def knobs(self) -> dict[str, Any]:
        """Current value of every runtime knob, by name: the operator's processing settings."""
        return {name: value for name, value in self.operator.settings().items() if name in PROCESSING}

    def set_knob(self, name: str, value: Any) -> None:
        """Set a processing knob; it acts from the next batch.

        Raises:
            ConfigError: an unknown knob (naming the knobs there are) or an invalid value.
        """
        if name not in PROCESSING:
            known = list(self.knobs())
            raise ConfigError(f"unknown knob '{name}'{suggestion(str(name), known)}; knobs: {', '.join(known)}", key=str(name))
        self.operator.configure(**{name: value})

    def state_dict(self) -> dict[str, Any]:
        """The data range and the knob values."""
        return {"data_range": list(self.problem.data_range), "knobs": self.knobs()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the data range and knob values saved by `state_dict`."""
        if "data_range" in state_dict:
            self._data_range = tuple(float(v) for v in state_dict["data_range"])
        for name, value in (state_dict.get("knobs") or {}).items():
            self.set_knob(name, value)
