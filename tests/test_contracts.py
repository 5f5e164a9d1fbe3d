"""The plugin contracts of `fwi_lightning.testing`, run over every built-in component.

Generated from the registry, so a component registered in pyproject.toml is checked
without touching this file: each network, loss, velocity family, data module and
callback on its own, and the mixing matrix: every paradigm with every network it takes,
every loss and every callback, each a fast_dev_run fit + test on the tiny preset.
The last tests show that the checks catch broken components.
"""

from __future__ import annotations

import glob
import os
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fwi_lightning import registry, testing
from fwi_lightning.errors import ConfigError

BUILTIN = "fwi-lightning"
REPO = Path(__file__).resolve().parents[1]


def builtins(group: str) -> list[str]:
    """Names registered by fwi-lightning itself (installed plugins have their own tests)."""
    return [e.name for e in registry.entries(group) if e.distribution == BUILTIN]


def slots(paradigm: str, group: str) -> list[str]:
    """The paradigm's parameters holding components of `group`."""
    return [p for p, ref in testing.nested_components("paradigms", paradigm).items() if ref.group == group]


def network_base(paradigm: str) -> type:
    """The network base class a paradigm's network parameters take (`network_base`; velocity backbones by default)."""
    from fwi_lightning.networks.base import VelocityNetwork

    return getattr(registry.load("paradigms", paradigm), "network_base", VelocityNetwork)


def velocity_networks() -> list[str]:
    """The built-in data -> velocity backbones (the coordinate networks of ``pinn`` have their own tests)."""
    from fwi_lightning.networks.base import VelocityNetwork

    return [name for name in builtins("networks") if issubclass(registry.load("networks", name), VelocityNetwork)]


def trains_with(paradigm: str, loss: str) -> bool:
    """Whether the paradigm accepts the loss: one that trains without labels takes only label-free losses."""
    label_free = not getattr(registry.load("paradigms", paradigm), "reads_labels", True)
    return not (label_free and getattr(registry.load("losses", loss), "reads_labels", True))


def matrix() -> list[tuple[str, str, str]]:
    """(paradigm, parameter, component) for every paradigm and every network, loss and callback it can take."""
    rows = []
    for paradigm in builtins("paradigms"):
        for param in slots(paradigm, "networks"):
            base = network_base(paradigm)
            rows += [(paradigm, param, name) for name in builtins("networks") if issubclass(registry.load("networks", name), base)]
        for param in slots(paradigm, "losses"):
            rows += [(paradigm, param, name) for name in builtins("losses") if trains_with(paradigm, name)]
        rows += [(paradigm, "callbacks", name) for name in builtins("callbacks")]
    return rows


# ---------------------------------------------------------------------------
# Files for the components that read one


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> dict:
    """``model_file`` settings: a 24 x 200 dipping-layer model at 10 m (lateral variation, so windows differ)."""
    z, x = np.meshgrid(np.arange(24), np.arange(200), indexing="ij")
    model = 1800.0 + 2400.0 * np.clip((z + 0.05 * x) / 34.0, 0.0, 1.0) + 100.0 * np.sin(x / 7.0)
    path = tmp_path_factory.mktemp("model_file") / "dipping.npy"
    np.save(path, model.astype(np.float32))
    return {"path": str(path), "file_spacing": 10.0}


@pytest.fixture(scope="module")
def openfwi_files(tmp_path_factory) -> dict:
    """``openfwi`` settings: OpenFWI-layout npy files simulated from the tiny preset (two files for training)."""
    folder = tmp_path_factory.mktemp("openfwi")
    datamodule = testing.tiny_datamodule(testing.tiny_data_config(sizes={"train": 4, "val": 2, "test": 2}))
    for split in ("train", "val", "test"):
        for part, batch in enumerate(datamodule.dataloader(split)):
            np.save(folder / f"{split}_data{part}.npy", batch["data"].numpy())
            np.save(folder / f"{split}_model{part}.npy", batch["velocity"].numpy())
    assert len(glob.glob(str(folder / "train_data*.npy"))) == 2
    return {
        "data_files": {s: str(folder / f"{s}_data*.npy") for s in ("train", "val", "test")},
        "model_files": {s: str(folder / f"{s}_model*.npy") for s in ("train", "val", "test")},
        "survey": dict(testing.TINY_SURVEY),
        "velocity_range": list(testing.TINY_VELOCITY_RANGE),
        "batch_size": 2,
    }


@pytest.fixture
def settings(request) -> Callable[[str, str], dict]:
    """settings(group, name): the tiny settings, with file paths for the components that need them."""

    def get(group: str, name: str) -> dict:
        if (group, name) == ("velocity", "model_file"):
            return request.getfixturevalue("model_file")
        if (group, name) == ("datamodules", "openfwi"):
            return request.getfixturevalue("openfwi_files")
        if (group, name) == ("datamodules", "simulated"):
            return {k: v for k, v in testing.tiny_data_config().items() if k != "name"}
        if (group, name) in (("velocity", "marmousi"), ("velocity", "marmousi2")):
            from fwi_lightning.data.families.model_file import DATA_ENV, MARMOUSI2_FILE, MARMOUSI_FILE

            file = MARMOUSI_FILE if name == "marmousi" else MARMOUSI2_FILE
            root = os.environ.get(DATA_ENV)
            if not root or not os.path.isfile(os.path.join(root, file)):
                pytest.skip(f"{name} not found: set {DATA_ENV} to the folder holding {file}")
        return testing.tiny_settings(group, name)

    return get


# ---------------------------------------------------------------------------
# Every built-in on its own


@pytest.mark.parametrize("name", velocity_networks())
def test_network_contract(name, settings):
    testing.check_network(name, **settings("networks", name))


@pytest.mark.parametrize("name", builtins("losses"))
def test_loss_contract(name, settings):
    testing.check_loss(name, **settings("losses", name))


@pytest.mark.parametrize("name", builtins("velocity"))
def test_velocity_family_contract(name, settings):
    testing.check_velocity_family(name, **settings("velocity", name))


@pytest.mark.parametrize("name", builtins("datamodules"))
def test_datamodule_contract(name, settings):
    testing.check_datamodule(name, **settings("datamodules", name))


@pytest.mark.parametrize("name", builtins("callbacks"))
def test_callback_contract(name, settings):
    testing.check_callback(name, **settings("callbacks", name))


# ---------------------------------------------------------------------------
# The mixing matrix


@pytest.mark.slow
@pytest.mark.parametrize(("paradigm", "param", "name"), matrix(), ids=lambda v: str(v))
def test_mixing_matrix(paradigm, param, name, settings):
    if param == "callbacks" and name == "task_curriculum":
        # its schedule names loss labels: give every paradigm the same label-free loss to schedule
        schedule = {"kind": "step", "stages": [[0, {"tv": 1.0}]]}
        testing.check_paradigm(paradigm, losses={"tv": 1.0}, callbacks={name: {"schedule": schedule}})
        return
    if param == "callbacks":
        params = settings("callbacks", name)
        callback = registry.build_mapping("callbacks", {name: params}, key="callbacks")[name][0]
        knob = getattr(callback, "knob", None)
        data = testing.TINY_PARADIGM_DATA.get(paradigm)
        module = testing.tiny_datamodule(data) if knob and data is not None else None
        if module is not None and all(hasattr(module, stream) for stream in testing.PAIRED_STREAMS):
            params = {**params, "domain": "source"}  # two streams: a knob curriculum names the one it turns
            module = module.source
        if module is not None and knob not in module.knobs():
            # e.g. a one-model survey has no family or sample mix to weight: refused in one line, naming the knob
            with pytest.raises(ConfigError, match=f"has no knob '{knob}'; its knobs: "):
                testing.check_paradigm(paradigm, callbacks={name: params})
            return
        testing.check_paradigm(paradigm, callbacks={name: params})
        return
    group = testing.nested_components("paradigms", paradigm)[param].group
    if group == "networks":
        testing.check_paradigm(paradigm, **{param: {"name": name, **settings(group, name)}})
    else:
        testing.check_paradigm(paradigm, **{param: {name: {"weight": 1.0, **settings(group, name)}}})


def test_matrix_holds_every_component_declared_in_pyproject():
    # The expected names come from pyproject.toml's entry-point tables, not from the
    # registry the matrix is generated from: a built-in dropped by the registry (or a
    # stale install) leaves the matrix short and fails here.
    with open(REPO / "pyproject.toml", "rb") as handle:
        declared = tomllib.load(handle)["project"]["entry-points"]
    names = {group: set(declared[f"fwi_lightning.{group}"]) for group in ("paradigms", "networks", "losses", "callbacks")}
    rows = set(matrix())
    assert {p for p, _, _ in rows} == names["paradigms"]
    for paradigm in names["paradigms"]:
        assert {n for p, param, n in rows if p == paradigm and param == "callbacks"} == names["callbacks"]
    # The supervised paradigm takes one backbone (`network`) and a loss mapping (`losses`); the
    # coordinate networks (points -> values) go with pinn alone.
    coordinate = {n for n in names["networks"] if n.startswith("pinn_")}
    assert {(param, n) for p, param, n in rows if p == "supervised" and param != "callbacks"} == (
        {("network", n) for n in names["networks"] - coordinate} | {("losses", n) for n in names["losses"]})
    assert {(param, n) for p, param, n in rows if p == "pinn" and param not in ("callbacks", "losses")} == (
        {(param, n) for param in ("wavefield", "velocity_network") for n in coordinate})


# ---------------------------------------------------------------------------
# The checks catch broken components

BROKEN = """
import numpy as np
import torch
from torch import nn

from fwi_lightning.data.families.base import VelocityFamily
from fwi_lightning.losses.base import VelocityLoss
from fwi_lightning.networks.base import VelocityNetwork


class Unbounded(VelocityNetwork):
    '''Returns normalised velocity without mapping it back to m/s.'''
    def __init__(self, problem):
        super().__init__(problem)
        self.layer = nn.Linear(1, 1)
    def forward(self, data):
        return self.layer(data.mean(dim=(1, 2, 3))[:, None])[:, :, None, None].expand(-1, 1, *self.velocity_shape).contiguous()


class UnusedParameter(VelocityNetwork):
    '''Bounded and shaped right, but one layer never takes part.'''
    def __init__(self, problem):
        super().__init__(problem)
        self.used, self.unused = nn.Linear(1, 1), nn.Linear(1, 1)
    def normalised(self, data):
        return torch.tanh(self.used(data.mean(dim=(1, 2, 3))[:, None]))[:, :, None, None].expand(-1, 1, *self.velocity_shape)


class GlobalRandom(VelocityFamily):
    '''Draws from numpy's global generator: not reproducible from (seed, split, index).'''
    def generate(self, rng, split):
        return np.random.uniform(*self.velocity_range, size=self.shape)


class KeyErrorLoss(VelocityLoss):
    '''Reads the labels without the DataError guard.'''
    def forward(self, prediction, batch):
        return (prediction - batch["velocity"]).abs().mean()


class Backwards(VelocityLoss):
    '''Rewards distance from the truth.'''
    def forward(self, prediction, batch):
        return -(self.problem.normalise_velocity(prediction) - self.normalised_target(batch)).abs().mean()
"""


@pytest.fixture
def broken(fake_distribution):
    fake_distribution("broken-components", "0.1", {}, {"broken_components": BROKEN})
    return "broken_components:"


@pytest.mark.parametrize(("check", "component", "message"), [
    ("check_network", "Unbounded", "outside velocity_range"),
    ("check_network", "UnusedParameter", "no gradient reaches unused"),
    ("check_velocity_family", "GlobalRandom", "differs"),
    ("check_loss", "KeyErrorLoss", "raised KeyError"),
    ("check_loss", "Backwards", "true velocity scores"),
])
def test_checks_catch_broken_components(broken, check, component, message):
    with pytest.raises(AssertionError, match=message):
        getattr(testing, check)(broken + component)


def test_check_rejects_an_unknown_parameter_as_yaml_would():
    with pytest.raises(ConfigError, match="unknown parameter 'widht'.*did you mean 'width'"):
        testing.check_network("tiny", widht=4)
