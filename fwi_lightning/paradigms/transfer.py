"""Transfer learning for every paradigm: start from trained weights, freeze modules, per-module learning rates.

Every paradigm takes a ``transfer`` section (`ParadigmBase` adds it to each paradigm's
signature, so plugin paradigms have it too)::

    model:
      name: supervised
      network: {name: unet, channels: [16, 32, 64]}
      transfer:
        init_from: runs/source_only_marmousi/source_only_marmousi-*   # .ckpt, run folder or glob (newest)
        parts: [network]              # load only these modules (default: the whole model)
        freeze: [network.encoder]     # not trained (BatchNorm statistics kept too)
        lr: {network.decoder: 1.0e-3} # learning rate of these modules' parameters

* ``init_from`` loads the weights when the model is built, and prints one report line:
  how many tensors were loaded, and which of the model's are missing from the
  checkpoint and which of the checkpoint's the model has no place for. A run folder
  means its best checkpoint (else ``last.ckpt``); a glob means the newest match. The
  checkpoint must be of the same survey grid (data and velocity shapes) and, inside the
  loaded parts, of the same network: a tensor of another shape, a part absent from the
  checkpoint or nothing loaded at all is refused. The checkpoint this run writes holds
  the loaded weights, so its saved settings drop ``init_from`` (evaluation and
  ``load_from_checkpoint`` never read the source file again).
* ``freeze`` and ``lr`` name modules (``network.encoder``) or single parameters by
  their dotted path in the paradigm; a name matching nothing is refused, naming the
  closest. Frozen parameters get ``requires_grad = False`` and frozen modules stay in
  eval mode (their BatchNorm statistics do not move); ``lr`` splits each optimiser's
  parameters into torch parameter groups, the rest keeping the optimiser's own rate.
"""

from __future__ import annotations

import glob
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from fwi_lightning.errors import ConfigError, suggestion


@dataclass(frozen=True)
class TransferSettings:
    """The ``transfer`` section of a paradigm.

    Attributes:
        init_from: a ``.ckpt`` file, a run folder or a glob of either (the newest match);
            None: train from scratch.
        parts: dotted module names to load from ``init_from`` (e.g. ``[network.encoder]``);
            None: the whole model.
        freeze: dotted module or parameter names not to train.
        lr: ``{dotted name: learning rate}`` for those parameters.
    """

    init_from: Optional[str] = None
    parts: Optional[Sequence[str]] = None
    freeze: Optional[Sequence[str]] = None
    lr: Optional[Mapping[str, float]] = None


def settings_of(value: Any) -> TransferSettings:
    """A `TransferSettings` from the YAML mapping, an instance or None.

    Raises:
        ConfigError: an unknown key (keyed ``transfer.<key>``).
    """
    if value is None:
        return TransferSettings()
    if isinstance(value, TransferSettings):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping of init_from, parts, freeze, lr; got {value!r}", key="transfer")
    fields = TransferSettings.__dataclass_fields__
    for name in value:
        if name not in fields:
            raise ConfigError(f"unknown key '{name}'{suggestion(name, fields)}; transfer takes {', '.join(fields)}",
                              key=f"transfer.{name}")
    return TransferSettings(**dict(value))


def saved_settings(settings: TransferSettings) -> Optional[dict[str, Any]]:
    """What a checkpoint keeps of the settings: all but ``init_from`` (its weights are in the checkpoint)."""
    kept = {k: (list(v) if isinstance(v, (list, tuple)) else dict(v) if isinstance(v, Mapping) else v)
            for k, v in asdict(settings).items() if k not in ("init_from", "parts") and v is not None}
    return kept or None


def resolve_checkpoint(init_from: str) -> Path:
    """The checkpoint file `init_from` names: a file, a run folder (its best, else last) or a glob (newest).

    Raises:
        ConfigError: nothing there (keyed ``transfer.init_from``).
    """
    from fwi_lightning.evaluate import find_checkpoint

    path = os.path.expanduser(str(init_from))
    if glob.has_magic(path):
        found = sorted(glob.glob(path), key=os.path.getmtime)
        if not found:
            raise ConfigError(f"nothing matches '{init_from}'; train the source model first or give its run folder or .ckpt",
                              key="transfer.init_from")
        path = found[-1]
    try:
        return find_checkpoint(path)
    except ConfigError as exc:
        raise ConfigError(exc.message, key="transfer.init_from") from None


@dataclass
class TransferReport:
    """What `load_weights` did: the checkpoint, and the tensor names loaded, missing and unexpected."""

    checkpoint: Path
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]

    def line(self) -> str:
        """One line for the console."""
        def few(names: list[str]) -> str:
            if not names:
                return "none"
            shown = ", ".join(names[:3])
            return f"{len(names)} ({shown}{', ...' if len(names) > 3 else ''})"

        return (f"init_from {self.checkpoint}: loaded {len(self.loaded)} tensors; missing from the checkpoint: "
                f"{few(self.missing)}; in the checkpoint but not loaded: {few(self.unexpected)}")


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def load_weights(model: nn.Module, settings: TransferSettings, problem: Any) -> Optional[TransferReport]:
    """Load `settings.init_from` into `model` (only `settings.parts` when given); None when there is nothing to load.

    Args:
        model: the paradigm (a LightningModule).
        settings: the transfer settings.
        problem: the model's `Problem`; the checkpoint's survey grid must match it.

    Raises:
        ConfigError: (keyed ``transfer.init_from`` or ``transfer.parts``) an unreadable
            checkpoint, another grid, another network inside the loaded parts, a part
            that matches nothing, or nothing to load.
    """
    if not settings.init_from:
        return None
    from fwi_lightning.evaluate import read_checkpoint
    from fwi_lightning.problem import Problem

    path = resolve_checkpoint(settings.init_from)
    try:
        contents = read_checkpoint(path)
    except ConfigError as exc:
        raise ConfigError(exc.message, key="transfer.init_from") from None
    state = contents.get("state_dict")
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path} holds no model weights (not a Lightning checkpoint)", key="transfer.init_from")
    saved = (contents.get("hyper_parameters") or {}).get("problem")
    if saved is not None:
        trained = Problem.from_dict(saved)
        shapes = {"data [S, T, R]": (trained.data_shape, problem.data_shape),
                  "velocity [NZ, NX]": (trained.velocity_shape, problem.velocity_shape)}
        differ = [f"{what} {list(a)} there, {list(b)} here" for what, (a, b) in shapes.items() if tuple(a) != tuple(b)]
        if differ:
            raise ConfigError(f"{path} was trained on another survey grid ({'; '.join(differ)}); start from a checkpoint "
                              "of this survey, or set data.survey as in that run", key="transfer.init_from")
    own = model.state_dict()
    parts = list(settings.parts) if settings.parts else None
    if parts:
        for part in parts:
            if not any(_under(name, [part]) for name in own):
                tops = sorted({name.rsplit(".", 1)[0] for name in own})
                raise ConfigError(f"no module or weight '{part}' in this model{suggestion(part, tops)}; name a module such "
                                  "as network or network.encoder", key="transfer.parts")
            if not any(_under(name, [part]) for name in state):
                raise ConfigError(f"the checkpoint {path} holds no weights under '{part}'; it holds "
                                  f"{', '.join(sorted({n.split('.')[0] for n in state}))}: load parts it has", key="transfer.parts")
    wanted = [name for name in own if parts is None or _under(name, parts)]
    loaded = [name for name in wanted if name in state]
    shapes = [name for name in loaded if tuple(state[name].shape) != tuple(own[name].shape)]
    if shapes:
        name = shapes[0]
        raise ConfigError(f"the checkpoint holds another network: '{name}' is {list(state[name].shape)} there but "
                          f"{list(own[name].shape)} here; start from a checkpoint of this network (same name and size)",
                          key="transfer.init_from")
    if not loaded:
        raise ConfigError(f"no weight of this model is in {path} (e.g. '{wanted[0] if wanted else '?'}' is not; it holds "
                          f"'{next(iter(state), '?')}', ...): it is a checkpoint of another network", key="transfer.init_from")
    absent = [name for name in wanted if name not in state]
    if parts is not None and absent:
        raise ConfigError(f"the checkpoint holds another network: '{absent[0]}' of part(s) {', '.join(parts)} is not in it; "
                          "start from a checkpoint of this network", key="transfer.init_from")
    with torch.no_grad():
        for name in loaded:
            own[name].copy_(state[name])
    unexpected = [name for name in state if name not in loaded]
    return TransferReport(path, loaded, [n for n in own if n not in loaded], unexpected)


def named(model: nn.Module, names: Optional[Sequence[str]], key: str) -> dict[str, list[nn.Parameter]]:
    """``{name: its parameters}`` for dotted module or parameter names of `model`.

    Raises:
        ConfigError: a name that matches no module or parameter (keyed `key`).
    """
    modules = dict(model.named_modules())
    parameters = dict(model.named_parameters())
    found = {}
    for name in names or []:
        if name in modules:
            found[name] = list(modules[name].parameters())
        elif name in parameters:
            found[name] = [parameters[name]]
        else:
            choices = [n for n in modules if n] + list(parameters)
            raise ConfigError(f"no module or parameter '{name}' in this model{suggestion(name, choices)}; name one by its "
                              "dotted path, e.g. network.encoder", key=key)
        if not found[name]:
            raise ConfigError(f"module '{name}' has no parameters to {key.split('.')[-1]}", key=key)
    return found


class Transfer:
    """The transfer settings applied to one paradigm: loaded weights, frozen modules, learning rates.

    Args:
        model: the paradigm, its modules built.
        settings: the ``transfer`` section (mapping, `TransferSettings` or None).
        problem: the paradigm's problem.

    Raises:
        ConfigError: see `load_weights` and `named`; a learning rate that is not a number > 0.
    """

    def __init__(self, model: nn.Module, settings: Any, problem: Any):
        self.settings = settings_of(settings)
        self.frozen_modules = [m for name, m in model.named_modules() if name in set(self.settings.freeze or [])]
        frozen = named(model, self.settings.freeze, "transfer.freeze")
        for parameters in frozen.values():
            for parameter in parameters:
                parameter.requires_grad_(False)
        rates = dict(self.settings.lr or {})
        for name, rate in rates.items():
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
                raise ConfigError(f"expected a learning rate > 0, got {rate!r}", key=f"transfer.lr.{name}")
        self.rates = {id(p): (name, float(rates[name])) for name, ps in named(model, list(rates), "transfer.lr").items() for p in ps}
        self.report = load_weights(model, self.settings, problem)
        if self.report is not None:
            print(self.report.line(), flush=True)

    @property
    def saved(self) -> Optional[dict[str, Any]]:
        """The settings a checkpoint keeps (`saved_settings`)."""
        return saved_settings(self.settings)

    def param_groups(self, parameters: Iterable[Any]) -> Any:
        """An optimiser's parameters split into torch parameter groups by the ``lr`` settings.

        Parameters under a name of ``lr`` form a group ``{params, lr}`` each; the rest
        stay one group with the optimiser's own rate. Unchanged without ``lr`` settings or
        when `parameters` are already group dicts.
        """
        parameters = list(parameters)
        if not self.rates or any(isinstance(p, dict) for p in parameters):
            return parameters
        groups: dict[str, dict[str, Any]] = {}
        rest = []
        for parameter in parameters:
            if id(parameter) in self.rates:
                name, rate = self.rates[id(parameter)]
                groups.setdefault(name, {"params": [], "lr": rate})["params"].append(parameter)
            else:
                rest.append(parameter)
        return ([{"params": rest}] if rest else []) + list(groups.values())

    def keep_frozen_in_eval(self) -> None:
        """Frozen modules back in eval mode (after ``model.train()``): their norm statistics stay."""
        for module in self.frozen_modules:
            module.eval()


#: Where the wrapped constructor leaves the ``transfer`` argument for `ParadigmBase.__init__`.
PENDING = "_pending_transfer"


def accept_transfer(cls: type) -> None:
    """Make a paradigm class's own ``__init__`` also take ``transfer`` (a keyword-only `TransferSettings`).

    The class's signature (``inspect.signature(cls)``, what config validation, contract
    checks and ``load_from_checkpoint`` read) becomes its constructor's plus
    ``transfer``; the constructor function keeps its own (Lightning's hyper-parameter
    collection reads that one). The value is left on the instance for
    `ParadigmBase.__init__`; the outermost constructor's wins over nested
    ``super().__init__`` calls. A class whose constructor declares ``transfer`` itself is
    left unchanged.
    """
    import functools
    import inspect

    init = cls.__dict__["__init__"]
    signature = inspect.signature(init)
    if "transfer" in signature.parameters:
        return
    annotation = Optional[TransferSettings]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, transfer: Optional[TransferSettings] = None, **kwargs: Any) -> None:
        if transfer is not None or PENDING not in self.__dict__:
            self.__dict__[PENDING] = transfer
        init(self, *args, **kwargs)

    __init__.__annotations__ = {**getattr(init, "__annotations__", {}), "transfer": annotation}
    parameters = list(signature.parameters.values())[1:]  # without self
    added = inspect.Parameter("transfer", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
    at = next((i for i, p in enumerate(parameters) if p.kind is p.VAR_KEYWORD), len(parameters))
    cls.__init__ = __init__
    cls.__signature__ = signature.replace(parameters=[*parameters[:at], added, *parameters[at:]])
