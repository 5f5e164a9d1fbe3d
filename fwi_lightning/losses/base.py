"""The loss contract and the weighted combination a paradigm trains on.

A loss is an ``nn.Module`` built as ``Loss(problem, **params)`` and called as
``loss(prediction, batch) -> scalar`` with the prediction [B, 1, NZ, NX] in m/s and
the batch dict of the data module (``velocity`` [B, 1, NZ, NX] in m/s when labelled).
Supervised losses compare on OpenFWI's normalised scale ([-1, 1] over the velocity
range), so their size does not depend on the units.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from fwi_lightning import registry
from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.problem import Problem


class VelocityLoss(nn.Module):
    """Base of the losses on a predicted velocity model.

    Args:
        problem: gives the velocity range used to normalise.
    """

    def __init__(self, problem: Problem):
        super().__init__()
        self.problem = problem

    def forward(self, prediction: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Prediction [B, 1, NZ, NX] in m/s and the batch -> scalar loss."""
        raise NotImplementedError

    def normalised_target(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The batch's true velocity on the [-1, 1] scale: [B, 1, NZ, NX].

        Raises:
            DataError: the batch carries no ``velocity`` (unlabelled data).
        """
        if batch.get("velocity") is None:
            raise DataError(
                f"loss {type(self).__name__} needs the true velocity but the batch has no 'velocity' "
                "(unlabelled data); drop this loss or train on labelled data"
            )
        return self.problem.normalise_velocity(batch["velocity"])


class WeightedLoss(nn.Module):
    """The weighted sum of a name-keyed mapping of losses, e.g. ``{l1: 1.0, ssim: 0.1}``.

    Args:
        problem: passed to every loss.
        spec: the YAML mapping (name -> weight, or name -> {weight: ..., **params}).
        key: its YAML key path, for error messages.

    Raises:
        ConfigError: the mapping is empty.
    """

    def __init__(self, problem: Problem, spec: Mapping[str, Any] | None, *, key: str = "model.losses"):
        super().__init__()
        built = registry.build_mapping("losses", spec, key=key, weighted=True, problem=problem)
        if not built:
            raise ConfigError("no loss left to train on; give at least one, e.g. {l1: 1.0}", key=key)
        self.terms = nn.ModuleDict({label: loss for label, (loss, _) in built.items()})
        self.weights = {label: float(weight) for label, (_, weight) in built.items()}

    def forward(self, prediction: torch.Tensor, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Prediction [B, 1, NZ, NX] in m/s and the batch -> (weighted total, {label: unweighted term})."""
        terms = {label: loss(prediction, batch) for label, loss in self.terms.items()}
        total = sum(self.weights[label] * value for label, value in terms.items())
        return total, terms
