"""Experiment configs: load with OmegaConf, merge, override, validate.

Precedence, lowest first: the package defaults (``defaults.yaml``), the files listed
under ``base:`` (each relative to the file naming it, merged in order, recursively),
the experiment file itself, then ``key=value`` overrides from the command line.
``key=null`` removes a component (a loss, a callback, the logger).

Validation walks every section against the chosen component's own constructor
signature (see `fwi_lightning.signature`) before anything heavy is built; each error
names the file the key came from, the key path, the component and the closest valid key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from fwi_lightning.errors import ConfigError, FWIError, suggestion

SCHEMA_VERSION = 1
DEFAULTS = Path(__file__).with_name("defaults.yaml")
COMMAND_LINE = "command line"


@dataclass(frozen=True)
class CheckpointConfig:
    """Which checkpoints a run keeps (best by `monitor`, and the last)."""

    monitor: str = "val/loss"
    mode: Literal["min", "max"] = "min"
    save_last: bool = True
    save_top_k: int = 1
    every_n_train_steps: Optional[int] = None


@dataclass(frozen=True)
class LoggerConfig:
    """Experiment tracker: ``wandb`` (offline without credentials) or ``csv`` only."""

    name: Literal["wandb", "csv"] = "wandb"
    project: str = "fwi-lightning"
    group: Optional[str] = None
    entity: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    notes: Optional[str] = None
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
        """The file (or 'command line') that set `key` last; the experiment file if none did."""
        for label, layer in reversed(self.sources):
            if _has_path(layer, key):
                return label if label != COMMAND_LINE else f"{self.file} (command line)"
        return str(self.file) if self.file else "config"

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, key=key, file=self.origin(key))

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
    if values is None:
        return {}
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


def _parse_overrides(overrides: list[str], file: Optional[Path]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(
                f"command-line override '{item}' is not of the form key=value (e.g. trainer.max_epochs=5)",
                file=str(file) if file else None,
            )
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)), resolve=False) or {}
    except Exception as exc:
        raise ConfigError(f"cannot parse command-line overrides: {' '.join(str(exc).split())}") from None


def _merge(lower: Any, upper: Any) -> Any:
    """`upper` over `lower`: mappings merge key by key; anything else replaces (so a
    list may replace a mapping and validation, not the merge, says what is wrong)."""
    if isinstance(lower, dict) and isinstance(upper, dict):
        out = dict(lower)
        for key, value in upper.items():
            out[key] = _merge(lower.get(key), value)
        return out
    return upper


def load_config(file: str | Path | None, overrides: list[str] | tuple[str, ...] = (), *, values: dict | None = None) -> Config:
    """Load an experiment: defaults < base files < the file < overrides.

    Args:
        file: path of the experiment YAML (or None with `values`).
        overrides: ``key=value`` strings; ``key=null`` removes a component.
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
        layers.append(("config", dict(values)))
    if overrides:
        layers.append((COMMAND_LINE, _parse_overrides(list(overrides), path)))
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

    Imports the components the config uses (and only those).
    """
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
    _validate_mapping(cfg, dataclass_fields(CheckpointConfig), v.get("checkpoint") or {}, "checkpoint", "checkpoint settings")
    _validate_components(cfg, "callbacks", v.get("callbacks"), "callbacks", weighted=False)
    logger = v.get("logger")
    if isinstance(logger, str):
        v["logger"] = logger = {"name": logger}
    if logger is not None:
        _validate_mapping(cfg, dataclass_fields(LoggerConfig), logger, "logger", "logger")
    return cfg


def _validate_component(cfg: Config, group: str, section: Any, key: str) -> None:
    from fwi_lightning import registry
    from fwi_lightning.signature import signature_of

    try:
        name, params = registry.split_spec(section, key=key)
        component = registry.load(group, name, key=f"{key}.name")
    except FWIError as exc:
        raise _located(cfg, exc, key) from exc.__cause__
    _validate_mapping(cfg, signature_of(component, group), params, key, f"{group.rstrip('s')} '{name}'")


def _validate_components(cfg: Config, group: str, section: Any, key: str, *, weighted: bool) -> None:
    from fwi_lightning import registry
    from fwi_lightning.signature import signature_of

    try:
        entries = registry.mapping_entries(section, key=key, weighted=weighted)
    except FWIError as exc:
        raise _located(cfg, exc, key) from None
    for label, (name, params, _weight) in entries.items():
        try:
            component = registry.load(group, name, key=f"{key}.{label}")
        except FWIError as exc:
            raise _located(cfg, exc, f"{key}.{label}") from exc.__cause__
        _validate_mapping(cfg, signature_of(component, group), params, f"{key}.{label}", f"{group.rstrip('s')} '{name}'")


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
            _check_constructs(cfg, nested, value, key)
    missing = [p.name for p in signature.params.values() if p.required and p.name not in params]
    if missing:
        raise cfg.error(key, f"{what} needs '{missing[0]}' (missing)")


def _check_constructs(cfg: Config, cls: type, values: dict[str, Any], parent: str) -> None:
    """Build a small dataclass section (e.g. a survey) now, so its own checks (grid,
    stability, positions) report against the YAML key path before anything heavy runs."""
    from fwi_lightning.signature import make_dataclass

    try:
        make_dataclass(cls, values)
    except FWIError as exc:
        raise relocate(exc, cfg, parent) from None


def relocate(exc: FWIError, cfg: Config, parent: str) -> ConfigError:
    """A component's own error (key relative to its section) -> one naming the YAML file and full key."""
    if exc.file and not exc.key:
        return ConfigError(exc.message, file=exc.file)
    key = parent if not exc.key else (exc.key if exc.key.startswith(parent + ".") else f"{parent}.{exc.key}")
    return ConfigError(exc.message, key=key, file=cfg.origin(key))


def _validate_trainer(cfg: Config, section: Any) -> None:
    import inspect

    from lightning.pytorch import Trainer

    if section is None:
        cfg.values["trainer"] = {}
        return
    if not isinstance(section, dict):
        raise cfg.error("trainer", f"trainer expects a mapping of Lightning Trainer arguments, got {section!r}")
    valid = [p for p in inspect.signature(Trainer.__init__).parameters if p != "self" and p not in MANAGED_TRAINER_KEYS]
    for name in section:
        if name in MANAGED_TRAINER_KEYS:
            raise cfg.error(f"trainer.{name}", f"'{name}' is set by fwi-run; use the top-level 'logger'/'callbacks'/'run_dir'/'checkpoint' sections")
        if name not in valid:
            raise cfg.error(f"trainer.{name}", f"unknown Lightning Trainer argument '{name}'{suggestion(name, valid)}")


def _located(cfg: Config, exc: FWIError, key: str) -> ConfigError:
    """Re-raise a registry error as a config error naming the file the key came from."""
    where = exc.key or key
    return ConfigError(exc.message, key=where, file=cfg.origin(where))
