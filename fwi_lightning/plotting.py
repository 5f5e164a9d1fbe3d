"""Figures of velocity models, gathers and training curves (matplotlib, no pyplot).

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, so they work
without a display and never touch the user's pyplot backend. Axes are in km and
seconds; colour bars in m/s. Shot gathers are shown after automatic gain control
(`agc`) and clipped at the `GATHER_CLIP_PERCENTILE` percentile of their magnitude, so
the direct wave does not swamp the reflections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fwi_lightning.problem import Problem

#: Length in s of the automatic-gain-control window for shot gathers (1.5 periods at 15 Hz).
AGC_WINDOW_S = 0.1
#: Percentile of |gained amplitude| at which the gather colour scale is clipped.
GATHER_CLIP_PERCENTILE = 98.0


def velocity_extent(problem: Problem) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) in km of the velocity grid (cell centres at i * spacing)."""
    nz, nx = problem.velocity_shape
    h = problem.survey.spacing / 1000.0
    return (-h / 2, (nx - 0.5) * h, (nz - 0.5) * h, -h / 2)


def velocity_comparison(problem: Problem, true: np.ndarray, predicted: np.ndarray, data: np.ndarray | None = None,
                        title: str = "", row_labels: Sequence[str] | None = None) -> Figure:
    """One row per sample: true, predicted, predicted - true velocity, and the middle shot gather.

    Args:
        problem: grid spacing, velocity range, sampling interval.
        true, predicted: [N, NZ, NX] velocity in m/s.
        data: [N, S, T, R] raw amplitudes, or None to leave the gather column out.
        title: figure title.
        row_labels: [N] names of the rows (e.g. methods), shown over their predicted
            panels instead of "predicted"; None: "predicted".
    """
    n = len(true)
    columns = 4 if data is not None else 3
    fig = Figure(figsize=(3.4 * columns, 2.9 * n + 0.6), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(n, columns, squeeze=False))
    v_min, v_max = problem.velocity_range
    extent = velocity_extent(problem)
    error = predicted - true
    limit = max(float(np.abs(error).max()), 1e-6)
    for row in range(n):
        name = row_labels[row] if row_labels is not None else "predicted"
        panels = [(true[row], "true", "viridis", v_min, v_max), (predicted[row], name, "viridis", v_min, v_max),
                  (error[row], "predicted - true", "RdBu_r", -limit, limit)]
        for col, (image, label, cmap, lo, hi) in enumerate(panels):
            ax = axes[row, col]
            shown = ax.imshow(image, extent=extent, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
            fig.colorbar(shown, ax=ax, label="m/s")
            ax.set_title(label)
            ax.set_xlabel("x (km)")
            ax.set_ylabel("depth (km)")
        if data is not None:
            _gather(fig, axes[row, 3], problem, data[row, data.shape[1] // 2], data.shape[1] // 2)
    if title:
        fig.suptitle(title)
    return fig


def agc(gather: np.ndarray, dt: float, window_s: float = AGC_WINDOW_S) -> np.ndarray:
    """Automatic gain control: each sample divided by its trace's RMS over a centred window.

    The window is ``window_s`` long (clipped at the ends of the trace, where the mean
    runs over the samples inside). A constant-envelope signal comes out at unit RMS
    whatever its amplitude, so a weak late reflection is shown at the scale of the
    direct wave. Samples quieter than 1e-3 x the gather's RMS are not amplified further.

    Args:
        gather: [T, R] amplitudes (any unit). dt: sampling interval in s.
        window_s: window length in s.

    Returns:
        [T, R] dimensionless gained amplitudes.
    """
    n = gather.shape[0]
    half = max(1, int(round(window_s / dt / 2)))
    power = np.square(gather, dtype=np.float64)
    cumulative = np.concatenate([np.zeros((1, *power.shape[1:])), np.cumsum(power, axis=0)])
    start = np.clip(np.arange(n) - half, 0, n)
    stop = np.clip(np.arange(n) + half + 1, 0, n)
    local = (cumulative[stop] - cumulative[start]) / (stop - start)[:, None]
    floor = max(1e-6 * float(power.mean()), np.finfo(np.float64).tiny)
    return gather / np.sqrt(local + floor)


def _gather(fig: Figure, ax, problem: Problem, gather: np.ndarray, shot: int) -> None:
    """Plot one shot gather [T, R] against receiver position in km and time in s.

    Shown after `agc`, grey scale clipped at ``GATHER_CLIP_PERCENTILE`` of |gained amplitude|.
    """
    survey = problem.survey
    gained = agc(gather, survey.dt)
    clip = max(float(np.percentile(np.abs(gained), GATHER_CLIP_PERCENTILE)), 1e-12)
    duration = gather.shape[0] * survey.dt
    columns = survey.receiver_columns
    h = survey.spacing / 1000.0
    shown = ax.imshow(gained, cmap="gray", vmin=-clip, vmax=clip, aspect="auto",
                      extent=(columns[0] * h, columns[-1] * h, duration, 0.0))
    fig.colorbar(shown, ax=ax, label=f"amplitude (AGC {AGC_WINDOW_S:g} s)")
    ax.set_title(f"shot {shot} gather")
    ax.set_xlabel("receiver x (km)")
    ax.set_ylabel("time (s)")


def training_curves(history: Mapping[str, Sequence[tuple[int, float]]]) -> Figure:
    """Losses (left, log scale) and dimensionless validation metrics (right) against epoch.

    Args:
        history: metric name -> [(epoch, value), ...], e.g. ``train/loss``, ``val/loss``, ``val/ssim``.
    """
    fig = Figure(figsize=(11, 4), constrained_layout=True)
    FigureCanvasAgg(fig)
    losses, scores = fig.subplots(1, 2)
    for name, points in sorted(history.items()):
        if not points:
            continue
        epochs, values = zip(*points)
        if name.endswith("loss") or name.startswith("train/"):
            losses.plot(epochs, values, marker="o", markersize=3, label=name)
        elif name in ("val/mae", "val/rmse", "val/ssim"):
            scores.plot(epochs, values, marker="o", markersize=3, label=name)
    losses.set_yscale("log")
    losses.set_title("losses")
    scores.set_title("validation metrics (OpenFWI scale)")
    for ax in (losses, scores):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return fig


def save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write a figure as PNG (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
