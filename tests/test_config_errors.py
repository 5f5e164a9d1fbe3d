"""Configuration errors through the real `fwi-run` entry: each exits 2 with one line naming
the file and the full key, no traceback, and nothing written (Step 12, Step 19)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from fwi_lightning import registry
from fwi_lightning.cli import main
from fwi_lightning.config import load_config, validate
from fwi_lightning.errors import RegistryError
from fwi_lightning.testing import TINY_NETWORK, check_network, tiny_experiment

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "quickstart.yaml"

#: A combined data module (``source:`` holds another data module) whose inner module
#: builds velocity families and fails on its first sample when asked: errors raised at
#: validation, at build and after build must all name the full key.
NESTED = """
from fwi_lightning import registry
from fwi_lightning.errors import ConfigError
from fwi_lightning.specs import DataModuleSpec, FamiliesSpec


class Inner:
    '''Inner data module: velocity families on a 16 x 16 grid.'''

    def __init__(self, seed: int = 0, families: FamiliesSpec = None, first_sample: str = "ok"):
        self.families = registry.build_mapping(
            "velocity", families, key="families", weighted=True,
            shape=(16, 16), spacing=10.0, velocity_range=(1500.0, 4500.0),
        )
        self.first_sample = first_sample

    @property
    def problem(self):
        raise ConfigError(f"cannot simulate the first sample ({self.first_sample})", key="first_sample")


class Combined:
    '''Combined data module: a source stream.'''

    def __init__(self, seed: int = 0, source: DataModuleSpec = None):
        self.source = registry.build("datamodules", source, key="source", seed=seed)

    @property
    def problem(self):
        with registry.located("source"):
            return self.source.problem


class Unannotated:
    '''A network whose width carries no annotation.'''

    def __init__(self, problem, width=4):
        self.width = width
"""

#: The class name is misspelt in the entry point (the module defines ``Combined``).
ENTRY_POINTS = {
    "datamodules": {"combined": "nested_components:Combined", "inner": "nested_components:Inner", "misspelt": "nested_components:Combnied"},
    "networks": {"unannotated": "nested_components:Unannotated"},
}


def _fails(capsys, args: list[str], key: str, *fragments: str) -> str:
    """Run fwi-run in-process; assert exit 2 and one 'error:' line naming `key` and `fragments`."""
    status = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert f"key '{key}'" in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture
def nested(fake_distribution, tmp_path):
    """An experiment file on the combined data module, and the run folder root it names."""
    fake_distribution("nested-plugin", "1.0", ENTRY_POINTS, {"nested_components": NESTED})
    data = {"name": "combined", "source": {"name": "inner", "families": {"flatvel": 1.0}}}
    experiment = tiny_experiment({"name": "supervised", "network": dict(TINY_NETWORK)}, data=data, run_dir=tmp_path / "runs")
    path = tmp_path / "nested.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path, tmp_path / "runs"


# ---------------------------------------------------------------------------
# Step 12: errors in nested sections name the full key


def test_unknown_key_in_a_nested_family_names_the_full_path_at_validation(capsys, tmp_path):
    err = _fails(capsys, [QUICKSTART, "data.families.flatvel.layerz=3", f"run_dir={tmp_path / 'runs'}", "--dry-run"],
                 "data.families.flatvel.layerz", "velocity family 'flatvel'", "(did you mean 'layers'?)")
    assert err.startswith(f"error: {QUICKSTART} (command line): ")
    assert not (tmp_path / "runs").exists()


def test_nested_data_module_validation_names_the_full_path(nested, capsys):
    path, runs = nested
    _fails(capsys, [path, "data.source.batch_size=2"], "data.source.batch_size", "data module 'inner'", "valid keys: families, first_sample")
    _fails(capsys, [path, "data.source.families.flatvel.layerz=3"], "data.source.families.flatvel.layerz", "(did you mean 'layers'?)")
    _fails(capsys, [path, "data.source.name=innr"], "data.source.name", "unknown data module 'innr'", "(did you mean 'inner'?)")
    assert not runs.exists()


def test_a_family_constructor_error_in_a_nested_data_module_names_the_full_path(nested, capsys):
    """Build path: flatvel rejects layers [0, 1] in its constructor (validation only checks the type)."""
    path, runs = nested
    _fails(capsys, [path, "data.source.families.flatvel.layers=[0,1]"], "data.source.families.flatvel.layers",
           "expected 1 <= min <= max layers", f"{path} (command line)")
    assert not runs.exists()


def test_an_error_after_build_names_the_full_path(nested, capsys):
    """`datamodule.problem` fails (the first sample): the runner's located('data') and the
    combined module's located('source') give the full key."""
    path, runs = nested
    _fails(capsys, [path, "data.source.first_sample=broken"], "data.source.first_sample", "cannot simulate the first sample (broken)")
    assert not runs.exists()


def test_located_prefixes_relative_keys_and_leaves_file_errors_alone():
    from fwi_lightning.errors import ConfigError, DataError

    with pytest.raises(ConfigError) as info, registry.located("data"), registry.located("families.flatvel"):
        raise ConfigError("bad", key="layers")
    assert info.value.key == "data.families.flatvel.layers"
    with pytest.raises(ConfigError) as info, registry.located("data"):
        raise ConfigError("bad")
    assert info.value.key == "data"
    with pytest.raises(DataError) as info, registry.located("data"):
        raise DataError("corrupt", file="/x/m.npy")
    assert info.value.key is None and info.value.file == "/x/m.npy"


# ---------------------------------------------------------------------------
# Step 19: trainer and checkpoint values


def test_trainer_value_of_the_wrong_type_exits_2_on_dry_run(capsys, tmp_path):
    _fails(capsys, [QUICKSTART, "trainer.max_epochs=ten", f"run_dir={tmp_path / 'runs'}", "--dry-run"],
           "trainer.max_epochs", "expects int or null", "'ten'")
    _fails(capsys, [QUICKSTART, "trainer.gradient_clip_val=high", "--dry-run"], "trainer.gradient_clip_val", "int or float")
    assert not (tmp_path / "runs").exists()


def test_checkpoint_values_lightning_would_reject_are_caught_at_validation(capsys, tmp_path):
    runs = f"run_dir={tmp_path / 'runs'}"
    _fails(capsys, [QUICKSTART, "checkpoint.every_n_train_steps=-3", runs], "checkpoint.every_n_train_steps", ">= 1", "-3")
    _fails(capsys, [QUICKSTART, "checkpoint.save_top_k=-2", runs], "checkpoint.save_top_k", "-1 (keep all)")
    _fails(capsys, [QUICKSTART, "checkpoint.every_n_train_steps=often", runs], "checkpoint.every_n_train_steps", "int or null")
    assert not (tmp_path / "runs").exists()


def test_unavailable_accelerator_names_the_key_and_the_fix(capsys, tmp_path):
    import torch

    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has a GPU")
    _fails(capsys, [QUICKSTART, "trainer.accelerator=gpu", f"run_dir={tmp_path / 'runs'}"],
           "trainer.accelerator", "not available on this machine", "trainer.accelerator=auto")
    _fails(capsys, [QUICKSTART, "trainer.accelerator=cpuu", "--dry-run"], "trainer.accelerator", "(did you mean 'cpu'")
    assert not (tmp_path / "runs").exists()


def test_lightning_error_while_building_the_trainer_becomes_one_line(capsys, tmp_path):
    """A value of the right type that Lightning still rejects: its message, keyed at the argument it names."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment({"name": "supervised", "network": dict(TINY_NETWORK)}, run_dir=tmp_path / "runs")))
    _fails(capsys, [path, "trainer.gradient_clip_algorithm=sideways", "--dry-run"],
           "trainer.gradient_clip_algorithm", "Lightning rejects this setting", "['value', 'norm']")


# ---------------------------------------------------------------------------
# Step 19: files, merging and replacing sections


def test_empty_experiment_file_blames_the_file(capsys, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    status = main([str(empty), "--dry-run"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {empty}: ") and "is empty" in err
    assert "defaults.yaml" not in err


def test_missing_required_section_blames_the_experiment_file_not_the_defaults(capsys, tmp_path):
    partial = tmp_path / "partial.yaml"
    partial.write_text("schema_version: 1\nmodel: {name: supervised, network: {name: tiny}}\n")
    err = _fails(capsys, [partial, "--dry-run"], "data", "section 'data' is required")
    assert err.startswith(f"error: {partial}: ")


def test_tilde_deletes_a_mapping_so_the_command_line_replaces_it():
    merged = load_config(QUICKSTART, ["data.families={curvevel: 1.0}"]).values["data"]["families"]
    assert merged == {"flatvel": 1.0, "curvefault": 0.5, "curvevel": 1.0}  # plain assignment merges
    for overrides in (["~data.families", "data.families.curvevel=1.0"], ["~data.families", "data.families={curvevel: 1.0}"]):
        cfg = validate(load_config(QUICKSTART, overrides))
        assert cfg.values["data"]["families"] == {"curvevel": 1.0}
    cfg = load_config(QUICKSTART, ["~callbacks"])
    assert "callbacks" not in cfg.values  # deleted from the defaults too


def test_tilde_with_a_value_is_one_line(capsys):
    status = main([str(QUICKSTART), "~data.families=x"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "~KEY" in err


def test_swapping_a_component_by_name_drops_the_old_parameters(nested, capsys):
    cfg = validate(load_config(QUICKSTART, ["model.network.name=tiny"]))
    assert cfg.values["model"]["network"] == {"name": "tiny"}  # inversionnet's channels are gone
    kept = load_config(QUICKSTART, ["model.network.name=inversionnet"]).values["model"]["network"]
    assert kept["channels"] == [8, 16, 16, 32, 64]  # same name: merged as before
    path, _ = nested
    swapped = load_config(path, ["data.source.name=combined", "data.source.source.name=inner"]).values["data"]
    assert swapped == {"name": "combined", "source": {"name": "combined", "source": {"name": "inner"}}}
    assert main([str(QUICKSTART), "model.network.name=tiny", "--print-config"]) == 0


# ---------------------------------------------------------------------------
# Step 19: plugin authors' mistakes


def test_unannotated_parameter_fails_the_plugin_checks_and_warns_in_strict_listing(nested, monkeypatch, capsys):
    with pytest.raises(AssertionError, match="network 'unannotated': parameter 'width' has no type annotation"):
        check_network("unannotated")
    monkeypatch.setenv("FWI_LIGHTNING_STRICT_PLUGINS", "1")
    monkeypatch.setenv("FWI_LIGHTNING_DISABLE_PLUGINS", "")
    with warnings.catch_warnings(record=True) as caught:
        assert main(["list", "networks"]) == 0
    messages = [str(w.message) for w in caught]
    assert any("network 'unannotated' (nested-plugin): parameter 'width' has no type annotation" in m for m in messages), messages
    assert not any("'inversionnet'" in m for m in messages), messages
    assert "unannotated   nested-plugin 1.0" in capsys.readouterr().out  # still listed


def test_misspelt_class_in_an_entry_point_suggests_the_closest(nested, capsys):
    with pytest.raises(RegistryError, match=r"has no attribute 'Combnied' \(did you mean 'Combined'\?\)") as info:
        registry.load("datamodules", "misspelt")
    assert "nested-plugin" in str(info.value)
    path, _ = nested
    _fails(capsys, [path, "data.name=misspelt", "~data.source"], "data.name", "did you mean 'Combined'")


def test_messages_use_singular_component_names(capsys):
    _fails(capsys, [QUICKSTART, "model.losses.ssim.window=big"], "model.losses.ssim.window", "loss 'ssim' expects int")
    _fails(capsys, [QUICKSTART, "model.losses.ssmi=1.0"], "model.losses.ssmi", "unknown loss 'ssmi'")
    _fails(capsys, [QUICKSTART, "callbacks.figures.every_n_epoch=2"], "callbacks.figures.every_n_epoch", "callback 'figures'")
    _fails(capsys, [QUICKSTART, "data.families.flatvell=1.0"], "data.families.flatvell", "unknown velocity family")
