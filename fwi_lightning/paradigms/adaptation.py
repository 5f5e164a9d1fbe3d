"""Unsupervised domain adaptation: a labelled source stream and an unlabelled target stream in every step.

Trains on the ``source_target`` data module (`fwi_lightning.data.combined`), whose
training batches are ``{"source": batch, "target": batch}``. Every step:

* the source batch trains the network on its labels with ``losses`` (as `Supervised`);
* the target batch, whose labels never reach a training loss (the data module drops
  them and this paradigm strips any left), adds the domain terms of ``methods``,
  each with its weight:

  - ``dann``: a domain classifier on the encoder's per-sample features
    (`VelocityNetwork.embedding` of `encode`) behind a gradient-reversal layer whose
    scale ramps up as ``2 / (1 + exp(-gamma p)) - 1`` over the first ``ramp_steps``
    optimiser steps (default: the whole training);
  - ``mmd`` (multi-kernel) and ``coral`` between source and target features;
  - ``physics``: the target prediction re-simulated with the target's forward
    operator must match the observed target data (the `physics` loss, so every
    parameter of it applies: ``misfit``, ``shots``, ...).

  The domain terms live in `fwi_lightning.losses.domain`.

Validation and test read the data module's evaluation streams (``eval_domains``, the
target first) and log velocity metrics per domain, ``val/<domain>/<metric>`` and
``test/<domain>/<metric>`` (``test/target/mae_mps``, ``test/target/ssim``, ...), when
the batches carry labels; the target's labels serve these metrics only. ``val/loss``,
which selects the best checkpoint, never reads target labels either: it is the
source's validation loss when a source stream is evaluated, else the target's relative
data misfit. ``test/target/data_misfit`` is always logged.

With ``methods: {}`` the paradigm trains on the source alone with the same data,
network and metrics: the source-only baseline.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import torch
from torch import nn

from fwi_lightning import registry
from fwi_lightning.errors import ConfigError, suggestion
from fwi_lightning.losses import domain
from fwi_lightning.metrics.data_misfit import DataMisfit
from fwi_lightning.metrics.velocity import velocity_metrics
from fwi_lightning.networks.base import VelocityNetwork
from fwi_lightning.paradigms.base import ParadigmBase
from fwi_lightning.paradigms.supervised import Supervised
from fwi_lightning.precision import full_precision
from fwi_lightning.problem import Problem
from fwi_lightning.specs import LossesSpec, NetworkSpec

#: The methods when the YAML names none.
DEFAULT_METHODS: dict[str, Any] = {"dann": 0.1}

#: Each method's parameters besides ``weight`` (physics: those of the `physics` loss).
METHOD_PARAMS: dict[str, tuple[str, ...]] = {
    "dann": ("hidden", "gamma", "ramp_steps"),
    "mmd": ("bandwidths",),
    "coral": (),
    "physics": (),
}

#: The methods that read encoder features.
FEATURE_METHODS = ("dann", "mmd", "coral")

#: Reversal ramp length when neither ``ramp_steps`` nor a finite step count is known.
FALLBACK_RAMP_STEPS = 1000

#: The evaluation stages, whose metrics are logged per domain.
STAGES = ("val", "test")


def parse_methods(spec: Optional[Mapping[str, Any]]) -> dict[str, tuple[float, dict[str, Any]]]:
    """``{name: weight | {weight, **params}}`` -> ``{name: (weight, params)}``.

    Raises:
        ConfigError: an unknown method or parameter, or a weight that is not a number
            >= 0 (keyed ``methods.<name>...``, relative to the paradigm's section).
    """
    if spec is None:
        spec = DEFAULT_METHODS
    if not isinstance(spec, Mapping):
        raise ConfigError(f"expected {{method: weight}}, e.g. {{dann: 0.1, physics: 1.0}}, got {spec!r}", key="methods")
    parsed = {}
    for name, value in spec.items():
        if name not in METHOD_PARAMS:
            raise ConfigError(f"unknown adaptation method '{name}'{suggestion(name, METHOD_PARAMS)}; "
                              f"choose from {', '.join(METHOD_PARAMS)}", key=f"methods.{name}")
        params = dict(value) if isinstance(value, Mapping) else {"weight": value}
        weight = params.pop("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"expected a weight >= 0, got {weight!r}", key=f"methods.{name}.weight")
        if name != "physics":
            for param in params:
                if param not in METHOD_PARAMS[name]:
                    allowed = ("weight", *METHOD_PARAMS[name])
                    raise ConfigError(f"unknown parameter '{param}' of method '{name}'{suggestion(param, allowed)}; "
                                      f"it takes {', '.join(allowed)}", key=f"methods.{name}.{param}")
        parsed[name] = (float(weight), params)
    return parsed


def domain_problem(problem: Problem, name: str) -> Problem:
    """The `Problem` of one domain of a ``source_target`` problem, on `problem`'s velocity range.

    The domain's survey, data range and forward-operator settings, with the network's
    velocity range (the predictions a re-simulation receives lie in it).

    Raises:
        ConfigError: the problem has no domains (the data module is not ``source_target``).
    """
    domains = problem.extra.get("domains") or {}
    if name not in domains:
        raise ConfigError(
            "the adaptation paradigm trains on a labelled source and an unlabelled target stream, but the data has no "
            f"{name}: set data: {{name: source_target, source: {{...}}, target: {{...}}}}",
        )
    own = Problem.from_dict(domains[name])
    return dataclasses.replace(own, velocity_range=tuple(problem.velocity_range))


def has_features(network: nn.Module) -> bool:
    """Whether `network` exposes encoder features: a `VelocityNetwork` implementing `encode`."""
    return isinstance(network, VelocityNetwork) and type(network).encode is not VelocityNetwork.encode


class Adaptation(Supervised):
    """Labelled source + unlabelled target: supervised source loss plus weighted domain terms.

    Args:
        problem: the ``source_target`` data module's problem (injected): the source's,
            with each domain's problem in ``extra["domains"]``.
        network: the backbone, ``{name: inversionnet, **params}``.
        losses: name-keyed weighted losses on the labelled source; default ``{l1: 1.0}``.
        methods: the domain terms and their weights, e.g. ``{dann: 0.1, mmd: 1.0,
            coral: 1.0, physics: {weight: 1.0, shots: 2}}``; a mapping value sets the
            method's parameters: dann ``hidden`` (classifier width, 64), ``gamma`` (ramp
            steepness, 10), ``ramp_steps`` (steps until the reversal reaches full scale;
            default the whole training); mmd ``bandwidths`` (kernel multipliers of the
            mean squared distance); physics any parameter of the `physics` loss.
            Default ``{dann: 0.1}``; ``{}``: source only.
        optimizer: ``{name, **kwargs}`` of a torch.optim class; default AdamW, lr 1e-4,
            weight decay 1e-4.
        scheduler: ``{name, interval, monitor, **kwargs}`` or null.

    Raises:
        ConfigError: data without a target stream, an unknown method or parameter, or a
            feature method (dann, mmd, coral) on a network without `encode` features.
    """

    def __init__(self, problem: Problem | dict, network: NetworkSpec, losses: LossesSpec = None,
                 methods: Optional[dict] = None, optimizer: Optional[dict] = None, scheduler: Optional[dict] = None):
        ParadigmBase.__init__(self, problem, network=network, losses=losses, methods=methods, optimizer=optimizer,
                              scheduler=scheduler)

    # -- building ----------------------------------------------------------------------

    def configure_models(self) -> None:
        """The backbone, and the domain classifier and target physics term the methods need."""
        super().configure_models()
        self.target_problem = domain_problem(self.problem, "target")
        self.methods = parse_methods(self.hparams.get("methods"))
        self.weights = {name: weight for name, (weight, _) in self.methods.items()}
        featured = [name for name in FEATURE_METHODS if name in self.methods]
        if featured and not has_features(self.network):
            raise ConfigError(
                f"method '{featured[0]}' aligns encoder features, but network '{type(self.network).__name__}' exposes none "
                "(it does not implement VelocityNetwork.encode); choose a network with encode/decode (inversionnet, unet, "
                f"tiny, ...) or drop '{featured[0]}'",
                key=f"methods.{featured[0]}",
            )
        if "dann" in self.methods:
            params = self.methods["dann"][1]
            self.domain_classifier = domain.DomainClassifier(self._feature_width(), hidden=int(params.get("hidden", 64)))
        if "physics" in self.methods:
            self.target_physics = registry.build("losses", {"name": "physics", **self.methods["physics"][1]},
                                                 key="methods.physics", problem=self.target_problem)

    def _feature_width(self) -> int:
        """C of the network's per-sample features, from one probe batch of zeros."""
        was_training = self.network.training
        self.network.eval()
        with torch.no_grad():
            features = self.network.encode(torch.zeros(2, *self.problem.data_shape))
        self.network.train(was_training)
        return int(self.network.embedding(features).shape[1])

    def configure_metrics(self) -> None:
        """Velocity metrics per stage and domain (``val/target/...``) and the target's data misfit per stage."""
        metrics = velocity_metrics(self.problem)
        self.domain_metrics = nn.ModuleDict({
            f"{stage}_{name}": metrics.clone(prefix=f"{stage}/{name}/") for stage in STAGES for name in ("source", "target")
        })
        self.target_misfits = nn.ModuleDict({stage: DataMisfit(self.target_problem) for stage in STAGES})

    # -- training ----------------------------------------------------------------------

    def encode_decode(self, data: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """Data [B, S, T, R] raw amplitudes -> (encoder features, velocity [B, 1, NZ, NX] m/s)."""
        features = self.network.encode(self.problem.normalise_data(data))
        velocity = self.problem.denormalise_velocity(full_precision(self.network.decode(features)))
        return features, velocity

    def reversal_scale(self) -> float:
        """DANN's reversal scale at this step: the ramp over ``ramp_steps`` (or the whole training)."""
        params = self.methods["dann"][1]
        steps = params.get("ramp_steps")
        if steps is None:
            total = getattr(self.trainer, "estimated_stepping_batches", float("inf")) if self._trainer is not None else float("inf")
            steps = total if 0 < total < float("inf") else FALLBACK_RAMP_STEPS
        return domain.dann_lambda(self.global_step / max(float(steps), 1.0), float(params.get("gamma", 10.0)))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Supervised loss on the source batch plus the weighted domain terms on both; logs every term."""
        if not (isinstance(batch, Mapping) and "source" in batch and "target" in batch):
            raise ConfigError("the adaptation paradigm needs {source, target} training batches: use data: {name: source_target, ...}")
        source = batch["source"]
        target = {k: v for k, v in batch["target"].items() if k != "velocity"}  # target labels never reach a loss
        features, velocity = self.encode_decode(source["data"])
        total, terms = self.criterion({"velocity": velocity}, source)
        terms = dict(terms)
        if self.methods:
            target_features, target_velocity = self.encode_decode(target["data"])
            embedded = (self.network.embedding(features), self.network.embedding(target_features)) if any(
                m in self.methods for m in FEATURE_METHODS) else None
            for name, value in self.domain_terms(embedded, target_velocity, target).items():
                terms[name] = value
                if name in self.weights:
                    total = total + self.weights[name] * value
        self.log_losses("train", total, terms, len(source["data"]))
        return total

    def domain_terms(self, embedded: Optional[tuple[torch.Tensor, torch.Tensor]], target_velocity: torch.Tensor,
                     target: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Each method's unweighted term (plus ``dann_lambda`` and ``domain_accuracy`` for dann)."""
        terms = {}
        if "dann" in self.methods:
            scale = self.reversal_scale()
            self.domain_classifier.reversal.scale = scale
            terms["dann"], terms["domain_accuracy"] = domain.domain_loss(self.domain_classifier, *embedded)
            terms["dann_lambda"] = torch.tensor(scale)
        if "mmd" in self.methods:
            bandwidths = self.methods["mmd"][1].get("bandwidths") or domain.DEFAULT_BANDWIDTHS
            terms["mmd"] = domain.mmd(*embedded, bandwidths=bandwidths)
        if "coral" in self.methods:
            terms["coral"] = domain.coral(*embedded)
        if "physics" in self.methods:
            terms["physics"] = self.target_physics({"velocity": target_velocity}, target)
        return terms

    # -- evaluation --------------------------------------------------------------------

    def _evaluate(self, stage: str, batch: dict[str, Any]) -> torch.Tensor:
        """Metrics of one evaluation batch under its domain; the source's loss is ``<stage>/loss``."""
        name = batch.get("domain", "target")
        prediction = self(batch["data"])
        if name == "target":
            self.target_misfits[stage].update(prediction, batch["data"])
        if batch.get("velocity") is not None:
            self.domain_metrics[f"{stage}_{name}"].update(prediction, batch["velocity"])
            if name == "source":
                total, terms = self.criterion({"velocity": prediction}, batch)
                self.log_losses(stage, total, terms, len(prediction))
        return prediction

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self._evaluate("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self._evaluate("test", batch)

    def _epoch_end(self, stage: str) -> None:
        """Log and reset the per-domain metrics and the target misfit; without a labelled source
        stream, ``<stage>/loss`` is the target misfit (never the target labels)."""
        source_labelled = False
        for name in ("source", "target"):
            collection = self.domain_metrics[f"{stage}_{name}"]
            if any(metric.update_called for metric in collection.values()):
                source_labelled = source_labelled or name == "source"
                self.log_dict(collection.compute(), sync_dist=True, add_dataloader_idx=False)
            collection.reset()
        misfit = self.target_misfits[stage]
        if misfit.update_called:
            value = misfit.compute()
            self.log(f"{stage}/target/data_misfit", value, sync_dist=True, add_dataloader_idx=False)
            if not source_labelled:
                self.log(f"{stage}/loss", value, sync_dist=True, add_dataloader_idx=False)
        misfit.reset()

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def log_losses(self, stage: str, total: torch.Tensor, terms: Mapping[str, torch.Tensor], batch_size: int) -> None:
        """As `ParadigmBase.log_losses`, without a dataloader suffix on the evaluation streams."""
        sync = stage != "train"
        self.log(f"{stage}/loss", total, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size, sync_dist=sync,
                 add_dataloader_idx=False)
        if stage == "train":
            self.log_dict({f"train/{label}": value.detach() for label, value in terms.items()},
                          on_step=False, on_epoch=True, batch_size=batch_size)
