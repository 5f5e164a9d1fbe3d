"""Contract tests over every registered network: shapes, bounds, gradients; InversionNet vs OpenFWI."""

from __future__ import annotations

import pytest
import torch

from fwi_lightning import registry
from fwi_lightning.errors import ConfigError
from fwi_lightning.networks.coordinate import CoordinateNetwork
from fwi_lightning.networks.inversionnet import LATENT
from fwi_lightning.physics.survey import Survey
from fwi_lightning.problem import Problem

#: Width/depth knobs that make each built-in network tiny; plugins are built with their defaults.
TINY = {
    "tiny": {"width": 4},
    "inversionnet": {"channels": [4, 4, 4, 4, 4]},
    "unet": {"channels": [4, 8]},
    "lstm": {"hidden": 8, "layers": 1, "steps": 20, "channels": [8, 4]},
    "transformer": {"tokens": [6, 4], "dim": 16, "depth": 1, "heads": 2, "channels": [8, 4]},
}
OPENFWI_INVERSIONNET_PARAMETERS = 24_409_123
SURVEYS = {
    "square": Survey(nz=16, nx=16, spacing=10.0, nt=120, dt=0.002, peak_freq=15.0, n_shots=2, n_receivers=16),
    "wide": Survey(nz=12, nx=20, spacing=10.0, nt=90, dt=0.002, peak_freq=15.0, n_shots=3, n_receivers=10),
}
#: The data -> velocity networks (the pinn paradigm's coordinate networks are tested in tests/test_pinn.py).
NETWORKS = [n for n in registry.names("networks") if not issubclass(registry.load("networks", n), CoordinateNetwork)]


def problem_for(survey: Survey) -> Problem:
    return Problem(survey, velocity_range=(1500.0, 4500.0), data_range=(-3.0, 3.0))


def build(name: str, problem: Problem):
    torch.manual_seed(0)
    return registry.build("networks", {"name": name, **TINY.get(name, {})}, key="model.network", problem=problem)


@pytest.mark.parametrize("survey", SURVEYS, ids=list(SURVEYS))
@pytest.mark.parametrize("name", NETWORKS)
def test_output_shape_finite_and_inside_velocity_range(name, survey):
    problem = problem_for(SURVEYS[survey])
    net = build(name, problem).eval()
    loud = torch.randn(3, *problem.data_shape) * 1e4  # amplitudes far beyond the data range
    with torch.no_grad():
        for data in (torch.randn(3, *problem.data_shape) * 5.0, loud):
            velocity = net(data)
            assert velocity.shape == (3, 1, *problem.velocity_shape)
            assert torch.isfinite(velocity).all()
            assert velocity.min() >= 1500.0 and velocity.max() <= 4500.0


@pytest.mark.parametrize("name", NETWORKS)
def test_gradients_reach_every_parameter(name):
    problem = problem_for(SURVEYS["square"])
    net = build(name, problem).train()
    target = torch.rand(2, 1, *problem.velocity_shape) * 3000.0 + 1500.0
    loss = (problem.normalise_velocity(net(torch.randn(2, *problem.data_shape) * 5.0))
            - problem.normalise_velocity(target)).abs().mean()
    loss.backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not dead, f"{name}: no gradient reaches {dead}"


@pytest.mark.parametrize("name", NETWORKS)
def test_encode_decode_reproduce_forward_and_give_an_embedding(name):
    problem = problem_for(SURVEYS["square"])
    net = build(name, problem).eval()
    data = torch.randn(2, *problem.data_shape) * 5.0
    with torch.no_grad():
        features = net.encode(problem.normalise_data(data))
        normalised = net.decode(features)
        assert torch.allclose(problem.denormalise_velocity(normalised), net(data))
        assert normalised.abs().max() <= 1.0
        embedding = net.embedding(features)
    assert embedding.dim() == 2 and embedding.shape[0] == 2


def test_wrong_data_shape_is_a_clear_error():
    problem = problem_for(SURVEYS["square"])
    with pytest.raises(ValueError, match=r"expects data \[B, 2, 120, 16\]"):
        build("tiny", problem)(torch.zeros(1, 3, 120, 16))


def test_inversionnet_parameter_count_matches_openfwi():
    net = registry.build("networks", {"name": "inversionnet"}, key="model.network", problem=problem_for(Survey()))
    count = sum(p.numel() for p in net.parameters())
    assert count == pytest.approx(OPENFWI_INVERSIONNET_PARAMETERS, rel=0.01)


def test_inversionnet_layer_shapes_at_openfwi_geometry():
    """5 x 1000 x 70 gathers reach OpenFWI's 8 x 9 map without resizing; the decoder crops 80 -> 70."""
    problem = problem_for(Survey())
    net = build("inversionnet", problem).eval()
    with torch.no_grad():
        encoded = net.encoder(torch.zeros(1, 5, 1000, 70))
        latent = net.encode(torch.zeros(1, 5, 1000, 70))
        decoded = net.decoder(latent)
    assert tuple(encoded.shape[-2:]) == LATENT
    assert tuple(latent.shape[-2:]) == (1, 1)
    assert tuple(decoded.shape[-2:]) == (80, 80)


@pytest.mark.parametrize("name, params, key", [
    ("inversionnet", {"channels": [8, 8]}, "channels"),
    ("unet", {"channels": [8]}, "channels"),
    ("transformer", {"channels": [0, 4]}, "channels"),
    ("transformer", {"dim": 10, "heads": 4}, "heads"),
    ("lstm", {"cell": "rnn"}, "cell"),
    ("unet", {"norm": "layer"}, "norm"),
])
def test_bad_settings_are_config_errors(name, params, key):
    with pytest.raises(ConfigError, match=key):
        registry.build("networks", {"name": name, **params}, key="model.network", problem=problem_for(SURVEYS["square"]))


def test_lstm_gru_cell_is_a_gru():
    problem = problem_for(SURVEYS["square"])
    net = registry.build("networks", {"name": "lstm", **TINY["lstm"], "cell": "gru"}, key="model.network", problem=problem)
    assert isinstance(net.rnn, torch.nn.GRU)
    with torch.no_grad():
        velocity = net.eval()(torch.randn(2, *problem.data_shape))
    assert velocity.shape == (2, 1, 16, 16) and velocity.min() >= 1500.0 and velocity.max() <= 4500.0


@pytest.mark.parametrize("name", NETWORKS)
def test_velocity_is_float32_under_mixed_precision(name):
    """bfloat16 autocast (``trainer.precision=bf16-mixed``) must not round the velocity:
    the output head runs in float32, so predictions match full precision to a few m/s."""
    problem = problem_for(SURVEYS["square"])
    net = build(name, problem).eval()
    data = torch.randn(2, *problem.data_shape) * 5.0
    with torch.no_grad():
        full = net(data)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = net(data)
    assert mixed.dtype == torch.float32
    assert torch.isfinite(mixed).all() and mixed.min() >= 1500.0 and mixed.max() <= 4500.0
    assert (mixed - full).abs().max() < 150.0  # bfloat16 features, float32 head
