"""Resume refuses changed model/data settings and checkpoints of another network; a run
that fails before its first checkpoint leaves no folder behind."""

from __future__ import annotations

import json

import pytest
from lightning.pytorch.callbacks import Callback
from test_cli_test import run_dir_of, write_experiment

from fwi_lightning.cli import main

CHANGED_FAMILIES = ["~data.families", "data.families.curvefault=1.0"]


class FailAtEpoch(Callback):
    """Raise at the start of training epoch `epoch` (a crash mid-run)."""

    def __init__(self, epoch: int = 0):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"crash in epoch {self.epoch}")


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """(experiment file, run folder) of one finished tiny run."""
    folder = tmp_path_factory.mktemp("earlier")
    experiment = write_experiment(folder)
    assert main([str(experiment)]) == 0
    (run_dir,) = (folder / "runs" / "tiny").iterdir()
    return experiment, run_dir


def _folders(experiment) -> set:
    return set((experiment.parent / "runs" / "tiny").iterdir())


def test_resume_with_changed_data_exits_2_naming_the_keys(earlier, capsys):
    experiment, run_dir = earlier
    before = _folders(experiment)
    assert main([str(experiment), f"resume={run_dir}", "trainer.max_epochs=2", "data.sizes.test=4", *CHANGED_FAMILIES]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "key 'resume'" in err
    for key in ("data.families.curvefault", "data.families.flatvel", "data.sizes.test"):
        assert key in err, err
    assert "--allow-changed-config" in err
    assert _folders(experiment) == before


def test_resume_with_the_explicit_option_continues(earlier, capsys):
    experiment, run_dir = earlier
    argv = [str(experiment), f"resume={run_dir}", "trainer.max_epochs=2", *CHANGED_FAMILIES, "--allow-changed-config"]
    assert main(argv) == 0
    resumed = json.loads((run_dir_of(capsys.readouterr().out) / "summary.json").read_text())
    first = json.loads((run_dir / "summary.json").read_text())
    assert resumed["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == 2 * first["global_step"]  # one more epoch of 2 batches


def test_resume_with_only_trainer_changes_is_allowed(earlier, capsys):
    experiment, run_dir = earlier
    assert main([str(experiment), f"resume={run_dir}", "trainer.max_epochs=2", "callbacks.figures=null"]) == 0
    assert json.loads((run_dir_of(capsys.readouterr().out) / "summary.json").read_text())["epochs"] == 2


def test_resume_with_another_width_is_refused(earlier, capsys):
    experiment, run_dir = earlier
    assert main([str(experiment), f"resume={run_dir}", "model.network.width=8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 'resume'" in err and "model.network.width" in err, err


@pytest.mark.parametrize("network", [["model.network.width=8"], ["model.network.name=inversionnet", "model.network.channels=[4,4,4,4,4]"]])
def test_resume_from_a_checkpoint_of_another_network_is_one_line_not_a_traceback(earlier, capsys, network):
    """Even with changes allowed, weights that do not fit the model end in one line naming resume."""
    experiment, run_dir = earlier
    before = _folders(experiment)
    assert main([str(experiment), f"resume={run_dir}", *network, "--allow-changed-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "key 'resume'" in err and "the checkpoint holds another network" in err and "start a new run" in err
    assert _folders(experiment) == before


def test_a_run_failing_before_its_first_checkpoint_removes_its_folder(earlier):
    experiment, run_dir = earlier
    before = {p: p.stat().st_mtime for p in run_dir.rglob("*")}
    folders = _folders(experiment)
    with pytest.raises(RuntimeError, match="crash in epoch 0"):
        main([str(experiment), "callbacks.test_resume_safety:FailAtEpoch.epoch=0"])
    assert _folders(experiment) == folders
    assert {p: p.stat().st_mtime for p in run_dir.rglob("*")} == before  # earlier runs untouched


def test_a_run_failing_after_a_checkpoint_keeps_its_folder(earlier):
    experiment, _ = earlier
    folders = _folders(experiment)
    with pytest.raises(RuntimeError, match="crash in epoch 1"):
        main([str(experiment), "trainer.max_epochs=2", "callbacks.test_resume_safety:FailAtEpoch.epoch=1"])
    (kept,) = _folders(experiment) - folders
    assert list((kept / "checkpoints").glob("*.ckpt")) and not (kept / "summary.json").exists()
