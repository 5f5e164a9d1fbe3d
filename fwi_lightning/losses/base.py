"""The loss contract and the weighted combination a paradigm trains on.

A paradigm produces a mapping of named outputs (``velocity`` [B, 1, NZ, NX] in m/s
always; others such as ``interfaces``, ``critic_score`` or ``features`` when it
declares them in ``ParadigmBase.produces``). A loss is an ``nn.Module`` built as
``Loss(problem, **params)`` that declares the outputs it reads in ``reads``:

* a `VelocityLoss` reads ``velocity`` and is called ``loss(prediction, batch)`` with
  the prediction [B, 1, NZ, NX] in m/s;
* an `OutputLoss` reads any named outputs and is called ``loss(outputs, batch)`` with
  a mapping holding exactly the outputs it declares.

The batch is the data module's dict (``velocity`` [B, 1, NZ, NX] in m/s when labelled).
Supervised losses compare on OpenFWI's normalised scale ([-1, 1] over the velocity
range), so their size does not depend on the units.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from fwi_lightning import registry
from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.problem import Problem

#: The outputs every paradigm produces, and what a loss reads unless it declares otherwise.
VELOCITY_ONLY: tuple[str, ...] = ("velocity",)


class Loss(nn.Module):
    """Shared base of the two loss kinds: the injected problem, ``reads`` and the target.

    Attributes:
        reads: the names of the paradigm outputs this loss reads.
        reads_labels: whether it reads the batch's true ``velocity``; a loss that never
            does (a regulariser, a data misfit) sets False, and only such losses train
            paradigms that must not see labels (``unsupervised``).

    Args:
        problem: gives the velocity range used to normalise.
    """

    reads: tuple[str, ...] = VELOCITY_ONLY
    reads_labels: bool = True

    def __init__(self, problem: Problem):
        super().__init__()
        self.problem = problem

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


class VelocityLoss(Loss):
    """Base of the losses on a predicted velocity model (reads the ``velocity`` output)."""

    reads = VELOCITY_ONLY

    def forward(self, prediction: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Prediction [B, 1, NZ, NX] in m/s and the batch -> scalar loss."""
        raise NotImplementedError


class OutputLoss(Loss):
    """Base of the losses on any of a paradigm's named outputs.

    A subclass sets ``reads`` to the output names it needs, e.g.
    ``reads = ("velocity", "interfaces")``, and receives exactly those in ``forward``.
    """

    reads: tuple[str, ...] = ()

    def forward(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        """The outputs named in ``reads`` and the batch -> scalar loss."""
        raise NotImplementedError


def reads_of(loss: nn.Module) -> tuple[str, ...]:
    """The outputs a loss reads: its ``reads``, or ``velocity`` for a plain module."""
    return tuple(getattr(loss, "reads", VELOCITY_ONLY))


def evaluate(loss: nn.Module, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
    """One loss on a paradigm's named outputs: an `OutputLoss` gets the outputs it reads,
    any other loss the ``velocity`` [B, 1, NZ, NX] in m/s."""
    if isinstance(loss, OutputLoss):
        return loss({name: outputs[name] for name in loss.reads}, batch)
    return loss(outputs["velocity"], batch)


class WeightedLoss(nn.Module):
    """The weighted sum of a name-keyed mapping of losses, e.g. ``{l1: 1.0, ssim: 0.1}``.

    Args:
        problem: passed to every loss.
        spec: the YAML mapping (name -> weight, or name -> {weight: ..., **params}).
        key: its YAML key path relative to the model section, for error messages.
        produces: the output names of the paradigm; every loss must read only these.

    Raises:
        ConfigError: the mapping is empty, or a loss reads an output not produced.
    """

    def __init__(self, problem: Problem, spec: Mapping[str, Any] | None, *, key: str = "losses",
                 produces: Sequence[str] = VELOCITY_ONLY):
        super().__init__()
        built = registry.build_mapping("losses", spec, key=key, weighted=True, problem=problem)
        if not built:
            raise ConfigError("no loss left to train on; give at least one, e.g. {l1: 1.0}", key=key)
        for label, (loss, _) in built.items():
            missing = [name for name in reads_of(loss) if name not in produces]
            if missing:
                raise ConfigError(
                    f"loss '{label}' reads output '{missing[0]}', which this paradigm does not produce; "
                    f"it produces {', '.join(produces)}: drop the loss or choose a paradigm producing '{missing[0]}'",
                    key=f"{key}.{label}",
                )
        self.terms = nn.ModuleDict({label: loss for label, (loss, _) in built.items()})
        self.weights = {label: float(weight) for label, (_, weight) in built.items()}

    def forward(self, outputs: Mapping[str, torch.Tensor] | torch.Tensor,
                batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Named outputs (or a bare velocity [B, 1, NZ, NX] in m/s) and the batch ->
        (weighted total, {label: unweighted term})."""
        if isinstance(outputs, torch.Tensor):
            outputs = {"velocity": outputs}
        terms = {label: evaluate(loss, outputs, batch) for label, loss in self.terms.items()}
        total = sum(self.weights[label] * value for label, value in terms.items())
        return total, terms
