"""Contract tests over every registered loss, hand-computed values, and the weighted combination."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity as skimage_ssim

from fwi_lightning import registry
from fwi_lightning.errors import ConfigError, DataError, RegistryError
from fwi_lightning.losses import WeightedLoss
from fwi_lightning.losses.base import evaluate, reads_of
from fwi_lightning.physics.survey import Survey
from fwi_lightning.problem import Problem

PROBLEM = Problem(Survey(nz=16, nx=16, spacing=10.0, nt=120, dt=0.002, n_shots=2, n_receivers=16),
                  velocity_range=(1500.0, 4500.0), data_range=(-3.0, 3.0))
LOSSES = registry.names("losses")
#: Losses that need no labels.
UNSUPERVISED = {"tv", "physics"}


def layered(batch: int = 2) -> torch.Tensor:
    """[B, 1, 16, 16] m/s: four flat layers from 1800 to 4200 m/s."""
    column = torch.repeat_interleave(torch.tensor([1800.0, 2600.0, 3400.0, 4200.0]), 4)
    return column.view(1, 1, 16, 1).expand(batch, 1, 16, 16).clone()


def build(name: str, **params):
    return registry.build("losses", {"name": name, **params}, key="model.losses", problem=PROBLEM)


def score(loss, prediction: torch.Tensor, batch: dict) -> torch.Tensor:
    """A loss on a velocity prediction given as every output it reads (they are velocity-shaped)."""
    return evaluate(loss, {name: prediction for name in reads_of(loss)}, batch)


@pytest.mark.parametrize("name", LOSSES)
def test_scalar_finite_with_finite_gradient(name):
    torch.manual_seed(0)
    prediction = (torch.rand(2, 1, 16, 16) * 3000.0 + 1500.0).requires_grad_()
    with torch.no_grad():
        observed = PROBLEM.forward_operator()(layered())  # what the physics loss compares with
    value = score(build(name), prediction, {"velocity": layered(), "data": observed})
    assert value.dim() == 0 and torch.isfinite(value) and value > 0
    value.backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(set(LOSSES) - UNSUPERVISED))
def test_supervised_loss_is_zero_for_a_perfect_prediction(name):
    truth = layered()
    assert float(score(build(name), truth.clone(), {"velocity": truth})) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", sorted(set(LOSSES) - UNSUPERVISED))
def test_supervised_loss_without_labels_is_a_data_error(name):
    with pytest.raises(DataError, match="velocity"):
        score(build(name), layered(), {"data": torch.zeros(2, 2, 120, 16)})


def test_l1_and_l2_are_on_the_normalised_scale():
    truth = torch.full((1, 1, 16, 16), 1500.0)
    # 750 m/s off over a 3000 m/s range is 0.5 on the [-1, 1] scale.
    assert float(build("l1")(truth + 750.0, {"velocity": truth})) == pytest.approx(0.5)
    assert float(build("l2")(truth + 750.0, {"velocity": truth})) == pytest.approx(0.25)
    assert float(build("l1")(truth + 3000.0, {"velocity": truth})) == pytest.approx(1.0 * 2)


def test_ssim_loss_is_one_minus_skimage_ssim():
    rng = np.random.default_rng(1)
    truth, prediction = (torch.tensor(rng.uniform(1500, 4500, (1, 1, 16, 16)), dtype=torch.float64) for _ in range(2))
    unit = [((v - 1500.0) / 3000.0)[0, 0].numpy() for v in (prediction, truth)]
    expected = 1.0 - skimage_ssim(*unit, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert float(build("ssim")(prediction, {"velocity": truth})) == pytest.approx(expected, abs=1e-6)


def test_edge_loss_weights_interface_errors_up():
    truth = layered(1)
    at_interface, in_layer = truth.clone(), truth.clone()
    at_interface[..., 4, :] += 300.0  # row 4 touches the first interface (rows 3 | 4)
    in_layer[..., 1, :] += 300.0  # row 1 is inside the first layer
    edge, l1 = build("edge", edge_weight=4.0), build("l1")
    assert float(l1(at_interface, {"velocity": truth})) == pytest.approx(float(l1(in_layer, {"velocity": truth})))
    assert float(edge(at_interface, {"velocity": truth})) > 2.0 * float(edge(in_layer, {"velocity": truth}))
    plain = build("edge", edge_weight=0.0)
    assert float(plain(in_layer, {"velocity": truth})) == pytest.approx(float(l1(in_layer, {"velocity": truth})))


def test_total_variation_of_a_lateral_ramp():
    ramp = torch.linspace(1500.0, 4500.0, 16).view(1, 1, 1, 16).expand(1, 1, 16, 16)  # -1 .. 1, steps of 2/15
    assert float(build("tv")(ramp, {})) == pytest.approx(2.0 / 15.0)
    assert float(build("tv", isotropic=True, eps=0.0)(ramp, {})) == pytest.approx(2.0 / 15.0)
    assert float(build("tv")(torch.full((1, 1, 16, 16), 3000.0), {})) == 0.0


def test_weighted_loss_returns_weighted_total_and_unweighted_terms():
    truth = torch.full((1, 1, 16, 16), 1500.0)
    criterion = WeightedLoss(PROBLEM, {"l1": 2.0, "l2": {"weight": 0.5}, "ssim": None, "tv": 1.0})
    total, terms = criterion(truth + 750.0, {"velocity": truth})
    assert set(terms) == {"l1", "l2", "tv"}
    assert float(terms["l1"]) == pytest.approx(0.5) and float(terms["l2"]) == pytest.approx(0.25)
    assert float(total) == pytest.approx(2.0 * 0.5 + 0.5 * 0.25 + 0.0)


def test_one_loss_twice_under_two_labels():
    truth = layered(1)
    criterion = WeightedLoss(PROBLEM, {"sharp": {"name": "edge", "edge_weight": 8.0}, "soft": {"name": "edge", "edge_weight": 1.0}})
    _, terms = criterion(truth + 100.0, {"velocity": truth})
    assert set(terms) == {"sharp", "soft"}


def test_empty_or_unknown_losses_are_clear_errors():
    with pytest.raises(ConfigError, match="no loss left"):
        WeightedLoss(PROBLEM, {"l1": None})
    with pytest.raises(RegistryError, match="did you mean 'l1'"):
        WeightedLoss(PROBLEM, {"l11": 1.0})
