"""Kill a training run with SIGKILL mid-epoch, resume it, and get the uninterrupted run's numbers.

Three subprocess runs of one experiment (on-the-fly data from 2 DataLoader workers, a
checkpoint every training step, deterministic mode): an uninterrupted one; one that
`KillAtStep` kills with SIGKILL in the middle of its second epoch; and ``resume=last``
of the killed one. The resumed run must end with exactly the uninterrupted run's
metrics, steps and best checkpoint score, which needs the model, optimiser, scheduler,
loop progress, the position in the interrupted epoch (`ResumableLoader`), the random
generators (`RandomState`) and the best-checkpoint record (`RunCheckpoint`) restored.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]
#: 3 epochs of 6 batches of on-the-fly simulated models; last.ckpt after every step.
SETTINGS = """\
base: {quickstart}
name: resume_check
trainer: {{max_epochs: 3, deterministic: true}}
data: {{sizes: {{train: 48, val: 8, test: 8}}, batch_size: 8, cache: false, num_workers: 2}}
model: {{scheduler: {{name: cosine_annealing, T_max: 3}}, network: {{name: inversionnet, channels: [4, 8, 8, 8, 8]}}}}
checkpoint: {{every_n_train_steps: 1}}
callbacks: {{figures: null, "test_resume:KillAtStep": {{}}}}
logger: csv
"""
KILL_STEP = 9  # epoch 1, after 3 of its 6 batches; the last checkpoint written is step 8


class KillAtStep(Callback):
    """SIGKILL this process at the end of training step ``$FWI_TEST_KILL_AT_STEP`` (if set),
    before that step's checkpoint is written (Lightning runs checkpoint callbacks last)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == int(os.environ.get("FWI_TEST_KILL_AT_STEP", "-1")):
            os.kill(os.getpid(), signal.SIGKILL)


def _fwi_run(experiment: Path, run_root: Path, *extra: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    if kill_at is not None:
        env["FWI_TEST_KILL_AT_STEP"] = str(kill_at)
    return subprocess.run(
        [sys.executable, "-m", "fwi_lightning", str(experiment), f"run_dir={run_root}", *extra],
        capture_output=True, text=True, timeout=600, env=env,
    )


def _finished(proc: subprocess.CompletedProcess) -> tuple[Path, dict]:
    """The run folder and summary of a run that ended normally."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1].removeprefix("run dir: "))
    return run_dir, json.loads((run_dir / "summary.json").read_text())


def _validation_losses(run_dir: Path) -> dict[int, str]:
    """Epoch -> val/loss as metrics.csv wrote it."""
    with open(run_dir / "metrics.csv") as f:
        return {int(row["epoch"]): row["val/loss"] for row in csv.DictReader(f) if row.get("val/loss")}


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    experiment = tmp_path / "resume_check.yaml"
    experiment.write_text(SETTINGS.format(quickstart=REPO / "experiments" / "quickstart.yaml"))

    whole_dir, uninterrupted = _finished(_fwi_run(experiment, tmp_path / "whole"))

    killed = _fwi_run(experiment, tmp_path / "killed", kill_at=KILL_STEP)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (killed_dir,) = (tmp_path / "killed" / "resume_check").iterdir()
    assert not (killed_dir / "summary.json").exists()
    last = killed_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)  # not corrupt
    assert checkpoint["global_step"] == KILL_STEP - 1 and checkpoint["epoch"] == 1  # mid-epoch
    batches_per_epoch = 48 // 8
    assert checkpoint["global_step"] % batches_per_epoch != 0
    files_before = {p: p.stat().st_size for p in killed_dir.rglob("*") if p.is_file()}

    resumed_dir, resumed = _finished(_fwi_run(experiment, tmp_path / "killed", "resume=last"))

    assert resumed["resumed_from"] == str(last)
    # bit-identical weights at the end: the resumed run trained on exactly the same batches
    whole_weights, resumed_weights = _final_weights(whole_dir), _final_weights(resumed_dir)
    assert whole_weights.keys() == resumed_weights.keys()
    assert all(torch.equal(whole_weights[k], resumed_weights[k]) for k in whole_weights)
    # the epochs validated after the resume (1 and 2) gave the same numbers
    assert _validation_losses(resumed_dir) == {e: v for e, v in _validation_losses(whole_dir).items() if e >= 1}
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert {"test/mae", "test/ssim", "test/data_misfit"} <= set(resumed["metrics"])
    assert (resumed["global_step"], resumed["epochs"]) == (uninterrupted["global_step"], uninterrupted["epochs"])
    assert resumed["best_score"] == uninterrupted["best_score"]
    assert Path(resumed["best_checkpoint"]).name == Path(uninterrupted["best_checkpoint"]).name
    # the interrupted run's files are all still there, unchanged
    assert {p: p.stat().st_size for p in killed_dir.rglob("*") if p.is_file()} == files_before


def test_random_state_restores_every_generator_and_loads_weights_only(tmp_path):
    from fwi_lightning.callbacks.resume import RandomState

    callback = RandomState()
    torch.save(callback.state_dict(), tmp_path / "rng.pt")
    first = (random.random(), float(np.random.rand()), torch.rand(3))
    callback.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))  # as Lightning loads checkpoints
    again = (random.random(), float(np.random.rand()), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])
