"""OpenFWI-style data statistics: the range of sign(d) * log1p(|d|) over reference gathers.

`fwi_lightning.problem.Problem.normalise_data` maps gathers to [-1, 1] with the range
computed here, once per data module, and stored with the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Union

import numpy as np
import torch

from fwi_lightning.errors import DataError

ArrayLike = Union[np.ndarray, torch.Tensor]


def log_amplitude_range(gathers: Iterable[ArrayLike]) -> tuple[float, float]:
    """(min, max) of ``sign(d) * log1p(|d|)`` over every value of every array.

    Args:
        gathers: arrays of raw amplitudes, any shape (e.g. [B, S, T, R]).

    Raises:
        DataError: no values, non-finite values, or a constant record (zero range).
    """
    lo, hi = np.inf, -np.inf
    for chunk in gathers:
        values = chunk.detach().cpu().numpy() if isinstance(chunk, torch.Tensor) else np.asarray(chunk)
        if values.size == 0:
            continue
        logged = np.sign(values) * np.log1p(np.abs(values, dtype=np.float64))
        if not np.isfinite(logged).all():
            raise DataError("reference gathers contain NaN or infinite amplitudes")
        lo, hi = min(lo, float(logged.min())), max(hi, float(logged.max()))
    if not lo < hi:
        raise DataError("reference gathers are empty or constant: cannot compute a data range for normalisation")
    return lo, hi
