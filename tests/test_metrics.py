"""Metrics against independent computations: scikit-image SSIM, hand-computed MAE/RMSE, re-simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity as skimage_ssim

from fwi_lightning.metrics import FamilyMetrics, structural_similarity, velocity_metrics
from fwi_lightning.physics.survey import Survey
from fwi_lightning.problem import Problem

SURVEY = Survey(nz=16, nx=16, spacing=10.0, nt=120, dt=0.002, peak_freq=15.0, n_shots=2, n_receivers=16)
PROBLEM = Problem(SURVEY, velocity_range=(1500.0, 4500.0), data_range=(-3.0, 3.0))


def skimage_reference(x: np.ndarray, y: np.ndarray) -> float:
    return skimage_ssim(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)


@pytest.mark.parametrize("shape", [(70, 70), (16, 16), (24, 40)])
def test_ssim_matches_skimage_gaussian_ssim_on_random_pairs(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        x = rng.random(shape)
        y = np.clip(x + rng.normal(0.0, rng.uniform(0.05, 0.5), shape), 0.0, 1.0)
        ours = structural_similarity(torch.tensor(x, dtype=torch.float32)[None, None], torch.tensor(y, dtype=torch.float32)[None, None])
        assert float(ours) == pytest.approx(skimage_reference(x, y), abs=1e-3)


def test_ssim_metric_scales_velocity_to_unit_range_and_averages_samples():
    rng = np.random.default_rng(3)
    truth = rng.uniform(1500.0, 4500.0, (3, 1, 16, 16))
    prediction = np.clip(truth + rng.normal(0.0, 400.0, truth.shape), 1500.0, 4500.0)
    expected = np.mean([skimage_reference((p[0] - 1500.0) / 3000.0, (t[0] - 1500.0) / 3000.0) for p, t in zip(prediction, truth)])
    metrics = velocity_metrics(PROBLEM)
    metrics.update(torch.tensor(prediction, dtype=torch.float32), torch.tensor(truth, dtype=torch.float32))
    assert float(metrics.compute()["ssim"]) == pytest.approx(expected, abs=1e-3)


def test_mae_and_rmse_pool_every_cell_in_m_per_s_and_on_openfwi_scale():
    metrics = velocity_metrics(PROBLEM)
    truth = torch.full((1, 1, 16, 16), 3000.0)
    # Batch 1: one sample 300 m/s too fast everywhere. Batch 2: two samples, one exact, one 600 m/s too slow.
    metrics.update(truth + 300.0, truth)
    metrics.update(torch.cat([truth, truth - 600.0]), torch.cat([truth, truth]))
    values = {k: float(v) for k, v in metrics.compute().items()}
    mae_mps = (300.0 + 0.0 + 600.0) / 3
    rmse_mps = math.sqrt((300.0**2 + 0.0 + 600.0**2) / 3)
    assert values["mae_mps"] == pytest.approx(mae_mps)
    assert values["rmse_mps"] == pytest.approx(rmse_mps)
    # [-1, 1] over 1500..4500 m/s: 1 m/s is 2 / 3000.
    assert values["mae"] == pytest.approx(mae_mps * 2 / 3000)
    assert values["rmse"] == pytest.approx(rmse_mps * 2 / 3000)


def test_stage_prefixes_give_the_logged_names():
    names = set(velocity_metrics(PROBLEM).clone(prefix="val/").keys(keep_base=False))
    assert names == {"val/mae", "val/rmse", "val/ssim", "val/mae_mps", "val/rmse_mps"}


def test_family_breakdown_reports_each_family_seen():
    breakdown = FamilyMetrics(velocity_metrics(PROBLEM), ["flatvel", "curvefault", "style"], prefix="test/")
    truth = torch.full((3, 1, 16, 16), 2000.0)
    prediction = truth + torch.tensor([100.0, 300.0, 500.0]).view(3, 1, 1, 1)
    breakdown.update(prediction, truth, torch.tensor([0, 1, 0]))
    values = breakdown.compute()
    assert float(values["test/flatvel/mae_mps"]) == pytest.approx(300.0)
    assert float(values["test/curvefault/mae_mps"]) == pytest.approx(300.0)
    assert float(values["test/flatvel/rmse_mps"]) == pytest.approx(math.sqrt((100.0**2 + 500.0**2) / 2))
    assert not any(k.startswith("test/style/") for k in values)
    breakdown.reset()
    assert breakdown.compute() == {}


def test_ssim_under_autocast_is_computed_in_float32():
    rng = np.random.default_rng(5)
    x = rng.random((16, 16))
    y = np.clip(x + rng.normal(0.0, 0.2, x.shape), 0.0, 1.0)
    xt, yt = (torch.tensor(a, dtype=torch.float32)[None, None] for a in (x, y))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = structural_similarity(xt, yt)
        halves = structural_similarity(xt.bfloat16(), yt.bfloat16())
    assert mixed.dtype == halves.dtype == torch.float32
    assert float(mixed) == pytest.approx(skimage_reference(x, y), abs=1e-3)
    assert float(halves) == pytest.approx(skimage_reference(x, y), abs=5e-3)  # inputs rounded, statistics not
