"""The one forward operator against deepwave and scipy, and the data misfit it gives."""

from __future__ import annotations

import math

import deepwave
import numpy as np
import pytest
import torch
from scipy import signal

from fwi_lightning.data.simulated import SimulatedDataModule
from fwi_lightning.errors import ConfigError
from fwi_lightning.metrics.data_misfit import DataMisfit
from fwi_lightning.physics import Survey
from fwi_lightning.physics.filters import BUTTERWORTH_ORDER
from fwi_lightning.physics.operator import ForwardOperator
from fwi_lightning.physics.simulator import Simulator
from fwi_lightning.problem import Problem

SURVEY = Survey(nz=16, nx=16, spacing=10.0, nt=120, dt=0.002, peak_freq=15.0, n_shots=2, n_receivers=16)
RANGE = (1500.0, 4500.0)
BAND = (4.0, 30.0)


def layered(tops):
    """Two-layer models [B, 1, 16, 16] m/s: 1800 m/s above row 8, `top` m/s below, one per entry."""
    velocity = torch.full((len(tops), 1, 16, 16), 1800.0)
    for b, top in enumerate(tops):
        velocity[b, :, 8:] = top
    return velocity


def deepwave_reference(velocity: torch.Tensor) -> np.ndarray:
    """deepwave.scalar called directly, one model at a time, max_vel at the top of the
    model's CFL step bucket (``fast`` numerics: Courant 0.7, PML 10 cells); [B, S, T, R]."""
    s = SURVEY
    one_step = 0.7 * s.spacing / (math.sqrt(2.0) * s.dt)
    sources = torch.tensor([[[round(s.source_depth / s.spacing), c]] for c in s.source_columns])
    receivers = torch.tensor([[[round(s.receiver_depth / s.spacing), c] for c in s.receiver_columns]] * s.n_shots)
    wavelet = deepwave.wavelets.ricker(s.peak_freq, s.nt, s.dt, 1.5 / s.peak_freq).repeat(s.n_shots, 1, 1)
    out = []
    for model in velocity[:, 0]:
        steps = math.ceil(float(model.max()) / (one_step * (1 - 1e-6)))
        max_vel = min(RANGE[1], steps * one_step * (1 - 1e-6))
        result = deepwave.scalar(
            model[None].repeat(s.n_shots, 1, 1), s.spacing, s.dt, source_amplitudes=wavelet, source_locations=sources,
            receiver_locations=receivers, accuracy=s.accuracy, pml_width=10, pml_freq=s.peak_freq, courant_number=0.7, max_vel=max_vel,
        )
        out.append(result.receiver_amplitudes.transpose(1, 2).numpy())  # [S, T, R]
    return np.stack(out)


def scipy_bandpass(data: np.ndarray, dt: float, low: float, high: float) -> np.ndarray:
    """Zero-phase filter along axis -2 with the magnitude of scipy's analog Butterworth (`BUTTERWORTH_ORDER`)
    high-pass at `low` times low-pass at `high` Hz, on a record zero-padded to twice its length."""
    n = data.shape[-2]
    freqs = np.fft.rfftfreq(2 * n, d=dt)
    w = 2 * np.pi * freqs
    _, low_pass = signal.freqs(*signal.butter(BUTTERWORTH_ORDER, 2 * np.pi * high, "low", analog=True), worN=w)
    _, high_pass = signal.freqs(*signal.butter(BUTTERWORTH_ORDER, 2 * np.pi * low, "high", analog=True), worN=w)
    gain = np.abs(low_pass * high_pass)
    spectrum = np.fft.rfft(data, n=2 * n, axis=-2) * gain[:, None]
    return np.fft.irfft(spectrum, n=2 * n, axis=-2)[..., :n, :]


def module(**options):
    values = dict(seed=1, survey=SURVEY, families={"flatvel": 1.0}, velocity_range=list(RANGE), sizes={"train": 2, "val": 3, "test": 3},
                  batch_size=3, reference_size=2, bandpass=list(BAND))
    return SimulatedDataModule(**{**values, **options})


def test_operator_equals_deepwave_then_scipy_band_pass():
    operator = module().problem.forward_operator()
    velocity = layered([2200.0, 3000.0, 4400.0])  # one CFL sub-step per sample (max_vel 2475 m/s), then two (4500 m/s)
    expected = scipy_bandpass(deepwave_reference(velocity), SURVEY.dt, *BAND)
    ours = operator(velocity).numpy()
    scale = np.abs(expected).max()
    assert np.abs(ours - expected).max() <= 1e-5 * scale
    assert np.abs(scipy_bandpass(deepwave_reference(velocity), SURVEY.dt, 2.0, 30.0) - expected).max() > 1e-2 * scale  # the band matters


def test_true_model_has_zero_data_misfit_with_band_pass_set():
    dm = module()
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    live, saved = DataMisfit(dm.problem), DataMisfit(Problem.from_dict(dm.problem.to_dict()))  # training run, checkpoint load
    for misfit in (live, saved):
        misfit.update(batch["velocity"], batch["data"])
        assert float(misfit.compute()) == pytest.approx(0.0, abs=1e-6)
    dm.set_knob("bandpass", [2.0, 20.0])  # a knob reaches the metric built before it: the same operator object
    changed = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    live.reset()
    live.update(changed["velocity"], changed["data"])
    assert float(live.compute()) == pytest.approx(0.0, abs=1e-6) and not torch.allclose(changed["data"], batch["data"])
    unfiltered = Simulator(dm.problem.survey, velocity_range=RANGE)(batch["velocity"][:, 0])  # the old metric's operator
    off = (batch["data"] - unfiltered).flatten(1).norm(dim=1) / batch["data"].flatten(1).norm(dim=1)
    assert float(off.min()) > 0.03  # ~6 %: what the old, unfiltered metric reported for the true model


def test_data_misfit_grows_with_model_error_as_computed_by_hand():
    dm = module()
    operator = dm.problem.forward_operator()
    truth = layered([3000.0, 3000.0])
    observed = operator(truth)
    misfit = DataMisfit(dm.problem)
    values = []
    for shift in (100.0, 400.0):
        misfit.reset()
        misfit.update(truth + shift, observed)
        values.append(float(misfit.compute()))
    assert 0.0 < values[0] < values[1]
    simulated = torch.from_numpy(scipy_bandpass(deepwave_reference(truth + 400.0), SURVEY.dt, *BAND))
    expected = float(((observed - simulated).flatten(1).norm(dim=1) / observed.flatten(1).norm(dim=1)).mean())
    assert values[1] == pytest.approx(expected, rel=1e-4)


def test_aperture_masks_zero_shots_offsets_and_late_samples():
    operator = ForwardOperator(Simulator(SURVEY, RANGE, "fast"), active_shots=[1], max_offset_m=60.0, record_time_s=0.1)
    clean = torch.randn(2, 2, 120, 16)
    out = operator.process(clean)
    x_source = SURVEY.source_columns[1] * SURVEY.spacing
    for r, column in enumerate(SURVEY.receiver_columns):
        near = abs(column * SURVEY.spacing - x_source) <= 60.0
        assert torch.equal(out[:, 1, :51, r], clean[:, 1, :51, r] if near else torch.zeros(2, 51))
    assert not out[:, 0].any() and not out[:, :, 51:].any()  # shot 0 off; samples after 0.1 s (t = 50 dt) off
    operator.configure(snr_db=0.0)
    noisy = operator.process(clean, noise_seeds=[1, 2])
    assert not noisy[:, 0].any() and not noisy[:, :, 51:].any() and not torch.equal(noisy, out)


def test_operator_is_differentiable_and_its_settings_round_trip():
    operator = ForwardOperator(Simulator(SURVEY, RANGE, "fast"), bandpass=BAND, max_offset_m=80.0)
    velocity = layered([2500.0]).requires_grad_()
    operator(velocity).square().sum().backward()
    assert velocity.grad is not None and velocity.grad.abs().sum() > 0
    rebuilt = ForwardOperator.from_settings(operator.survey, RANGE, operator.settings())
    assert rebuilt.settings() == operator.settings()
    assert torch.equal(rebuilt(velocity.detach()), operator(velocity.detach()))
    old = Problem.from_dict({**Problem(SURVEY, RANGE, (-1.0, 1.0)).to_dict(), "operator": None})  # a checkpoint from before the operator
    assert old.forward_operator().settings()["bandpass"] is None and old.forward_operator() is old.forward_operator()
    with pytest.raises(ConfigError, match="shot indices in 0..1") as info:
        operator.configure(active_shots=[2])
    assert info.value.key == "active_shots"
