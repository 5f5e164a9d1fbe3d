"""Exact data augmentation of simulated batches: the left-right mirror.

Mirroring a velocity model left-right (x -> (NX - 1) * dx - x) mirrors its gathers: when
the acquisition is itself mirror-symmetric (shot s at column c has a partner shot S-1-s at
column NX-1-c, receivers likewise), the mirrored model's gathers are the original's with
the shot order and the receiver order reversed, exactly (the wave equation, the stencil
and the absorbing boundary are all symmetric under the reflection). So a mirrored sample
is a new, correctly labelled sample that costs no simulation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from fwi_lightning.data.families.base import sample_rng
from fwi_lightning.errors import ConfigError
from fwi_lightning.physics.survey import Survey


def check_mirror_symmetric(survey: Survey) -> None:
    """Refuse a survey whose sources or receivers are not mirror-symmetric about the grid's centre.

    Raises:
        ConfigError: naming the first column whose mirror image holds no source (receiver).
    """
    last = survey.nx - 1
    for kind, columns in (("source", survey.source_columns), ("receiver", survey.receiver_columns)):
        present = set(columns)
        lonely = [c for c in columns if last - c not in present]
        if lonely:
            raise ConfigError(
                f"the mirror augmentation needs a mirror-symmetric acquisition, but the {kind} columns {list(columns)} "
                f"are not (column {lonely[0]} mirrors to {last - lonely[0]}, where no {kind} is); "
                f"give symmetric survey.{kind}_x positions or set mirror: 0", key="mirror")


def mirror_flags(seed: int, indices: Sequence[int], epoch: int, chance: float) -> list[bool]:
    """Which samples to mirror this epoch: each with probability `chance`, from (seed, index, epoch) alone.

    So a sample's mirroring does not depend on its batch, worker or rank, and a cached
    sample is mirrored in some epochs and not in others.
    """
    return [bool(sample_rng(seed, "train", int(i), f"mirror-epoch{epoch}").random() < chance) for i in indices]


def mirror(velocity: torch.Tensor, data: torch.Tensor, flags: Sequence[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror the flagged samples of a batch left-right.

    Args:
        velocity: [B, C, NZ, NX] (m/s, or any per-cell quantity).
        data: [B, S, T, R] gathers of a mirror-symmetric survey.
        flags: [B] which samples to mirror.

    Returns:
        (velocity, data): new tensors, the flagged samples with x reversed in the model and
        the shot and receiver orders reversed in the gathers, the others unchanged.
    """
    chosen = torch.as_tensor(np.asarray(flags, dtype=bool), device=velocity.device)
    velocity = torch.where(chosen.reshape(-1, 1, 1, 1), velocity.flip(-1), velocity)
    data = torch.where(chosen.reshape(-1, 1, 1, 1), data.flip(1, 3), data)
    return velocity, data
