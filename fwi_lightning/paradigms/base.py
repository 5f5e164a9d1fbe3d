"""The LightningModule template every paradigm fills in (torchgeo's trainer pattern).

``ParadigmBase.__init__`` is fixed: save the hyper-parameters (the `Problem` as a plain
dict, so ``load_from_checkpoint`` rebuilds a model that normalises as trained), then
call `configure_models`, `configure_losses`, `configure_metrics`, and build every
optimiser and scheduler once on a probe parameter so a bad setting fails before
training. A paradigm fills in `configure_models`, `forward` and `training_step`, and
where it needs them `produces` + `outputs` (named outputs beyond ``velocity``) and
`optimizer_groups` (several optimisers, e.g. generator and critic, for manual
optimisation). Validation, test and prediction of velocity, metric logging and the
optimisers/schedulers from YAML are shared here. Under manual optimisation a paradigm
steps each group with `manual_step` (zero, backward, step, and its per-step scheduler)
and the base steps the per-epoch schedulers in `on_train_epoch_end`.

Logged names: ``train/loss`` and ``train/<term>`` (each loss term unweighted),
``val/loss`` (the checkpoint monitor), ``val/{mae,rmse,ssim,...}`` velocity metrics,
``val/data_misfit`` (unlabelled validation batches), ``test/loss``, ``test/...``
likewise, ``test/data_misfit`` and, when the set mixes velocity families,
``test/<family>/<metric>``.

``val/loss`` is the weighted loss of the labelled validation batches. When an epoch's
validation batches carry no ``velocity`` (unlabelled field data), the only measure is
the data misfit, and ``val/loss`` is then the mean relative data misfit
(``val/data_misfit``), so checkpointing and ReduceLROnPlateau keep a monitor. When
some batches are labelled, ``val/loss`` stays the loss of those alone.
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

import torch
from lightning.pytorch import LightningModule

from fwi_lightning.errors import ConfigError, suggestion
from fwi_lightning.losses.base import VELOCITY_ONLY, WeightedLoss
from fwi_lightning.metrics.data_misfit import DataMisfit
from fwi_lightning.metrics.velocity import FamilyMetrics, velocity_metrics
from fwi_lightning.paradigms import transfer
from fwi_lightning.problem import Problem
from fwi_lightning.signature import matches, type_name

#: OpenFWI's optimiser settings.
DEFAULT_OPTIMIZER = {"name": "adamw", "lr": 1.0e-4, "weight_decay": 1.0e-4}
#: The loss a velocity paradigm trains on when the YAML names none (OpenFWI's).
DEFAULT_LOSSES = {"l1": 1.0}
#: Scheduler keys that tell Lightning how to step it rather than configure it.
SCHEDULER_STEPPING = ("interval", "frequency", "monitor")
#: torch.optim.lr_scheduler classes that need Python callables or other schedulers.
_UNBUILDABLE_SCHEDULERS = {"lrscheduler", "lambdalr", "multiplicativelr", "sequentiallr", "chainedscheduler"}


@dataclass
class OptimizerGroup:
    """The parameters one optimiser trains and where its settings sit in YAML.

    Attributes:
        parameters: the trainable parameters (or torch parameter-group dicts).
        optimizer: ``{name, **kwargs}`` of a torch.optim class, or None for AdamW defaults.
        scheduler: ``{name, interval, frequency, monitor, **kwargs}``, or None.
        key: the optimiser's YAML key relative to the model section, e.g. ``critic_optimizer``.
        scheduler_key: the scheduler's YAML key likewise.
    """

    parameters: Iterable[Any]
    optimizer: Optional[Mapping[str, Any]]
    scheduler: Optional[Mapping[str, Any]] = None
    key: str = "optimizer"
    scheduler_key: str = "scheduler"


class ParadigmBase(LightningModule):
    """Base of every paradigm: a LightningModule mapping data [B, S, T, R] to velocity in m/s.

    Attributes:
        produces: the names of the outputs `outputs` returns (``velocity`` first, always);
            the losses of ``hparams['losses']`` are checked against it when the model is built.

    Args:
        problem: the `Problem` the data module describes (injected), or its
            ``to_dict()`` form when loaded from a checkpoint.
        **hparams: the paradigm's YAML parameters, saved in the checkpoint. The shared
            ones are ``losses`` (name-keyed weighted mapping, default ``{l1: 1.0}``),
            ``optimizer`` (``{name, **kwargs}``, default AdamW lr 1e-4, weight decay
            1e-4) and ``scheduler`` (``{name, interval, frequency, monitor, **kwargs}``
            or null).
        transfer: every paradigm's constructor also takes ``transfer`` (``init_from``,
            ``parts``, ``freeze``, ``lr``; added by `__init_subclass__`, applied after
            the modules are built: `fwi_lightning.paradigms.transfer`).
    """

    produces: tuple[str, ...] = VELOCITY_ONLY

    def __init__(self, problem: Problem | dict, **hparams: Any):
        super().__init__()
        self.problem = problem if isinstance(problem, Problem) else Problem.from_dict(problem)
        self.save_hyperparameters({"problem": self.problem.to_dict(), **hparams})
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()
        self.transfer = transfer.Transfer(self, self.__dict__.pop(transfer.PENDING, None), self.problem)
        if self.transfer.saved is not None:
            self.hparams["transfer"] = self.transfer.saved
        for group in self.optimizer_groups().values():
            check_optimization(group)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every paradigm's constructor also takes ``transfer`` (`fwi_lightning.paradigms.transfer`)."""
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            transfer.accept_transfer(cls)

    def train(self, mode: bool = True) -> "ParadigmBase":
        """Train or eval mode; modules frozen by ``transfer.freeze`` stay in eval mode."""
        super().train(mode)
        if mode and hasattr(self, "transfer"):
            self.transfer.keep_frozen_in_eval()
        return self

    # -- hooks a paradigm fills in -------------------------------------------------

    def configure_models(self) -> None:
        """Build the trainable modules from ``self.hparams``."""
        raise NotImplementedError

    def configure_losses(self) -> None:
        """Build ``self.criterion``, the weighted loss, from ``hparams['losses']``; every loss
        must read only outputs named in `produces`."""
        self.criterion = WeightedLoss(self.problem, self.hparams.get("losses") or DEFAULT_LOSSES, key="losses",
                                      produces=self.produces)

    def configure_metrics(self) -> None:
        """One metric collection cloned with ``val/`` and ``test/`` prefixes, per-family test
        metrics when the problem lists several families, and the validation and test data
        misfits."""
        metrics = velocity_metrics(self.problem)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        families = list(self.problem.extra.get("families") or [])
        self.test_family_metrics = FamilyMetrics(metrics, families, prefix="test/") if len(families) > 1 else None
        self.val_data_misfit = DataMisfit(self.problem)
        self.test_data_misfit = DataMisfit(self.problem)

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        """Data [B, S, T, R] raw amplitudes -> velocity [B, 1, NZ, NX] in m/s."""
        raise NotImplementedError

    def outputs(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The named outputs of a batch, one per name in `produces`, what the losses read.

        The default is ``{"velocity": self(batch["data"])}``. A paradigm with more outputs
        (a head, a critic score, features) overrides this and `produces` together; it gets
        the whole batch, so it may read ``domain`` or the labels.
        """
        return {"velocity": self(batch["data"])}

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        """The optimisers to build, by name, in the order `optimizers()` returns them.

        The default is one, ``model``: every trainable parameter, ``hparams['optimizer']``
        and ``hparams['scheduler']``. A paradigm with several (generator and critic) returns
        one `OptimizerGroup` each, with the YAML keys of its settings, and sets
        ``self.automatic_optimization = False`` (Lightning steps several only manually).
        """
        parameters = [p for p in self.parameters() if p.requires_grad]
        return {"model": OptimizerGroup(parameters, self.hparams.get("optimizer"), self.hparams.get("scheduler"))}

    # -- manual optimisation ---------------------------------------------------------

    def optimizer(self, name: str) -> Any:
        """The (Lightning-wrapped) optimiser of the `optimizer_groups` entry `name`."""
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        return optimizers[list(self.optimizer_groups()).index(name)]

    def manual_step(self, name: str, loss: torch.Tensor) -> None:
        """One manual-optimisation step of the group `name`: zero its gradients, back-propagate
        `loss` (through `manual_backward`, so precision plugins and strategies apply), step the
        optimiser, then its scheduler when that steps by ``interval: step``.

        Only the group's own gradients are zeroed first: gradients that `loss` leaves on
        other groups' parameters stay until their own `manual_step` zeroes them.
        """
        optimizer = self.optimizer(name)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        self._step_schedulers(optimizer.optimizer, "step")

    def on_train_epoch_end(self) -> None:
        """Under manual optimisation, step the ``interval: epoch`` schedulers (Lightning steps
        them itself only under automatic optimisation)."""
        if not self.automatic_optimization:
            for optimizer in self.trainer.optimizers:
                self._step_schedulers(optimizer, "epoch")

    def _step_schedulers(self, optimizer: torch.optim.Optimizer, interval: str) -> None:
        """Step the schedulers of `optimizer` that step by `interval`: an ``epoch`` one every
        ``frequency`` epochs, a ``step`` one after every step of its optimiser (``frequency``
        must then be 1); ReduceLROnPlateau reads its ``monitor`` from the logged values and
        waits while that is not logged yet.

        Raises:
            ConfigError: a ``step`` scheduler with a ``frequency`` other than 1.
        """
        for config in self.trainer.lr_scheduler_configs:
            if config.scheduler.optimizer is not optimizer or config.interval != interval:
                continue
            if interval == "step" and config.frequency != 1:
                key = next(g.scheduler_key for g, o in zip(self.optimizer_groups().values(), self.trainer.optimizers)
                           if o is optimizer)
                raise ConfigError("under manual optimisation a scheduler with interval 'step' steps after every "
                                  "step of its optimiser; set frequency: 1 or use interval: epoch", key=f"{key}.frequency")
            if interval == "epoch" and (self.current_epoch + 1) % config.frequency:
                continue
            if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                value = self.trainer.callback_metrics.get(config.monitor)
                if value is not None:
                    config.scheduler.step(value)
            else:
                config.scheduler.step()

    # -- shared steps ----------------------------------------------------------------

    def log_losses(self, stage: str, total: torch.Tensor, terms: Mapping[str, torch.Tensor], batch_size: int) -> None:
        """Log ``<stage>/loss`` (weighted total) and, in training, ``train/<term>`` (unweighted)."""
        sync = stage != "train"
        self.log(f"{stage}/loss", total, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size, sync_dist=sync)
        if stage == "train":
            self.log_dict({f"train/{label}": value.detach() for label, value in terms.items()},
                          on_step=False, on_epoch=True, batch_size=batch_size)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Loss and metrics on a labelled validation batch, the data misfit on an unlabelled
        one; returns the prediction in m/s."""
        outputs = self.outputs(batch)
        prediction = outputs["velocity"]
        if batch.get("velocity") is None:
            self.val_data_misfit.update(prediction, batch["data"])
            return prediction
        total, terms = self.criterion(outputs, batch)
        self.log_losses("val", total, terms, len(prediction))
        self.val_metrics.update(prediction, batch["velocity"])
        return prediction

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Loss, metrics, per-family metrics and data misfit on a test batch (the data misfit
        only when unlabelled); returns the prediction."""
        outputs = self.outputs(batch)
        prediction = outputs["velocity"]
        self.test_data_misfit.update(prediction, batch["data"])
        if batch.get("velocity") is None:
            return prediction
        total, terms = self.criterion(outputs, batch)
        self.log_losses("test", total, terms, len(prediction))
        self.test_metrics.update(prediction, batch["velocity"])
        if self.test_family_metrics is not None and "family" in batch:
            self.test_family_metrics.update(prediction, batch["velocity"], batch["family"])
        return prediction

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Velocity [B, 1, NZ, NX] in m/s for a batch's data."""
        return self(batch["data"])

    def on_validation_epoch_end(self) -> None:
        labelled = _was_updated(self.val_metrics)
        self._log_and_reset(self.val_metrics)
        misfit = self._log_misfit("val", self.val_data_misfit)
        if misfit is not None and not labelled:
            self.log("val/loss", misfit, sync_dist=True)  # the monitor on unlabelled validation data

    def on_test_epoch_end(self) -> None:
        self._log_and_reset(self.test_metrics, self.test_family_metrics)
        self._log_misfit("test", self.test_data_misfit)

    def _log_misfit(self, stage: str, misfit: DataMisfit) -> Optional[torch.Tensor]:
        """Log and reset ``<stage>/data_misfit``; returns it, or None when nothing was added."""
        value = misfit.compute() if misfit.update_called else None
        if value is not None:
            self.log(f"{stage}/data_misfit", value, sync_dist=True)
        misfit.reset()
        return value

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
        """One optimiser (and scheduler) per `optimizer_groups` entry, in its order: a bare
        optimiser or ``{optimizer, lr_scheduler}`` for one group, a list of such dicts for several."""
        configured = []
        for group in self.optimizer_groups().values():
            optimizer = build_optimizer(self.transfer.param_groups(group.parameters), group.optimizer, key=group.key)
            scheduler = build_scheduler(optimizer, group.scheduler, key=group.scheduler_key)
            configured.append({"optimizer": optimizer, "lr_scheduler": scheduler} if scheduler else {"optimizer": optimizer})
        if len(configured) > 1:
            return configured
        return configured[0] if "lr_scheduler" in configured[0] else configured[0]["optimizer"]


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
    """Call ``cls(*args, **params)``, turning a bad parameter name or type into a `ConfigError`."""
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
    hints = _hints(cls)
    for name, value in params.items():
        if name not in signature:
            continue
        expected = _yaml_types(hints.get(name, Any), signature[name].default)
        if expected and not any(matches(value, annotation) for annotation in expected):
            raise ConfigError(
                f"{cls.__name__} expects {' or '.join(type_name(a) for a in expected)} for '{name}', got {value!r}; "
                f"give a value of that type (see the parameters of {cls.__module__}.{cls.__name__})",
                key=f"{key}.{name}",
            )
    try:
        return cls(*args, **params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cls.__name__} rejected its parameters: {exc}", key=key) from None


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable annotations: check by the defaults' types
        return {}


def _yaml_types(annotation: Any, default: Any) -> list[Any]:
    """The annotations a YAML value may match for a parameter, [] when anything goes.

    ``X | Y`` unions are split (a YAML value is never a `torch.Tensor`, so that member
    is dropped); an unannotated parameter is checked against its default's type when
    that is a plain number, boolean or string.
    """
    if annotation is Any or annotation is inspect.Parameter.empty:
        plain = (bool, int, float, str)
        if type(default) not in plain:
            return []
        return [float] if type(default) in (int, float) else [type(default)]
    members = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return [m for m in members if m is not torch.Tensor]


def build_optimizer(parameters: Any, spec: Optional[Mapping[str, Any]], *, key: str = "optimizer") -> torch.optim.Optimizer:
    """A torch.optim optimiser from ``{name, **kwargs}`` (OpenFWI's AdamW defaults fill gaps).

    The name is any class of `torch.optim`, case and underscores ignored (``adamw``,
    ``sgd``, ``radam``). Unset ``lr``/``weight_decay`` take the defaults only when the
    name is left at AdamW. Each parameter is checked against the class's annotations
    (or its default's type), so ``lr: fast`` is reported, not passed on.

    Args:
        parameters: what the optimiser trains.
        spec: the YAML settings, or None for the defaults.
        key: the settings' YAML key relative to the model section, for error messages.

    Raises:
        ConfigError: unknown optimiser name or parameter, or a parameter of the wrong type.
    """
    settings = dict(spec or {})
    name = settings.pop("name", DEFAULT_OPTIMIZER["name"])
    if _key_name(name) == DEFAULT_OPTIMIZER["name"]:
        settings = {**{k: v for k, v in DEFAULT_OPTIMIZER.items() if k != "name"}, **settings}
    choices = _classes(torch.optim, torch.optim.Optimizer)
    cls = choices.get(_key_name(name))
    if cls is None:
        raise ConfigError(f"unknown optimizer '{name}'{suggestion(_key_name(name), choices)}; choose one of "
                          f"{', '.join(sorted(choices))}", key=f"{key}.name")
    return _construct(cls, (parameters,), settings, key=key)


def check_optimization(group: OptimizerGroup) -> None:
    """Build a group's optimiser and scheduler once over a probe parameter, so a bad name or
    parameter is reported when the model is built, before any run folder or training."""
    probe = [torch.nn.Parameter(torch.zeros(1))]
    build_scheduler(build_optimizer(probe, group.optimizer, key=group.key), group.scheduler, key=group.scheduler_key)


def build_scheduler(optimizer: torch.optim.Optimizer, spec: Optional[Mapping[str, Any]], *,
                    key: str = "scheduler") -> Optional[dict[str, Any]]:
    """A Lightning lr-scheduler config from ``{name, interval, frequency, monitor, **kwargs}``, or None.

    The name is any class of `torch.optim.lr_scheduler`, case and underscores ignored,
    with or without its ``LR`` suffix (``cosine_annealing``, ``step``, ``onecyclelr``,
    ``reduce_lr_on_plateau``). ``interval`` is ``epoch`` (default) or ``step``;
    ``monitor`` (default ``val/loss``) feeds ReduceLROnPlateau.

    Args:
        optimizer: the optimiser it schedules.
        spec: the YAML settings, or None for a constant learning rate.
        key: the settings' YAML key relative to the model section, for error messages.

    Raises:
        ConfigError: unknown scheduler name, stepping value or parameter.
    """
    if not spec:
        return None
    settings = dict(spec)
    name = settings.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError("a scheduler needs a 'name', e.g. {name: cosine_annealing, T_max: 100}", key=f"{key}.name")
    stepping = {k: settings.pop(k) for k in SCHEDULER_STEPPING if k in settings}
    stepping.setdefault("interval", "epoch")
    if stepping["interval"] not in ("epoch", "step"):
        raise ConfigError(f"interval must be 'epoch' or 'step', got {stepping['interval']!r}", key=f"{key}.interval")
    choices = {k: v for k, v in _classes(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler).items()
               if k not in _UNBUILDABLE_SCHEDULERS}
    choices.setdefault("reducelronplateau", torch.optim.lr_scheduler.ReduceLROnPlateau)
    wanted = _key_name(name)
    cls = choices.get(wanted) or choices.get(wanted + "lr")
    if cls is None:
        raise ConfigError(f"unknown scheduler '{name}'{suggestion(wanted, choices)}; choose one of "
                          f"{', '.join(sorted(choices))}", key=f"{key}.name")
    scheduler = _construct(cls, (optimizer,), settings, key=key)
    stepping.setdefault("monitor", "val/loss")
    return {"scheduler": scheduler, **stepping}
