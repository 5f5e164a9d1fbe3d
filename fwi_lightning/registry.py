"""Entry-point registry: every component, built-in or from a plugin, is found here.

Components are declared as Python entry points in the groups
``fwi_lightning.<group>`` (see `GROUPS`). The built-ins are declared in
fwi-lightning's own ``pyproject.toml``, exactly as a third-party plugin declares its own.

Public API for plugin authors::

    from fwi_lightning import registry
    registry.names("networks")            # ['inversionnet', 'lstm', ...]; imports nothing
    registry.entries("networks")          # with distribution and version; imports nothing
    cls = registry.load("networks", "unet")
    net = registry.build("networks", {"name": "unet", "width": 16}, key="model.network", problem=p)

Wherever a registered name is accepted, ``package.module:Attr`` is accepted too.

Environment switches:
    FWI_LIGHTNING_STRICT_PLUGINS=1: load every entry point when listing and raise the
        first failure (for plugin developers).
    FWI_LIGHTNING_DISABLE_PLUGINS=dist-a,dist-b: ignore the entry points of these
        distributions.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import entrypoints

from fwi_lightning.errors import FWIError, RegistryError, suggestion

GROUPS: tuple[str, ...] = ("paradigms", "networks", "velocity", "datamodules", "losses", "callbacks", "critics")
PREFIX = "fwi_lightning."

#: What one component of each group is called in messages.
SINGULAR: dict[str, str] = {
    "paradigms": "paradigm",
    "networks": "network",
    "velocity": "velocity family",
    "datamodules": "data module",
    "losses": "loss",
    "callbacks": "callback",
    "critics": "critic",
}

#: Distributions whose components were loaded in this process (for run summaries).
loaded_distributions: dict[str, str] = {}


def _normalise_dist(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


@dataclass(frozen=True)
class Entry:
    """One registered component, as declared (nothing imported).

    Attributes:
        group: group suffix, e.g. ``"networks"``.
        name: the registered name used in YAML.
        target: ``module:attr`` it points to.
        distribution: the distribution that declares it (``"fwi-lightning"`` for built-ins).
        version: that distribution's version.
    """

    group: str
    name: str
    target: str
    distribution: str
    version: str


def _version(dist: str, declared: str | None) -> str:
    """A distribution's version; an egg-info in a source tree declares none, so ask metadata."""
    if declared:
        return declared
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise RegistryError(f"unknown component group '{group}'{suggestion(group, GROUPS)}; groups are {', '.join(GROUPS)}")


def _disabled() -> set[str]:
    raw = os.environ.get("FWI_LIGHTNING_DISABLE_PLUGINS", "")
    return {_normalise_dist(d.strip()) for d in raw.split(",") if d.strip()}


def _all_entries(group: str) -> dict[str, list[Entry]]:
    disabled = _disabled()
    found: dict[str, list[Entry]] = {}
    for ep in entrypoints.get_group_all(PREFIX + group):
        dist = _normalise_dist(ep.distro.name) if ep.distro else "unknown"
        if dist in disabled:
            continue
        target = f"{ep.module_name}:{ep.object_name}" if ep.object_name else ep.module_name
        entry = Entry(group, ep.name, target, dist, _version(dist, ep.distro.version if ep.distro else None))
        same = found.setdefault(ep.name, [])
        if all(e.distribution != entry.distribution for e in same):
            same.append(entry)
    return found


def entries(group: str) -> list[Entry]:
    """Every component registered in `group`, sorted by name. Imports nothing.

    Raises:
        RegistryError: two distributions claim one name, or the group is empty.
    """
    _check_group(group)
    found = _all_entries(group)
    if not found:
        raise RegistryError(
            f"no components registered in group '{PREFIX}{group}': is fwi-lightning installed (pip install -e .)?"
        )
    for name, claims in found.items():
        if len(claims) > 1:
            owners = " and ".join(f"'{c.distribution}' ({c.target})" for c in claims)
            raise RegistryError(f"{SINGULAR[group]} name '{name}' is registered by two distributions: {owners}; uninstall or disable one")
    return [claims[0] for _, claims in sorted(found.items())]


def names(group: str) -> list[str]:
    """The registered names of `group`, sorted. Imports nothing."""
    return [e.name for e in entries(group)]


def entry(group: str, name: str, *, key: str | None = None) -> Entry:
    """The `Entry` registered as `name` in `group`.

    Raises:
        RegistryError: unknown name (with the closest registered names).
    """
    registered = {e.name: e for e in entries(group)}
    if name not in registered:
        raise RegistryError(
            f"unknown {SINGULAR[group]} '{name}'{suggestion(name, registered)}; "
            f"registered in '{PREFIX}{group}': {', '.join(registered)}. Is the package that provides it installed?",
            key=key,
        )
    return registered[name]


def _import_target(target: str) -> Any:
    """The object `module:attr.path` names; a missing attribute suggests the closest one."""
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise AttributeError(f"'{getattr(obj, '__name__', obj)}' has no attribute '{part}'{suggestion(part, public)}")
        obj = getattr(obj, part)
    return obj


def load(group: str, name: str, *, key: str | None = None) -> Any:
    """Import and return the object registered as `name` (or given as ``module:Attr``).

    Raises:
        RegistryError: unknown name, or the providing package fails to import (chained
            to the import error and naming the distribution).
    """
    if ":" in name:
        try:
            return _import_target(name)
        except Exception as exc:
            raise RegistryError(
                f"cannot import '{name}': {type(exc).__name__}: {exc} (is its folder on PYTHONPATH?)", key=key
            ) from exc
    found = entry(group, name, key=key)
    try:
        obj = _import_target(found.target)
    except Exception as exc:
        raise RegistryError(
            f"{SINGULAR[group]} '{name}' from distribution '{found.distribution}' {found.version} failed to load "
            f"({found.target}): {type(exc).__name__}: {exc}",
            key=key,
        ) from exc
    loaded_distributions[found.distribution] = found.version
    return obj


def describe(obj: Any) -> str:
    """The first line of an object's docstring: its one-line description."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def check_all(group: str) -> list[tuple[Entry, Exception | None]]:
    """Load every entry of `group`; pair each with its load error (None when it loaded)."""
    result = []
    for e in entries(group):
        try:
            load(group, e.name)
            result.append((e, None))
        except RegistryError as exc:
            result.append((e, exc))
    return result


def strict_plugins() -> bool:
    """True when FWI_LIGHTNING_STRICT_PLUGINS asks for every plugin to load eagerly."""
    return os.environ.get("FWI_LIGHTNING_STRICT_PLUGINS", "") not in ("", "0", "false", "no")


def warn_broken(group: str) -> list[Entry]:
    """Entries of `group` whose module cannot be found, each warned about once.

    Used by listings: a broken plugin is skipped with one warning line; in strict mode
    the first failure is raised instead, and a parameter without a type annotation
    (whose values validation cannot check) is warned about.
    """
    from fwi_lightning.signature import unannotated

    broken = []
    for e, err in check_all(group):
        if err is not None:
            if strict_plugins():
                raise err
            warnings.warn(f"skipping {SINGULAR[group]} '{e.name}': {err}", stacklevel=2)
            broken.append(e)
        elif strict_plugins():
            for param in unannotated(load(group, e.name), group):
                warnings.warn(
                    f"{SINGULAR[group]} '{e.name}' ({e.distribution}): parameter '{param}' has no type annotation, "
                    "so its YAML value is never checked; annotate it",
                    stacklevel=2,
                )
    return broken


# ---------------------------------------------------------------------------
# Building components from config sections


@contextmanager
def located(key: str) -> Iterator[None]:
    """Errors raised inside name their full key: `key` is prefixed to the (relative) key
    they carry, or becomes their key when they carry none.

    The one place key paths are assembled: `build` and `build_mapping` wrap each section
    they build in it, so a component raises keys relative to its own section
    (``key="layers"``) and a nested build passes its relative key
    (``build_mapping("velocity", spec, key="families")``). An error about a file that
    names no key (a corrupt data file) stays about the file.
    """
    try:
        yield
    except FWIError as exc:
        if exc.key or not exc.file:
            exc.key = f"{key}.{exc.key}" if exc.key else key
        raise


def split_spec(spec: Any) -> tuple[str, dict[str, Any]]:
    """A component section -> (name, params). Accepts ``"name"`` or ``{name: ..., **params}``.

    Raises:
        RegistryError: keyed ``name`` or at the section itself (relative; see `located`).
    """
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str) or not name:
            raise RegistryError("this section needs a 'name' naming a registered component", key="name" if "name" in spec else None)
        return name, params
    raise RegistryError(f"expected a mapping with a 'name' key, got {type(spec).__name__} {spec!r}")


def mapping_entries(spec: Any, *, weighted: bool) -> dict[str, tuple[str, dict[str, Any], float | None]]:
    """A name-keyed mapping section -> {label: (component name, params, weight)}.

    Each entry is keyed by its registered name; its value is a mapping of parameters
    (optionally with ``weight`` and, to use one component twice, ``name``), a bare
    number read as the weight when `weighted`, or null (the entry is dropped).

    Raises:
        RegistryError: keyed by the entry's label, or at the section itself (relative).
    """
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise RegistryError(
            f"expected a mapping keyed by component name, got {type(spec).__name__}; "
            "write e.g. {l1: 1.0} rather than a list"
        )
    result = {}
    for label, value in spec.items():
        if value is None:
            continue
        weight = None
        if isinstance(value, bool) or not isinstance(value, (int, float, Mapping)):
            if value is True:
                value = {}
            else:
                raise RegistryError(
                    f"expected parameters (a mapping){' or a weight' if weighted else ''}, got {value!r}", key=str(label)
                )
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not weighted:
                raise RegistryError(f"expected a mapping of parameters, got {value!r}", key=str(label))
            params: dict[str, Any] = {}
            weight = float(value)
        else:
            params = dict(value)
            if weighted:
                weight = float(params.pop("weight", 1.0))
        name = params.pop("name", label)
        result[str(label)] = (name, params, weight)
    return result


def build(group: str, spec: Any, *, key: str, **injected: Any) -> Any:
    """Build one component from its section: load `spec['name']`, call it with the params.

    Args:
        group: group suffix, e.g. ``"networks"``.
        spec: ``{name: ..., **params}`` or a bare name.
        key: the key path of the section, relative to the component building it (the
            full path at the top level); errors inside name ``<key>.<their key>``.
        **injected: the framework-provided arguments (e.g. ``problem``).
    """
    from fwi_lightning.signature import convert_dataclass_params

    with located(key):
        name, params = split_spec(spec)
        factory = load(group, name, key="name")
        return factory(**injected, **convert_dataclass_params(factory, params, group))


def build_mapping(group: str, spec: Any, *, key: str, weighted: bool = False, **injected: Any) -> dict[str, tuple[Any, float | None]]:
    """Build every entry of a name-keyed mapping: {label: (component, weight)}.

    `key` is as in `build`; an entry's errors name ``<key>.<label>.<their key>``.
    """
    from fwi_lightning.signature import convert_dataclass_params

    built = {}
    with located(key):
        for label, (name, params, weight) in mapping_entries(spec, weighted=weighted).items():
            with located(label):
                factory = load(group, name)
                built[label] = (factory(**injected, **convert_dataclass_params(factory, params, group)), weight)
    return built
