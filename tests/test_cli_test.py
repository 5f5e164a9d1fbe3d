"""`fwi-run test`: evaluate a trained checkpoint on other geology, never train.

A tiny model is trained on flatvel, then evaluated on windows of a velocity file the
test writes (a `model_file` family). The summary and per-sample CSV must equal a direct
evaluation: the checkpoint loaded by hand, run over the same test samples, and scored
with NumPy and scikit-image (not the framework's metrics).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fwi_lightning.cli import main
from fwi_lightning.testing import tiny_data_config, tiny_experiment

#: One epoch of two training batches on CPU.
TRAINER = {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "limit_train_batches": 2, "log_every_n_steps": 1,
           "enable_progress_bar": False, "enable_model_summary": False}


def write_experiment(folder: Path, name: str = "tiny", data: dict | None = None, network: dict | None = None) -> Path:
    """A tiny experiment YAML (tiny preset, tiny network, CSV logger, no figures) in `folder`."""
    values = tiny_experiment({"name": "supervised", "network": network or {"name": "tiny", "width": 4}},
                             data=data or tiny_data_config(), run_dir=folder / "runs")
    values.update(name=name, trainer=dict(TRAINER))
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def run_dir_of(out: str) -> Path:
    """The run folder `fwi-run` printed last."""
    last = out.strip().splitlines()[-1]
    assert last.startswith("run dir: "), out
    return Path(last.removeprefix("run dir: "))


def train(folder: Path, capsys, *overrides: str) -> Path:
    assert main([str(write_experiment(folder)), *overrides]) == 0
    return run_dir_of(capsys.readouterr().out)


def write_velocity_file(path: Path) -> Path:
    """A 2-D model in m/s, [40, 320] at 10 m: velocity rising with depth, a dipping
    interface and lateral variation (so windows differ)."""
    z, x = np.meshgrid(np.arange(40), np.arange(320), indexing="ij")
    model = 1800.0 + 40.0 * z + 300.0 * np.sin(x / 25.0) + 700.0 * (z > 12 + x / 40.0)
    np.save(path, model.astype(np.float32))
    return path


def file_data(velocity_file: Path) -> dict:
    """The tiny preset's data section with only a model_file family ("overthrust")."""
    return tiny_data_config(families={"overthrust": {"name": "model_file", "path": str(velocity_file), "file_spacing": 10.0}},
                            sizes={"train": 4, "val": 2, "test": 4})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on flatvel: (folder, run folder)."""
    folder = tmp_path_factory.mktemp("trained")
    assert main([str(write_experiment(folder))]) == 0
    runs = list((folder / "runs" / "tiny").iterdir())
    assert len(runs) == 1
    return folder, runs[0]


def _direct_evaluation(checkpoint: Path, data: dict) -> list[dict]:
    """Per-sample predictions of the checkpoint on `data`'s test split, scored independently."""
    from skimage.metrics import structural_similarity

    from fwi_lightning.paradigms.supervised import Supervised
    from fwi_lightning.problem import Problem
    from fwi_lightning.testing import tiny_datamodule

    contents = torch.load(checkpoint, map_location="cpu", weights_only=False)
    hparams = dict(contents["hyper_parameters"])
    problem = Problem.from_dict(hparams.pop("problem"))  # the normalisation it was trained with
    model = Supervised(problem=problem, **hparams)
    model.load_state_dict(contents["state_dict"])
    model.eval()
    datamodule = tiny_datamodule(data)
    lo, hi = problem.velocity_range
    rows = []
    for batch in datamodule.test_dataloader():
        batch = datamodule.on_after_batch_transfer(batch, 0)
        with torch.no_grad():
            predicted = model(batch["data"])[:, 0].double().numpy()
        true = batch["velocity"][:, 0].double().numpy()
        for b in range(len(true)):
            error = predicted[b] - true[b]
            unit = [(v - lo) / (hi - lo) for v in (predicted[b], true[b])]
            ssim = structural_similarity(*unit, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, win_size=11)
            rows.append({"index": int(batch["index"][b]), "mae_mps": np.abs(error).mean(),
                         "rmse_mps": np.sqrt((error**2).mean()), "ssim": ssim, "abs_sum": np.abs(error).sum(), "sq_sum": (error**2).sum(),
                         "cells": error.size})
    return rows


def test_test_on_a_velocity_file_matches_direct_evaluation(trained, tmp_path, capsys):
    folder, run_dir = trained
    experiment = write_experiment(tmp_path, "overthrust", data=file_data(write_velocity_file(tmp_path / "overthrust.npy")))
    before = sorted(p.name for p in run_dir.rglob("*"))

    assert main(["test", str(run_dir), str(experiment), "callbacks.figures.n_samples=2"]) == 0
    captured = capsys.readouterr()
    test_dir = run_dir_of(captured.out)
    assert "evaluating" in captured.err and test_dir.name.startswith("overthrust-test-")

    summary = json.loads((test_dir / "summary.json").read_text())
    checkpoint = Path(summary["evaluated_checkpoint"])
    assert checkpoint.parent.parent == run_dir and checkpoint.name.startswith("best-")
    assert summary["global_step"] == 0  # never trained
    assert not (test_dir / "checkpoints").exists()
    assert (test_dir / "figures" / "test_gallery.png").is_file()
    assert sorted(p.name for p in run_dir.rglob("*")) == before

    direct = _direct_evaluation(checkpoint, file_data(tmp_path / "overthrust.npy"))
    assert len(direct) == 4
    lo, hi = 1500.0, 4500.0
    cells = sum(r["cells"] for r in direct)
    metrics = summary["metrics"]
    assert metrics["test/mae"] == pytest.approx(sum(r["abs_sum"] for r in direct) / cells * 2 / (hi - lo), rel=1e-5)
    assert metrics["test/rmse"] == pytest.approx(np.sqrt(sum(r["sq_sum"] for r in direct) / cells) * 2 / (hi - lo), rel=1e-5)
    assert metrics["test/ssim"] == pytest.approx(np.mean([r["ssim"] for r in direct]), abs=1e-4)
    assert 0 < metrics["test/data_misfit"]

    with open(test_dir / summary["samples"]) as f:
        rows = {int(r["index"]): r for r in csv.DictReader(f)}
    assert set(rows) == {r["index"] for r in direct}
    for r in direct:
        row = rows[r["index"]]
        assert row["family"] == "overthrust"
        assert float(row["mae_mps"]) == pytest.approx(r["mae_mps"], rel=1e-5)
        assert float(row["rmse_mps"]) == pytest.approx(r["rmse_mps"], rel=1e-5)
        assert float(row["mae"]) == pytest.approx(r["mae_mps"] * 2 / (hi - lo), rel=1e-5)
        assert float(row["ssim"]) == pytest.approx(r["ssim"], abs=1e-4)


def test_test_without_a_file_uses_the_runs_config(trained, capsys):
    _, run_dir = trained
    assert main(["test", str(run_dir / "checkpoints" / "last.ckpt")]) == 0
    test_dir = run_dir_of(capsys.readouterr().out)
    summary = json.loads((test_dir / "summary.json").read_text())
    assert summary["evaluated_checkpoint"].endswith("last.ckpt") and test_dir.name.startswith("tiny-test-")
    assert {"test/mae", "test/ssim"} <= set(summary["metrics"])


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["data.survey.nx=20"], ["key 'data'", "data.survey.nx: 16 in the checkpoint, 20 here"]),
        (["data.velocity_range=[1500,5000]"], ["data.velocity_range: [1500.0, 4500.0] in the checkpoint, [1500.0, 5000.0] here"]),
        (["model.network.width=8"], ["key 'model.network'", "model.network.width"]),
    ],
)
def test_test_refuses_data_or_network_other_than_trained(trained, capsys, overrides, named):
    folder, run_dir = trained
    runs_before = set((folder / "runs" / "tiny").iterdir())
    assert main(["test", str(run_dir), *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for text in named:
        assert text in err, err
    assert set((folder / "runs" / "tiny").iterdir()) == runs_before  # no folder written


def test_a_file_that_is_no_run_checkpoint_is_one_line(tmp_path, capsys):
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    assert main(["test", str(tmp_path / "foreign.ckpt"), str(write_experiment(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "was not written by an fwi-lightning run" in err and err.count("\n") == 1


def test_a_missing_run_folder_is_one_line(capsys):
    assert main(["test", "/nonexistent/run"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint at /nonexistent/run;" in err and err.count("\n") == 1


def test_a_checkpoint_without_its_run_config_needs_a_file(trained, tmp_path, capsys):
    _, run_dir = trained
    lone = tmp_path / "lone.ckpt"
    lone.write_bytes((run_dir / "checkpoints" / "last.ckpt").read_bytes())
    assert main(["test", str(lone)]) == 2
    err = capsys.readouterr().err
    assert "no config.yaml in the run folder" in err and "EXPERIMENT.yaml" in err and err.count("\n") == 1


@pytest.mark.slow
def test_wandb_without_credentials_prints_one_line(tmp_path, monkeypatch, capfd):
    """The offline notice is the only W&B line (W&B's own banner and warnings stay quiet)."""
    pytest.importorskip("wandb")
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert main([str(write_experiment(tmp_path)), "logger.name=wandb"]) == 0
    captured = capfd.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.lower().startswith("wandb")]
    assert len(lines) == 1 and lines[0].startswith("wandb: no credentials found, logging offline"), lines
