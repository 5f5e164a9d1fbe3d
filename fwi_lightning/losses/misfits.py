"""Data misfits between simulated and observed gathers, for the physics loss.

Every function takes predicted and observed gathers [B, S, T, R] (shot, time, receiver)
in raw amplitudes, of one shape and dtype, and returns a dimensionless scalar: the mean
over the batch of a per-sample (or per-trace) misfit, 0 when the prediction equals the
observation. A trace is one shot's one receiver over time, [T]. Traces the observation
leaves all zero (aperture masks) carry no information and count for nothing in the
trace-wise misfits.
"""

from __future__ import annotations

from typing import Callable

import torch


def _floor(values: torch.Tensor) -> torch.Tensor:
    """`values` with zeros lifted to the dtype's smallest normal number (safe divisor)."""
    return values.clamp_min(torch.finfo(values.dtype).tiny)


def l1(predicted: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Relative L1 misfit: ``sum |p - o| / sum |o|`` per sample, averaged over the batch.

    Args:
        predicted: [B, S, T, R] raw amplitudes.
        observed: [B, S, T, R] raw amplitudes.

    Returns:
        Scalar >= 0; 1 is the misfit of predicting no data.
    """
    residual = (predicted - observed).abs().flatten(1).sum(dim=1)
    return (residual / _floor(observed.abs().flatten(1).sum(dim=1))).mean()


def l2(predicted: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Relative squared L2 misfit: ``||p - o||^2 / ||o||^2`` per sample, averaged over the batch.

    Args:
        predicted: [B, S, T, R] raw amplitudes.
        observed: [B, S, T, R] raw amplitudes.

    Returns:
        Scalar >= 0; 1 is the misfit of predicting no data.
    """
    residual = (predicted - observed).square().flatten(1).sum(dim=1)
    return (residual / _floor(observed.square().flatten(1).sum(dim=1))).mean()


def _recorded(predicted: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, S, T, R] gathers -> their traces [N, T] where the observation is not all zero."""
    p = predicted.transpose(2, 3).reshape(-1, predicted.shape[2])
    o = observed.transpose(2, 3).reshape(-1, observed.shape[2])
    recorded = o.abs().amax(dim=1) > 0
    return p[recorded], o[recorded]


def trace_l2(predicted: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Trace-normalised squared L2: ``||p_i - o_i||^2 / ||o_i||^2`` per trace i, averaged over traces.

    Every recorded trace counts equally, so weak far-offset and late arrivals weigh as
    much as the strong direct wave near the source (the plain `l2` is dominated by it).
    Amplitudes still matter: a prediction twice too strong scores 1 on every trace.

    Args:
        predicted: [B, S, T, R] raw amplitudes.
        observed: [B, S, T, R] raw amplitudes.

    Returns:
        Scalar >= 0 over the traces with a non-zero observation (0 when there are none).
    """
    p, o = _recorded(predicted, observed)
    return ((p - o).square().sum(dim=1) / o.square().sum(dim=1)).sum() / max(len(o), 1)


def correlation(predicted: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Correlation misfit: ``1 - <p_i, o_i> / (||p_i|| ||o_i||)`` per trace i, averaged over traces.

    The zero-lag normalised cross-correlation ignores each trace's amplitude scale: a
    prediction scaled by any positive factor (an unknown source strength, a wrong
    amplitude calibration) scores the same, so only phase and shape are fitted.

    Args:
        predicted: [B, S, T, R] raw amplitudes.
        observed: [B, S, T, R] raw amplitudes.

    Returns:
        Scalar in [0, 2] over the traces with a non-zero observation (0 when there are none).
    """
    p, o = _recorded(predicted, observed)
    cosine = (p * o).sum(dim=1) / (_floor(p.norm(dim=1)) * o.norm(dim=1))
    return (1.0 - cosine).sum() / max(len(o), 1)


#: The misfits by the name the physics loss's ``misfit`` parameter takes.
MISFITS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": l1, "l2": l2, "trace_l2": trace_l2, "correlation": correlation,
}
