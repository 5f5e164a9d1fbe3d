"""Simulator against deepwave, batching, gradients, analytic arrival times; filters and noise."""

import math

import deepwave
import numpy as np
import pytest
import torch
from scipy.signal import hilbert

from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.physics import Simulator, Survey
from fwi_lightning.physics.filters import add_noise, bandpass, bandpass_gain
from fwi_lightning.physics.wavelets import peak_time

TINY = Survey(nz=16, nx=16, spacing=10.0, nt=120, dt=0.002, peak_freq=15.0, n_shots=2, n_receivers=16)


def layered_models(*tops_and_velocities):
    """[B, 16, 16] m/s: each model is (interface row, upper velocity, lower velocity)."""
    models = torch.empty(len(tops_and_velocities), 16, 16)
    for b, (row, upper, lower) in enumerate(tops_and_velocities):
        models[b, :row], models[b, row:] = upper, lower
    return models


def test_equals_a_direct_deepwave_call():
    velocity = layered_models((5, 1800.0, 2600.0), (9, 2000.0, 4400.0))
    got = Simulator(TINY, (1500.0, 4500.0), "fast")(velocity)
    sources = torch.tensor([[[1, 0]], [[1, 15]]]).repeat(2, 1, 1)  # shots at x = 0 and 150 m, depth 10 m
    receivers = torch.stack([torch.ones(16, dtype=torch.long), torch.arange(16)], dim=1).expand(4, 16, 2)
    wavelet = deepwave.wavelets.ricker(15.0, 120, 0.002, 0.1).expand(4, 1, 120)
    expected = deepwave.scalar(
        velocity.repeat_interleave(2, dim=0), 10.0, 0.002, source_amplitudes=wavelet, source_locations=sources,
        receiver_locations=receivers, accuracy=4, pml_width=10, courant_number=0.7, max_vel=4500.0, pml_freq=15.0,
    ).receiver_amplitudes  # [B*S, R, T]
    assert got.shape == (2, 2, 120, 16)
    assert torch.equal(got, expected.reshape(2, 2, 16, 120).transpose(2, 3))
    assert got.abs().max() > 0


def test_batch_equals_models_one_by_one_because_max_vel_is_pinned():
    # At 10 m / 2 ms / Courant 0.7 one step per sample holds up to ~2475 m/s: the third
    # model needs sub-steps, the first two do not.
    velocity = layered_models((5, 1600.0, 2000.0), (8, 1900.0, 2400.0), (10, 2000.0, 4400.0))
    pinned = Simulator(TINY, (1500.0, 4500.0), "fast")
    one_by_one = torch.cat([pinned(velocity[b : b + 1]) for b in range(3)])
    assert torch.equal(pinned(velocity), one_by_one)
    unpinned = Simulator(TINY, None, "fast")  # deepwave then reads max_vel from the whole batch
    alone = unpinned(velocity[:1])
    assert not torch.allclose(unpinned(velocity)[:1], alone, rtol=1e-3, atol=1e-3 * float(alone.abs().max()))


def test_step_buckets_give_each_model_its_own_fewest_substeps():
    velocity = layered_models((5, 1600.0, 2000.0), (10, 2000.0, 4400.0), (8, 1900.0, 2400.0))
    bucketed = Simulator(TINY, (1500.0, 4500.0), "fast", step_buckets=True)
    one_step = 0.7 * 10.0 / (math.sqrt(2.0) * 0.002)  # fastest velocity with one step per 2 ms sample
    tops = bucketed.bucket_max_vels([2000.0, 4400.0, 2400.0])
    assert tops[0] == tops[2] == pytest.approx(one_step, rel=1e-5) and tops[1] == 4500.0
    fast = TINY.with_numerics("fast")
    assert (fast.step_ratio(tops[0]), fast.step_ratio(tops[1])) == (1, 2)
    data = bucketed(velocity)
    assert torch.equal(data, torch.cat([bucketed(velocity[b : b + 1]) for b in range(3)]))
    pinned_low = Simulator(Survey(**{**TINY.to_dict(), "max_vel": tops[0]}), (1500.0, tops[0]), "fast")
    assert torch.equal(data[[0, 2]], pinned_low(velocity[[0, 2]]))
    assert torch.equal(data[1:2], Simulator(TINY, (1500.0, 4500.0), "fast")(velocity[1:2]))


def test_gradcheck_in_double_precision():
    """Exact gradient (lossless storage, every step sampled) passes; 8-bit compression, ~0.6 % off, does not."""
    survey = Survey(nz=8, nx=8, spacing=10.0, nt=60, dt=0.001, peak_freq=25.0, n_shots=1, n_receivers=4)
    km_s = (2.0 + 0.1 * torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))).double().requires_grad_()

    def check(**options):
        simulator = Simulator(survey, (1500.0, 2500.0), "accurate", **options)
        return torch.autograd.gradcheck(
            lambda v: simulator(1000.0 * v), (km_s,), eps=1e-6, atol=1e-8, rtol=1e-4, fast_mode=True, raise_exception=False
        )

    assert check()
    assert not check(storage_compression=True)


def test_gradient_options_reach_deepwave():
    simulator = Simulator(TINY, (1500.0, 4500.0), "fast", model_gradient_sampling_interval=2, storage_mode="cpu", checkpoint_segments=2)
    options = simulator.deepwave_options()
    assert (options["model_gradient_sampling_interval"], options["storage_mode"], options["checkpoint_segments"]) == (2, "cpu", 2)
    velocity = torch.full((1, 16, 16), 2000.0, requires_grad=True)
    simulator(velocity).pow(2).sum().backward()
    assert velocity.grad is not None and velocity.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="divide"):
        Simulator(TINY, (1500.0, 4500.0), model_gradient_sampling_interval=7)


@pytest.mark.parametrize(
    "value, words",
    [(float("nan"), "sample 1 contains NaN"), (-5.0, "sample 1 spans -5"), (6000.0, "outside the allowed range (1500, 4500]")],
)
def test_bad_velocities_are_refused_naming_the_sample(value, words):
    velocity = torch.full((2, 16, 16), 2000.0)
    velocity[1, 3, 4] = value
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace("]", r"\]")):
        Simulator(TINY, (1500.0, 4500.0))(velocity)
    with pytest.raises(DataError, match=r"expected \[B, 16, 16\]"):
        Simulator(TINY, (1500.0, 4500.0))(velocity[:, :8])


def _ricker(t, survey):
    a = (math.pi * survey.peak_freq * (t - peak_time(survey))) ** 2
    return (1 - 2 * a) * np.exp(-a)


def _analytic_2d(t, distance, velocity, survey):
    """Ricker convolved with the 2D Green's function H(t - r/v) / sqrt(t^2 - r^2/v^2).

    Substituting t' = (r/v) cosh(s) removes the singularity: u(t) = int_0^acosh(vt/r) w(t - (r/v) cosh s) ds.
    """
    arrival = distance / velocity
    out = np.zeros_like(t)
    for i, ti in enumerate(t):
        if ti > arrival:
            s = np.linspace(0.0, math.acosh(ti / arrival), 2000)
            out[i] = np.trapezoid(_ricker(ti - arrival * np.cosh(s), survey), s)
    return out


def _envelope_peak(trace, dt):
    """Time in s of the envelope maximum, refined by a parabola through its neighbours."""
    env = np.abs(hilbert(trace))
    i = int(np.argmax(env))
    a, b, c = env[i - 1], env[i], env[i + 1]
    return (i + 0.5 * (a - c) / (a - 2 * b + c)) * dt


def test_two_layer_direct_and_reflected_arrivals_match_analytic_times():
    """Direct wave (homogeneous run) and reflection (two-layer minus homogeneous, image source)
    peak where the analytic 2D response does, within one sample."""
    survey = Survey(
        nz=60, nx=100, spacing=5.0, nt=400, dt=0.001, peak_freq=25.0, source_x=[100.0], receiver_x=[200.0, 300.0],
        source_depth=10.0, receiver_depth=10.0,
    )
    v1, v2, top = 2000.0, 3000.0, 40  # rows >= 40 are the lower layer
    simulator = Simulator(survey, (1500.0, 3000.0), "accurate")
    homogeneous = torch.full((1, 60, 100), v1)
    layered = homogeneous.clone()
    layered[:, top:] = v2
    direct = simulator(homogeneous)[0, 0].double().numpy()  # [T, R]
    reflected = simulator(layered)[0, 0].double().numpy() - direct
    t = np.arange(survey.nt) * survey.dt
    depth = (top - 0.5) * survey.spacing - survey.receiver_depth  # interface midway between rows 39 and 40
    for r, offset in enumerate((100.0, 200.0)):
        lag = _envelope_peak(direct[:, r], survey.dt) - _envelope_peak(_analytic_2d(t, offset, v1, survey), survey.dt)
        assert abs(lag) < survey.dt, f"direct wave at offset {offset} m off by {lag / survey.dt:.2f} samples"
        image = math.hypot(offset, 2 * depth)
        lag = _envelope_peak(reflected[:, r], survey.dt) - _envelope_peak(_analytic_2d(t, image, v1, survey), survey.dt)
        assert abs(lag) < survey.dt, f"reflection at offset {offset} m off by {lag / survey.dt:.2f} samples"


def test_bandpass_follows_the_butterworth_gain():
    dt, n = 0.002, 1000
    t = torch.arange(n, dtype=torch.float64) * dt
    window = torch.hann_window(n, periodic=False, dtype=torch.float64)
    for freq in (3.0, 15.0, 60.0):
        tone = (torch.sin(2 * math.pi * freq * t) * window).reshape(1, 1, n, 1)
        out = bandpass(tone, dt, 8.0, 25.0)
        ratio = float(out.norm() / tone.norm())
        expected = float(bandpass_gain(torch.tensor([freq], dtype=torch.float64), 8.0, 25.0))
        assert ratio == pytest.approx(expected, rel=0.03, abs=5e-3)
    assert expected < 0.05  # 60 Hz is well outside the 8-25 Hz band


def test_noise_hits_the_snr_from_per_sample_seeds_without_touching_global_rng():
    data = torch.randn(3, 2, 500, 20, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 5.0, 0.1]).reshape(3, 1, 1, 1)
    state = torch.get_rng_state()
    noisy = add_noise(data, 10.0, [11, 12, 13])
    assert torch.equal(torch.get_rng_state(), state)
    noise = noisy - data
    snr = 10 * torch.log10(data.pow(2).flatten(1).mean(1) / noise.pow(2).flatten(1).mean(1))
    assert torch.allclose(snr, torch.full((3,), 10.0, dtype=snr.dtype), atol=0.2)
    assert torch.equal(add_noise(data[1:2], 10.0, [12]), noisy[1:2])  # a sample's noise ignores its batch
    assert not torch.allclose(add_noise(data, 10.0, [11, 12, 14])[2], noisy[2])


def test_cpu_threads_limit_is_scoped_and_changes_no_number():
    velocity = layered_models((5, 1800.0, 2600.0))
    torch.set_num_threads(2)
    threads = torch.get_num_threads()
    single = Simulator(TINY, (1500.0, 4500.0), "fast", cpu_threads=1)(velocity)
    assert torch.get_num_threads() == threads
    assert torch.equal(single, Simulator(TINY, (1500.0, 4500.0), "fast")(velocity))


def test_half_precision_velocity_is_simulated_in_float32():
    """A network's output under mixed precision reaches the Simulator in bfloat16 (the
    test's data misfit does this); deepwave has no half kernels, so it runs in float32."""
    velocity = layered_models((6, 2000.0, 3000.0))
    simulator = Simulator(TINY, (1500.0, 4500.0), "fast")
    got = simulator(velocity.bfloat16())
    assert got.dtype == torch.float32
    assert torch.equal(got, simulator(velocity.bfloat16().float()))
