"""The adversarial paradigm (VelocityGAN): objectives and gradient penalty against their
formulas, the critic/generator step ratio counted on the optimisers, the critic, the
contract runs, bad input, and SIGKILL-and-resume with identical final weights."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from fwi_lightning import testing
from fwi_lightning.cli import main
from fwi_lightning.errors import ConfigError
from fwi_lightning.losses.adversarial import OBJECTIVES, build_objective, gradient_penalty
from fwi_lightning.networks.critic import VelocityGANCritic
from test_contracts import builtins, matrix, velocity_networks
from test_resume import _final_weights, _finished, _fwi_run

REPO = Path(__file__).resolve().parents[1]


def write_experiment(path: Path, model: dict) -> Path:
    """A tiny experiment file (JSON, which is YAML) with the given model section."""
    experiment = {"schema_version": 1, "model": model, "data": testing.tiny_data_config(), "trainer": {"max_epochs": 1},
                  "logger": "csv", "callbacks": {"figures": None}}
    path.write_text(json.dumps(experiment, indent=1))
    return path


def tiny_gan(**model: object) -> dict:
    """The model section of a tiny adversarial experiment, with `model` merged in."""
    return {"name": "adversarial", "network": dict(testing.TINY_NETWORK), "critic": {"name": "velocitygan", "channels": [4, 4]},
            **model}


# ---------------------------------------------------------------------------
# Objectives and gradient penalty against their definitions


def test_gradient_penalty_of_a_linear_critic_is_the_squared_norm_gap():
    # D(x) = <a, x>: the input gradient is `a` at every point, so the penalty is (||a|| - 1)^2
    torch.manual_seed(0)
    a = torch.randn(1, 1, 6, 5)
    real, fake = torch.randn(4, 1, 6, 5), torch.randn(4, 1, 6, 5)
    penalty = gradient_penalty(lambda x: (x * a).flatten(1).sum(dim=1), real, fake)
    assert penalty.item() == pytest.approx((a.norm().item() - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_of_a_quadratic_critic_at_known_mixing_factors():
    # D(x) = ||x||^2 / 2: the input gradient is x itself, taken at eps * real + (1 - eps) * fake
    torch.manual_seed(1)
    real, fake = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    epsilon = torch.tensor([0.0, 0.25, 1.0])
    penalty = gradient_penalty(lambda x: 0.5 * x.pow(2).flatten(1).sum(dim=1), real, fake, epsilon=epsilon)
    expected = sum((((e * r + (1 - e) * f).norm().item() - 1.0) ** 2) for e, r, f in zip(epsilon.tolist(), real, fake)) / 3
    assert penalty.item() == pytest.approx(expected, rel=1e-5)


def test_gradient_penalty_trains_the_critic():
    critic = VelocityGANCritic(testing.tiny_problem(), channels=[4, 4])
    real, fake = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    gradient_penalty(critic, real, fake).backward()
    # every weight shapes the input gradient; biases only pick the piecewise-linear regime
    # (zero derivative almost everywhere), and the last one only shifts the score
    weights = {name: p.grad for name, p in critic.named_parameters() if name.endswith("weight")}
    assert len(weights) == 5
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in weights.values())


@pytest.mark.parametrize(("name", "critic", "generator"), [
    # real scores (1, 3), fake scores (-2, 0)
    ("wgan_gp", -1.0 - 2.0, 1.0),                                              # mean(fake) - mean(real); -mean(fake)
    ("hinge", (0 + 0) / 2 + (0 + 1) / 2, 1.0),                                # relu(1 - real), relu(1 + fake)
    ("nonsaturating", (math.log1p(math.exp(-1)) + math.log1p(math.exp(-3))) / 2
     + (math.log1p(math.exp(-2)) + math.log(2)) / 2, (math.log1p(math.exp(2)) + math.log(2)) / 2),
])
def test_objectives_match_their_formulas(name, critic, generator):
    objective = build_objective(name)
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])
    assert objective.critic_loss(real, fake).item() == pytest.approx(critic, rel=1e-6)
    assert objective.generator_loss(fake).item() == pytest.approx(generator, rel=1e-6)
    assert objective.wasserstein(real, fake).item() == pytest.approx(3.0)
    assert objective.penalised == (name == "wgan_gp")
    assert objective.default_critic_steps == (5 if name == "wgan_gp" else 1)


def test_unknown_objective_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown objective 'wgan-gp'.*did you mean 'wgan_gp'") as info:
        build_objective("wgan-gp")
    assert info.value.key == "objective"


# ---------------------------------------------------------------------------
# The critic


class _Grid:
    def __init__(self, nz: int, nx: int):
        self.velocity_shape = (nz, nx)


def test_default_critic_has_velocitygans_size_at_70x70_and_adapts_to_other_grids():
    critic = VelocityGANCritic(_Grid(70, 70))
    widths = [1, 32, 64, 128, 256]
    # per stage a 3x3 stride-2 convolution (c_in -> c_out) and a 3x3 one (c_out -> c_out), then a 5x5 score convolution
    expected = sum(9 * i * o + o + 9 * o * o + o for i, o in zip(widths[:-1], widths[1:])) + 25 * 256 + 1
    assert sum(p.numel() for p in critic.parameters()) == expected
    assert 1.17e6 < expected < 1.19e6
    for shape in ((70, 70), (16, 16), (32, 100)):
        critic = VelocityGANCritic(_Grid(*shape))
        scores = critic(torch.rand(3, 1, *shape))
        assert scores.shape == (3,) and torch.isfinite(scores).all()


def test_critic_that_does_not_fit_the_grid_is_refused():
    with pytest.raises(ConfigError, match=r"needs at least 32 x 32 cells; the grid is 16 x 16: give fewer 'channels' \(at most 4\)"):
        VelocityGANCritic(_Grid(16, 16), channels=[4, 4, 4, 4, 4])


# ---------------------------------------------------------------------------
# Contract runs


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_contract_fit_test_reload_predict(objective):
    run = testing.check_paradigm("adversarial", objective=objective, critic={"name": "velocitygan", "channels": [4, 8]})
    logged = set(run.fit_metrics)
    assert {"train/loss", "train/critic_loss", "train/wasserstein", "train/adversarial", "train/l1", "train/l2"} <= logged
    assert ("train/gradient_penalty" in logged) == (objective == "wgan_gp")


def test_a_content_loss_may_read_the_critic_score():
    # the generator's own adversarial term written as a loss on the named output (tests/test_paradigm_seams.py)
    run = testing.check_paradigm("adversarial", critic={"name": "velocitygan", "channels": [4, 4]},
                                 losses={"l1": 1.0, "score": {"name": "test_paradigm_seams:CriticScore", "weight": 0.1}})
    assert {"train/score", "val/loss"} <= set(run.fit_metrics)


def test_the_contributing_example_paradigm_passes_the_contract(fake_distribution):
    # CONTRIBUTING.md's manual-optimisation paradigm, as written there, is a working paradigm
    text = (REPO / "CONTRIBUTING.md").read_text()
    section = text[text.index("## Writing a manual-optimisation paradigm"):]
    source = section[section.index("```python\n") + len("```python\n"):section.index("\n```\n")]
    fake_distribution("my-gan", "0.1", {}, {"my_gan_example": source})
    run = testing.check_paradigm("my_gan_example:MyGAN", critic={"name": "velocitygan", "channels": [4, 4]}, critic_steps=1)
    assert {"train/loss", "train/critic_loss", "val/loss"} <= set(run.fit_metrics)


def test_mixing_matrix_holds_adversarial_with_every_network_loss_and_callback():
    rows = set(matrix())
    expected = {"network": velocity_networks(), "losses": builtins("losses"), "callbacks": builtins("callbacks")}
    for param, names in expected.items():
        assert {n for p, slot, n in rows if p == "adversarial" and slot == param} == set(names)


# ---------------------------------------------------------------------------
# Step ratio, counted on the optimisers


class CountSteps(Callback):
    """Counts the steps each optimiser takes (torch's step post-hooks)."""

    def __init__(self):
        self.steps: dict[int, int] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        for index, optimizer in enumerate(trainer.optimizers):
            self.steps[index] = 0
            optimizer.register_step_post_hook(lambda *_, i=index: self.steps.__setitem__(i, self.steps[i] + 1))


@pytest.mark.parametrize(("objective", "critic_steps", "generator_steps"), [
    ("wgan_gp", None, 2),    # default 5 for wgan_gp: the generator steps at critic steps 1 and 6 of 8
    ("hinge", 3, 3),         # critic steps 1, 4, 7
    ("nonsaturating", None, 8),  # default 1: every batch
])
def test_critic_and_generator_steps_follow_the_ratio(objective, critic_steps, generator_steps, tmp_path):
    counter = CountSteps()
    model = tiny_gan(objective=objective, critic_steps=critic_steps)
    experiment = testing.tiny_experiment(model, data=testing.tiny_data_config(sizes={"train": 8, "val": 2, "test": 2}, batch_size=1),
                                         run_dir=tmp_path)
    experiment["trainer"] = {**testing.TINY_TRAINER, "fast_dev_run": False, "max_epochs": 1, "limit_val_batches": 1,
                             "limit_test_batches": 1}
    from fwi_lightning.config import load_config, validate
    from fwi_lightning.runner import Run

    run = Run.build(validate(load_config(None, values=experiment)))
    run.trainer.callbacks.append(counter)
    run.fit()
    run.close()
    assert counter.steps == {0: generator_steps, 1: 8}  # generator first, critic second
    assert int(run.model.critic_steps_taken) == 8
    assert run.trainer.global_step == 8 + generator_steps  # Lightning counts every optimiser step


def test_a_step_scheduler_steps_after_every_step_of_its_own_optimiser(tmp_path):
    model = tiny_gan(critic_steps=2, optimizer={"name": "sgd", "lr": 1.0e-3},
                     scheduler={"name": "step", "step_size": 1, "gamma": 0.5, "interval": "step"},
                     critic_optimizer={"name": "sgd", "lr": 1.0e-3},
                     critic_scheduler={"name": "step", "step_size": 1, "gamma": 0.5, "interval": "epoch"})
    experiment = testing.tiny_experiment(model, run_dir=tmp_path)
    experiment["trainer"] = {**testing.TINY_TRAINER, "fast_dev_run": False, "max_epochs": 2, "limit_val_batches": 1,
                             "limit_test_batches": 1}
    result = testing.run_experiment(experiment)
    generator, critic = result.run.trainer.optimizers
    # 2 epochs of 2 batches: 4 critic steps, generator steps at critic steps 1 and 3; 2 epochs
    assert generator.param_groups[0]["lr"] == pytest.approx(1.0e-3 * 0.5**2)
    assert critic.param_groups[0]["lr"] == pytest.approx(1.0e-3 * 0.5**2)


# ---------------------------------------------------------------------------
# Bad input: exit 2 with one line naming the file, the key and the fix

def assert_one_line_exit_2(config: Path, run_dir: Path, capsys, fragments: list[str]) -> None:
    """``fwi-run --dry-run`` on `config` exits 2 with one line naming the file and every fragment."""
    status = main([str(config), f"run_dir={run_dir}", "--dry-run"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith(f"error: {config}: key 'model.") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize(("model", "fragments"), [
    ({"objective": "wgan"}, ["key 'model.objective'", "unknown objective 'wgan'", "did you mean 'wgan_gp'"]),
    ({"gp_weight": 0}, ["key 'model.gp_weight'", "must be a positive number, got 0", "e.g. gp_weight: 1.0"]),
    ({"adversarial_weight": -1.0}, ["key 'model.adversarial_weight'", "must be a positive number, got -1.0"]),
    ({"critic_steps": 0}, ["key 'model.critic_steps'", "must be a positive integer", "e.g. 5"]),
    ({"critic": {"name": "velocitygan", "channels": [4, 4, 4, 4, 4]}},
     ["key 'model.critic.channels'", "needs at least 32 x 32 cells; the grid is 16 x 16", "give fewer 'channels' (at most 4)"]),
    ({"critic": {"name": "velocitygann"}}, ["key 'model.critic.name'", "did you mean 'velocitygan'"]),
])
def test_bad_input_exits_2_with_one_line(model, fragments, tmp_path, capsys):
    assert_one_line_exit_2(write_experiment(tmp_path / "gan.yaml", tiny_gan(**model)), tmp_path / "runs", capsys, fragments)
    assert not (tmp_path / "runs").exists()


def test_the_tiny_experiment_without_bad_input_builds(tmp_path, capsys):
    config = write_experiment(tmp_path / "gan.yaml", tiny_gan())
    assert main([str(config), f"run_dir={tmp_path / 'runs'}", "--dry-run"]) == 0, capsys.readouterr().err


# ---------------------------------------------------------------------------
# The shipped experiment, tiny


@pytest.mark.slow
def test_velocitygan_curvefault_experiment_runs_tiny(tmp_path, capsys):
    overrides = ["data.survey={nz: 16, nx: 16, spacing: 10.0, nt: 120, dt: 0.002, peak_freq: 15.0, n_shots: 2, n_receivers: 16}",
                 "data.sizes={train: 4, val: 2, test: 2}", "data.batch_size=2", "data.num_workers=0", "data.cache=false",
                 "model.network.channels=[4,4,4,4,4]", "model.critic.channels=[4,4]", "trainer.max_epochs=1",
                 "trainer.accelerator=cpu", "callbacks.figures=null", "logger=csv", f"run_dir={tmp_path}"]
    assert main([str(REPO / "experiments" / "velocitygan_curvefault.yaml"), *overrides]) == 0, capsys.readouterr().err


# ---------------------------------------------------------------------------
# SIGKILL mid-epoch, resume, identical weights

#: 3 epochs of 6 batches; 2 critic steps per generator step; schedulers on both optimisers.
RESUME_SETTINGS = """\
base: {quickstart}
name: resume_check
trainer: {{max_epochs: 3, deterministic: true}}
data: {{sizes: {{train: 48, val: 8, test: 8}}, batch_size: 8, cache: false, num_workers: 2}}
model:
  name: adversarial
  network: {{name: inversionnet, channels: [4, 8, 8, 8, 8]}}
  critic: {{name: velocitygan, channels: [4, 8, 8]}}
  critic_steps: 2
  losses: {{l1: 1.0}}
  optimizer: {{name: adamw, lr: 2.0e-3}}
  scheduler: {{name: cosine_annealing, T_max: 3}}
  critic_optimizer: {{name: adam, lr: 1.0e-3, betas: [0.5, 0.9]}}
  critic_scheduler: {{name: step, step_size: 1, gamma: 0.5}}
checkpoint: {{every_n_train_steps: 1}}
callbacks: {{figures: null, "test_resume:KillAtStep": {{}}}}
logger: csv
"""
#: Optimiser steps per epoch: 6 critic + 3 generator (batches 1, 3, 5); epoch 1 ends its
#: batches at global steps 11, 12, 14, 15, 17, 18. Killed after its 4th batch (step 15),
#: the last checkpoint is step 14, mid-epoch, with the critic counter at 9 (odd: the
#: next batch is a critic-only one, so a lost counter would shift every generator step).
KILL_STEP = 15


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    experiment = tmp_path / "resume_check.yaml"
    experiment.write_text(RESUME_SETTINGS.format(quickstart=REPO / "experiments" / "quickstart.yaml"))

    whole_dir, uninterrupted = _finished(_fwi_run(experiment, tmp_path / "whole"))

    killed = _fwi_run(experiment, tmp_path / "killed", kill_at=KILL_STEP)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (killed_dir,) = (tmp_path / "killed" / "resume_check").iterdir()
    last = killed_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert (checkpoint["global_step"], checkpoint["epoch"]) == (KILL_STEP - 1, 1)
    assert int(checkpoint["state_dict"]["critic_steps_taken"]) == 9
    assert len(checkpoint["optimizer_states"]) == 2 and len(checkpoint["lr_schedulers"]) == 2

    resumed_dir, resumed = _finished(_fwi_run(experiment, tmp_path / "killed", "resume=last"))

    assert resumed["resumed_from"] == str(last)
    whole, again = _final_weights(whole_dir), _final_weights(resumed_dir)
    assert whole.keys() == again.keys() and any(k.startswith("critic.") for k in whole)
    assert all(torch.equal(whole[k], again[k]) for k in whole)
    whole_states = torch.load(whole_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    again_states = torch.load(resumed_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    for a, b in zip(whole_states["optimizer_states"], again_states["optimizer_states"]):
        assert a["param_groups"] == b["param_groups"]
        assert all(torch.equal(a["state"][i][k], b["state"][i][k]) for i in a["state"] for k in a["state"][i])
    assert whole_states["lr_schedulers"] == again_states["lr_schedulers"]
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert resumed["global_step"] == uninterrupted["global_step"] == 3 * 9
