"""Supervised learning with a noise-consistency term: predictions should not move when noise is added."""

from __future__ import annotations

from typing import Any, Optional

import torch

from fwi_lightning.paradigms.supervised import Supervised
from fwi_lightning.physics.filters import add_noise
from fwi_lightning.problem import Problem
from fwi_lightning.specs import LossesSpec, NetworkSpec


class NoiseConsistency(Supervised):
    """Supervised training plus a consistency term: the model on noisy gathers should match itself on clean ones.

    Each training step also predicts from the batch's gathers with white noise added at
    ``snr_db`` and adds ``consistency`` x the mean absolute difference, on the [-1, 1]
    velocity scale, between that prediction and the (detached) clean one. Logged as
    ``train/consistency``. The noise of a sample is seeded by (global step, sample index),
    so a run is reproducible. Validation and test are the supervised ones.

    Named outputs: ``velocity`` (from the clean gathers) and ``noisy_velocity`` (from the
    noisy ones, [B, 1, NZ, NX] in m/s), so a loss may read the second, e.g.
    ``example_noisy_l1``.

    Args:
        problem: survey and scaling (injected).
        network, losses, optimizer, scheduler: as for ``supervised``.
        consistency: weight of the consistency term (0 gives plain supervised training).
        snr_db: signal-to-noise power ratio of the added noise, dB.
    """

    def __init__(self, problem: Problem | dict, network: NetworkSpec, losses: LossesSpec = None,
                 optimizer: Optional[dict] = None, scheduler: Optional[dict] = None,
                 consistency: float = 0.1, snr_db: float = 10.0):
        super().__init__(problem, network=network, losses=losses, optimizer=optimizer, scheduler=scheduler)
        self.hparams.update(consistency=consistency, snr_db=snr_db)  # saved in checkpoints with the rest

    produces = ("velocity", "noisy_velocity")

    def outputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Velocity [B, 1, NZ, NX] in m/s from the clean and from the noisy gathers."""
        seeds = [int(index) * 100_003 + self.global_step for index in batch["index"]]
        return {"velocity": self(batch["data"]),
                "noisy_velocity": self(add_noise(batch["data"], self.hparams.snr_db, seeds))}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Weighted losses + consistency x |v(noisy) - v(clean)| on the [-1, 1] scale."""
        outputs = self.outputs(batch)
        total, terms = self.criterion(outputs, batch)
        scale = self.problem.normalise_velocity
        terms["consistency"] = (scale(outputs["noisy_velocity"]) - scale(outputs["velocity"]).detach()).abs().mean()
        total = total + self.hparams.consistency * terms["consistency"]
        self.log_losses("train", total, terms, len(outputs["velocity"]))
        return total
