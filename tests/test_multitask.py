"""The multitask paradigm: task targets and losses against independent computations, the
weightings against their definitions (Kendall's formula, learned weights that move and are
logged, GradNorm reaching its target gradient-norm ratio on a toy problem), the shared
encoder and decoder heads, the contract runs, and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from fwi_lightning import registry, testing
from fwi_lightning.cli import main
from fwi_lightning.errors import ConfigError
from fwi_lightning.losses.tasks import Background, Interfaces, gaussian_smooth, interface_map
from fwi_lightning.losses.weighting import GradNorm, Uncertainty, build_weighting
from fwi_lightning.networks.base import VelocityNetwork
from test_adversarial import assert_one_line_exit_2, write_experiment
from test_contracts import builtins, matrix, velocity_networks

REPO = Path(__file__).resolve().parents[1]
THREE_HEADS = {"velocity": 1.0, "interfaces": 0.5, "background": {"weight": 0.5, "sigma_m": 20.0}}


class NoSplit(VelocityNetwork):
    """A network that maps data to velocity in one piece, without encode/decode."""

    def __init__(self, problem):
        super().__init__(problem)
        self.scale = torch.nn.Parameter(torch.zeros(1))

    def normalised(self, data):
        return torch.tanh(self.scale * data.mean(dim=(1, 2, 3)))[:, None, None, None].expand(-1, 1, *self.velocity_shape)


def tiny_multitask(**model: object) -> dict:
    """The model section of a tiny multitask experiment, with `model` merged in."""
    return {"name": "multitask", "network": dict(testing.TINY_NETWORK), **model}


# ---------------------------------------------------------------------------
# Targets and task losses against independent computations


def test_interface_map_marks_every_jump_above_the_threshold():
    rng = np.random.default_rng(0)
    velocity = rng.choice([2000.0, 2010.0, 2500.0, 3000.0], size=(2, 1, 9, 7))
    expected = np.zeros_like(velocity)
    for b, _, z, x in np.ndindex(*velocity.shape):
        below = z + 1 < 9 and abs(velocity[b, 0, z + 1, x] - velocity[b, 0, z, x]) > 25.0
        right = x + 1 < 7 and abs(velocity[b, 0, z, x + 1] - velocity[b, 0, z, x]) > 25.0
        expected[b, 0, z, x] = float(below or right)
    found = interface_map(torch.tensor(velocity), 25.0).numpy()
    assert np.array_equal(found, expected) and 0 < expected.mean() < 1


def test_background_target_is_the_gaussian_blur_of_the_normalised_label():
    problem = testing.tiny_problem()  # 10 m cells
    velocity = torch.tensor(np.random.default_rng(1).uniform(1500, 4500, size=(2, 1, 16, 16)), dtype=torch.float32)
    task = Background(problem, sigma_m=20.0)  # 2 cells
    normalised = problem.normalise_velocity(velocity).numpy()
    expected = np.stack([ndimage.gaussian_filter(m, sigma=2.0, mode="nearest", truncate=3.0) for m in normalised[:, 0]])[:, None]
    assert np.allclose(task.target({"velocity": velocity}).numpy(), expected, atol=1e-5)
    assert np.allclose(gaussian_smooth(torch.tensor(normalised), 2.0).numpy(), expected, atol=1e-5)


def test_interfaces_loss_is_class_balanced_cross_entropy():
    problem = testing.tiny_problem()
    task = Interfaces(problem, threshold_mps=25.0)
    velocity = torch.full((1, 1, 16, 16), 2000.0)
    velocity[..., 8:, :] = 3000.0                                   # one boundary row: z = 7
    probability = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    y, p = interface_map(velocity, 25.0).numpy(), probability.numpy()
    beta = y.mean()                                                  # 1/16 of the cells are boundary
    expected = -2 * np.mean((1 - beta) * y * np.log(p) + beta * (1 - y) * np.log(1 - p))
    assert beta == pytest.approx(1 / 16)
    assert task(probability, {"velocity": velocity}).item() == pytest.approx(expected, rel=1e-5)
    assert task.output(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0.0, 0.5, 1.0]


# ---------------------------------------------------------------------------
# Weightings against their definitions


def test_uncertainty_weighting_is_kendalls_formula():
    weighting = Uncertainty({"velocity": 1.0, "interfaces": 0.25})
    assert torch.allclose(weighting.log_variances, torch.tensor([0.0, math.log(4.0)]))  # starts at -log w
    with torch.no_grad():
        weighting.log_variances.copy_(torch.tensor([0.5, -1.0]))
    combined = weighting({"velocity": torch.tensor(2.0), "interfaces": torch.tensor(3.0)}, None)
    expected = math.exp(-0.5) * 2.0 + 0.5 + math.exp(1.0) * 3.0 - 1.0
    assert combined.loss.item() == pytest.approx(expected, rel=1e-6)
    assert combined.weights["interfaces"].item() == pytest.approx(math.exp(1.0), rel=1e-6)


def _toy_gradnorm(alpha: float, start_scale: float, steps: int = 600) -> tuple[float, float, float, np.ndarray]:
    """Two tasks on fixed shared features z, L_a = 4 (z.u)^2 and L_b = (z.v)^2 / 4 (very
    different gradient norms at z), only the GradNorm weights train (Adam, lr decaying). With
    `start_scale` the first call sees L_a multiplied by it, so L_a(0) differs from L_a.

    Returns: (first ratio G_a / G_b, last ratio, the target ratio (r_a / r_b)^alpha, and
    the last G_i / (mean_j G_j r_i^alpha) per task), all computed here from the definitions.
    """
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(8, generator=generator, requires_grad=True)
    u, v = torch.randn(8, generator=generator), torch.randn(8, generator=generator)
    weighting = GradNorm({"a": 1.0, "b": 1.0}, alpha=alpha)
    optimizer = torch.optim.Adam(weighting.parameters(), lr=0.01)
    decay = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.995)  # settles Adam's last steps

    def losses(scale: float = 1.0) -> dict[str, torch.Tensor]:
        return {"a": scale * 4.0 * (z @ u) ** 2, "b": 0.25 * (z @ v) ** 2}

    def norms() -> np.ndarray:
        """G_i = w_i ||dL_i/dz||."""
        grads = [torch.autograd.grad(loss, z)[0].norm() for loss in losses().values()]
        return weighting.task_weights.detach().numpy() * np.array([float(g) for g in grads])

    weighting(losses(start_scale), z)  # records L(0)
    first = norms()
    for _ in range(steps):
        optimizer.zero_grad()
        weighting(losses(), z).loss.backward()
        optimizer.step()
        decay.step()
    weighting(losses(), z)  # the rescaling to sum 2 that precedes every use
    last = norms()
    current = np.array([float(x.detach()) for x in losses().values()])
    ratios = current / (current * np.array([start_scale, 1.0]))
    rates = ratios / ratios.mean()
    return first[0] / first[1], last[0] / last[1], float((rates[0] / rates[1]) ** alpha), last / (last.mean() * rates**alpha)


def test_gradnorm_equalises_the_gradient_norms_of_tasks_training_at_one_rate():
    first, last, target, _ = _toy_gradnorm(alpha=1.5, start_scale=1.0)
    assert target == pytest.approx(1.0)
    assert abs(math.log(first / target)) > 1.0       # far off at the start
    assert abs(math.log(last / target)) < 0.01        # within 1 %


def test_gradnorm_drives_the_ratio_to_its_target_for_unequal_training_rates():
    first, last, target, gaps = _toy_gradnorm(alpha=1.5, start_scale=2.0)  # task a has halved its loss, b has not
    assert target == pytest.approx(0.5**1.5)
    # from 14x the target ratio to within 6 % of it: the L1 balancing loss settles where one
    # task meets its target G_i = mean(G) r_i^alpha exactly (the two targets need not sum to
    # the two norms, so both cannot be met at once)
    assert abs(math.log(first / target)) > 2.5 and abs(math.log(last / target)) < 0.06
    assert np.abs(gaps - 1.0).min() < 0.01


def test_gradnorm_weights_stay_positive_and_sum_to_the_task_count():
    weighting = GradNorm({"velocity": 3.0, "interfaces": 1.0})
    assert weighting.task_weights.tolist() == [1.5, 0.5] and torch.isnan(weighting.initial_losses).all()
    with torch.no_grad():
        weighting.task_weights.copy_(torch.tensor([-1.0, 3.0]))
    z = torch.ones(2, requires_grad=True)
    combined = weighting({"velocity": z.sum(), "interfaces": (2 * z).sum()}, z)
    assert weighting.task_weights.sum().item() == pytest.approx(2.0) and (weighting.task_weights > 0).all()
    assert "gradnorm_loss" in combined.extra


@pytest.mark.parametrize(("name", "weights", "message"), [
    ("gradnorm", {"velocity": 1.0}, "gradnorm balances several tasks but heads has only velocity"),
    ("gradnrm", {"velocity": 1.0, "interfaces": 1.0}, "did you mean 'gradnorm'"),
])
def test_weighting_refusals(name, weights, message):
    with pytest.raises(ConfigError, match=message) as info:
        build_weighting(name, weights, alpha=1.5)
    assert info.value.key == "weighting"


# ---------------------------------------------------------------------------
# The paradigm: heads, learned weights in training, contract runs


def test_heads_share_the_encoder_and_every_trainable_parameter_gets_a_gradient():
    problem = testing.tiny_problem()
    spec = {"name": "inversionnet", **testing.tiny_settings("networks", "inversionnet")}
    model = registry.build("paradigms", tiny_multitask(network=spec, heads=THREE_HEADS, weighting="gradnorm"),
                           key="model", problem=problem)
    assert model.produces == ("velocity", "interfaces", "background")
    full = sum(p.numel() for p in model.network.parameters())
    for decoder in model.decoders.values():  # the copies keep the decoder only
        assert 0 < sum(p.numel() for p in decoder.parameters()) < full
    batch = testing.tiny_batch("train")
    outputs = model.outputs(batch)
    lo, hi = problem.velocity_range
    assert outputs["interfaces"].shape == outputs["velocity"].shape == outputs["background"].shape == (2, 1, 16, 16)
    assert 0 <= outputs["interfaces"].min() and outputs["interfaces"].max() <= 1
    assert lo <= outputs["background"].min() and outputs["background"].max() <= hi
    model.log = model.log_dict = lambda *args, **kwargs: None  # no trainer attached
    model.training_step(batch, 0).backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing  # nothing unused (DDP-safe); GradNorm's weights get their balancing gradient


def test_uncertainty_weights_are_learnable_move_and_are_logged(tmp_path):
    model = tiny_multitask(heads=THREE_HEADS, weighting="uncertainty", weighting_lr=0.05)
    experiment = testing.tiny_experiment(model, run_dir=tmp_path)
    experiment["trainer"] = {**testing.TINY_TRAINER, "fast_dev_run": False, "max_epochs": 3, "limit_val_batches": 1,
                             "limit_test_batches": 1, "log_every_n_steps": 1}
    result = testing.run_experiment(experiment)
    module = result.run.model
    learned = module.weighting.log_variances
    assert learned.requires_grad
    group = next(g for g in result.run.trainer.optimizers[0].param_groups if any(p is learned for p in g["params"]))
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.0
    start = torch.tensor([0.0, math.log(2.0), math.log(2.0)])      # -log of the configured 1, 0.5, 0.5
    assert (learned.detach() - start).abs().min() > 0.05            # every one moved over 6 steps
    logged = result.fit_metrics
    for index, head in enumerate(THREE_HEADS):
        assert f"train/{head}_loss" in logged
        assert logged[f"train/{head}_weight"] != pytest.approx(float(torch.exp(-start[index])), abs=1e-3)
    # the last epoch's logged weight lies between the epoch's first (>= the final's start) and last values
    final = torch.exp(-learned.detach())
    assert logged["train/velocity_weight"] == pytest.approx(float(final[0]), rel=0.1)


def test_learned_task_weights_and_gradnorms_initial_losses_are_checkpointed(tmp_path):
    experiment = testing.tiny_experiment(tiny_multitask(heads=THREE_HEADS, weighting="gradnorm", weighting_lr=0.05),
                                         run_dir=tmp_path)
    experiment["trainer"] = {**testing.TINY_TRAINER, "fast_dev_run": False, "max_epochs": 2, "limit_val_batches": 1,
                             "limit_test_batches": 1}
    result = testing.run_experiment(experiment)
    trained = result.run.model.weighting
    assert not torch.isnan(trained.initial_losses).any()
    assert trained.task_weights.detach().tolist() != pytest.approx([4 / 3, 2 / 3, 2 / 3])  # moved from the start
    path = tmp_path / "weights.ckpt"
    result.run.trainer.save_checkpoint(path)
    restored = type(result.run.model).load_from_checkpoint(path, map_location="cpu").weighting
    assert torch.equal(restored.task_weights, trained.task_weights)
    assert torch.equal(restored.initial_losses, trained.initial_losses)


@pytest.mark.parametrize("weighting", ["fixed", "uncertainty", "gradnorm"])
def test_contract_fit_test_reload_predict(weighting):
    run = testing.check_paradigm("multitask", heads=THREE_HEADS, weighting=weighting)
    logged = set(run.fit_metrics)
    expected = {f"train/{h}_{what}" for h in THREE_HEADS for what in ("loss", "weight")}
    assert expected <= logged and ("train/gradnorm_loss" in logged) == (weighting == "gradnorm")


def test_mixing_matrix_holds_multitask_with_every_network_loss_and_callback():
    rows = set(matrix())
    expected = {"network": velocity_networks(), "losses": builtins("losses"), "callbacks": builtins("callbacks")}
    for param, names in expected.items():
        assert {n for p, slot, n in rows if p == "multitask" and slot == param} == set(names)


# ---------------------------------------------------------------------------
# Bad input: exit 2 with one line naming the file, the key and the fix


@pytest.mark.parametrize(("model", "fragments"), [
    ({"heads": {"velocity": 1.0, "interface": 1.0}}, ["key 'model.heads.interface'", "unknown head", "did you mean 'interfaces'"]),
    ({"heads": {"velocity": 1.0, "interfaces": 0}}, ["key 'model.heads.interfaces.weight'", "positive number, got 0", "weight: 1.0"]),
    ({"heads": {"velocity": -2.0}}, ["key 'model.heads.velocity.weight'", "positive number, got -2.0"]),
    ({"heads": {"velocity": 1.0, "background": {"weight": "high"}}}, ["key 'model.heads.background.weight'", "got 'high'"]),
    ({"heads": {"interfaces": 1.0}}, ["key 'model.heads.velocity'", "heads must include velocity"]),
    ({"heads": {"velocity": 1.0}, "weighting": "gradnorm"}, ["key 'model.weighting'", "only velocity", "weighting: fixed"]),
    ({"weighting": "kendall"}, ["key 'model.weighting'", "unknown weighting 'kendall'", "uncertainty"]),
    ({"heads": {"velocity": 1.0, "interfaces": {"treshold_mps": 5.0}}}, ["key 'model.heads.interfaces.treshold_mps'",
                                                                           "did you mean 'threshold_mps'"]),
    ({"heads": {"velocity": 1.0, "background": {"sigma_m": -1.0}}}, ["key 'model.heads.background.sigma_m'", "positive"]),
    ({"alpha": -1.0}, ["key 'model.alpha'", ">= 0"]),
])
def test_bad_input_exits_2_with_one_line(model, fragments, tmp_path, capsys):
    config = write_experiment(tmp_path / "multitask.yaml", tiny_multitask(**model))
    assert_one_line_exit_2(config, tmp_path / "runs", capsys, fragments)


def test_a_network_without_an_encoder_decoder_split_is_named():
    with pytest.raises(ConfigError) as info:
        registry.build("paradigms", tiny_multitask(network={"name": "test_multitask:NoSplit"}), key="model",
                       problem=testing.tiny_problem())
    message = str(info.value)
    assert info.value.key == "model.network" and "\n" not in message
    assert "network 'test_multitask:NoSplit' has no encoder/decoder split" in message
    assert "does not implement encode and decode" in message and "choose a network that does" in message


@pytest.mark.slow
def test_multitask_curvefault_experiment_runs_tiny(tmp_path, capsys):
    overrides = ["data.survey={nz: 16, nx: 16, spacing: 10.0, nt: 120, dt: 0.002, peak_freq: 15.0, n_shots: 2, n_receivers: 16}",
                 "data.sizes={train: 4, val: 2, test: 2}", "data.batch_size=2", "data.num_workers=0", "data.cache=false",
                 "model.network.channels=[4,4,4,4,4]", "trainer.max_epochs=1", "trainer.accelerator=cpu",
                 "callbacks.figures=null", "logger=csv", f"run_dir={tmp_path}"]
    assert main([str(REPO / "experiments" / "multitask_curvefault.yaml"), *overrides]) == 0, capsys.readouterr().err
