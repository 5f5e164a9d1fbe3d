"""A loss on a named output: the prediction from noisy gathers should still match the truth."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from fwi_lightning.losses.base import OutputLoss


class NoisyL1(OutputLoss):
    """Mean |v(noisy gathers) - v_true| on the [-1, 1] scale: accuracy that survives noise.

    Reads the ``noisy_velocity`` output (the velocity predicted from gathers with noise
    added), which ``example_noise_consistency`` produces; in any paradigm that does not,
    naming this loss is a one-line configuration error. Needs labelled batches.

    Args:
        problem: velocity range (injected).
    """

    reads = ("noisy_velocity",)

    def forward(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        """``outputs['noisy_velocity']`` [B, 1, NZ, NX] in m/s -> scalar mean absolute error."""
        predicted = self.problem.normalise_velocity(outputs["noisy_velocity"])
        return F.l1_loss(predicted, self.normalised_target(batch))
