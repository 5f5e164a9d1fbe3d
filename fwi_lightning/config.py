"""Experiment configs: load with OmegaConf, merge, override, validate.

Precedence, lowest first: the package defaults (``defaults.yaml``), the files listed
under ``base:`` (each relative to the file naming it, merged in order, recursively),
the experiment file itself, then ``key=value`` overrides from the command line.
Mappings merge key by key, except that:

* ``key=null`` removes a component (a loss, a callback, the logger);
* ``~key`` on the command line deletes the key from every lower layer, so
  ``~data.families data.families.curvevel=1.0`` replaces the families instead of adding one;
* a layer that gives a component section a different ``name`` replaces the section: the
  old component's parameters are dropped (``model.network.name=tiny`` swaps the network).

Validation walks every section against the chosen component's own constructor
signature (see `fwi_lightning.signature`) before anything heavy is built; each error
names the file the key came from, the key path, the component and the closest valid key.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from fwi_lightning.errors import ConfigError, FWIError, suggestion

SCHEMA_VERSION = 1
DEFAULTS = Path(__file__).with_name("defaults.yaml")
COMMAND_LINE = "command line"


@dataclass(frozen=True)
class CheckpointConfig:
    """Which checkpoints a run keeps (best by `monitor`, and the last).

    Raises:
        ConfigError: a value Lightning's ModelCheckpoint would reject (keys relative to
            the ``checkpoint`` section).
    """

    monitor: str = "val/loss"
    mode: Literal["min", "max"] = "min"
    save_last: bool = True
    save_top_k: int = 1
    every_n_train_steps: Optional[int] = None

    def __post_init__(self) -> None:
        if not self.monitor:
            raise ConfigError("expected the name of a logged metric, e.g. val/loss", key="monitor")
        if self.save_top_k < -1:
            raise ConfigError(f"expected -1 (keep all), 0 (none) or a count >= 1, got {self.save_top_k}", key="save_top_k")
        if self.every_n_train_steps is not None and self.every_n_train_steps < 1:
            raise ConfigError(
                f"expected a number of steps >= 1, or null to save last.ckpt only after each epoch, got {self.every_n_train_steps}",
                key="every_n_train_steps",
            )


@dataclass(frozen=True)
class LoggerConfig:
    """Experiment tracker: ``wandb`` (offline without credentials) or ``csv`` only."""

    name: Literal["wandb", "csv"] = "wandb"
    project: str = "fwi-lightning"
    group: Optional[str] = None
    entity: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    notes: Optional[str] = None
    job_type: Optional[str] = None
    mode: Optional[Literal["online", "offline", "disabled"]] = None


#: Top-level keys of an experiment file, with what each holds.
TOP_LEVEL = {
    "schema_version": "config schema version (1)",
    "base": "list of YAML files merged under this one",
    "seed": "global seed",
    "name": "run name",
    "group": "experiment group",
    "run_dir": "root folder of run folders",
    "resume": "continue from 'last', a run folder or a checkpoint",
    "model": "the paradigm section",
    "data": "the data module section",
    "trainer": "Lightning Trainer arguments",
    "checkpoint": "checkpointing",
    "callbacks": "callbacks by registered name",
    "logger": "experiment tracker",
}

#: Trainer arguments the runner sets itself.
MANAGED_TRAINER_KEYS = ("logger", "callbacks", "default_root_dir", "enable_checkpointing")


@dataclass
class Config:
    """A merged experiment config and where each of its keys came from.

    Attributes:
        values: the merged config as plain Python containers.
        file: the experiment file (None when built from a mapping).
        sources: (label, plain mapping) per layer, lowest precedence first; the label
            is a file path or ``"command line"``.
    """

    values: dict[str, Any]
    file: Optional[Path]
    sources: list[tuple[str, dict[str, Any]]]

    def origin(self, key: str) -> str:
        """The file (or 'command line') that set `key`, or its closest parent, last.

        The package defaults are never blamed: a key only they set is the experiment
        file's to change.
        """
        parts = key.split(".")
        for end in range(len(parts), 0, -1):
            prefix = ".".join(parts[:end])
            for label, layer in reversed(self.sources):
                if label != str(DEFAULTS) and _has_path(layer, prefix):
                    return label if label != COMMAND_LINE else f"{self.file} (command line)"
        return str(self.file) if self.file else "config"

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, key=key, file=self.origin(key))

    @contextmanager
    def attributed(self) -> Iterator[None]:
        """Errors raised inside that name no file name the layer that set their key."""
        try:
            yield
        except FWIError as exc:
            if exc.file is None:
                exc.file = self.origin(exc.key) if exc.key else (str(self.file) if self.file else None)
            raise

    @property
    def stem(self) -> str:
        return self.file.stem if self.file else "experiment"


def _has_path(layer: Any, key: str) -> bool:
    node = layer
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _read_yaml(path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    if not path.is_file():
        raise ConfigError(f"no such config file (looked at {path.resolve()})", file=str(path))
    try:
        loaded = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and omegaconf's own errors
        detail = " ".join(str(exc).split())
        raise ConfigError(f"cannot parse YAML: {detail}", file=str(path)) from None
    values = OmegaConf.to_container(loaded, resolve=False)
    if not values:
        raise ConfigError("the file is empty; an experiment needs at least 'model' and 'data' sections (see experiments/quickstart.yaml)", file=str(path))
    if not isinstance(values, dict):
        raise ConfigError(f"an experiment file must be a mapping of sections, got a {type(values).__name__}", file=str(path))
    return values


def _layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """The file's base files (recursively, in order), then the file itself."""
    resolved = path.resolve()
    if resolved in seen:
        raise ConfigError("'base' files include each other in a cycle", file=str(path), key="base")
    values = _read_yaml(path)
    bases = values.pop("base", None) or []
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError("'base' must be a list of YAML file paths", file=str(path), key="base")
    layers: list[tuple[str, dict[str, Any]]] = []
    for b in bases:
        layers.extend(_layers(path.parent / b, seen + (resolved,)))
    layers.append((str(path), values))
    return layers


def _parse_overrides(overrides: list[str], file: Optional[Path]) -> tuple[dict[str, Any], list[str]]:
    """``key=value`` items -> a nested mapping, and ``~key`` items -> the keys to delete."""
    from omegaconf import OmegaConf

    where = str(file) if file else None
    deletions = [item[1:] for item in overrides if item.startswith("~")]
    assignments = [item for item in overrides if not item.startswith("~")]
    for key in deletions:
        if not key or "=" in key:
            raise ConfigError(f"'~{key}' deletes a key: write ~KEY, e.g. ~data.families", file=where)
    for item in assignments:
        if "=" not in item or item.startswith("="):
            raise ConfigError(
                f"command-line override '{item}' is not of the form key=value (e.g. trainer.max_epochs=5) or ~key",
                file=where,
            )
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(assignments), resolve=False) or {}, deletions
    except Exception as exc:
        raise ConfigError(f"cannot parse command-line overrides: {' '.join(str(exc).split())}", file=where) from None


def _delete(layer: dict[str, Any], key: str) -> None:
    """Remove the dotted `key` from `layer` in place, if it is there."""
    *parents, last = key.split(".")
    node: Any = layer
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def _merge(lower: Any, upper: Any, *, top: bool = True) -> Any:
    """`upper` over `lower`: mappings merge key by key; anything else replaces (so a
    list may replace a mapping and validation, not the merge, says what is wrong).

    A component section whose `name` changes is replaced, not merged: the parameters of
    the lower layer's component mean nothing to the new one.
    """
    if isinstance(lower, dict) and isinstance(upper, dict):
        if not top and upper.get("name") is not None and lower.get("name") not in (None, upper["name"]):
            return upper
        out = dict(lower)
        for key, value in upper.items():
            out[key] = _merge(lower.get(key), value, top=False)
        return out
    return upper


def load_config(file: str | Path | None, overrides: list[str] | tuple[str, ...] = (), *, values: dict | None = None) -> Config:
    """Load an experiment: defaults < base files < the file < overrides.

    Args:
        file: path of the experiment YAML (or None with `values`).
        overrides: ``key=value`` strings; ``key=null`` removes a component and
            ``~key`` deletes the key from every lower layer (to replace a mapping).
        values: a mapping used in place of a file (for the Python API and tests).

    Returns:
        The merged `Config` (not yet validated; see `validate`).
    """
    from omegaconf import OmegaConf

    path = Path(file) if file is not None else None
    layers: list[tuple[str, dict[str, Any]]] = [(str(DEFAULTS), _read_yaml(DEFAULTS))]
    if path is not None:
        layers += _layers(path)
    if values is not None:
        layers.append(("config", copy.deepcopy(dict(values))))
    if overrides:
        assigned, deletions = _parse_overrides(list(overrides), path)
        for key in deletions:
            for _, layer in layers:
                _delete(layer, key)
        layers.append((COMMAND_LINE, assigned))
    merged: dict[str, Any] = {}
    for _, layer in layers:
        merged = _merge(merged, layer)
    try:
        plain = OmegaConf.to_container(OmegaConf.create(merged), resolve=True)
    except Exception as exc:
        raise ConfigError(f"cannot merge config: {' '.join(str(exc).split())}", file=str(path) if path else None) from None
    plain.pop("base", None)
    cfg = Config(plain, path, layers)
    stem = cfg.stem
    plain["name"] = plain.get("name") or stem
    plain["group"] = plain.get("group") or stem
    return cfg


# ---------------------------------------------------------------------------
# Validation


def validate(cfg: Config) -> Config:
    """Check every section against the component it names; raise the first problem.

    Imports the components the config uses (and only those), and Lightning for the
    trainer's own signature.
    """
    with cfg.attributed():
        _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    from fwi_lightning import registry
    from fwi_lightning.signature import dataclass_fields

    v = cfg.values
    for key in v:
        if key not in TOP_LEVEL:
            raise cfg.error(key, f"unknown top-level section{suggestion(key, TOP_LEVEL)}; sections are {', '.join(TOP_LEVEL)}")
    if v.get("schema_version") != SCHEMA_VERSION:
        raise cfg.error("schema_version", f"schema_version must be {SCHEMA_VERSION}, got {v.get('schema_version')!r}")
    if not isinstance(v.get("seed"), int) or isinstance(v.get("seed"), bool):
        raise cfg.error("seed", f"seed must be an integer, got {v.get('seed')!r}")
    for key in ("name", "group", "run_dir"):
        if not isinstance(v.get(key), str) or not v[key]:
            raise cfg.error(key, f"'{key}' must be a non-empty string, got {v.get(key)!r}")
    for key, group in (("model", "paradigms"), ("data", "datamodules")):
        if v.get(key) is None:
            raise cfg.error(key, f"section '{key}' is required: {key}: {{name: <one of {', '.join(registry.names(group))}>, ...}}")
        _validate_component(cfg, group, v[key], key)
    _validate_trainer(cfg, v.get("trainer"))
    checkpoint = v.get("checkpoint") or {}
    _validate_mapping(cfg, dataclass_fields(CheckpointConfig), checkpoint, "checkpoint", "checkpoint settings")
    _check_constructs(CheckpointConfig, checkpoint, "checkpoint")
    _validate_components(cfg, "callbacks", v.get("callbacks"), "callbacks", weighted=False)
    logger = v.get("logger")
    if isinstance(logger, str):
        v["logger"] = logger = {"name": logger}
    if logger is not None:
        _validate_mapping(cfg, dataclass_fields(LoggerConfig), logger, "logger", "logger")


def _validate_component(cfg: Config, group: str, section: Any, key: str) -> None:
    from fwi_lightning import registry
    from fwi_lightning.signature import signature_of

    with registry.located(key):
        name, params = registry.split_spec(section)
        component = registry.load(group, name, key="name")
    _validate_mapping(cfg, signature_of(component, group), params, key, f"{registry.SINGULAR[group]} '{name}'")


def _validate_components(cfg: Config, group: str, section: Any, key: str, *, weighted: bool) -> None:
    from fwi_lightning import registry
    from fwi_lightning.signature import signature_of

    with registry.located(key):
        entries = registry.mapping_entries(section, weighted=weighted)
    for label, (name, params, _weight) in entries.items():
        with registry.located(f"{key}.{label}"):
            component = registry.load(group, name)
        _validate_mapping(cfg, signature_of(component, group), params, f"{key}.{label}", f"{registry.SINGULAR[group]} '{name}'")


def _validate_mapping(cfg: Config, signature: Any, params: Any, key: str, what: str) -> None:
    from fwi_lightning.signature import dataclass_fields, dataclass_type, matches, type_name

    if not isinstance(params, dict):
        raise cfg.error(key, f"{what} expects a mapping of parameters, got {params!r}")
    for name, value in params.items():
        path = f"{key}.{name}"
        param = signature.params.get(name)
        if param is None:
            if signature.open:
                continue
            valid = sorted(signature.params)
            raise cfg.error(
                path,
                f"unknown parameter '{name}' of {what}{suggestion(name, valid)}; valid keys: {', '.join(valid) or '(none)'}",
            )
        ref = param.ref
        if ref is not None:
            if value is None:
                continue
            if ref.per_split:
                if not isinstance(value, dict):
                    raise cfg.error(path, f"{what} expects {{split: section}} for '{name}', got {value!r}")
                for split, section in value.items():
                    _validate_components(cfg, ref.group, section, f"{path}.{split}", weighted=ref.weighted)
            elif ref.mapping:
                _validate_components(cfg, ref.group, value, path, weighted=ref.weighted)
            else:
                _validate_component(cfg, ref.group, value, path)
            continue
        if not matches(value, param.annotation):
            raise cfg.error(path, f"{what} expects {type_name(param.annotation)} for '{name}', got {value!r}")
        nested = dataclass_type(param.annotation)
        if nested is not None and isinstance(value, dict):
            _validate_mapping(cfg, dataclass_fields(nested), value, path, f"{what} {name}")
            _check_constructs(nested, value, key)
    missing = [p.name for p in signature.params.values() if p.required and p.name not in params]
    if missing:
        raise cfg.error(key, f"{what} needs '{missing[0]}' (missing)")


def _check_constructs(cls: type, values: dict[str, Any], parent: str) -> None:
    """Build a small dataclass section (a survey, the checkpoint settings) now, so its own
    checks (grid, stability, positions) report against the full key path before
    anything heavy runs; its keys are relative to `parent`, the section that holds it."""
    from fwi_lightning import registry
    from fwi_lightning.signature import make_dataclass

    with registry.located(parent):
        make_dataclass(cls, values)


def _validate_trainer(cfg: Config, section: Any) -> None:
    """Lightning Trainer arguments: known names, the types of Trainer's own annotations,
    and an accelerator this machine has."""
    from lightning.pytorch import Trainer

    from fwi_lightning.signature import matches, signature_of, type_name

    if section is None:
        cfg.values["trainer"] = {}
        return
    if not isinstance(section, dict):
        raise cfg.error("trainer", f"trainer expects a mapping of Lightning Trainer arguments, got {section!r}")
    params = {n: p for n, p in signature_of(Trainer).params.items() if n not in MANAGED_TRAINER_KEYS}
    for name, value in section.items():
        if name in MANAGED_TRAINER_KEYS:
            raise cfg.error(f"trainer.{name}", f"'{name}' is set by fwi-run; use the top-level 'logger'/'callbacks'/'run_dir'/'checkpoint' sections")
        if name not in params:
            raise cfg.error(f"trainer.{name}", f"unknown Lightning Trainer argument '{name}'{suggestion(name, params)}")
        if not matches(value, params[name].annotation):
            raise cfg.error(f"trainer.{name}", f"Lightning's Trainer expects {type_name(params[name].annotation)} for '{name}', got {value!r}")
    _check_accelerator(cfg, section.get("accelerator"))


def _check_accelerator(cfg: Config, accelerator: Any) -> None:
    """A named accelerator must be one Lightning knows and this machine has ('gpu' is CUDA or MPS)."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    if not isinstance(accelerator, str) or accelerator == "auto":
        return
    known = sorted(AcceleratorRegistry.available_accelerators())
    if accelerator != "gpu" and accelerator not in known:
        choices = ["auto", "gpu", *known]
        raise cfg.error("trainer.accelerator", f"unknown accelerator '{accelerator}'{suggestion(accelerator, choices)}; choose one of {', '.join(choices)}")
    wanted = [a for a in ("cuda", "mps") if a in known] if accelerator == "gpu" else [accelerator]
    if not any(AcceleratorRegistry[a]["accelerator"].is_available() for a in wanted):
        present = [a for a in ("cuda", "mps", "cpu") if a in known and AcceleratorRegistry[a]["accelerator"].is_available()]
        raise cfg.error(
            "trainer.accelerator",
            f"accelerator '{accelerator}' is not available on this machine (available: {', '.join(present)}); "
            "use trainer.accelerator=auto (or cpu)",
        )
