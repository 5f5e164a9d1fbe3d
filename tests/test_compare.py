"""`fwi-run compare`: two finished tiny runs (network width 4 and 8) -> a table of the config
keys that differ with best and test metrics (Markdown, CSV, printed) and a figure grid of
their test predictions, from the run folders alone."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from fwi_lightning.cli import main
from fwi_lightning.compare import RunRecord, sample_predictions
from fwi_lightning.evaluate import find_checkpoint
from fwi_lightning.testing import tiny_batch
from results_helpers import load_direct, train


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    return train(folder, "narrow", width=4), train(folder, "wide", width=8)


def _column(path, name):
    with open(path, newline="") as f:
        return [float(row[name]) for row in csv.DictReader(f) if row.get(name)]


@pytest.mark.slow
def test_compare_writes_table_and_grid_with_the_differing_keys(two_runs, tmp_path, capsys):
    narrow, wide = two_runs
    out = tmp_path / "cmp"
    assert main(["compare", str(narrow), str(wide), "--out", str(out), "--samples", "2"]) == 0
    printed = capsys.readouterr().out
    assert (out / "comparison.md").read_text() in printed

    with open(out / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == [narrow.name, wide.name]
    header = list(rows[0])
    assert "model.network.width" in header and [r["model.network.width"] for r in rows] == ["4", "8"]
    assert "name" in header  # narrow vs wide
    assert "seed" not in header and "data.survey.nx" not in header and "model.name" not in header  # the same in both
    for row, run in zip(rows, (narrow, wide)):
        summary = json.loads((run / "summary.json").read_text())["metrics"]
        assert float(row["test/mae_mps"]) == pytest.approx(summary["test/mae_mps"], rel=1e-3)
        assert float(row["best val/loss"]) == pytest.approx(min(_column(run / "metrics.csv", "val/loss")), rel=1e-3)
        assert float(row["best val/ssim"]) == pytest.approx(max(_column(run / "metrics.csv", "val/ssim")), rel=1e-3)
    markdown = (out / "comparison.md").read_text().splitlines()
    assert markdown[0].startswith("| run |") and "model.network.width" in markdown[0] and len(markdown) == 4

    image = imread(out / "predictions.png")
    assert image.shape[0] > image.shape[1] / 2  # three rows (true, narrow, wide) of two samples


@pytest.mark.slow
def test_grid_predictions_are_the_checkpoints_on_the_test_samples(two_runs):
    narrow, _ = two_runs
    true, predicted, spacing, velocity_range = sample_predictions(RunRecord.load(narrow), 2)
    batch = tiny_batch("test")
    with torch.no_grad():
        expected = load_direct(find_checkpoint(narrow))(batch["data"])[:, 0].numpy()
    np.testing.assert_allclose(predicted, expected, rtol=1e-6)
    np.testing.assert_array_equal(true, batch["velocity"][:, 0].numpy())
    assert spacing == 10.0 and velocity_range == (1500.0, 4500.0)


def test_a_folder_that_is_no_run_is_one_line(tmp_path, capsys):
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and err.count("\n") == 1
    assert not (tmp_path / "cmp").exists()


class _Terminal:
    """A stdout that says it is a terminal."""

    def __init__(self):
        import io

        self.buffer = io.StringIO()

    def write(self, text):
        return self.buffer.write(text)

    def flush(self):
        pass

    def isatty(self):
        return True


def test_final_metrics_are_a_table_in_a_terminal_and_lines_in_a_pipe(monkeypatch, capsys):
    from fwi_lightning.cli import print_metrics

    monkeypatch.delenv("CI", raising=False)
    results = {"test/ssim": 0.5, "test/mae_mps": 123.456789}
    print_metrics(results)
    assert capsys.readouterr().out == "test/mae_mps: 123.457\ntest/ssim: 0.5\n"
    terminal = _Terminal()
    print_metrics(results, out=terminal)
    table = terminal.buffer.getvalue()
    assert "final metrics" in table
    assert table.index("test/mae_mps") < table.index("test/ssim") and "123.457" in table and "┃" in table
