"""The seams later paradigms build on: named outputs read by losses, several optimisers
under manual optimisation, the non-finite guard on every backward, unlabelled validation,
and typed optimiser settings."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from fwi_lightning import registry, testing
from fwi_lightning.callbacks.guards import NonFiniteLossError, NonFiniteLossGuard
from fwi_lightning.errors import ConfigError
from fwi_lightning.losses.base import OutputLoss, WeightedLoss
from fwi_lightning.paradigms.base import OptimizerGroup, ParadigmBase
from fwi_lightning.paradigms.supervised import Supervised


class CriticScore(OutputLoss):
    """Generator's adversarial term: minus the mean critic score of its prediction."""

    reads = ("critic_score",)

    def forward(self, outputs, batch):
        return -outputs["critic_score"].mean()


class ToyAdversarial(ParadigmBase):
    """A generator (the tiny network) and a critic on velocity, trained by two optimisers by hand.

    ``poison_at`` (a global batch count) makes the generator loss NaN from that batch on.
    """

    produces = ("velocity", "critic_score")

    def __init__(self, problem, network=None, losses=None, optimizer=None, critic_optimizer=None, poison_at=None):
        super().__init__(problem, network=network, losses=losses, optimizer=optimizer,
                         critic_optimizer=critic_optimizer, poison_at=poison_at)
        self.automatic_optimization = False
        self.batches = 0

    def configure_models(self):
        self.generator = registry.build("networks", self.hparams.network, key="network", problem=self.problem)
        self.critic = nn.Sequential(nn.Flatten(), nn.LazyLinear(1))
        self.critic(torch.zeros(1, 1, *self.problem.velocity_shape))  # materialise before the optimisers

    def forward(self, data):
        return self.generator(data)

    def outputs(self, batch):
        velocity = self(batch["data"])
        return {"velocity": velocity, "critic_score": self.critic(self.problem.normalise_velocity(velocity))}

    def optimizer_groups(self):
        return {"generator": OptimizerGroup(list(self.generator.parameters()), self.hparams.optimizer),
                "critic": OptimizerGroup(list(self.critic.parameters()), self.hparams.critic_optimizer, key="critic_optimizer")}

    def training_step(self, batch, batch_idx):
        generator_opt, critic_opt = self.optimizers()
        scale = self.problem.normalise_velocity
        fake = scale(self(batch["data"]).detach())
        critic_loss = self.critic(fake).mean() - self.critic(scale(batch["velocity"])).mean()
        critic_opt.zero_grad()
        self.manual_backward(critic_loss)
        critic_opt.step()
        total, terms = self.criterion(self.outputs(batch), batch)
        if self.hparams.poison_at is not None and self.batches >= self.hparams.poison_at:
            total = total * float("nan")
        generator_opt.zero_grad()
        self.manual_backward(total)
        generator_opt.step()
        self.batches += 1
        self.log_losses("train", total, terms, len(batch["data"]))


LOSSES = {"l1": 1.0, "critic": {"name": f"{__name__}:CriticScore", "weight": 0.1}}
OPTIMIZERS = {"optimizer": {"name": "adam", "lr": 1e-3}, "critic_optimizer": {"name": "adam", "lr": 5e-4}}


@pytest.fixture(scope="module")
def datamodule():
    return testing.tiny_datamodule()


def toy(datamodule, **params):
    return ToyAdversarial(datamodule.problem, network=dict(testing.TINY_NETWORK), losses=LOSSES, **OPTIMIZERS, **params)


def trainer(tmp_path, **params):
    settings = {"max_epochs": 1, "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                "num_sanity_val_steps": 0, "default_root_dir": tmp_path, **params}
    return pl.Trainer(**settings)


def test_two_optimisers_under_manual_optimisation_each_step_once_per_batch(datamodule, tmp_path):
    model = toy(datamodule)
    generator_before = [p.detach().clone() for p in model.generator.parameters()]
    trainer(tmp_path, max_epochs=2, enable_checkpointing=False, limit_val_batches=0).fit(model, datamodule=datamodule)
    generator_opt, critic_opt = model.optimizers()
    assert model.batches == 4  # 2 epochs x 2 batches of 2 training models
    assert {int(critic_opt.state[p]["step"]) for p in model.critic.parameters()} == {4}
    assert {int(generator_opt.state[p]["step"]) for p in model.generator.parameters()} == {4}
    assert generator_opt.param_groups[0]["lr"] == 1e-3 and critic_opt.param_groups[0]["lr"] == 5e-4
    assert not {id(p) for p in model.generator.parameters()} & {id(p) for g in critic_opt.param_groups for p in g["params"]}
    assert any(not torch.equal(a, b) for a, b in zip(generator_before, model.generator.parameters()))
    assert {"train/loss", "train/l1", "train/critic"} <= set(model.trainer.callback_metrics)


@pytest.mark.filterwarnings("ignore:Using ModelCheckpoint with manual optimization")
def test_guard_stops_a_nan_loss_under_manual_optimisation_and_keeps_the_last_good_checkpoint(datamodule, tmp_path):
    model = toy(datamodule, poison_at=3)  # batches 0-2 are good; the 4th is poisoned
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1, save_top_k=0)
    run = trainer(tmp_path, max_epochs=2, limit_val_batches=0, callbacks=[checkpoints, NonFiniteLossGuard()])
    with pytest.raises(NonFiniteLossError) as info:
        run.fit(model, datamodule=datamodule)
    message = str(info.value)
    assert "\n" not in message and "training loss became nan" in message and str(tmp_path / "ckpt") in message
    assert model.batches == 3
    generator = {k: v.detach() for k, v in model.named_parameters() if k.startswith("generator.")}
    assert all(torch.isfinite(v).all() for v in generator.values())  # the bad step reached no weight
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in generator.items())  # last.ckpt holds the weights before the bad step


def test_a_loss_reading_an_output_the_paradigm_does_not_produce_is_one_config_error(datamodule):
    with pytest.raises(ConfigError) as info:
        Supervised(datamodule.problem, network=dict(testing.TINY_NETWORK), losses=LOSSES)
    assert info.value.key == "losses.critic"
    assert info.value.message.startswith("loss 'critic' reads output 'critic_score', which this paradigm does not produce; "
                                         "it produces velocity")
    assert "\n" not in str(info.value)


def test_velocity_losses_take_named_outputs_or_a_bare_velocity(datamodule):
    batch = testing.tiny_batch("val", datamodule)
    criterion = WeightedLoss(datamodule.problem, {"l1": 1.0, "l2": 2.0})
    prediction = batch["velocity"] + 300.0  # 0.2 off on the [-1, 1] scale everywhere
    total, terms = criterion({"velocity": prediction, "features": torch.zeros(1)}, batch)
    assert float(terms["l1"]) == pytest.approx(0.2, rel=1e-5) and float(terms["l2"]) == pytest.approx(0.04, rel=1e-4)
    assert float(total) == pytest.approx(0.28, rel=1e-4)
    assert float(criterion(prediction, batch)[0]) == pytest.approx(float(total))


class Fixed(ParadigmBase):
    """Predicts one fixed velocity model whatever the data (to know the data misfit's answer)."""

    def configure_models(self):
        self.model = nn.Parameter(torch.full((1, 1, *self.problem.velocity_shape), 3000.0))

    def forward(self, data):
        return self.model.expand(len(data), -1, -1, -1)

    def training_step(self, batch, batch_idx):
        return self.criterion(self.outputs(batch), batch)[0]


def test_guard_stops_a_nan_loss_under_automatic_optimisation_before_the_step(datamodule, tmp_path):
    class Poisoned(Fixed):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx) * float("nan")

    model = Poisoned(datamodule.problem, optimizer={"name": "sgd", "lr": 1.0})
    with pytest.raises(NonFiniteLossError, match="training loss became nan at epoch 0, step 0"):
        trainer(tmp_path, limit_val_batches=0, enable_checkpointing=False, callbacks=[NonFiniteLossGuard()]).fit(
            model, datamodule=datamodule)
    assert torch.equal(model.model.detach(), torch.full_like(model.model, 3000.0))  # SGD never applied the NaN gradient


def unlabelled(batch: dict[str, Any], samples: int = 2) -> DataLoader:
    """The batch's samples one by one without their velocity, as a data loader."""
    return DataLoader([{k: v[i:i + 1] for k, v in batch.items() if k != "velocity"} for i in range(samples)], batch_size=None)


def test_unlabelled_validation_logs_the_data_misfit_as_val_loss(datamodule, tmp_path):
    batch = testing.tiny_batch("val", datamodule)
    model = Fixed(datamodule.problem)
    checkpoints = ModelCheckpoint(dirpath=tmp_path, monitor="val/loss")
    run = trainer(tmp_path, callbacks=[checkpoints])
    run.fit(model, train_dataloaders=datamodule.train_dataloader(), val_dataloaders=unlabelled(batch))
    metrics = run.callback_metrics
    assert "val/mae" not in metrics
    assert float(metrics["val/loss"]) == float(metrics["val/data_misfit"]) == pytest.approx(float(checkpoints.best_model_score))
    wrong = float(metrics["val/data_misfit"])
    with torch.no_grad():
        model.model.copy_(batch["velocity"][:1])  # the truth of the first sample
    truth = run.validate(model, dataloaders=unlabelled(batch, samples=1), verbose=False)[0]["val/data_misfit"]
    assert wrong > 0.3 and truth < 0.05 * wrong  # the misfit measures the prediction against the data


@pytest.mark.parametrize("key, spec, field", [
    ("optimizer", {"name": "adamw", "lr": "fast"}, "optimizer.lr"),
    ("optimizer", {"name": "sgd", "lr": 0.1, "momentum": "high"}, "optimizer.momentum"),
    ("scheduler", {"name": "step", "step_size": "often"}, "scheduler.step_size"),
])
def test_optimiser_settings_of_the_wrong_type_are_config_errors_at_build(datamodule, key, spec, field):
    with pytest.raises(ConfigError) as info:
        Supervised(datamodule.problem, network=dict(testing.TINY_NETWORK), **{key: spec})
    assert info.value.key == field
    assert "expects" in info.value.message and repr(spec[field.split(".")[1]]) in info.value.message


def test_every_optimiser_group_is_checked_at_build_with_its_own_key(datamodule):
    with pytest.raises(ConfigError) as info:
        ToyAdversarial(datamodule.problem, network=dict(testing.TINY_NETWORK), losses=LOSSES,
                       optimizer={"name": "adam"}, critic_optimizer={"name": "adam", "lr": "fast"})
    assert info.value.key == "critic_optimizer.lr"
