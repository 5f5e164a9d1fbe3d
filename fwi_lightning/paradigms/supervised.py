"""Supervised end-to-end learning: one network maps data to velocity, trained on labels."""

from __future__ import annotations

from typing import Any, Optional

import torch

from fwi_lightning import registry
from fwi_lightning.errors import ConfigError
from fwi_lightning.paradigms.base import ParadigmBase
from fwi_lightning.problem import Problem
from fwi_lightning.specs import LossesSpec, NetworkSpec


class Supervised(ParadigmBase):
    """Supervised data-to-velocity learning (OpenFWI's InversionNet training): network + weighted losses.

    Args:
        problem: survey and scaling (injected).
        network: the backbone, ``{name: inversionnet, **params}``.
        losses: name-keyed weighted losses on velocity; default ``{l1: 1.0}``.
        optimizer: ``{name, **kwargs}`` of a torch.optim class; default AdamW, lr 1e-4,
            weight decay 1e-4 (OpenFWI).
        scheduler: ``{name, interval, monitor, **kwargs}`` of a torch.optim.lr_scheduler
            class, or null for a constant learning rate.
    """

    def __init__(self, problem: Problem | dict, network: NetworkSpec, losses: LossesSpec = None,
                 optimizer: Optional[dict] = None, scheduler: Optional[dict] = None):
        super().__init__(problem, network=network, losses=losses, optimizer=optimizer, scheduler=scheduler)

    def configure_models(self) -> None:
        """Build the backbone from ``hparams['network']``."""
        if not self.hparams.get("network"):
            raise ConfigError("the supervised paradigm needs a network, e.g. {name: inversionnet}", key="network")
        self.network = registry.build("networks", self.hparams["network"], key="network", problem=self.problem)

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        """Data [B, S, T, R] raw amplitudes -> velocity [B, 1, NZ, NX] in m/s."""
        return self.network(data)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Weighted loss of the named outputs of a labelled batch; logs the total and every term."""
        total, terms = self.criterion(self.outputs(batch), batch)
        self.log_losses("train", total, terms, len(batch["data"]))
        return total
