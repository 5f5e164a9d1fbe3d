"""The ``pinn`` paradigm: its wave-equation residual, coordinate networks, samplers, snapshots, fits and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fwi_lightning import registry, testing
from fwi_lightning.cli import main
from fwi_lightning.errors import ConfigError
from fwi_lightning.networks.coordinate import CoordinateNetwork
from fwi_lightning.paradigms.collocation import CollocationSampler

REPO = Path(__file__).resolve().parents[1]
FORWARD = str(REPO / "experiments" / "pinn_forward_homogeneous.yaml")
#: Background velocity of the tiny homogeneous survey, m/s.
BACKGROUND = 2000.0


def tiny_survey_data(amplitude_mps: float = 0.0) -> dict:
    """A ``single_survey`` section on the tiny grid: one shot in the middle, a Gaussian anomaly of `amplitude_mps`."""
    survey = dict(testing.TINY_SURVEY, n_shots=None, source_x=[80.0], source_depth=80.0, n_receivers=8, receiver_depth=20.0)
    return {"name": "single_survey", "survey": survey, "velocity_range": [1500.0, 2500.0],
            "model": {"name": "gaussian_anomaly", "background_mps": BACKGROUND, "amplitude_mps": amplitude_mps,
                      "sigma_m": 30.0, "center_m": [40.0, 80.0]}}


@pytest.fixture(scope="module")
def homogeneous():
    return testing.tiny_datamodule(tiny_survey_data())


def build(datamodule, **params):
    return registry.build("paradigms", {"name": "pinn", **params}, key="model", problem=datamodule.problem)


class PlaneWave(nn.Module):
    """u = sin(k . x - omega t) in physical units, evaluated at the paradigm's normalised (x, z, tau) points."""

    def __init__(self, model, wavenumber: tuple[float, float], omega: float):
        super().__init__()
        survey = model.problem.survey
        nz, nx = model.problem.velocity_shape
        self.lengths = ((nx - 1) * survey.spacing, (nz - 1) * survey.spacing)
        self.t1, self.duration = model.steps[0] * survey.dt, model.duration_s
        self.k, self.omega = wavenumber, omega

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        x = (points[:, 0] + 1.0) / 2.0 * self.lengths[0]
        z = (points[:, 1] + 1.0) / 2.0 * self.lengths[1]
        t = self.t1 + (points[:, 2] + 1.0) / 2.0 * self.duration
        return torch.sin(self.k[0] * x + self.k[1] * z - self.omega * t)[:, None]


# ---------------------------------------------------------------------------
# the PDE residual against an analytic solution


def test_pde_residual_vanishes_for_a_plane_wave_and_not_for_a_perturbed_one(homogeneous):
    model = build(homogeneous, mode="forward").double()
    model.start_from(torch.full_like(model.start, BACKGROUND))
    frequency = 15.0
    wavenumber = 2.0 * math.pi * frequency / BACKGROUND  # |k| = omega / c
    k = (wavenumber * math.cos(0.6), wavenumber * math.sin(0.6))
    points = torch.rand(512, 3, dtype=torch.float64) * 2.0 - 1.0
    model.wavefield = PlaneWave(model, k, 2.0 * math.pi * frequency)
    exact = model.pde_residual(points).detach()
    assert exact.abs().max() < 1e-9

    # 10 % too fast in time: r = (omega'^2 - c^2 |k|^2) / omega_peak^2 * (-sin(phase)), of order 0.2
    model.wavefield = PlaneWave(model, k, 1.1 * 2.0 * math.pi * frequency)
    perturbed = model.pde_residual(points).detach()
    omega_peak = 2.0 * math.pi * model.problem.survey.peak_freq
    phase = model.wavefield(points)[:, 0].detach()  # sin(phase)
    expected = -((1.1 * 2.0 * math.pi * frequency) ** 2 - (2.0 * math.pi * frequency) ** 2) / omega_peak**2 * phase
    assert torch.allclose(perturbed, expected, atol=1e-9)
    assert perturbed.abs().mean() > 0.1


def test_pde_residual_reads_the_velocity_model(homogeneous):
    # the same plane wave in a medium 10 % faster than its phase speed is not a solution
    model = build(homogeneous, mode="forward").double()
    model.start_from(torch.full_like(model.start, 1.1 * BACKGROUND))
    omega = 2.0 * math.pi * 15.0
    model.wavefield = PlaneWave(model, (omega / BACKGROUND, 0.0), omega)
    points = torch.rand(256, 3, dtype=torch.float64) * 2.0 - 1.0
    assert model.pde_residual(points).detach().abs().mean() > 0.05


def test_the_absorbing_boundary_term_vanishes_for_a_wave_leaving_the_grid_and_not_for_one_entering(homogeneous):
    from fwi_lightning.paradigms.pinn import edge_points

    model = build(homogeneous, mode="forward").double()
    model.start_from(torch.full_like(model.start, BACKGROUND))
    omega = 2.0 * math.pi * 15.0
    wave = PlaneWave(model, (omega / BACKGROUND, 0.0), omega)  # sin(k x - omega t): travels towards +x
    model.wavefield = wave
    points = edge_points(400, torch.device("cpu")).double()
    assert (points[:, :2].abs().amax(dim=1) == 1.0).all() and points[:, 2].abs().max() <= 1.0
    residual = model.boundary_misfit(points).detach()
    x = (points[:, 0] + 1.0) / 2.0 * wave.lengths[0]
    t = wave.t1 + (points[:, 2] + 1.0) / 2.0 * wave.duration
    cosine = torch.cos(omega / BACKGROUND * x - omega * t)
    omega_peak = 2.0 * math.pi * model.problem.survey.peak_freq
    # u_t + c du/dn: 0 where it leaves (right), -2 omega cos where it would enter (left), -omega cos on top and bottom
    factor = torch.where(points[:, 0] == 1.0, 0.0, torch.where(points[:, 0] == -1.0, -2.0, -1.0)).double()
    assert torch.allclose(residual, factor * omega / omega_peak * cosine, atol=1e-9)
    assert residual[points[:, 0] == -1.0].abs().mean() > 0.1


# ---------------------------------------------------------------------------
# coordinate networks and samplers


@pytest.mark.parametrize("name", ["pinn_mlp", "pinn_siren"])
def test_coordinate_networks_map_points_to_values_twice_differentiably(name):
    problem = testing.tiny_problem()
    settings = {"fourier_features": 8} if name == "pinn_mlp" else {}
    network = registry.build("networks", {"name": name, "width": 16, "depth": 2, **settings}, key="network",
                             problem=problem, in_features=3)
    assert isinstance(network, CoordinateNetwork)
    points = (torch.rand(32, 3) * 2.0 - 1.0).requires_grad_(True)
    values = network(points)
    assert values.shape == (32, 1) and torch.isfinite(values).all()
    (first,) = torch.autograd.grad(values.sum(), points, create_graph=True)
    (second,) = torch.autograd.grad(first[:, 2].sum(), points)
    assert second.abs().sum() > 0
    network.zero_output()
    assert torch.equal(network(points.detach()), torch.zeros(32, 1))
    with pytest.raises(ValueError, match=r"expects points \[N, 3\]"):
        network(torch.zeros(4, 2))


def test_a_coordinate_network_in_a_velocity_paradigm_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="coordinate network .* pinn paradigm"):
        registry.build("networks", {"name": "pinn_siren"}, key="network", problem=testing.tiny_problem())


def test_samplers_fill_the_box_and_the_adaptive_one_follows_the_residual():
    sobol = CollocationSampler("sobol", 3)
    points = sobol(1024, torch.device("cpu"))
    assert points.shape == (1024, 3) and points.min() >= -1.0 and points.max() <= 1.0
    # a Sobol batch fills each axis far more evenly than chance: every eighth of each axis gets 128 +- 8 points
    counts = torch.stack([torch.histc(points[:, d], bins=8, min=-1.0, max=1.0) for d in range(3)])
    assert (counts - 128).abs().max() <= 8
    assert not torch.equal(points, sobol(1024, torch.device("cpu")))  # continued, not repeated

    adaptive = CollocationSampler("adaptive", 3, pool_size=4096, refresh_every=10)
    drawn = adaptive(2000, torch.device("cpu"), residual=lambda p: (p[:, 0] > 0.5).float())
    residual_half = drawn[1000:]
    assert (residual_half[:, 0] > 0.5).all()  # half the batch where the residual lives
    assert (drawn[:1000, 0] > 0.5).float().mean() < 0.4  # the other half uniform
    with pytest.raises(ValueError, match="unknown sampler"):
        CollocationSampler("halton", 3)


def test_time_marching_grows_the_collocation_window_and_the_velocity_learns_slower(homogeneous):
    model = build(homogeneous, time_marching_steps=10, velocity_lr_factor=0.1, optimizer={"name": "adam", "lr": 0.01})
    points = torch.rand(4096, 3) * 2.0 - 1.0
    second = float(model.to_time(model.steps[1] * model.problem.survey.dt))
    assert model.global_step == 0
    assert math.isclose(float(model.marched(points)[:, 2].max()), second, abs_tol=2e-3)  # the first step: up to t2
    assert torch.equal(model.marched(points)[:, :2], points[:, :2])
    optimizer = model.configure_optimizers()
    assert [group["lr"] for group in optimizer.param_groups] == [0.01, pytest.approx(0.001)]
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == {id(p) for p in model.velocity_net.parameters()}


# ---------------------------------------------------------------------------
# Simulator snapshots


def test_snapshot_at_a_receiver_cell_is_that_receivers_sample(homogeneous):
    simulator = homogeneous.operator.simulator
    velocity = homogeneous.true_velocity[:, 0]
    steps = [60, 90, 119]
    snapshots = simulator.snapshots(velocity, steps, shot=0)  # [1, K, NZ, NX]
    traces = simulator(velocity)  # [1, S, T, R]
    survey = simulator.survey
    at_receivers = snapshots[0][:, survey.receiver_row, survey.receiver_columns]  # [K, R]
    assert torch.allclose(at_receivers, traces[0, 0, steps], rtol=1e-5, atol=1e-6 * traces.abs().max())
    assert snapshots[0, -1].abs().max() > 0


# ---------------------------------------------------------------------------
# tiny fits


def _fit(model, batch, steps: int, lr: float = 3e-3) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        terms = model.loss_terms(batch)
        total = sum(model.weights[name] * value for name, value in terms.items())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()


def test_forward_fit_approaches_the_simulators_wavefield(homogeneous):
    torch.manual_seed(0)
    model = build(homogeneous, mode="forward", wavefield={"name": "pinn_siren", "width": 32, "depth": 2, "first_omega": 10.0},
                  collocation_points=256, initial_points=0, weights={"initial": 10.0, "data": 0.0}, end_time_s=0.2)
    model.prepare(homogeneous.true_velocity, homogeneous.true_velocity)
    before = float(model.wavefield_error())  # relative L2 against the Simulator at 0.2 s
    _fit(model, homogeneous.processed(), 300)
    after = float(model.wavefield_error())
    assert before > 0.5 and after < 0.4 * before, (before, after)  # measured: 0.69 -> 0.21


def test_inversion_trains_the_velocity_network_from_the_data():
    datamodule = testing.tiny_datamodule(tiny_survey_data(amplitude_mps=300.0))
    torch.manual_seed(0)
    model = build(datamodule, mode="inversion", collocation_points=128, initial_points=128, data_points=256,
                  wavefield={"name": "pinn_siren", "width": 16, "depth": 1, "first_omega": 10.0},
                  initial={"name": "linear", "v_top_mps": BACKGROUND, "v_bottom_mps": BACKGROUND},
                  weights={"smoothness": 0.1})
    from fwi_lightning.paradigms.initial import initial_velocity

    start = initial_velocity(model.hparams["initial"], model.problem, datamodule)
    model.prepare(start, datamodule.true_velocity)
    assert torch.equal(model.current_velocity(), start)  # the velocity network starts at zero
    terms = model.loss_terms(datamodule.processed())
    assert set(terms) == {"pde", "initial", "data", "smoothness"}
    _fit(model, datamodule.processed(), 3)
    assert not torch.equal(model.current_velocity(), start)


def test_the_prior_is_zero_at_the_start_and_the_squared_update_on_the_range_scale_after():
    datamodule = testing.tiny_datamodule(tiny_survey_data(amplitude_mps=300.0))
    model = build(datamodule, mode="inversion", initial={"name": "linear", "v_top_mps": BACKGROUND, "v_bottom_mps": BACKGROUND},
                  weights={"prior": 1.0})
    model.prepare(torch.full_like(model.start, BACKGROUND), datamodule.true_velocity)
    terms = model.loss_terms(datamodule.processed())
    assert "prior" in terms and float(terms["prior"].detach()) == 0.0  # the network starts at zero
    with torch.no_grad():
        model.velocity_net.body[-1].bias.fill_(0.5)  # an update of 500 * tanh(0.5) m/s everywhere
    expected = (model.velocity_scale * math.tanh(0.5) / 500.0) ** 2  # range 1500-2500: half-width 500 m/s
    prior = model.prior(torch.rand(64, 2) * 2.0 - 1.0)
    assert math.isclose(float(prior.detach()), expected, rel_tol=1e-5)
    prior.backward()
    assert model.velocity_net.body[-1].bias.grad.abs().sum() > 0


def test_the_scattered_form_adds_a_background_that_solves_the_wave_equation_in_the_start():
    datamodule = testing.tiny_datamodule(tiny_survey_data(amplitude_mps=300.0))
    model = build(datamodule, mode="inversion", wavefield_form="scattered",
                  initial={"name": "linear", "v_top_mps": 1900.0, "v_bottom_mps": 2100.0})
    from fwi_lightning.paradigms.initial import initial_velocity

    start = initial_velocity(model.hparams["initial"], model.problem, datamodule)
    model.prepare(start, datamodule.true_velocity)
    nz, nx = model.problem.velocity_shape
    dt = model.problem.survey.dt
    # the network starts at zero: the wavefield is the background, which matches the snapshots and the start's traces
    assert torch.allclose(model.wavefield_grid(model.steps[1] * dt) / model.amplitude, model.snapshots[1], atol=1e-5)
    traces = model.problem.forward_operator().simulator(start[:, 0])[0, 0] / model.amplitude  # [T, R]
    tau = model.to_time(torch.tensor(model.steps[2] * dt))
    points = torch.cat([model.receiver_points(), tau.expand(len(model.receiver_points()), 1)], dim=1)
    assert torch.allclose(model.wavefield_at(points), traces[model.steps[2]], atol=1e-4 * traces.abs().max())
    # u0_tt / c0^2 against a finite-difference Laplacian of u0 (both / omega^2) away from the edges, mid-window
    k = (model.steps[2] + model.steps[3]) // 2 - model.steps[0]
    u0, acceleration = model.background[0, 0, k], model.background[0, 1, k]
    h = model.problem.survey.spacing
    omega = 2.0 * math.pi * model.problem.survey.peak_freq
    laplacian = (u0[2:, 1:-1] + u0[:-2, 1:-1] + u0[1:-1, 2:] + u0[1:-1, :-2] - 4.0 * u0[1:-1, 1:-1]) / h**2 / omega**2
    mine = (acceleration / start[0, 0].square())[1:-1, 1:-1]
    inner = (slice(2, -2), slice(2, -2))
    assert float((mine - laplacian)[inner].norm() / laplacian[inner].norm()) < 0.2
    # so with the network at zero the residual vanishes in the start and not in a faster model
    collocation = torch.rand(256, 3) * 2.0 - 1.0
    assert float(model.pde_residual(collocation).detach().abs().max()) < 1e-4
    with torch.no_grad():
        model.velocity_net.body[-1].bias.fill_(0.3)  # the velocity 0.3 * tanh(.3) * 500 m/s above the start
    assert float(model.pde_residual(collocation).detach().abs().mean()) > 1e-3
    with pytest.raises(ConfigError, match="needs inversion mode") as error:
        build(datamodule, mode="forward", wavefield_form="scattered")
    assert error.value.key == "model.wavefield_form"


@pytest.mark.slow
def test_pinn_contract_forward_and_inversion():
    check = testing.check_paradigm("pinn", mode="inversion", data=tiny_survey_data(300.0),
                                   initial={"name": "linear", "v_top_mps": BACKGROUND, "v_bottom_mps": BACKGROUND})
    for term in ("pde", "initial", "data"):
        assert math.isfinite(check.fit_metrics[f"train/{term}"])
    assert 0.0 < check.fit_metrics["val/wavefield_rel_l2"]
    forward = testing.check_paradigm("pinn", mode="forward", data=tiny_survey_data())
    assert forward.fit_metrics["train/pde"] >= 0.0


@pytest.mark.slow
def test_experiment_writes_wavefield_and_velocity_figures(tmp_path):
    experiment = testing.tiny_experiment({"name": "pinn", "mode": "forward", "figure_every_n_steps": 1,
                                          **{k: v for k, v in testing.TINY_PARADIGM_NETWORKS["pinn"].items() if k == "wavefield"}},
                                         data=tiny_survey_data(), run_dir=tmp_path)
    experiment["trainer"] = {**testing.TINY_TRAINER, "fast_dev_run": False, "max_steps": 2, "max_epochs": 1}
    result = testing.run_experiment(experiment)
    folder = Path(result.run.trainer.default_root_dir)
    assert (folder / "figures" / "wavefield.png").stat().st_size > 0
    assert (folder / "figures" / "final.png").stat().st_size > 0
    assert np.load(folder / "final_velocity.npy").shape == (16, 16)


# ---------------------------------------------------------------------------
# bad input


def test_time_window_is_checked(homogeneous):
    with pytest.raises(ConfigError, match="zero duration") as error:
        build(homogeneous, end_time_s=0.184)  # default t2 = 0.184 s on the tiny survey
    assert error.value.key == "model.end_time_s"
    with pytest.raises(ConfigError, match="beyond the record"):
        build(homogeneous, end_time_s=1.0)
    with pytest.raises(ConfigError, match="t1 < t2"):
        build(homogeneous, initial_times_s=[0.1, 0.1])
    with pytest.raises(ConfigError, match="unknown loss term 'pdf'"):
        build(homogeneous, weights={"pdf": 1.0})
    with pytest.raises(ConfigError, match="coordinate network"):
        build(homogeneous, wavefield={"name": "tiny"})
    with pytest.raises(ConfigError, match="unknown wavefield form 'born'") as error:
        build(homogeneous, wavefield_form="born")
    assert error.value.key == "model.wavefield_form"
    with pytest.raises(ConfigError, match="unknown loss term 'absorbing'"):
        build(homogeneous, weights={"absorbing": 1.0})


@pytest.mark.parametrize(("case", "overrides", "fragments"), [
    ("receivers-outside", ["data.survey.receiver_spacing=null", "data.survey.receiver_x=[100.0,900.0]"],
     ["data.survey.receiver_x", "outside the grid"]),
    ("zero-duration", ["model.end_time_s=0.137"], ["model.end_time_s", "zero duration"]),
    ("record-ends-before-the-snapshots", ["data.survey.nt=130"], ["model.initial_times_s", "beyond the record"]),
    ("unknown-sampler", ["model.sampler=halton"], ["model.sampler", "sobol"]),
    ("unknown-wavefield-form", ["model.wavefield_form=born"], ["model.wavefield_form", "total or scattered"]),
    ("scattered-in-forward-mode", ["model.wavefield_form=scattered"], ["model.wavefield_form", "inversion mode"]),
    ("negative-boundary-weight", ["model.weights.boundary=-1"], ["model.weights.boundary", ">= 0"]),
])
def test_bad_pinn_input_gives_one_line_and_exit_2(case, overrides, fragments, tmp_path, capsys):
    status = main([FORWARD, f"run_dir={tmp_path}", "--dry-run", *overrides])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_a_coordinate_network_in_supervised_exits_2_with_one_line(tmp_path, capsys):
    quickstart = str(REPO / "experiments" / "quickstart.yaml")
    status = main([quickstart, f"run_dir={tmp_path}", "--dry-run", "model.network={name: pinn_siren}", "logger=csv",
                   "data.num_workers=0"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and "model.network.name" in err and "coordinate network" in err, err
