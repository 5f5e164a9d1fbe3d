"""Band-pass filtering and additive noise for shot gathers, in torch on any device.

Both act on gathers [B, S, T, R] (batch, shot, time, receiver) of raw amplitudes.
Noise is drawn from one `torch.Generator` per sample, seeded by the caller, so it never
touches (or depends on) the global RNG, which is identical on every DDP rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch

from fwi_lightning.errors import ConfigError

#: Order of the Butterworth magnitude response of `bandpass`: 8 gives -48 dB one octave
#: beyond a corner (-6.02 dB per order) and stays within 0.12 dB of 1 up to 0.8 of it, so
#: a frequency curriculum really removes what lies above its cut-off.
BUTTERWORTH_ORDER = 8


def bandpass_gain(freqs: torch.Tensor, low: Optional[float], high: Optional[float], order: int = BUTTERWORTH_ORDER) -> torch.Tensor:
    """Zero-phase Butterworth gain of `order` at `freqs` Hz: high-pass at `low`, low-pass at `high` Hz."""
    gain = torch.ones_like(freqs)
    n2 = 2 * order
    if high is not None:
        gain = gain / torch.sqrt(1.0 + (freqs / high) ** n2)
    if low is not None:
        gain = gain / torch.sqrt(1.0 + (low / freqs) ** n2)  # 0 at f = 0
    return gain


def check_band(band: Optional[Sequence[Optional[float]]], dt: float) -> Optional[tuple[Optional[float], Optional[float]]]:
    """Validate a [low, high] band in Hz (either may be None) against the Nyquist of `dt` s.

    Raises:
        ConfigError: not two entries, non-positive or inverted corners, or a corner at
            or above Nyquist.
    """
    if band is None:
        return None
    if isinstance(band, (str, bytes)) or not isinstance(band, Sequence) or len(band) != 2:
        raise ConfigError(f"expected [low, high] in Hz (null for no limit), got {band!r}", key="bandpass")
    low, high = (None if b is None else float(b) for b in band)
    nyquist = 0.5 / dt
    for name, value in (("low", low), ("high", high)):
        if value is not None and not 0 < value < nyquist:
            raise ConfigError(f"{name} corner {value} Hz must lie in (0, {nyquist:g}) Hz (Nyquist of dt={dt} s)", key="bandpass")
    if low is not None and high is not None and low >= high:
        raise ConfigError(f"low corner {low} Hz must be below high corner {high} Hz", key="bandpass")
    return None if low is None and high is None else (low, high)


def bandpass(data: torch.Tensor, dt: float, low: Optional[float], high: Optional[float], dim: int = -2,
             order: int = BUTTERWORTH_ORDER) -> torch.Tensor:
    """Zero-phase band-pass of `data` along its time axis.

    The record is zero-padded to twice its length before the FFT, so the filter does
    not wrap the end of the record onto its start.

    Args:
        data: gathers, e.g. [B, S, T, R], raw amplitudes.
        dt: sample interval in s.
        low: high-pass corner in Hz (None: none). high: low-pass corner in Hz (None: none).
        dim: the time axis of `data`.
        order: Butterworth order of both corners.

    Returns:
        The filtered gathers, same shape, dtype and device as `data`.
    """
    n = data.shape[dim]
    spectrum = torch.fft.rfft(data, n=2 * n, dim=dim)
    freqs = torch.fft.rfftfreq(2 * n, d=dt, device=data.device, dtype=data.dtype)
    shape = [1] * data.ndim
    shape[dim] = freqs.numel()
    spectrum = spectrum * bandpass_gain(freqs, low, high, order).reshape(shape)
    return torch.fft.irfft(spectrum, n=2 * n, dim=dim).narrow(dim, 0, n)


def add_noise(data: torch.Tensor, snr_db: float, seeds: Sequence[int]) -> torch.Tensor:
    """Add white Gaussian noise at a signal-to-noise ratio, per sample.

    Each sample's noise has power ``mean(d**2) / 10**(snr_db / 10)`` and is drawn on
    the CPU from ``torch.Generator().manual_seed(seeds[b])``, then moved to the data's
    device: the same seeds give the same noise on any device and in any process.

    Args:
        data: gathers [B, ...], raw amplitudes.
        snr_db: signal-to-noise power ratio in dB.
        seeds: one integer seed per sample, [B].

    Returns:
        ``data`` plus noise, same shape, dtype and device.
    """
    if len(seeds) != data.shape[0]:
        raise ValueError(f"need one seed per sample: {len(seeds)} seeds for {data.shape[0]} samples")
    noise = torch.empty(data.shape, dtype=data.dtype)
    for b, seed in enumerate(seeds):
        noise[b].normal_(generator=torch.Generator().manual_seed(int(seed)))
    power = data.detach().pow(2).flatten(1).mean(dim=1)
    scale = torch.sqrt(power / 10.0 ** (snr_db / 10.0)).reshape([-1] + [1] * (data.ndim - 1))
    return data + noise.to(data.device) * scale
