"""Source wavelets for a `Survey` (deepwave's Ricker, delayed so it starts at rest)."""

from __future__ import annotations

from typing import Optional

import deepwave
import torch

from fwi_lightning.physics.survey import Survey

#: Peak of the Ricker wavelet, in periods of its peak frequency after t = 0. At 1.5
#: periods the wavelet's amplitude at t = 0 is below 1e-9 of its peak.
PEAK_DELAY_PERIODS = 1.5


def peak_time(survey: Survey) -> float:
    """Time in s at which the source wavelet peaks."""
    return PEAK_DELAY_PERIODS / survey.peak_freq


def ricker(survey: Survey, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """The survey's Ricker wavelet, [T] (T = survey.nt samples at survey.dt s), peak 1."""
    return deepwave.wavelets.ricker(survey.peak_freq, survey.nt, survey.dt, peak_time(survey), dtype=dtype)
