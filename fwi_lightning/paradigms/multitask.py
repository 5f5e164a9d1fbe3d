"""Multi-task learning (DD-Net style): one shared encoder, one decoder head per task, weighted task losses."""

from __future__ import annotations

import copy
import inspect
from typing import Any, Mapping, Optional

import torch
from torch import nn

from fwi_lightning import registry
from fwi_lightning.errors import ConfigError, suggestion
from fwi_lightning.losses.tasks import TASKS, Task
from fwi_lightning.losses.weighting import build_weighting, positive_weight
from fwi_lightning.networks.base import Features, VelocityNetwork
from fwi_lightning.paradigms.base import OptimizerGroup, ParadigmBase
from fwi_lightning.precision import full_precision
from fwi_lightning.problem import Problem
from fwi_lightning.specs import LossesSpec, NetworkSpec

#: The heads: ``velocity`` (trained on ``losses``) and the auxiliary tasks of `TASKS`.
HEADS: tuple[str, ...] = ("velocity", *TASKS)
#: Heads when the YAML names none: velocity and layer interfaces, equally weighted (DD-Net).
DEFAULT_HEADS = {"velocity": 1.0, "interfaces": 1.0}


class MultiTask(ParadigmBase):
    """A shared encoder with several decoder heads, each with its own target and loss.

    The encoder is the ``network``'s `encode`; the ``velocity`` head is its `decode`.
    Every other head is the `decode` of a second instance of the same network (same
    architecture and settings; the parts only its `encode` uses are dropped), reading the
    shared features. Targets are derived from the velocity label on the fly
    (`fwi_lightning.losses.tasks`). The paradigm produces one named output per head:
    ``velocity`` [B, 1, NZ, NX] m/s, ``interfaces`` boundary probability in [0, 1],
    ``background`` smooth velocity in m/s.

    The task losses are combined by the ``weighting`` (`fwi_lightning.losses.weighting`):
    ``fixed``, ``uncertainty`` (Kendall 2018) or ``gradnorm`` (Chen 2018). Learned
    weights live in their own parameter group (no weight decay, lr ``weighting_lr`` or
    the optimiser's).

    Logged in training: ``train/loss`` (the weighted task loss), ``train/<term>`` (each
    velocity loss, unweighted), ``train/<head>_loss`` and ``train/<head>_weight`` for
    every head, and ``train/gradnorm_loss`` under ``gradnorm``. Validation and test are
    the shared ones on the velocity head and ``losses``.

    Args:
        problem: survey and scaling (injected).
        network: the backbone giving the encoder and the decoders; it must implement
            `encode` and `decode` of `VelocityNetwork`.
        heads: ``{head: weight}`` or ``{head: {weight: w, **task params}}``; heads are
            ``velocity`` (required), ``interfaces`` (``threshold_mps``) and
            ``background`` (``sigma_m``). Default ``{velocity: 1, interfaces: 1}``.
        weighting: ``fixed`` (default), ``uncertainty`` or ``gradnorm`` (needs two heads or more).
        alpha: GradNorm's asymmetry (>= 0), default 1.5.
        weighting_lr: learning rate of learned task weights; default the optimiser's.
        losses: the velocity head's name-keyed weighted losses; default ``{l1: 1.0}``.
        optimizer: ``{name, **kwargs}``; default AdamW, lr 1e-4, weight decay 1e-4.
        scheduler: ``{name, interval, monitor, **kwargs}``, or null.

    Raises:
        ConfigError: unknown head or weighting, a weight that is not a positive number,
            no ``velocity`` head, ``gradnorm`` with one head, a network without an
            encoder/decoder split.
    """

    def __init__(self, problem: Problem | dict, network: NetworkSpec, heads: Optional[dict] = None,
                 weighting: str = "fixed", alpha: float = 1.5, weighting_lr: Optional[float] = None,
                 losses: LossesSpec = None, optimizer: Optional[dict] = None, scheduler: Optional[dict] = None):
        super().__init__(problem, network=network, heads=heads or dict(DEFAULT_HEADS), weighting=weighting, alpha=alpha,
                         weighting_lr=weighting_lr, losses=losses, optimizer=optimizer, scheduler=scheduler)

    def configure_models(self) -> None:
        """Build the encoder network, the auxiliary decoders and tasks, and the weighting."""
        hparams = self.hparams
        if not hparams.get("network"):
            raise ConfigError("the multitask paradigm needs a network, e.g. {name: inversionnet}", key="network")
        heads = parse_heads(hparams["heads"])
        self.produces = tuple(heads)
        alpha = hparams["alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
            raise ConfigError(f"alpha must be a number >= 0, got {alpha!r}; e.g. 1.5 (Chen et al.)", key="alpha")
        if hparams.get("weighting_lr") is not None:
            positive_weight(hparams["weighting_lr"], "weighting_lr")
        self.network = registry.build("networks", hparams["network"], key="network", problem=self.problem)
        require_split(self.network, hparams["network"])
        auxiliary = [name for name in heads if name != "velocity"]
        self.tasks = nn.ModuleDict({name: build_task(name, heads[name][1], self.problem) for name in auxiliary})
        self.decoders = nn.ModuleDict({name: self._decoder_copy() for name in auxiliary})
        self.weighting = build_weighting(hparams["weighting"], {name: weight for name, (weight, _) in heads.items()},
                                         alpha=float(alpha))

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        """Data [B, S, T, R] raw amplitudes -> velocity [B, 1, NZ, NX] in m/s (the velocity head)."""
        return self.network(data)

    def outputs(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """One output per head (see the class) for a batch's data."""
        return self.heads(batch["data"])[1]

    def heads(self, data: torch.Tensor) -> tuple[Features, dict[str, torch.Tensor]]:
        """Data [B, S, T, R] raw amplitudes -> (shared features, {head: output})."""
        features = self.network.encode(self.problem.normalise_data(data))
        outputs = {"velocity": self.problem.denormalise_velocity(full_precision(self.network.decode(features)))}
        for name, decoder in self.decoders.items():
            outputs[name] = self.tasks[name].output(full_precision(decoder.decode(features)))
        return features, outputs

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Every head's loss, combined by the weighting; logs the total, each term, each task's loss and weight."""
        features, outputs = self.heads(batch["data"])
        velocity_loss, terms = self.criterion(outputs, batch)
        losses = {"velocity": velocity_loss, **{name: task(outputs[name], batch) for name, task in self.tasks.items()}}
        combined = self.weighting(losses, features)
        size = len(batch["data"])
        self.log_losses("train", combined.weighted, terms, size)
        logged = {f"train/{name}_loss": loss.detach() for name, loss in losses.items()}
        logged.update({f"train/{name}_weight": weight for name, weight in combined.weights.items()})
        logged.update({f"train/{name}": value for name, value in combined.extra.items()})
        self.log_dict(logged, on_step=False, on_epoch=True, batch_size=size)
        return combined.loss

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        """One optimiser, ``model``: the networks in one parameter group, the learned task
        weights (if any) in another without weight decay, at ``weighting_lr`` when set."""
        group = super().optimizer_groups()["model"]
        learned = [p for p in self.weighting.parameters() if p.requires_grad]
        if not learned:
            return {"model": group}
        ids = {id(p) for p in learned}
        weights_group = {"params": learned, "weight_decay": 0.0}
        if self.hparams.get("weighting_lr") is not None:
            weights_group["lr"] = float(self.hparams["weighting_lr"])
        group.parameters = [{"params": [p for p in group.parameters if id(p) not in ids]}, weights_group]
        return {"model": group}

    def _decoder_copy(self) -> VelocityNetwork:
        """A second instance of the network with the parts its `decode` does not use removed.

        Found by one probe in eval mode (no running statistics change): the shared encoder's
        features of zero data go through the copy's `decode`; direct sub-modules and
        parameters of the copy that get no gradient are dropped.
        """
        copy_ = registry.build("networks", copy.deepcopy(dict(self.hparams["network"])), key="network", problem=self.problem)
        modes = (self.network.training, copy_.training)
        self.network.eval()
        copy_.eval()
        with torch.no_grad():
            features = self.network.encode(torch.zeros(2, *self.problem.data_shape))
        with torch.enable_grad():
            copy_.decode(features).sum().backward()
        for name, child in list(copy_.named_children()):
            parameters = list(child.parameters())
            if parameters and all(p.grad is None for p in parameters):
                setattr(copy_, name, nn.Identity())
        for name, parameter in list(copy_.named_parameters(recurse=False)):
            if parameter.grad is None:
                copy_.register_parameter(name, None)
        copy_.zero_grad(set_to_none=True)
        self.network.train(modes[0])
        copy_.train(modes[1])
        return copy_


def parse_heads(spec: Any) -> dict[str, tuple[float, dict[str, Any]]]:
    """The ``heads`` mapping -> {head: (weight, task params)}, ``velocity`` first.

    Raises:
        ConfigError: not a mapping, an unknown head, a weight that is not a positive
            number, no ``velocity`` head, parameters given to ``velocity``.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"heads must be a mapping of head -> weight, got {spec!r}; "
                          "e.g. {velocity: 1.0, interfaces: 0.5}", key="heads")
    heads: dict[str, tuple[float, dict[str, Any]]] = {}
    for name, value in spec.items():
        if value is None:
            continue
        if name not in HEADS:
            raise ConfigError(f"unknown head '{name}'{suggestion(str(name), HEADS)}; choose from {', '.join(HEADS)}",
                              key=f"heads.{name}")
        params = dict(value) if isinstance(value, Mapping) else {"weight": value}
        weight = positive_weight(params.pop("weight", 1.0), f"heads.{name}.weight")
        if name == "velocity" and params:
            raise ConfigError(f"the velocity head takes only a weight (its losses are 'losses'), got '{next(iter(params))}'",
                              key=f"heads.velocity.{next(iter(params))}")
        heads[name] = (weight, params)
    if "velocity" not in heads:
        raise ConfigError("heads must include velocity (the prediction every paradigm makes); e.g. {velocity: 1.0, "
                          "interfaces: 0.5}", key="heads.velocity")
    return {"velocity": heads.pop("velocity"), **heads}


def build_task(name: str, params: Mapping[str, Any], problem: Problem) -> Task:
    """The auxiliary task `name` of `TASKS` built with its YAML `params`; errors are keyed ``heads.<name>.<param>``.

    Raises:
        ConfigError: an unknown parameter, or one the task rejects.
    """
    cls = TASKS[name]
    accepted = [p for p in inspect.signature(cls).parameters if p != "problem"]
    with registry.located(f"heads.{name}"):
        for param in params:
            if param not in accepted:
                raise ConfigError(f"head '{name}' has no parameter '{param}'{suggestion(param, accepted)}; it takes "
                                  f"weight{''.join(', ' + a for a in accepted)}", key=param)
        return cls(problem, **params)


def require_split(network: Any, spec: Any) -> None:
    """Raise a `ConfigError` unless `network` implements `encode` and `decode` of `VelocityNetwork`."""
    name = spec.get("name") if isinstance(spec, Mapping) else spec
    split = isinstance(network, VelocityNetwork)
    missing = [method for method in ("encode", "decode")
               if not split or getattr(type(network), method) is getattr(VelocityNetwork, method)]
    if missing:
        raise ConfigError(f"network '{name}' has no encoder/decoder split (it does not implement {' and '.join(missing)} "
                          "of fwi_lightning.networks.VelocityNetwork), so multitask cannot share its encoder; choose a "
                          "network that does, e.g. inversionnet or unet", key="network")
