"""One seed, one machine, one result: two quickstart runs give identical summary metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Four subprocess trainings.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SMALL = ["trainer.max_epochs=2", "data.sizes.train=32", "data.sizes.val=8", "data.sizes.test=8", "logger=csv", "callbacks.figures=null"]


def _metrics(run_root: Path, *extra: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-m", "fwi_lightning", str(REPO / "experiments" / "quickstart.yaml"), f"run_dir={run_root}", *SMALL, *extra],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1].removeprefix("run dir: "))
    return json.loads((run_dir / "summary.json").read_text())["metrics"]


def test_same_seed_gives_identical_summary_metrics(tmp_path):
    first = _metrics(tmp_path / "a", "trainer.deterministic=true")
    second = _metrics(tmp_path / "b", "trainer.deterministic=true")
    assert first == second
    assert {"test/mae", "test/ssim", "test/data_misfit"} <= set(first)


def test_another_seed_gives_other_numbers(tmp_path):
    assert _metrics(tmp_path / "a", "seed=1")["test/mae"] != _metrics(tmp_path / "b", "seed=2")["test/mae"]
