"""What a component accepts from YAML: its constructor parameters, types and defaults.

Shared by the config validator (checks a section before anything is built) and the
registry builder (turns mappings into dataclass instances where a parameter asks).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any

from fwi_lightning.specs import INJECTED, ComponentRef, component_ref


@dataclass(frozen=True)
class Parameter:
    """One YAML-settable parameter of a component (`default` is ``inspect.Parameter.empty`` when required)."""

    name: str
    annotation: Any
    required: bool
    default: Any = inspect.Parameter.empty

    @property
    def ref(self) -> ComponentRef | None:
        return component_ref(self.annotation)


@dataclass(frozen=True)
class Signature:
    """The YAML-settable parameters of a component; `open` when it takes ``**kwargs``."""

    params: dict[str, Parameter]
    open: bool


def _callable_of(obj: Any) -> Any:
    return obj.__init__ if inspect.isclass(obj) else obj


def _hints(obj: Any) -> dict[str, Any]:
    target = _callable_of(obj)
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable annotations: fall back to raw ones
        return dict(getattr(target, "__annotations__", {}))


def signature_of(obj: Any, group: str | None = None) -> Signature:
    """The YAML-settable parameters of a component (injected ones removed)."""
    injected = set(INJECTED.get(group, ())) if group else set()
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return Signature({}, open=True)
    hints = _hints(obj)
    params: dict[str, Parameter] = {}
    is_open = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            is_open = True
            continue
        if p.kind is p.VAR_POSITIONAL or p.name in injected or p.name == "self":
            continue
        params[p.name] = Parameter(p.name, hints.get(p.name, Any), p.default is inspect.Parameter.empty, p.default)
    return Signature(params, is_open)


def unannotated(obj: Any, group: str | None = None) -> list[str]:
    """The YAML-settable parameters of a component that carry no type annotation.

    The validator cannot check a value against a missing annotation, so a wrong-typed
    value would pass and fail deep inside the component; plugin checks flag these.
    """
    injected = set(INJECTED.get(group, ())) if group else set()
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in sig.parameters.values()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        and p.name not in injected
        and p.name != "self"
        and p.annotation is inspect.Parameter.empty
    ]


def _is_union(annotation: Any) -> bool:
    """True for ``Optional[X]``, ``Union[X, Y]`` and the ``X | Y`` form alike."""
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def dataclass_type(annotation: Any) -> type | None:
    """The dataclass an annotation asks for (``X`` or ``Optional[X]``), else None."""
    candidates = [annotation]
    if _is_union(annotation):
        candidates = [a for a in typing.get_args(annotation) if a is not type(None)]
    for c in candidates:
        if typing.get_origin(c) is typing.Annotated:
            c = typing.get_args(c)[0]
        if inspect.isclass(c) and dataclasses.is_dataclass(c):
            return c
    return None


def convert_dataclass_params(obj: Any, params: dict[str, Any], group: str | None = None) -> dict[str, Any]:
    """Replace each mapping whose parameter is annotated with a dataclass by an instance of it."""
    sig = signature_of(obj, group)
    out = dict(params)
    for name, value in params.items():
        p = sig.params.get(name)
        if p is None or not isinstance(value, dict):
            continue
        cls = dataclass_type(p.annotation)
        if cls is not None:
            out[name] = make_dataclass(cls, value)
    return out


def make_dataclass(cls: type, values: dict[str, Any]) -> Any:
    """An instance of dataclass `cls` from a YAML mapping (nested dataclasses too)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    converted = {}
    for k, v in values.items():
        inner = dataclass_type(hints.get(k, Any))
        converted[k] = make_dataclass(inner, v) if inner and isinstance(v, dict) else v
    return cls(**converted)


def dataclass_fields(cls: type) -> Signature:
    """A dataclass's fields as a `Signature` (for validating a nested mapping)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    params = {
        f.name: Parameter(
            f.name,
            hints.get(f.name, Any),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            _field_default(f),
        )
        for f in dataclasses.fields(cls)
        if f.init
    }
    return Signature(params, open=False)


def _field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (its factory called), or ``inspect.Parameter.empty``."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return inspect.Parameter.empty


def type_name(annotation: Any) -> str:
    """A short human-readable name of an annotation, e.g. 'int', 'list of float', 'one of a, b'."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if _is_union(annotation):
        names = [type_name(a) for a in args if a is not type(None)]
        tail = " or null" if type(None) in args else ""
        return " or ".join(names) + tail
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, typing.Sequence) or (origin and getattr(origin, "__name__", "") in ("Sequence", "list", "tuple")):
        inner = {type_name(a) for a in args if a is not Ellipsis}
        return "list" + (f" of {', '.join(sorted(inner))}" if inner else "")
    if origin in (dict,) or (origin and getattr(origin, "__name__", "") in ("Mapping", "dict")):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def matches(value: Any, annotation: Any) -> bool:
    """Whether a plain YAML value (None, bool, int, float, str, list, dict) fits an annotation.

    Unknown or exotic annotations accept anything: validation must never reject what
    the component itself would take.
    """
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return matches(value, args[0])
    if _is_union(annotation):
        return any(matches(value, a) for a in args)
    if annotation is type(None) or annotation is None:
        return value is None
    if origin is typing.Literal:
        return value in args
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if dataclass_type(annotation) is not None:
        return isinstance(value, dict)
    name = getattr(origin or annotation, "__name__", "")
    if name in ("list", "tuple", "Sequence", "MutableSequence"):
        if not isinstance(value, list):
            return False
        if origin is tuple and args and Ellipsis not in args:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
        item = args[0] if args else Any
        return all(matches(v, item) for v in value)
    if name in ("dict", "Mapping", "MutableMapping"):
        return isinstance(value, dict)
    return True
