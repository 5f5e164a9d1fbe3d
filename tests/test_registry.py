"""The entry-point registry, exercised with fake plugin distributions."""

from __future__ import annotations

import sys

import pytest

from fwi_lightning import registry
from fwi_lightning.errors import RegistryError

TOY = """
class ToyNet:
    '''A toy network for registry tests.'''
    def __init__(self, problem=None, width: int = 4):
        self.width = width
"""


BUILTINS = {
    "paradigms": {"supervised"},
    "networks": {"tiny", "inversionnet", "unet", "lstm", "transformer"},
    "velocity": {"flatvel", "curvevel", "flatfault", "curvefault", "style", "model_file", "marmousi"},
    "datamodules": {"simulated", "openfwi"},
    "losses": {"l1", "l2", "ssim", "tv", "edge"},
    "callbacks": {"early_stopping", "lr_monitor", "figures"},
    "critics": {"velocitygan"},
}


@pytest.mark.parametrize("group", registry.GROUPS)
def test_builtins_are_registered_by_fwi_lightning_itself(group):
    found = {e.name: e for e in registry.entries(group)}
    assert BUILTINS[group] <= set(found)
    assert {found[name].distribution for name in BUILTINS[group]} == {"fwi-lightning"}


def test_listing_imports_nothing(fake_distribution):
    fake_distribution("toy-plugin", "2.5", {"networks": {"toynet": "toy_never_imported:ToyNet"}})
    entries = {e.name: e for e in registry.entries("networks")}
    assert entries["toynet"].distribution == "toy-plugin"
    assert entries["toynet"].version == "2.5"
    assert "toy_never_imported" not in sys.modules


def test_load_plugin_component_and_record_its_distribution(fake_distribution):
    fake_distribution("toy-plugin", "2.5", {"networks": {"toynet": "toy_nets:ToyNet"}}, {"toy_nets": TOY})
    cls = registry.load("networks", "toynet")
    assert cls.__name__ == "ToyNet"
    assert registry.loaded_distributions["toy-plugin"] == "2.5"
    built = registry.build("networks", {"name": "toynet", "width": 7}, key="model.network", problem=None)
    assert built.width == 7


def test_unknown_name_suggests_the_closest_and_names_group_and_key():
    with pytest.raises(RegistryError) as info:
        registry.load("networks", "inversionet", key="model.network.name")
    text = str(info.value)
    assert "'inversionnet'" in text and "networks" in text and "model.network.name" in text
    assert "installed" in text


def test_module_attr_form_is_accepted_anywhere(fake_distribution):
    fake_distribution("loose-code", "0.1", {}, {"loose_nets": TOY})
    assert registry.load("networks", "loose_nets:ToyNet").__name__ == "ToyNet"
    with pytest.raises(RegistryError, match="cannot import 'loose_nets:Missing'"):
        registry.load("networks", "loose_nets:Missing")


def test_broken_plugin_is_skipped_in_listing_but_fatal_when_requested(fake_distribution):
    fake_distribution("broken-plugin", "0.3", {"losses": {"broken": "broken_mod:Loss"}}, {"broken_mod": "raise ImportError('no gpu here')"})
    assert "broken" in registry.names("losses")
    with pytest.warns(UserWarning, match="skipping loss 'broken'"):
        skipped = registry.warn_broken("losses")
    assert [e.name for e in skipped] == ["broken"]
    with pytest.raises(RegistryError) as info:
        registry.load("losses", "broken", key="model.losses.broken")
    assert "broken-plugin" in str(info.value) and "no gpu here" in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)
    # other components of the group still load
    assert registry.load("losses", "l1").__name__ == "L1"


def test_strict_mode_raises_the_first_plugin_failure(fake_distribution, monkeypatch):
    fake_distribution("broken-plugin", "0.3", {"losses": {"broken": "broken_mod2:Loss"}}, {"broken_mod2": "raise RuntimeError('boom')"})
    monkeypatch.setenv("FWI_LIGHTNING_STRICT_PLUGINS", "1")
    with pytest.raises(RegistryError, match="boom"):
        registry.warn_broken("losses")


def test_disabled_distribution_is_ignored(fake_distribution, monkeypatch):
    fake_distribution("toy-plugin", "2.5", {"networks": {"toynet": "toy_nets:ToyNet"}}, {"toy_nets": TOY})
    monkeypatch.setenv("FWI_LIGHTNING_DISABLE_PLUGINS", "toy-plugin")
    assert "toynet" not in registry.names("networks")


def test_two_distributions_claiming_one_name_is_an_error_naming_both(fake_distribution):
    fake_distribution("plugin-a", "1.0", {"networks": {"twin": "a_mod:ToyNet"}})
    fake_distribution("plugin-b", "1.0", {"networks": {"twin": "b_mod:ToyNet"}})
    with pytest.raises(RegistryError) as info:
        registry.entries("networks")
    assert "plugin-a" in str(info.value) and "plugin-b" in str(info.value) and "'twin'" in str(info.value)


def test_empty_group_tells_how_to_install(monkeypatch):
    monkeypatch.setattr(registry.entrypoints, "get_group_all", lambda group: [])
    with pytest.raises(RegistryError, match=r"pip install -e \."):
        registry.entries("networks")


def test_unknown_group_is_rejected():
    with pytest.raises(RegistryError, match="unknown component group 'network'.*'networks'"):
        registry.names("network")


def test_weighted_mapping_entries():
    entries = registry.mapping_entries({"l1": 1.0, "ssim": {"weight": 0.5, "window": 7}, "tv": None, "twice": {"name": "l1"}}, weighted=True)
    assert entries == {"l1": ("l1", {}, 1.0), "ssim": ("ssim", {"window": 7}, 0.5), "twice": ("l1", {}, 1.0)}
    with pytest.raises(RegistryError, match="mapping keyed by component name"):
        registry.mapping_entries(["l1"], weighted=True)
