"""Unsupervised data-to-velocity learning (UPFWI): a network trained on the physics loss alone.

The network maps data to velocity as in `Supervised`; training re-simulates the
prediction and fits the observed data (`fwi_lightning.losses.physics`), optionally with
label-free regularisers (``tv``). No training loss may read the velocity labels, so the
paradigm learns from field-like data that has none; validation and test still report
velocity metrics when their batches are labelled (shared in `ParadigmBase`).
"""

from __future__ import annotations

from typing import Optional

from fwi_lightning.errors import ConfigError
from fwi_lightning.losses.base import WeightedLoss
from fwi_lightning.paradigms.supervised import Supervised
from fwi_lightning.problem import Problem
from fwi_lightning.specs import LossesSpec, NetworkSpec

#: The loss an unsupervised paradigm trains on when the YAML names none.
DEFAULT_LOSSES = {"physics": 1.0}


class Unsupervised(Supervised):
    """Network + physics loss, never reading velocity labels in training (UPFWI).

    Args:
        problem: survey, scaling and forward operator (injected).
        network: the backbone, ``{name: inversionnet, **params}``.
        losses: name-keyed weighted label-free losses; default ``{physics: 1.0}``, e.g.
            ``{physics: {weight: 1.0, misfit: correlation, shots: 2}, tv: 0.01}``.
        optimizer: ``{name, **kwargs}`` of a torch.optim class; default AdamW, lr 1e-4,
            weight decay 1e-4.
        scheduler: ``{name, interval, monitor, **kwargs}`` of a torch.optim.lr_scheduler
            class, or null for a constant learning rate.

    Raises:
        ConfigError: a loss that reads the velocity labels (key ``losses.<label>``).
    """

    def __init__(self, problem: Problem | dict, network: NetworkSpec, losses: LossesSpec = None,
                 optimizer: Optional[dict] = None, scheduler: Optional[dict] = None):
        super().__init__(problem, network=network, losses=losses, optimizer=optimizer, scheduler=scheduler)

    def configure_losses(self) -> None:
        """Build ``self.criterion`` from ``hparams['losses']`` (default physics alone), refusing label readers."""
        self.criterion = WeightedLoss(self.problem, self.hparams.get("losses") or DEFAULT_LOSSES, key="losses",
                                      produces=self.produces)
        for label, loss in self.criterion.terms.items():
            if getattr(loss, "reads_labels", True):
                raise ConfigError(
                    f"loss '{label}' reads the velocity labels, which unsupervised training never uses; train on "
                    "label-free losses (physics, tv) or use the supervised paradigm",
                    key=f"losses.{label}",
                )
