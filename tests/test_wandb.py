"""W&B: an offline run of a tiny experiment holds, in its run folder, the full config, group,
tags and job type, the metrics with best-value summaries, the figures and the per-sample test
table (family, errors, SSIM, thumbnail). Read from W&B's own record file and media folder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import wandb
import yaml

from fwi_lightning.cli import main
from fwi_lightning.logging import thumbnail
from results_helpers import wandb_records, write_experiment


def _finished_records(path, timeout_s: float = 60.0) -> list:
    """The run file's records once W&B's service has written its exit record (it writes
    asynchronously, and may still be flushing when `finish` returns)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        records = wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wandb")
    mp = pytest.MonkeyPatch()
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        mp.setenv(var, str(folder / "wandb-home"))  # W&B's staging and caches stay in the test folder
    mp.setenv("WANDB_MODE", "offline")
    wandb.finish()  # an earlier test's unfinished run would be reused by Lightning's WandbLogger
    path = write_experiment(folder, "tracked", logger={"name": "wandb", "project": "fwi-tests", "group": "geology",
                                                       "tags": ["tiny", "flatvel"], "job_type": "sweep-member"})
    values = yaml.safe_load(path.read_text())
    values["callbacks"]["figures"] = {"n_samples": 1}
    path.write_text(yaml.safe_dump(values))
    try:
        assert main([str(path)]) == 0
    finally:
        mp.undo()
        wandb.finish()
    run_dir = next((folder / "runs" / "tracked").iterdir())
    offline = next((run_dir / "wandb").glob("offline-run-*"))
    records = _finished_records(next(offline.glob("run-*.wandb")))
    by_kind: dict = {}
    for record in records:
        by_kind.setdefault(record.WhichOneof("record_type"), []).append(record)
    return run_dir, offline, by_kind


@pytest.mark.slow
def test_offline_run_has_group_tags_job_type_and_full_config(offline_run):
    run_dir, _, records = offline_run
    run = records["run"][0].run
    assert run.run_group == "geology" and list(run.tags) == ["tiny", "flatvel"] and run.job_type == "sweep-member"
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["seed"] == written["seed"] and config["data"]["survey"]["nt"] == 120
    assert config["model"]["network"] == {**written["model"]["network"], "pooled": config["model"]["network"]["pooled"]}
    assert config["data"]["numerics"] == "fast" and "numerics" not in written["data"]  # defaults filled in


@pytest.mark.slow
def test_offline_run_has_best_value_summaries_of_the_metrics(offline_run):
    run_dir, _, records = offline_run
    declared = {r.metric.name: ("max" if r.metric.summary.max else "min") for r in records["metric"] if r.metric.name}
    assert declared["val/loss"] == "min" and declared["val/ssim"] == "max" and declared["test/mae_mps"] == "min"
    assert not any(name.startswith("figures/") for name in declared)  # images get no min/max
    summary = {}
    for record in records["summary"]:
        for update in record.summary.update:
            summary[update.key or "/".join(update.nested_key)] = json.loads(update.value_json)
    final = json.loads((run_dir / "summary.json").read_text())["metrics"]
    assert summary["test/ssim"] == {"max": pytest.approx(final["test/ssim"])}
    assert summary["test/mae_mps"] == {"min": pytest.approx(final["test/mae_mps"])}
    with open(run_dir / "metrics.csv", newline="") as f:
        val_losses = [float(row["val/loss"]) for row in csv.DictReader(f) if row["val/loss"]]
    assert summary["val/loss"] == {"min": pytest.approx(min(val_losses))}


@pytest.mark.slow
def test_offline_run_holds_images_and_the_per_sample_table(offline_run):
    _, offline, records = offline_run
    uploaded = [f.path for r in records["files"] for f in r.files.files]
    images = sorted(p.relative_to(offline / "files").as_posix() for p in (offline / "files" / "media" / "images").rglob("*.png"))
    assert any(p.startswith("media/images/figures/test") for p in images) and set(images) <= set(uploaded)
    tables = list((offline / "files" / "media" / "table" / "test").glob("samples_*.table.json"))
    assert len(tables) == 1 and tables[0].relative_to(offline / "files").as_posix() in uploaded
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["index", "family", "domain", "mae", "rmse", "ssim", "mae_mps", "rmse_mps", "thumbnail"]
    assert [row[:2] for row in table["data"]] == [[0, "flatvel"], [1, "flatvel"]]
    assert all(row[-1] is not None for row in table["data"])  # a thumbnail per sample (its pixels go in the run_table artifact)
    assert [r.artifact.type for r in records["artifact"]] == ["run_table"]


def test_thumbnail_is_true_beside_predicted_on_the_velocity_scale():
    true = np.full((4, 3), 1500.0)
    predicted = np.full((4, 3), 4500.0)
    image = thumbnail(true, predicted, (1500.0, 4500.0))
    assert image.shape == (4, 7, 3) and image.dtype == np.uint8
    assert (image[:, 3] == 255).all()  # white column between
    from matplotlib import colormaps

    low, high = (np.round(np.array(colormaps["viridis"](v)[:3]) * 255) for v in (0.0, 1.0))
    assert (image[:, 0] == low).all() and (image[:, -1] == high).all()
