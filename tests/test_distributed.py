"""A 2-process CPU DDP run (gloo) through `fwi-run`: one run folder, fit and test
complete, and the two ranks train on different samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = '''
import json, os
from pathlib import Path
from lightning.pytorch.callbacks import Callback

class IndexRecorder(Callback):
    """Writes the sample indices each rank trained on to <folder>/rank<R>.json."""
    def __init__(self, folder: str):
        self.folder, self.seen = Path(folder), []
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen += batch["index"].tolist()
    def on_train_end(self, trainer, pl_module):
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))
'''


@pytest.mark.slow
def test_two_process_ddp_fit_and_test_with_disjoint_samples(tmp_path):
    (tmp_path / "ddp_probe.py").write_text(textwrap.dedent(PROBE))
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    env.pop("FWI_LIGHTNING_RUN_DIR", None)
    proc = subprocess.run(
        [
            sys.executable, "-m", "fwi_lightning", str(REPO / "experiments" / "quickstart.yaml"),
            f"run_dir={runs}", "logger=csv", "trainer.max_epochs=1", "trainer.strategy=ddp",
            "trainer.devices=2", "trainer.accelerator=cpu", "data.num_workers=0", "data.cache=false",
            "data.sizes.train=16", "data.sizes.val=8", "data.sizes.test=8", "data.batch_size=4",
            "callbacks.figures=null", f"callbacks.record={{name: 'ddp_probe:IndexRecorder', folder: '{tmp_path}'}}",
        ],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dirs = list((runs / "quickstart").iterdir())
    assert len(run_dirs) == 1, run_dirs  # one folder, created by rank 0 only
    summary = json.loads((run_dirs[0] / "summary.json").read_text())
    assert "test/mae" in summary["metrics"]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert len(rank0) == len(rank1) == 8
    assert not set(rank0) & set(rank1)
    assert sorted(rank0 + rank1) == list(range(16))
