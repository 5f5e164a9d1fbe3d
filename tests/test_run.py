"""`fwi-run` end to end on the quickstart experiment: run folder, summary, figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fwi_lightning.cli import main

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "quickstart.yaml"
#: Shrinks quickstart further so the test suite stays fast.
SMALL = ["trainer.max_epochs=1", "data.sizes.train=16", "data.sizes.val=8", "data.sizes.test=8", "logger=csv"]


def _run_dir(stdout: str) -> Path:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("run dir: "), last
    return Path(last[len("run dir: "):])


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    proc = subprocess.run(
        [sys.executable, "-m", "fwi_lightning", str(QUICKSTART), f"run_dir={root}", *SMALL],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _run_dir(proc.stdout), proc


@pytest.mark.slow
def test_run_folder_layout(quickstart_run):
    run_dir, _ = quickstart_run
    assert run_dir.parent.name == "quickstart" and run_dir.name.startswith("quickstart-")
    for item in ("config.yaml", "metrics.csv", "summary.json", "checkpoints/last.ckpt", "figures"):
        assert (run_dir / item).exists(), item


@pytest.mark.slow
def test_summary_holds_finite_test_metrics_best_checkpoint_seed_and_versions(quickstart_run):
    run_dir, proc = quickstart_run
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = summary["metrics"]
    assert {"test/mae", "test/rmse", "test/ssim"} <= set(metrics)
    assert all(isinstance(v, float) and v == v and abs(v) != float("inf") for v in metrics.values())
    assert Path(summary["best_checkpoint"]).is_file()
    assert summary["seed"] == 0
    assert {"fwi-lightning", "torch", "lightning", "deepwave"} <= set(summary["versions"])
    assert f"test/mae: {metrics['test/mae']:.6g}" in proc.stdout


@pytest.mark.slow
def test_resolved_config_is_what_ran(quickstart_run):
    from omegaconf import OmegaConf

    run_dir, _ = quickstart_run
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.trainer.max_epochs == 1 and cfg.data.sizes.train == 16 and cfg.logger.name == "csv"


@pytest.mark.slow
def test_metrics_csv_is_namespaced(quickstart_run):
    run_dir, _ = quickstart_run
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert any(h.startswith("train/") for h in header)
    assert any(h.startswith("val/") for h in header)
    assert any(h.startswith("test/") for h in header)


def test_dry_run_builds_without_writing(tmp_path, capsys):
    assert main([str(QUICKSTART), f"run_dir={tmp_path}", "--dry-run", "logger=csv"]) == 0
    out = capsys.readouterr().out
    assert "parameters:" in out
    assert not any(tmp_path.iterdir())


def test_unwritable_run_dir_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main([str(QUICKSTART), f"run_dir={blocker}", *SMALL]) == 2
    err = capsys.readouterr().err
    assert "run_dir" in err and "cannot create the run folder" in err and err.count("\n") == 1
    assert blocker.read_text() == "not a folder"
