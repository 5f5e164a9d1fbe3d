"""Deep-prior FWI: a generator network outputs the velocity; its weights are fit to one survey."""

from __future__ import annotations

from typing import Literal, Optional

import torch

from fwi_lightning import registry
from fwi_lightning.errors import ConfigError
from fwi_lightning.networks.base import VelocityNetwork
from fwi_lightning.paradigms.survey_fit import SurveyFit
from fwi_lightning.precision import full_precision
from fwi_lightning.problem import Problem
from fwi_lightning.specs import LossesSpec, NetworkSpec

#: The generator when the YAML names none.
DEFAULT_GENERATOR = {"name": "generator"}
#: The optimiser when the YAML names none (the network's weights, not velocities).
DEFAULT_PRIOR_OPTIMIZER = {"name": "adam", "lr": 1.0e-3}


class DeepPrior(SurveyFit):
    """A registered network's decoder from a fixed input outputs the velocity, fit to one survey by the physics loss.

    The velocity is ``decode(z)`` of the network (`VelocityNetwork.decode`, tanh into the
    velocity range like every network) for a fixed input z, kept in the checkpoint:

    * ``input: latent``: Gaussian noise shaped like the network's `encode` output, drawn
      when the model is built (from the experiment seed, which the runner sets first);
    * ``input: initial``: ``encode`` of the gathers the initial model simulates (the
      network then starts from a representation of the initial model).

    With `pretrain_steps` > 0 the weights are first fit (Adam, `pretrain_lr`) to
    reproduce the initial model (mean squared error on the [-1, 1] scale) before the
    physics fit. The network's shape reparameterises the model: its convolutions favour
    smooth, coherent structures (the deep image prior).

    Batch normalisation stays in evaluation mode (its running statistics fixed at
    their initial zero mean and unit variance: a learned affine map). With one fixed
    input, batch statistics are that input's own (undefined on a 1 x 1 map) and would
    make the trained model differ from the evaluated one.

    Args:
        problem: survey and scaling (injected).
        network: the generator, default ``{name: generator}``; any registered network works.
        losses: weighted losses, default ``{physics: 1.0}``.
        optimizer: ``{name, **kwargs}``, default Adam lr 1e-3 on the network's weights.
        scheduler: ``{name, interval, monitor, **kwargs}`` or null.
        initial: the initial model (`fwi_lightning.paradigms.initial`).
        input: ``latent`` or ``initial`` (see above).
        pretrain_steps: Adam steps reproducing the initial model before fitting (0: none).
        pretrain_lr: their learning rate.
        figure_every_n_steps: write a model figure every N iterations (0: none).

    Raises:
        ConfigError: a network that is not a `VelocityNetwork`, an unknown input, a
            negative number of pre-training steps.
    """

    def __init__(self, problem: Problem | dict, network: NetworkSpec = None, losses: LossesSpec = None,
                 optimizer: Optional[dict] = None, scheduler: Optional[dict] = None, initial: Optional[dict] = None,
                 input: Literal["latent", "initial"] = "latent", pretrain_steps: int = 0, pretrain_lr: float = 1.0e-3,
                 figure_every_n_steps: int = 0):
        super().__init__(problem, network=network or dict(DEFAULT_GENERATOR), losses=losses,
                         optimizer=optimizer or dict(DEFAULT_PRIOR_OPTIMIZER), scheduler=scheduler, initial=initial,
                         input=input, pretrain_steps=pretrain_steps, pretrain_lr=pretrain_lr,
                         figure_every_n_steps=figure_every_n_steps)

    def configure_models(self) -> None:
        """The network and its fixed input z (buffers ``latent_<k>``, one per feature tensor of `encode`)."""
        super().configure_models()
        if self.hparams["input"] not in ("latent", "initial"):
            raise ConfigError(f"expected latent or initial, got {self.hparams['input']!r}", key="input")
        steps = self.hparams["pretrain_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ConfigError(f"expected a whole number >= 0, got {steps!r}", key="pretrain_steps")
        self.network = registry.build("networks", self.hparams["network"], key="network", problem=self.problem)
        if not isinstance(self.network, VelocityNetwork):
            raise ConfigError(f"the deep prior decodes a fixed input with a VelocityNetwork's decode; "
                              f"{type(self.network).__name__} is not one", key="network.name")
        self._freeze_batch_norm()
        with torch.no_grad():
            shapes = self._features(torch.zeros(1, *self.problem.data_shape))
        self.latent_count = len(shapes)
        for k, features in enumerate(shapes):
            self.register_buffer(f"latent_{k}", torch.randn_like(features))

    def train(self, mode: bool = True) -> "DeepPrior":
        """Set training mode, keeping every batch-norm layer in evaluation mode (class docstring)."""
        super().train(mode)
        self._freeze_batch_norm()
        return self

    def _freeze_batch_norm(self) -> None:
        for module in self.network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()

    def _features(self, normalised_data: torch.Tensor) -> list[torch.Tensor]:
        features = self.network.encode(normalised_data)
        return list(features) if isinstance(features, (list, tuple)) else [features]

    def latent(self) -> torch.Tensor | list[torch.Tensor]:
        """The fixed input z in the form `decode` takes (a tensor, or a list for skip connections)."""
        tensors = [getattr(self, f"latent_{k}") for k in range(self.latent_count)]
        return tensors[0] if self.latent_count == 1 else tensors

    def current_velocity(self) -> torch.Tensor:
        return self.problem.denormalise_velocity(full_precision(self.network.decode(self.latent())))

    def start_from(self, velocity: torch.Tensor) -> None:
        """Set z from the initial model (``input: initial``), then pre-train to reproduce it."""
        if self.hparams["input"] == "initial":
            with torch.no_grad():
                data = self.problem.forward_operator()(velocity)
                for k, features in enumerate(self._features(self.problem.normalise_data(data))):
                    getattr(self, f"latent_{k}").copy_(features)
        steps = self.hparams["pretrain_steps"]
        if not steps:
            return
        target = self.problem.normalise_velocity(velocity)
        optimizer = torch.optim.Adam(self.network.parameters(), lr=float(self.hparams["pretrain_lr"]))
        for _ in range(steps):
            optimizer.zero_grad()
            loss = (self.problem.normalise_velocity(self.current_velocity()) - target).pow(2).mean()
            loss.backward()
            optimizer.step()
        optimizer.zero_grad()
