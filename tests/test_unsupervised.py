"""The unsupervised paradigm (UPFWI): physics loss alone, never reading velocity labels."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fwi_lightning import testing
from fwi_lightning.config import load_config, validate
from fwi_lightning.errors import ConfigError
from fwi_lightning.paradigms.unsupervised import Unsupervised

REPO = Path(__file__).resolve().parents[1]


def test_default_losses_are_the_physics_loss_alone():
    model = Unsupervised(testing.tiny_problem(), network=dict(testing.TINY_NETWORK))
    assert list(model.criterion.terms) == ["physics"] and model.criterion.weights == {"physics": 1.0}


@pytest.mark.parametrize("loss", ["l1", "ssim", "edge"])
def test_a_loss_reading_labels_is_refused_at_build(loss):
    with pytest.raises(ConfigError, match="reads the velocity labels") as caught:
        Unsupervised(testing.tiny_problem(), network=dict(testing.TINY_NETWORK), losses={"physics": 1.0, loss: 0.1})
    assert caught.value.key == f"losses.{loss}"
    assert "\n" not in str(caught.value)


def test_label_free_regularisers_are_accepted():
    model = Unsupervised(testing.tiny_problem(), network=dict(testing.TINY_NETWORK),
                         losses={"physics": {"weight": 1.0, "misfit": "correlation", "shots": 1}, "tv": 0.01})
    assert set(model.criterion.terms) == {"physics", "tv"}


def test_nan_velocity_labels_never_reach_training(tmp_path):
    experiment = testing.tiny_experiment({"name": "unsupervised", "network": dict(testing.TINY_NETWORK)}, run_dir=tmp_path)
    experiment["trainer"] = {**experiment["trainer"], "fast_dev_run": False, "max_epochs": 1, "limit_val_batches": 0}
    from fwi_lightning.runner import Run

    run = Run.build(validate(load_config(None, values=experiment)))
    datamodule, poisoned = run.datamodule, []
    transfer = datamodule.on_after_batch_transfer

    def poison(batch, dataloader_idx):
        batch = transfer(batch, dataloader_idx)
        if run.trainer.training:
            batch["velocity"] = torch.full_like(batch["velocity"], float("nan"))
            poisoned.append(len(batch["velocity"]))
        return batch

    datamodule.on_after_batch_transfer = poison
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    run.fit()
    assert sum(poisoned) == 4  # every training sample's labels were NaN
    assert math.isfinite(float(run.trainer.callback_metrics["train/loss"]))
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    assert any(not torch.equal(before[n], p.detach()) for n, p in run.model.named_parameters())
    run.close()


def test_the_experiment_file_validates():
    cfg = validate(load_config(str(REPO / "experiments" / "unsupervised_flatvel.yaml"), values=None))
    model = cfg.values["model"]
    assert model["name"] == "unsupervised" and list(model["losses"]) == ["physics"]  # the base file's l1, l2 are gone
    assert cfg.values["data"] == validate(load_config(str(REPO / "experiments" / "supervised_flatvel.yaml"))).values["data"]


def test_unsupervised_contract():
    testing.check_paradigm("unsupervised")
