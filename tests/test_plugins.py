"""Third-party plugins end to end: the example package, a broken plugin beside it, the two switches.

Nothing is installed here: the example plugin is installed by CI (``pip install -e
plugins/fwi-lightning-example``) and its tests are skipped when it is absent; the broken
plugin is a fake distribution put on sys.path for one test (conftest's `fake_distribution`).
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from fwi_lightning import registry, testing
from fwi_lightning.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "plugins" / "fwi-lightning-example"
EXAMPLE_DIST = "fwi-lightning-example"
#: The example plugin's component in each group.
EXAMPLE_COMPONENTS = {
    "paradigms": "example_noise_consistency",
    "networks": "example_mlp",
    "velocity": "example_anomaly",
    "datamodules": "example_dead_traces",
    "losses": "example_gradient_difference",
    "callbacks": "example_saturation",
}
BROKEN_DIST = "fwi-lightning-broken"
BROKEN_ERROR = "libfoo.so.1: cannot open shared object file"


def example_version() -> str | None:
    try:
        return metadata.version(EXAMPLE_DIST)
    except metadata.PackageNotFoundError:
        return None


needs_example = pytest.mark.skipif(
    example_version() is None,
    reason=f"{EXAMPLE_DIST} is not installed; CI installs it with `pip install -e plugins/{EXAMPLE_DIST}`",
)


def listing(capsys, *args: str) -> tuple[int, dict[str, str], str]:
    """Run `fwi-run list ARGS`: (exit status, {name: its line}, stderr)."""
    status = main(["list", *args])
    captured = capsys.readouterr()
    lines = {line.split()[0]: line for line in captured.out.splitlines() if line.startswith("  ")}
    return status, lines, captured.err


@pytest.fixture
def broken_plugin(fake_distribution):
    """A plugin distribution whose module raises ImportError on import, with a network and a loss."""
    fake_distribution(
        BROKEN_DIST, "0.2",
        {"networks": {"broken_net": "fwi_lightning_broken:BrokenNet"}, "losses": {"broken_loss": "fwi_lightning_broken:BrokenLoss"}},
        {"fwi_lightning_broken": f"raise ImportError({BROKEN_ERROR!r})"},
    )


def write_experiment(folder: Path, model: dict) -> Path:
    """A tiny experiment YAML (fast_dev_run, CSV logger) with this model section, its runs under `folder`."""
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(testing.tiny_experiment(model, run_dir=folder / "runs")))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ---------------------------------------------------------------------------
# (a, b) the example plugin, installed


@needs_example
def test_list_shows_every_example_component_with_distribution_and_version(capsys):
    status, lines, _ = listing(capsys)
    assert status == 0
    for name in EXAMPLE_COMPONENTS.values():
        assert f"{EXAMPLE_DIST} 0.1.0" in lines[name], lines.get(name)
    assert "fwi-lightning 0.1.0" in lines["supervised"]


@needs_example
def test_verbose_list_loads_and_describes_every_example_component(capsys):
    status, lines, _ = listing(capsys, "--verbose")
    assert status == 0
    for group, name in EXAMPLE_COMPONENTS.items():
        described = registry.describe(registry.load(group, name))
        assert described and lines[name].endswith(described), lines[name]
        assert "LOAD ERROR" not in lines[name]


@needs_example
def test_example_experiment_mixing_plugin_and_builtins_fits_and_tests(tmp_path, capsys):
    status, out, err = run_cli(capsys, EXAMPLE / "experiments" / "example.yaml", f"run_dir={tmp_path}", "logger=csv")
    assert status == 0, err[-2000:]
    run_dir = Path(out.strip().splitlines()[-1].removeprefix("run dir: "))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["versions"][EXAMPLE_DIST] == "0.1.0"
    assert summary["epochs"] == 2 and Path(summary["best_checkpoint"]).is_file()
    metrics = summary["metrics"]
    assert 0.0 < metrics["test/mae"] < 1.0  # on the [-1, 1] scale: the run predicts inside the range
    assert {"test/flatvel/mae", "test/example_anomaly/mae"} <= set(metrics)  # both families, plugin and built-in
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    # logged by the plugin paradigm, plugin loss, plugin callback and built-in callback
    assert {"train/consistency", "train/example_gradient_difference", "train/l1", "val/saturation", "lr-AdamW"} <= set(header)


# ---------------------------------------------------------------------------
# (c) a broken plugin beside it


def test_broken_plugin_does_not_break_listing(broken_plugin, capsys):
    status, lines, _ = listing(capsys)
    assert status == 0
    assert f"{BROKEN_DIST} 0.2" in lines["broken_net"] and "fwi-lightning 0.1.0" in lines["tiny"]
    status, lines, _ = listing(capsys, "--verbose")
    assert status == 0
    assert "LOAD ERROR" in lines["broken_net"] and BROKEN_ERROR in lines["broken_net"] and BROKEN_DIST in lines["broken_net"]
    assert "LOAD ERROR" not in lines["tiny"] and "LOAD ERROR" not in lines["l1"]
    if example_version():
        assert "LOAD ERROR" not in lines[EXAMPLE_COMPONENTS["networks"]]


def test_broken_plugin_does_not_break_experiments_that_do_not_use_it(broken_plugin, tmp_path, capsys):
    experiment = write_experiment(tmp_path, {"name": "supervised", "network": {"name": "tiny", "width": 4}, "losses": {"l1": 1.0}})
    status, out, err = run_cli(capsys, experiment)
    assert status == 0, err[-2000:]
    assert out.strip().splitlines()[-1].startswith("run dir: ")


@pytest.mark.parametrize(("model", "key"), [
    ({"name": "supervised", "network": {"name": "broken_net"}}, "model.network.name"),
    ({"name": "supervised", "network": {"name": "tiny"}, "losses": {"l1": 1.0, "broken_loss": 0.5}}, "model.losses.broken_loss"),
])
def test_experiment_using_a_broken_plugin_fails_in_one_line_naming_it(broken_plugin, tmp_path, capsys, model, key):
    experiment = write_experiment(tmp_path, model)
    status, _, err = run_cli(capsys, experiment)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(experiment) in lines[0] and f"key '{key}'" in lines[0]
    assert f"'{BROKEN_DIST}' 0.2" in lines[0] and f"ImportError: {BROKEN_ERROR}" in lines[0]
    assert not (tmp_path / "runs").exists()  # failed before any run folder was made


# ---------------------------------------------------------------------------
# (d) the switches documented in fwi_lightning/registry.py


@pytest.mark.parametrize("args", [(), ("--verbose",)])
def test_strict_listing_raises_the_first_plugin_failure(broken_plugin, monkeypatch, capsys, args):
    monkeypatch.setenv("FWI_LIGHTNING_STRICT_PLUGINS", "1")
    status, _, err = listing(capsys, *args)
    assert status == 2
    assert BROKEN_DIST in err and BROKEN_ERROR in err


def test_strict_listing_passes_when_every_plugin_loads(monkeypatch, capsys):
    monkeypatch.setenv("FWI_LIGHTNING_STRICT_PLUGINS", "1")
    status, lines, err = listing(capsys, "--verbose")
    assert status == 0, err
    assert not any("LOAD ERROR" in line for line in lines.values())


@pytest.mark.parametrize("spelling", [BROKEN_DIST, "fwi_lightning_broken", f"some-other-dist, {BROKEN_DIST.upper()}"])
def test_disabled_plugin_disappears_and_strict_mode_passes_again(broken_plugin, monkeypatch, capsys, spelling):
    monkeypatch.setenv("FWI_LIGHTNING_DISABLE_PLUGINS", spelling)
    monkeypatch.setenv("FWI_LIGHTNING_STRICT_PLUGINS", "1")
    status, lines, err = listing(capsys, "--verbose")
    assert status == 0, err
    assert "broken_net" not in lines and "broken_loss" not in lines and "tiny" in lines


def test_disabled_plugin_is_unknown_to_experiments(broken_plugin, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FWI_LIGHTNING_DISABLE_PLUGINS", BROKEN_DIST)
    experiment = write_experiment(tmp_path, {"name": "supervised", "network": {"name": "broken_net"}})
    status, _, err = run_cli(capsys, experiment)
    assert status == 2
    assert "unknown network 'broken_net'" in err and "Is the package that provides it installed?" in err


@needs_example
def test_disabling_the_example_plugin_hides_its_components(monkeypatch, capsys):
    monkeypatch.setenv("FWI_LIGHTNING_DISABLE_PLUGINS", EXAMPLE_DIST)
    status, lines, _ = listing(capsys)
    assert status == 0
    assert not set(EXAMPLE_COMPONENTS.values()) & set(lines)
    assert "supervised" in lines
