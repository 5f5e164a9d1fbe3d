"""The physics loss: its misfits, zero at the truth, its gradient, its cost controls and its bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fwi_lightning import registry, testing
from fwi_lightning.cli import main
from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.losses import misfits
from fwi_lightning.losses.physics import Physics, default_interval, largest_unaliased_interval
from fwi_lightning.physics.operator import ForwardOperator
from fwi_lightning.physics.simulator import Simulator
from fwi_lightning.physics.survey import Survey
from fwi_lightning.problem import Problem

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    """(problem, training batch) of the tiny preset: noise-free simulated data."""
    datamodule = testing.tiny_datamodule()
    return datamodule.problem, testing.tiny_batch("train", datamodule)


def physics(problem, **params) -> Physics:
    return registry.build("losses", {"name": "physics", **params}, key="losses.physics", problem=problem)


# ---------------------------------------------------------------------------
# The misfits against numpy


def _gathers(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    observed = rng.normal(size=(2, 3, 40, 5))
    observed[0, 1, :, 2] = 0.0  # a masked trace
    predicted = observed + 0.3 * rng.normal(size=observed.shape)
    return torch.from_numpy(predicted), torch.from_numpy(observed)


def test_l1_and_l2_are_relative_per_sample():
    p, o = (t.numpy() for t in _gathers(0))
    l1 = np.mean([np.abs(p[b] - o[b]).sum() / np.abs(o[b]).sum() for b in range(2)])
    l2 = np.mean([((p[b] - o[b]) ** 2).sum() / (o[b] ** 2).sum() for b in range(2)])
    tp, to = _gathers(0)
    assert misfits.l1(tp, to).item() == pytest.approx(l1, rel=1e-12)
    assert misfits.l2(tp, to).item() == pytest.approx(l2, rel=1e-12)
    assert misfits.l2(torch.zeros_like(to), to).item() == pytest.approx(1.0)


def test_trace_misfits_weigh_every_recorded_trace_equally():
    tp, to = _gathers(1)
    p, o = tp.numpy(), to.numpy()
    trace_l2, corr = [], []
    for b, s, r in np.ndindex(2, 3, 5):
        pt, ot = p[b, s, :, r], o[b, s, :, r]
        if not ot.any():
            continue  # the masked trace counts for nothing
        trace_l2.append(((pt - ot) ** 2).sum() / (ot ** 2).sum())
        corr.append(1.0 - np.dot(pt, ot) / (np.linalg.norm(pt) * np.linalg.norm(ot)))
    assert len(trace_l2) == 2 * 3 * 5 - 1
    assert misfits.trace_l2(tp, to).item() == pytest.approx(np.mean(trace_l2), rel=1e-12)
    assert misfits.correlation(tp, to).item() == pytest.approx(np.mean(corr), rel=1e-12)


def test_correlation_ignores_amplitude_scale_and_trace_l2_does_not():
    tp, to = _gathers(2)
    assert misfits.correlation(3.7 * tp, to).item() == pytest.approx(misfits.correlation(tp, to).item(), rel=1e-12)
    assert misfits.correlation(5.0 * to, to).item() == pytest.approx(0.0, abs=1e-12)
    assert misfits.trace_l2(2.0 * to, to).item() == pytest.approx(1.0, rel=1e-12)


# ---------------------------------------------------------------------------
# Zero at the truth, and the gradient


@pytest.mark.parametrize("misfit", sorted(misfits.MISFITS))
def test_zero_for_the_true_model_on_noise_free_data(tiny, misfit):
    problem, batch = tiny
    loss = physics(problem, misfit=misfit)
    assert loss({"velocity": batch["velocity"]}, batch).item() == pytest.approx(0.0, abs=1e-6)
    wrong = (batch["velocity"] * 0.9 + 200.0).clamp(*problem.velocity_range)
    assert loss({"velocity": wrong}, batch).item() > 1e-4


def _tiny_float64_problem(nt: int = 60) -> tuple[Problem, torch.Tensor, torch.Tensor]:
    """A 10 x 12 grid, 2 shots, `nt` samples of 2 ms, fixed discretisation; (problem, model, observed data) in float64."""
    survey = Survey(nz=10, nx=12, spacing=10.0, nt=nt, dt=0.002, peak_freq=15.0, n_shots=2, n_receivers=12)
    operator = ForwardOperator(Simulator(survey, (1500.0, 4500.0), "fast"))
    problem = Problem(operator.survey, (1500.0, 4500.0), (0.0, 1.0), operator=operator)
    z = torch.arange(10, dtype=torch.float64)[:, None].expand(10, 12)
    x = torch.arange(12, dtype=torch.float64)[None, :].expand(10, 12)
    true = (2000.0 + 120.0 * z)[None, None]
    with torch.no_grad():
        observed = operator(true)
    model = (true + 150.0 * torch.sin(x / 3.0) + 80.0 * torch.cos(z / 2.0)).contiguous()
    return problem, model, observed


@pytest.mark.parametrize("misfit", ["l2", "correlation"])
def test_gradient_matches_central_finite_differences(misfit):
    problem, model, observed = _tiny_float64_problem()
    loss = Physics(problem, misfit=misfit, model_gradient_sampling_interval=1)
    batch = {"data": observed}
    v = model.clone().requires_grad_(True)
    loss({"velocity": v}, batch).backward()
    direction = torch.randn(model.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = 0.5  # m/s
    with torch.no_grad():
        plus = loss({"velocity": model + h * direction}, batch)
        minus = loss({"velocity": model - h * direction}, batch)
    finite_difference = float((plus - minus) / (2 * h))
    analytic = float((v.grad * direction).sum())
    assert analytic == pytest.approx(finite_difference, rel=1e-4)  # deepwave's adjoint: ~1e-5 off the discrete one


def test_default_sampling_interval_changes_the_gradient_little():
    # a 0.48 s record: the wavefield has left the grid by its end (on a 0.12 s record,
    # cut while the waves are still strong, the sampled gradient loses ~4 % at interval 5)
    problem, model, observed = _tiny_float64_problem(nt=240)
    grads = []
    for interval in (1, None):
        v = model.clone().requires_grad_(True)
        Physics(problem, model_gradient_sampling_interval=interval)({"velocity": v}, {"data": observed}).backward()
        grads.append(v.grad)
    assert default_interval(240, 0.002, 15.0) == 5
    error = float((grads[1] - grads[0]).norm() / grads[0].norm())
    assert 0 < error < 1e-3  # the target: at most 0.1 %


# ---------------------------------------------------------------------------
# Cost controls


def test_sampling_interval_guard_refuses_aliasing():
    problem = Problem(Survey(), (1500.0, 4500.0), (0.0, 1.0))  # OpenFWI: 1 ms, 15 Hz
    assert largest_unaliased_interval(0.001, 15.0) == 13  # 13 ms < 1 / (2 * 37.5 Hz) = 13.3 ms
    assert default_interval(1000, 0.001, 15.0) == 10  # 13 does not divide 1000; 10 ms < 0.8 * 13.3 ms
    assert default_interval(125, 0.008, 15.0) == 1
    assert physics(problem).simulator.model_gradient_sampling_interval == 10
    assert physics(problem, model_gradient_sampling_interval=5).simulator.model_gradient_sampling_interval == 5
    with pytest.raises(ConfigError, match="aliases the 15 Hz Ricker.*use at most 13") as caught:
        physics(problem, model_gradient_sampling_interval=20)
    assert caught.value.key == "losses.physics.model_gradient_sampling_interval"
    with pytest.raises(ConfigError, match="divide") as caught:
        physics(problem, model_gradient_sampling_interval=3)
    assert caught.value.key == "losses.physics.model_gradient_sampling_interval"


def test_courant_number_and_step_buckets_build_a_variant_of_the_data_simulation(tiny):
    problem, batch = tiny
    live = problem.forward_operator()
    assert live.simulator.step_buckets and physics(problem).simulator.step_buckets
    fixed = physics(problem, step_buckets=False, courant_number=0.5)
    assert not fixed.simulator.step_buckets and fixed.simulator.survey.courant_number == 0.5
    assert fixed.simulator.survey.max_vel == problem.velocity_range[1]
    # a different discretisation: near zero at the truth, not exactly zero
    value = fixed({"velocity": batch["velocity"]}, batch).item()
    assert 0 < value < 0.05
    with pytest.raises(ConfigError, match="unstable") as caught:
        physics(problem, courant_number=2.0)
    assert caught.value.key == "losses.physics.courant_number"


def test_a_shot_subset_propagates_only_those_shots_with_the_same_numbers(tiny):
    problem, batch = tiny
    operator = problem.forward_operator()
    everything = operator(batch["velocity"])
    assert torch.equal(everything, batch["data"])  # no subset: the data module's numbers exactly
    assert torch.allclose(operator(batch["velocity"], shots=[1]), everything[:, [1]], rtol=1e-6, atol=1e-9)
    with pytest.raises(DataError, match="shot indices"):
        operator(batch["velocity"], shots=[2])


def test_the_random_shot_subset_is_reproducible_and_resumes(tiny):
    problem, batch = tiny
    one = physics(problem, shots=1)
    drawn = [one.choose_shots(batch) for _ in range(8)]
    assert all(len(s) == 1 for s in drawn) and {s[0] for s in drawn} == {0, 1}
    other = physics(problem, shots=1)
    assert [other.choose_shots(batch) for _ in range(8)] == drawn  # no global RNG
    resumed = physics(problem, shots=1)
    resumed.load_state_dict({"draws": torch.tensor(4)})
    assert [resumed.choose_shots(batch) for _ in range(4)] == drawn[4:]
    one.eval()
    assert one.choose_shots(batch) is None  # validation and test: every shot
    value = one({"velocity": batch["velocity"]}, batch)
    assert value.item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------
# Bad inputs


def test_a_batch_without_observed_data_is_one_line(tiny):
    problem, batch = tiny
    unobserved = {k: v for k, v in batch.items() if k != "data"}
    with pytest.raises(DataError, match="has none") as caught:
        physics(problem)({"velocity": batch["velocity"]}, unobserved)
    assert "\n" not in str(caught.value)


def test_a_survey_mismatch_names_both_shapes(tiny):
    problem, batch = tiny
    loss = physics(problem)
    with pytest.raises(DataError, match=r"\[2, 1, 8, 16\].*\[B, 1, 16, 16\]"):
        loss({"velocity": batch["velocity"][:, :, :8]}, batch)
    with pytest.raises(DataError, match=r"\[2, 2, 60, 16\].*\[2, 2, 120, 16\]"):
        loss({"velocity": batch["velocity"]}, {**batch, "data": batch["data"][:, :, :60]})


@pytest.mark.parametrize(("overrides", "fragments"), [
    (["model.losses={physics: {weight: 1.0, model_gradient_sampling_interval: 20}}"],
     ["model.losses.physics.model_gradient_sampling_interval", "aliases", "at most 6"]),
    (["model.losses={physics: {weight: 1.0, shots: 9}}"], ["model.losses.physics.shots", "1..3"]),
], ids=["aliasing-interval", "too-many-shots"])
def test_fwi_run_refuses_a_bad_physics_loss_in_one_line(overrides, fragments, tmp_path, capsys):
    runs = tmp_path / "runs"
    earlier = runs / "quickstart" / "quickstart-earlier"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text('{"kept": true}')
    small = ["trainer.max_epochs=1", "data.sizes.train=8", "data.sizes.val=4", "data.sizes.test=4", "logger=csv",
             "data.num_workers=0"]
    status = main([str(REPO / "experiments" / "quickstart.yaml"), *small, f"run_dir={runs}", *overrides])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, err
    assert (earlier / "summary.json").read_text() == '{"kept": true}'
    assert [p.name for p in runs.rglob("*") if p.is_dir()] == ["quickstart", "quickstart-earlier"]
