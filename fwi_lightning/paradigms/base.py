"""The LightningModule template every paradigm fills in (torchgeo's trainer pattern).

``ParadigmBase.__init__`` is fixed: save the hyper-parameters (the `Problem` as a plain
dict, so ``load_from_checkpoint`` rebuilds a model that normalises as trained), then
call `configure_models`, `configure_losses`, `configure_metrics`. A paradigm fills in
`configure_models`, `forward` and `training_step`; validation, test and prediction of
velocity, metric logging and the optimiser/scheduler from YAML are shared here.

Logged names: ``train/loss`` and ``train/<term>`` (each loss term unweighted),
``val/loss`` (the checkpoint monitor), ``val/{mae,rmse,ssim,mae_ms,rmse_ms}``,
``test/loss``, ``test/...`` likewise, ``test/data_misfit`` and, when the set mixes
velocity families, ``test/<family>/<metric>``.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional

import torch
from lightning.pytorch import LightningModule

from fwi_lightning.errors import ConfigError, suggestion
from fwi_lightning.losses.base import WeightedLoss
from fwi_lightning.metrics.data_misfit import DataMisfit
from fwi_lightning.metrics.velocity import FamilyMetrics, velocity_metrics
from fwi_lightning.problem import Problem

#: OpenFWI's optimiser settings.
DEFAULT_OPTIMIZER = {"name": "adamw", "lr": 1.0e-4, "weight_decay": 1.0e-4}
#: The loss a velocity paradigm trains on when the YAML names none (OpenFWI's).
DEFAULT_LOSSES = {"l1": 1.0}
#: Scheduler keys that tell Lightning how to step it rather than configure it.
SCHEDULER_STEPPING = ("interval", "frequency", "monitor")
#: torch.optim.lr_scheduler classes that need Python callables or other schedulers.
_UNBUILDABLE_SCHEDULERS = {"lrscheduler", "lambdalr", "multiplicativelr", "sequentiallr", "chainedscheduler"}


class ParadigmBase(LightningModule):
    """Base of every paradigm: a LightningModule mapping data [B, S, T, R] to velocity in m/s.

    Args:
        problem: the `Problem` the data module describes (injected), or its
            ``to_dict()`` form when loaded from a checkpoint.
        **hparams: the paradigm's YAML parameters, saved in the checkpoint. The shared
            ones are ``losses`` (name-keyed weighted mapping, default ``{l1: 1.0}``),
            ``optimizer`` (``{name, **kwargs}``, default AdamW lr 1e-4, weight decay
            1e-4) and ``scheduler`` (``{name, interval, frequency, monitor, **kwargs}``
            or null).
    """

    def __init__(self, problem: Problem | dict, **hparams: Any):
        super().__init__()
        self.problem = problem if isinstance(problem, Problem) else Problem.from_dict(problem)
        self.save_hyperparameters({"problem": self.problem.to_dict(), **hparams})
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()
        check_optimization(self.hparams.get("optimizer"), self.hparams.get("scheduler"))

    # -- hooks a paradigm fills in -------------------------------------------------

    def configure_models(self) -> None:
        """Build the trainable modules from ``self.hparams``."""
        raise NotImplementedError

    def configure_losses(self) -> None:
        """Build ``self.criterion``, the weighted velocity loss, from ``hparams['losses']``."""
        self.criterion = WeightedLoss(self.problem, self.hparams.get("losses") or DEFAULT_LOSSES, key="model.losses")

    def configure_metrics(self) -> None:
        """One metric collection cloned with ``val/`` and ``test/`` prefixes, per-family test
        metrics when the problem lists several families, and the test data misfit."""
        metrics = velocity_metrics(self.problem)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        families = list(self.problem.extra.get("families") or [])
        self.test_family_metrics = FamilyMetrics(metrics, families, prefix="test/") if len(families) > 1 else None
        self.test_data_misfit = DataMisfit(self.problem)

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        """Data [B, S, T, R] raw amplitudes -> velocity [B, 1, NZ, NX] in m/s."""
        raise NotImplementedError

    # -- shared steps ----------------------------------------------------------------

    def log_losses(self, stage: str, total: torch.Tensor, terms: Mapping[str, torch.Tensor], batch_size: int) -> None:
        """Log ``<stage>/loss`` (weighted total) and, in training, ``train/<term>`` (unweighted)."""
        sync = stage != "train"
        self.log(f"{stage}/loss", total, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size, sync_dist=sync)
        if stage == "train":
            self.log_dict({f"train/{label}": value.detach() for label, value in terms.items()},
                          on_step=False, on_epoch=True, batch_size=batch_size)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Velocity loss and metrics on a labelled validation batch; returns the prediction in m/s."""
        prediction = self(batch["data"])
        total, terms = self.criterion(prediction, batch)
        self.log_losses("val", total, terms, len(prediction))
        self.val_metrics.update(prediction, batch["velocity"])
        return prediction

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Loss, metrics, per-family metrics and data misfit on a test batch; returns the prediction."""
        prediction = self(batch["data"])
        self.test_data_misfit.update(prediction, batch["data"])
        if batch.get("velocity") is None:
            return prediction
        total, terms = self.criterion(prediction, batch)
        self.log_losses("test", total, terms, len(prediction))
        self.test_metrics.update(prediction, batch["velocity"])
        if self.test_family_metrics is not None and "family" in batch:
            self.test_family_metrics.update(prediction, batch["velocity"], batch["family"])
        return prediction

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Velocity [B, 1, NZ, NX] in m/s for a batch's data."""
        return self(batch["data"])

    def on_validation_epoch_end(self) -> None:
        self._log_and_reset(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_and_reset(self.test_metrics, self.test_family_metrics)
        if self.test_data_misfit.update_called:
            self.log("test/data_misfit", self.test_data_misfit.compute(), sync_dist=True)
        self.test_data_misfit.reset()

    def _log_and_reset(self, *collections: Any) -> None:
        for collection in collections:
            if collection is None:
                continue
            values = collection.compute() if _was_updated(collection) else {}
            if values:  # torchmetrics already reduced them over ranks: syncing averages equal values
                self.log_dict(values, sync_dist=True)
            collection.reset()

    # -- optimiser and scheduler from YAML ------------------------------------------

    def configure_optimizers(self) -> Any:
        """The optimiser (and scheduler) named in ``hparams``, over the trainable parameters."""
        parameters = [p for p in self.parameters() if p.requires_grad]
        optimizer = build_optimizer(parameters, self.hparams.get("optimizer"))
        scheduler = build_scheduler(optimizer, self.hparams.get("scheduler"))
        return {"optimizer": optimizer, "lr_scheduler": scheduler} if scheduler else optimizer


def _was_updated(collection: Any) -> bool:
    """A family breakdown always computes (it drops empty families); a collection needs an update."""
    if isinstance(collection, FamilyMetrics):
        return True
    return any(metric.update_called for metric in collection.values())


def _key_name(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _classes(module: Any, base: type) -> dict[str, type]:
    found = {}
    for attr in dir(module):
        obj = getattr(module, attr)
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base and not attr.startswith("_"):
            found[_key_name(attr)] = obj
    return found


def _construct(cls: type, args: tuple, params: dict[str, Any], *, key: str) -> Any:
    """Call ``cls(*args, **params)``, turning a bad parameter into a `ConfigError`."""
    signature = inspect.signature(cls).parameters
    accepted = [p for p in signature if p not in ("self", "params", "optimizer")]
    open_ended = any(p.kind is p.VAR_KEYWORD for p in signature.values())
    unknown = [] if open_ended else [p for p in params if p not in accepted]
    if unknown:
        raise ConfigError(
            f"{cls.__name__} has no parameter '{unknown[0]}'{suggestion(unknown[0], accepted)}; "
            f"it takes {', '.join(accepted)}",
            key=f"{key}.{unknown[0]}",
        )
    try:
        return cls(*args, **params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cls.__name__} rejected its parameters: {exc}", key=key) from None


def build_optimizer(parameters: Any, spec: Optional[Mapping[str, Any]]) -> torch.optim.Optimizer:
    """A torch.optim optimiser from ``{name, **kwargs}`` (OpenFWI's AdamW defaults fill gaps).

    The name is any class of `torch.optim`, case and underscores ignored (``adamw``,
    ``sgd``, ``radam``). Unset ``lr``/``weight_decay`` take the defaults only when the
    name is left at AdamW.

    Raises:
        ConfigError: unknown optimiser name or parameter.
    """
    settings = dict(spec or {})
    name = settings.pop("name", DEFAULT_OPTIMIZER["name"])
    if _key_name(name) == DEFAULT_OPTIMIZER["name"]:
        settings = {**{k: v for k, v in DEFAULT_OPTIMIZER.items() if k != "name"}, **settings}
    choices = _classes(torch.optim, torch.optim.Optimizer)
    cls = choices.get(_key_name(name))
    if cls is None:
        raise ConfigError(f"unknown optimizer '{name}'{suggestion(_key_name(name), choices)}; choose one of "
                          f"{', '.join(sorted(choices))}", key="model.optimizer.name")
    return _construct(cls, (parameters,), settings, key="model.optimizer")


def check_optimization(optimizer: Optional[Mapping[str, Any]], scheduler: Optional[Mapping[str, Any]]) -> None:
    """Build the optimiser and scheduler once over a probe parameter, so a bad name or
    parameter is reported when the model is built, before any run folder or training."""
    probe = [torch.nn.Parameter(torch.zeros(1))]
    build_scheduler(build_optimizer(probe, optimizer), scheduler)


def build_scheduler(optimizer: torch.optim.Optimizer, spec: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """A Lightning lr-scheduler config from ``{name, interval, frequency, monitor, **kwargs}``, or None.

    The name is any class of `torch.optim.lr_scheduler`, case and underscores ignored,
    with or without its ``LR`` suffix (``cosine_annealing``, ``step``, ``onecyclelr``,
    ``reduce_lr_on_plateau``). ``interval`` is ``epoch`` (default) or ``step``;
    ``monitor`` (default ``val/loss``) feeds ReduceLROnPlateau.

    Raises:
        ConfigError: unknown scheduler name, stepping value or parameter.
    """
    if not spec:
        return None
    settings = dict(spec)
    name = settings.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError("a scheduler needs a 'name', e.g. {name: cosine_annealing, T_max: 100}", key="model.scheduler.name")
    stepping = {k: settings.pop(k) for k in SCHEDULER_STEPPING if k in settings}
    stepping.setdefault("interval", "epoch")
    if stepping["interval"] not in ("epoch", "step"):
        raise ConfigError(f"interval must be 'epoch' or 'step', got {stepping['interval']!r}", key="model.scheduler.interval")
    choices = {k: v for k, v in _classes(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler).items()
               if k not in _UNBUILDABLE_SCHEDULERS}
    choices.setdefault("reducelronplateau", torch.optim.lr_scheduler.ReduceLROnPlateau)
    wanted = _key_name(name)
    cls = choices.get(wanted) or choices.get(wanted + "lr")
    if cls is None:
        raise ConfigError(f"unknown scheduler '{name}'{suggestion(wanted, choices)}; choose one of "
                          f"{', '.join(sorted(choices))}", key="model.scheduler.name")
    scheduler = _construct(cls, (optimizer,), settings, key="model.scheduler")
    stepping.setdefault("monitor", "val/loss")
    return {"scheduler": scheduler, **stepping}
