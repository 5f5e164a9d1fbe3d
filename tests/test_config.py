"""Config loading, precedence, removal and validation messages, with toy plugin components."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Optional

import pytest

from fwi_lightning.cli import main
from fwi_lightning.config import load_config, validate
from fwi_lightning.errors import ConfigError, FWIError

TOY_MODULE = """
from typing import Literal, Optional, Sequence
from dataclasses import dataclass
from fwi_lightning.specs import NetworkSpec, LossesSpec

@dataclass(frozen=True)
class Geometry:
    nz: int = 8
    spacing: float = 10.0

class ToyNet:
    '''Toy network.'''
    def __init__(self, problem, width: int = 4, activation: Literal["relu", "gelu"] = "relu"):
        self.width = width

class ToyParadigm:
    '''Toy paradigm.'''
    def __init__(self, problem, network: NetworkSpec, losses: LossesSpec = None, lr: float = 1e-3):
        self.network, self.lr = network, lr

class ToyData:
    '''Toy data module.'''
    def __init__(self, seed, geometry: Geometry = Geometry(), sizes: Optional[Sequence[int]] = None, batch_size: int = 2):
        self.geometry = geometry
"""

EXPERIMENT = """
schema_version: 1
model:
  name: toy_paradigm
  network: {name: toy_net, width: 8}
  losses: {l1: 1.0}
data:
  name: toy_data
  geometry: {nz: 16}
logger: csv
"""


@pytest.fixture
def toy(fake_distribution, tmp_path):
    root = fake_distribution(
        "toy-plugin",
        "1.0",
        {
            "paradigms": {"toy_paradigm": "toy_components:ToyParadigm"},
            "networks": {"toy_net": "toy_components:ToyNet"},
            "datamodules": {"toy_data": "toy_components:ToyData"},
        },
        {"toy_components": TOY_MODULE},
    )
    path = tmp_path / "exp.yaml"
    path.write_text(EXPERIMENT)
    return path, root


def test_valid_experiment_passes_and_names_default_to_the_file_stem(toy):
    path, _ = toy
    cfg = validate(load_config(path))
    assert cfg.values["name"] == "exp" and cfg.values["group"] == "exp"
    assert cfg.values["model"]["network"] == {"name": "toy_net", "width": 8}
    assert cfg.values["logger"] == {"name": "csv"}


def test_precedence_defaults_base_file_command_line(tmp_path):
    (tmp_path / "base2.yaml").write_text("trainer: {max_epochs: 3}\nseed: 10\nrun_dir: from_base2\n")
    (tmp_path / "base1.yaml").write_text("base: [base2.yaml]\nseed: 11\ntrainer: {max_steps: 7}\n")
    (tmp_path / "exp.yaml").write_text("base: [base1.yaml]\nseed: 12\n")
    cfg = load_config(tmp_path / "exp.yaml")
    assert cfg.values["trainer"]["accelerator"] == "auto"  # defaults
    assert cfg.values["trainer"]["max_epochs"] == 3  # base of base
    assert cfg.values["trainer"]["max_steps"] == 7  # base
    assert cfg.values["run_dir"] == "from_base2"
    assert cfg.values["seed"] == 12  # file over bases
    assert load_config(tmp_path / "exp.yaml", ["seed=13"]).values["seed"] == 13  # command line wins
    assert cfg.origin("trainer.max_epochs").endswith("base2.yaml")
    assert "base" not in cfg.values


def test_null_removes_a_component(toy):
    path, _ = toy
    cfg = validate(load_config(path, ["callbacks.figures=null", "logger=null"]))
    assert cfg.values["callbacks"] == {"figures": None}
    assert cfg.values["logger"] is None


def test_base_cycle_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("base: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("base: [a.yaml]\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("model.network.widht=8", ["key 'model.network.widht'", "'width'", "(command line)"]),
        ("model.network.name=toy_nte", ["'toy_net'", "model.network.name"]),
        ("model.network.width=wide", ["expects int", "'wide'"]),
        ("model.network.activation=tanh", ["one of 'relu', 'gelu'"]),
        ("model.lrr=0.1", ["'lr'", "model.lrr"]),
        ("data.geometry.nzz=4", ["'nz'", "data.geometry.nzz"]),
        ("data.sizes=[1,x]", ["expects list of int"]),
        ("trainer.max_epoch=3", ["'max_epochs'", "trainer.max_epoch"]),
        ("trainer.logger=false", ["set by fwi-run"]),
        ("modle.name=x", ["'model'", "unknown top-level"]),
        ("checkpoint.mode=best", ["one of 'min', 'max'"]),
        ("logger.name=tensorboard", ["one of 'wandb', 'csv'"]),
        ("seed=abc", ["seed must be an integer"]),
        ("schema_version=2", ["schema_version must be 1"]),
        ("callbacks.early_stoping={}", ["'early_stopping'"]),
        ("callbacks.early_stopping.patiance=2", ["'patience'"]),
    ],
)
def test_validation_errors_name_file_key_and_fix(toy, override, fragments):
    path, _ = toy
    with pytest.raises(FWIError) as info:
        validate(load_config(path, [override]))
    text = str(info.value)
    assert str(path) in text, text
    for fragment in fragments:
        assert fragment in text, text
    assert "\n" not in text


def test_misspelled_key_in_the_file_names_the_file(toy):
    path, _ = toy
    path.write_text(EXPERIMENT.replace("width: 8", "widht: 8"))
    with pytest.raises(ConfigError) as info:
        validate(load_config(path))
    assert str(info.value).startswith(f"{path}: key 'model.network.widht'")
    assert "(did you mean 'width'?)" in str(info.value)


def test_yaml_syntax_error_names_the_file_and_line(toy):
    path, _ = toy
    path.write_text("model: {name: toy\ndata: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "line" in str(info.value)


def test_missing_file_and_bad_override_form(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "e.yaml").write_text("seed: 1\n")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(tmp_path / "e.yaml", ["trainer.max_epochs"])


def test_cli_in_process_prints_one_line_and_exits_2(toy, capsys):
    path, _ = toy
    assert main([str(path), "model.network.widht=8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "model.network.widht" in err and "'width'" in err and str(path) in err


def test_cli_print_config_resolves_overrides(toy, capsys):
    path, _ = toy
    assert main([str(path), "--print-config", "seed=5"]) == 0
    out = capsys.readouterr().out
    assert "seed: 5" in out and "name: toy_net" in out


def test_cli_subprocess_misspelled_key_exit_status_2(toy):
    path, root = toy
    env = {"PYTHONPATH": str(root), "PATH": "", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "fwi_lightning", str(path), "model.network.widht=8"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "model.network.widht" in proc.stderr and "'width'" in proc.stderr


def test_help_and_list_do_not_import_torch():
    code = textwrap.dedent(
        """
        import sys, io, contextlib
        from fwi_lightning.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["list"]) == 0
            try:
                main(["--help"])
            except SystemExit:
                pass
        heavy = [m for m in ("torch", "lightning", "numpy", "omegaconf", "wandb") if m in sys.modules]
        print(heavy)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_list_shows_every_group_with_distribution(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for group in ("paradigms:", "networks:", "velocity:", "datamodules:", "losses:", "callbacks:"):
        assert group in out
    assert "inversionnet  fwi-lightning" in out.replace("   ", "  ")


def test_quickstart_misspelled_width_on_command_line_and_in_yaml(tmp_path, capsys):
    from pathlib import Path

    quickstart = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml"
    assert main([str(quickstart), "model.network.widht=8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{quickstart} (command line): key 'model.network.widht'" in err and "(did you mean 'width'?)" in err
    in_yaml = tmp_path / "typo.yaml"
    in_yaml.write_text(f"base: [{quickstart}]\nmodel: {{network: {{widht: 8}}}}\n")
    assert main([str(in_yaml)]) == 2
    err = capsys.readouterr().err
    assert f"{in_yaml}: key 'model.network.widht'" in err and "(did you mean 'width'?)" in err


def test_inversionnet_width_is_openfwi_proportions():
    from fwi_lightning import registry
    from fwi_lightning.physics.survey import Survey
    from fwi_lightning.problem import Problem

    problem = Problem(Survey(), (1500.0, 4500.0), (-1.0, 1.0))
    net = registry.build("networks", {"name": "inversionnet", "width": 32}, key="model.network", problem=problem)
    assert sum(p.numel() for p in net.parameters()) == 24_409_123


@pytest.mark.parametrize("annotation", [Optional[int], int | None])
def test_both_union_spellings_are_checked(annotation):
    """``Optional[int]`` and ``int | None`` (PEP 604) must be validated alike: before, the
    second form matched anything, so a plugin written in modern syntax went unchecked."""
    from fwi_lightning.signature import matches, type_name

    assert matches(3, annotation) and matches(None, annotation)
    assert not matches("three", annotation) and not matches(2.5, annotation)
    assert type_name(annotation) == "int or null"
