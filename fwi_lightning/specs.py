"""Annotations that tell the config validator where a parameter holds another component.

A component (paradigm, network, data module, ...) declares its YAML parameters as
ordinary keyword arguments of its constructor. A parameter that is itself a component,
or a name-keyed mapping of components, is annotated with one of these markers, so the
validator checks the nested section against that component's own signature:

    from fwi_lightning.specs import NetworkSpec, LossesSpec

    class MyParadigm(ParadigmBase):
        def __init__(self, problem, network: NetworkSpec, losses: LossesSpec = None, lr: float = 1e-3): ...

This module imports nothing heavy: the CLI reads it before torch is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional


@dataclass(frozen=True)
class ComponentRef:
    """Marks a parameter whose value is the config of a registered component.

    Attributes:
        group: entry-point group suffix, e.g. ``"networks"``.
        mapping: True when the value is a name-keyed mapping ``{name: params}`` of
            several components (losses, callbacks, velocity families) rather than one
            section with a ``name`` key.
        weighted: True when each mapping entry also takes a ``weight`` (a bare number
            as the entry's value is read as the weight).
        per_split: True when the value is ``{split: section}`` and each split's section
            is what the other fields describe (e.g. velocity families per split).
    """

    group: str
    mapping: bool = False
    weighted: bool = False
    per_split: bool = False


NetworkSpec = Annotated[Optional[dict], ComponentRef("networks")]
ParadigmSpec = Annotated[Optional[dict], ComponentRef("paradigms")]
DataModuleSpec = Annotated[Optional[dict], ComponentRef("datamodules")]
LossesSpec = Annotated[Optional[dict], ComponentRef("losses", mapping=True, weighted=True)]
FamiliesSpec = Annotated[Optional[dict], ComponentRef("velocity", mapping=True, weighted=True)]
SplitFamiliesSpec = Annotated[Optional[dict], ComponentRef("velocity", mapping=True, weighted=True, per_split=True)]
CallbacksSpec = Annotated[Optional[dict], ComponentRef("callbacks", mapping=True)]
CriticSpec = Annotated[Optional[dict], ComponentRef("critics")]

#: Constructor parameters the framework passes itself, never read from YAML, per group.
INJECTED: dict[str, tuple[str, ...]] = {
    "paradigms": ("problem",),
    "networks": ("problem", "in_features"),  # in_features: coordinate networks, from the pinn paradigm
    "losses": ("problem",),
    "velocity": ("shape", "spacing", "velocity_range"),
    "datamodules": ("seed",),
    "callbacks": (),
    "critics": ("problem",),
}


def component_ref(annotation: Any) -> ComponentRef | None:
    """The `ComponentRef` carried by an `Annotated[...]` annotation, or None."""
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, ComponentRef):
            return meta
    return None
