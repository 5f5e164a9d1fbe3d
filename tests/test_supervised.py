"""The supervised paradigm with Lightning: fit/validate/test/predict, logged names, checkpoints, optimisers."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fwi_lightning import registry
from fwi_lightning.errors import ConfigError
from fwi_lightning.paradigms.supervised import Supervised
from fwi_lightning.physics.survey import Survey
from fwi_lightning.problem import Problem

SURVEY = Survey(nz=16, nx=16, spacing=10.0, nt=120, dt=0.002, peak_freq=15.0, n_shots=2, n_receivers=16)
FAMILIES = ["two_layer", "three_layer"]


def layered_models(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n flat-layered models [n, 1, NZ, NX] in m/s (2 or 3 layers, alternating) and their family index [n]."""
    gen = torch.Generator().manual_seed(seed)
    velocity = torch.empty(n, 1, SURVEY.nz, SURVEY.nx)
    family = torch.arange(n) % 2
    for i in range(n):
        layers = 2 + int(family[i])
        speeds = torch.sort(torch.rand(layers, generator=gen) * 2800.0 + 1600.0).values
        tops = torch.sort(torch.randint(2, SURVEY.nz - 2, (layers - 1,), generator=gen)).values
        column = torch.full((SURVEY.nz,), float(speeds[0]))
        for top, speed in zip(tops, speeds[1:]):
            column[int(top):] = speed
        velocity[i, 0] = column[:, None]
    return velocity, family


class SyntheticDataModule(pl.LightningDataModule):
    """Layered models with stand-in 'gathers' (each shot a scaled resampling of the model): learnable and instant."""

    def __init__(self, sizes=(32, 8, 8), batch_size: int = 8):
        super().__init__()
        self.batch_size = batch_size
        self.sets = {stage: self._make(n, seed) for (stage, n, seed) in zip(("train", "val", "test"), sizes, (1, 2, 3))}
        logged = [torch.sign(s["data"]) * torch.log1p(s["data"].abs()) for s in self.sets.values()]
        lo, hi = min(float(x.min()) for x in logged), max(float(x.max()) for x in logged)
        self.problem = Problem(SURVEY, velocity_range=(1500.0, 4500.0), data_range=(lo, hi), extra={"families": FAMILIES})

    @staticmethod
    def _make(n: int, seed: int) -> dict[str, torch.Tensor]:
        velocity, family = layered_models(n, seed)
        image = F.interpolate((velocity - 3000.0) / 1500.0, size=(SURVEY.nt, SURVEY.n_receivers), mode="nearest")
        data = torch.cat([image * 20.0 * (shot + 1) for shot in range(SURVEY.n_shots)], dim=1)
        return {"data": data, "velocity": velocity, "family": family, "index": torch.arange(n)}

    def _loader(self, stage: str, shuffle: bool = False) -> DataLoader:
        items = self.sets[stage]
        rows = [{k: v[i] for k, v in items.items()} for i in range(len(items["index"]))]
        return DataLoader(rows, batch_size=self.batch_size, shuffle=shuffle)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        return self._loader("test")

    def predict_dataloader(self):
        return self._loader("test")


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    settings = dict(default_root_dir=str(tmp_path), logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, accelerator="cpu", devices=1)
    return pl.Trainer(**{**settings, **kwargs})


def supervised(problem, **params) -> Supervised:
    spec = {"name": "supervised", "network": {"name": "tiny", "width": 8}, **params}
    return registry.build("paradigms", spec, key="model", problem=problem)


@pytest.fixture(scope="module")
def datamodule():
    return SyntheticDataModule()


def test_fast_dev_run_logs_every_promised_name(tmp_path, datamodule):
    model = supervised(datamodule.problem, losses={"l1": 1.0, "ssim": 0.5, "tv": 0.01})
    run = trainer(tmp_path, fast_dev_run=True)
    run.fit(model, datamodule=datamodule)
    logged = set(run.callback_metrics)
    assert {"train/loss", "train/l1", "train/ssim", "train/tv", "val/loss"} <= logged
    assert {"val/mae", "val/rmse", "val/ssim", "val/mae_mps", "val/rmse_mps"} <= logged
    # The weighted total is what trains; each term is logged unweighted.
    metrics = run.callback_metrics
    assert float(metrics["train/loss"]) == pytest.approx(
        float(metrics["train/l1"] + 0.5 * metrics["train/ssim"] + 0.01 * metrics["train/tv"]), rel=1e-5)
    results = run.test(model, datamodule=datamodule, verbose=False)[0]
    for name in ("mae", "rmse", "ssim", "mae_mps", "rmse_mps"):
        assert torch.isfinite(torch.tensor(results[f"test/{name}"]))
        assert f"test/two_layer/{name}" in results and f"test/three_layer/{name}" in results
    assert results["test/data_misfit"] >= 0.0
    # The logged errors against numpy over the saved predictions and the test set's truth.
    predicted = torch.cat(run.predict(model, datamodule=datamodule)).double().numpy()
    truth = datamodule.sets["test"]["velocity"].double().numpy()
    family = datamodule.sets["test"]["family"].numpy()
    error = predicted - truth
    assert results["test/mae_mps"] == pytest.approx(np.abs(error).mean(), rel=1e-5)
    assert results["test/rmse_mps"] == pytest.approx(np.sqrt((error**2).mean()), rel=1e-5)
    assert results["test/mae"] == pytest.approx(np.abs(error / 1500.0).mean(), rel=1e-5)  # [-1, 1] over 1500..4500
    for index, name in enumerate(FAMILIES):
        assert results[f"test/{name}/mae_mps"] == pytest.approx(np.abs(error[family == index]).mean(), rel=1e-5)


def test_training_lowers_the_validation_loss_and_predictions_are_in_m_per_s(tmp_path, datamodule):
    torch.manual_seed(0)
    model = supervised(datamodule.problem, optimizer={"name": "adamw", "lr": 1.0e-2})
    run = trainer(tmp_path, max_epochs=12)
    before = run.validate(model, datamodule=datamodule, verbose=False)[0]["val/loss"]
    run.fit(model, datamodule=datamodule)
    after = run.validate(model, datamodule=datamodule, verbose=False)[0]["val/loss"]
    assert after < 0.5 * before
    predicted = torch.cat(run.predict(model, datamodule=datamodule))
    assert predicted.shape == (8, 1, 16, 16)
    assert predicted.min() >= 1500.0 and predicted.max() <= 4500.0


def test_checkpoint_restores_problem_network_and_predictions(tmp_path, datamodule):
    model = supervised(datamodule.problem, losses={"l2": 1.0}, network={"name": "inversionnet", "channels": [4, 4, 4, 4, 4]})
    run = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    run.fit(model, datamodule=datamodule)
    path = tmp_path / "model.ckpt"
    run.save_checkpoint(path)
    loaded = Supervised.load_from_checkpoint(path)
    assert loaded.problem == datamodule.problem
    assert set(loaded.criterion.terms) == {"l2"}
    data = datamodule.sets["val"]["data"][:2]
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.allclose(model(data), loaded(data))


def test_defaults_are_openfwi_adamw_and_l1(datamodule):
    model = supervised(datamodule.problem)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["lr"] == 1.0e-4 and optimizer.defaults["weight_decay"] == 1.0e-4
    assert set(model.criterion.terms) == {"l1"}


def test_optimizer_and_scheduler_by_name(datamodule):
    model = supervised(datamodule.problem, optimizer={"name": "SGD", "lr": 0.1, "momentum": 0.9},
                       scheduler={"name": "cosine_annealing", "T_max": 10, "interval": "step"})
    config = model.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD) and config["optimizer"].defaults["momentum"] == 0.9
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)
    assert config["lr_scheduler"]["interval"] == "step"
    plateau = supervised(datamodule.problem, scheduler={"name": "reduce_lr_on_plateau", "factor": 0.5}).configure_optimizers()
    assert plateau["lr_scheduler"]["monitor"] == "val/loss"


@pytest.mark.parametrize("params, message", [
    ({"optimizer": {"name": "adamm"}}, "unknown optimizer 'adamm' .*did you mean 'adam"),
    ({"optimizer": {"name": "adamw", "lrr": 0.1}}, "no parameter 'lrr' .*did you mean 'lr'"),
    ({"scheduler": {"name": "cosine"}}, "unknown scheduler 'cosine'"),
    ({"scheduler": {"name": "step", "step_size": 2, "interval": "batch"}}, "interval must be 'epoch' or 'step'"),
    ({"optimizer": {"name": "adamw", "lr": -1.0}}, "AdamW rejected its parameters"),
])
def test_bad_optimisation_settings_are_config_errors(datamodule, params, message):
    with pytest.raises(ConfigError, match=message):
        supervised(datamodule.problem, **params).configure_optimizers()


def test_missing_network_is_a_config_error(datamodule):
    with pytest.raises(ConfigError, match="needs a network"):
        Supervised(datamodule.problem, network=None)
