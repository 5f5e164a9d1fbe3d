"""What a component accepts, for people: ``fwi-run list NAME`` and ``--print-config``.

Both read the parameters from `fwi_lightning.signature.signature_of`, the signature the
config validator checks against, and the descriptions from the ``Args:`` (or, for a
dataclass, ``Attributes:``) section of the component's Google-style docstring
(`parameter_docs`), so what is listed is what is validated.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from typing import Any, TextIO

from fwi_lightning.errors import RegistryError, suggestion

#: Docstring sections that describe parameters, one ``name: description`` entry each.
PARAMETER_SECTIONS = ("Args", "Arguments", "Attributes", "Parameters")
_SECTION = re.compile(r"^(\s*)([A-Z][A-Za-z ]*):\s*$")
_ENTRY = re.compile(r"^([\w*][\w*, ]*?)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parameter_docs(obj: Any) -> dict[str, str]:
    """Parameter name -> its one-paragraph description from the docstring's ``Args:``
    (or ``Attributes:``) section; an entry naming several parameters (``a, b: ...``)
    describes each. A class's ``__init__`` docstring is read too."""
    docs: dict[str, str] = {}
    sources = [inspect.getdoc(obj) or ""]
    if inspect.isclass(obj) and obj.__init__.__doc__:
        sources.append(inspect.getdoc(obj.__init__) or "")
    for doc in sources:
        for names, text in _entries(doc):
            for name in names:
                docs.setdefault(name, text)
    return docs


def _entries(doc: str) -> list[tuple[list[str], str]]:
    """(names, description) of each entry of the parameter sections of a docstring."""
    found: list[tuple[list[str], str]] = []
    section_indent: int | None = None
    entry_indent: int | None = None
    for line in doc.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        header = _SECTION.match(line)
        if header and (section_indent is None or indent <= section_indent):
            in_params = header.group(2) in PARAMETER_SECTIONS
            section_indent, entry_indent = (indent, None) if in_params else (None, None)
            continue
        if section_indent is None:
            continue
        if indent <= section_indent:
            section_indent = None
            continue
        entry_indent = indent if entry_indent is None else entry_indent
        match = _ENTRY.match(line.strip()) if indent == entry_indent else None
        if match:
            names = [n.strip().lstrip("*") for n in match.group(1).split(",") if n.strip()]
            found.append((names, match.group(2).strip()))
        elif found:
            names, text = found[-1]
            found[-1] = (names, f"{text} {line.strip()}".strip())
    return found


def plain(value: Any) -> Any:
    """A default as YAML would write it: tuples as lists, dataclasses as mappings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ---------------------------------------------------------------------------
# fwi-run list NAME


def find_component(name: str) -> list[tuple[str, Any]]:
    """(group, loaded component) for every group that registers `name`.

    Raises:
        RegistryError: no group registers it (with the closest name or group).
    """
    from fwi_lightning import registry

    found = [(g, registry.load(g, name)) for g in registry.GROUPS if name in registry.names(g)]
    if not found:
        known = sorted({n for g in registry.GROUPS for n in registry.names(g)} | set(registry.GROUPS))
        raise RegistryError(f"no component or group named '{name}'{suggestion(name, known)}; `fwi-run list` shows them all")
    return found


def describe_parameters(component: Any, group: str | None, out: TextIO, indent: str = "  ", prefix: str = "") -> None:
    """Print one line per YAML parameter: ``name: type = default  description``; the fields
    of a dataclass parameter (e.g. the survey) follow, indented, as ``name.field``."""
    from fwi_lightning.signature import dataclass_fields, dataclass_type, signature_of, type_name

    signature = signature_of(component, group) if group is not None or not dataclasses.is_dataclass(component) else dataclass_fields(component)
    docs = parameter_docs(component)
    rows = []
    for param in signature.params.values():
        ref = param.ref
        kind = f"{ref.group} {'mapping' if ref.mapping else 'section'}" if ref else type_name(param.annotation)
        nested = dataclass_type(param.annotation)
        default = "required" if param.required else "defaults below" if nested is not None else f"= {_shown(param.default)}"
        rows.append((f"{prefix}{param.name}", f"{kind}, {default}" if param.required or nested else f"{kind} {default}",
                     " ".join(docs.get(param.name, "").split()), nested))
    if not rows:
        print(f"{indent}(no parameters)", file=out)
        return
    width = max(len(name) for name, *_ in rows)
    for name, what, doc, nested in rows:
        print(f"{indent}{name:<{width}}  {what}" + (f"  -- {doc}" if doc else ""), file=out)
        if nested is not None:
            describe_parameters(nested, None, out, indent + "  ", prefix=f"{name}.")
    if signature.open:
        print(f"{indent}(also takes further keyword parameters)", file=out)


def _shown(default: Any) -> str:
    """A default as written in YAML flow style (``null``, ``[4, 8]``, ``batch``)."""
    import json

    value = plain(default)
    return value if isinstance(value, str) else json.dumps(value)


def print_component(name: str, out: TextIO | None = None) -> None:
    """``fwi-run list NAME``: each registered component of that name with its parameters."""
    from fwi_lightning import registry

    out = out or sys.stdout
    for group, component in find_component(name):
        found = registry.entry(group, name)
        print(f"{name} ({registry.SINGULAR[group]}, {found.distribution} {found.version}): {registry.describe(component)}", file=out)
        describe_parameters(component, group, out)


# ---------------------------------------------------------------------------
# --print-config


def with_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """The resolved config with every component section's unset parameters at their
    defaults (nested components and the survey too); injected ones are left out."""
    out = dict(values)
    for key, group in (("model", "paradigms"), ("data", "datamodules")):
        if isinstance(out.get(key), dict):
            out[key] = _component(group, out[key])
    if isinstance(out.get("callbacks"), dict):
        out["callbacks"] = _mapping("callbacks", out["callbacks"], weighted=False)
    return out


def _component(group: str, section: dict[str, Any]) -> dict[str, Any]:
    from fwi_lightning import registry

    name, params = registry.split_spec(section)
    return {"name": name, **_filled(registry.load(group, name), group, params)}


def _mapping(group: str, section: dict[str, Any], *, weighted: bool) -> dict[str, Any]:
    from fwi_lightning import registry

    out: dict[str, Any] = {}
    entries = registry.mapping_entries(section, weighted=weighted)
    for label, value in section.items():
        if label not in entries:
            out[label] = value
            continue
        name, params, weight = entries[label]
        filled = _filled(registry.load(group, name), group, params)
        head = ({"name": name} if name != label else {}) | ({"weight": weight} if weighted else {})
        out[label] = {**head, **filled}
    return out


def _filled(component: Any, group: str, params: dict[str, Any]) -> dict[str, Any]:
    from fwi_lightning.signature import dataclass_type, signature_of

    signature = signature_of(component, group)
    out: dict[str, Any] = {}
    for param in signature.params.values():
        if param.name in params:
            value = params[param.name]
        elif param.required:
            continue
        else:
            value = plain(param.default)
        ref, nested = param.ref, dataclass_type(param.annotation)
        if ref is not None and isinstance(value, dict):
            if ref.per_split:
                value = {split: _mapping(ref.group, v, weighted=ref.weighted) if isinstance(v, dict) else v for split, v in value.items()}
            elif ref.mapping:
                value = _mapping(ref.group, value, weighted=ref.weighted)
            else:
                value = _component(ref.group, value)
        elif nested is not None and isinstance(value, dict):
            value = {**plain(nested()), **value} if _constructible(nested) else value
        out[param.name] = value
    out.update({k: v for k, v in params.items() if k not in out})
    return out


def _constructible(cls: type) -> bool:
    """True when a dataclass has a default for every field (its defaults can be listed)."""
    return all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING for f in dataclasses.fields(cls) if f.init)
