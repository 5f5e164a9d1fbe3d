"""Self-paced sampling: samples drawn by difficulty, the hard share rising over training."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Optional

import numpy as np
import torch

from fwi_lightning.callbacks.curricula import KnobCurriculum
from fwi_lightning.errors import ConfigError, DataError

#: Where a sample's difficulty comes from.
SOURCES = ("loss", "family")


def hard_mask(scores: np.ndarray) -> np.ndarray:
    """The hard samples (or families): score strictly above the median of `scores`."""
    return scores > np.median(scores)


def shared_weights(hard: np.ndarray, base: np.ndarray, hard_share: float) -> np.ndarray:
    """Weights giving the hard entries `hard_share` of the total and the easy ones the
    rest, each group in proportion to `base`; all of one group: `base` unchanged."""
    if hard.all() or not hard.any():
        return base / base.sum()
    hard_base, easy_base = base * hard, base * ~hard
    return hard_share * hard_base / hard_base.sum() + (1.0 - hard_share) * easy_base / easy_base.sum()


class DifficultyCurriculum(KnobCurriculum):
    """Moderately hard samples first, the hard share rising on a schedule (self-paced learning).

    Hard means a difficulty score above the median; the schedule gives the share of
    hard samples among those drawn for training. Two sources of the score:

    * ``loss``: each training sample's most recent loss, the mean absolute velocity
      error on the [-1, 1] scale of a no-grad, eval-mode forward after its step (the
      last score per index is kept, and saved in checkpoints). The ``index_weights``
      knob then draws every training position from the samples scored so far, hard ones
      with the scheduled share, deterministic from (seed, epoch, position). Until a
      first sample is scored, the sampler's own indices are used. The pool repeats
      samples, so this suits ``cache: true`` or ``fresh_train: false``; with fresh
      samples it replays seen ones.
    * ``family``: a score per velocity family (``scores``, e.g. ``{flatvel: 0,
      curvevel: 1, curvefault: 2}``; default the position of the split's families, in
      the order of ``data.families``). The ``family_weights`` knob then gives the hard
      families (score above the median) the scheduled share, each group keeping its
      configured proportions.

    Logs ``train/curriculum/hard_share``.

    Args:
        schedule: the hard share in [0, 1], e.g. ``{kind: linear, start: 0.2, end: 0.8, length: 10}``.
        source: ``loss`` or ``family``.
        scores: family source only: ``{label: score}``.
        domain: see `KnobCurriculum`.

    Raises:
        ConfigError: a share outside [0, 1], an unknown source, scores with the loss
            source; at setup, a label the split does not draw or scores all equal.
    """

    name = "difficulty_curriculum"

    def __init__(self, schedule: Mapping[str, Any], source: Literal["loss", "family"] = "loss",
                 scores: Optional[Mapping[str, float]] = None, domain: Optional[str] = None):
        super().__init__(schedule, domain)
        for value in self.schedule.values():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"expected a hard share in [0, 1], got {value!r}", key="schedule")
        if source not in SOURCES:
            raise ConfigError(f"expected source: {' or '.join(SOURCES)}, got {source!r}", key="source")
        if scores is not None and source != "family":
            raise ConfigError("scores are family scores: set source: family, or drop them", key="scores")
        self.source, self.scores = source, None if scores is None else dict(scores)
        self.knob = "index_weights" if source == "loss" else "family_weights"
        self.losses: dict[int, float] = {}
        self._families: Optional[tuple[list[str], np.ndarray, np.ndarray]] = None

    # -- family source -------------------------------------------------------------

    def check(self, trainer: Any, pl_module: Any) -> None:
        module = self.datamodule(trainer)
        if self.source != "family":
            return
        base = module.knobs()["family_weights"]["train"]
        labels = list(base)
        scores = self.scores if self.scores is not None else {label: float(n) for n, label in enumerate(labels)}
        for label in scores:
            if label not in base:
                raise ConfigError(f"{self.name}: training draws no family '{label}'; its families: {', '.join(labels)}", key="scores")
        missing = [label for label in labels if label not in scores]
        if missing:
            raise ConfigError(f"{self.name}: no score for family '{missing[0]}'; give every training family one", key="scores")
        values = np.array([float(scores[label]) for label in labels])
        if not hard_mask(values).any():
            raise ConfigError(f"{self.name}: all family scores are equal, so no family is harder", key="scores")
        self._families = (labels, values, np.array([base[label] for label in labels]))

    def knob_value(self, trainer: Any, pl_module: Any, value: Any) -> Any:
        if self.source == "family":
            labels, scores, base = self._families
            return {"train": dict(zip(labels, shared_weights(hard_mask(scores), base, value).tolist()))}
        if not self.losses:
            return None
        indices = sorted(self.losses)
        losses = np.array([self.losses[i] for i in indices])
        weights = shared_weights(hard_mask(losses), np.ones(len(indices)), value)
        return dict(zip(indices, weights.tolist()))

    # -- loss source ---------------------------------------------------------------

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.source == "loss":
            self.record(pl_module, batch[self.domain] if self.domain is not None else batch)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def record(self, pl_module: Any, batch: Mapping[str, Any]) -> None:
        """Score each sample of a training batch: its mean absolute error on the [-1, 1] scale."""
        if batch.get("velocity") is None:
            raise DataError(f"{self.name}: source 'loss' needs labelled training batches (with 'velocity'); use source: family")
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            predicted = pl_module.problem.normalise_velocity(pl_module(batch["data"]))
            target = pl_module.problem.normalise_velocity(batch["velocity"])
            errors = (predicted - target).abs().flatten(1).mean(dim=1)
        pl_module.train(was_training)
        for index, error in zip(batch["index"].tolist(), errors.tolist()):
            self.losses[int(index)] = float(error)

    def _replays(self) -> bool:
        """The loss source never re-applies a restored position: its pool is in the data
        module's restored knobs, drawn from the scores of that moment."""
        return self._restored and self.source == "family"

    def logged(self, value: Any) -> dict[str, float]:
        return {"hard_share": value}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "losses": dict(self.losses)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.losses = {int(k): float(v) for k, v in state_dict.get("losses", {}).items()}
