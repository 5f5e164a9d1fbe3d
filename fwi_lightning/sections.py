"""Figures of velocity sections in metres: one section (`section_figure`, the PNG of
``fwi-run predict``) and a grid of sections (`section_grid`, ``fwi-run compare``).

Built on `matplotlib.figure.Figure` with the Agg canvas (no pyplot, no display), like
`fwi_lightning.plotting`; one shared colour scale in m/s per figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def extent_m(shape: Sequence[int], spacing: float) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) in m of an [NZ, NX] grid with cell centres at i * spacing."""
    nz, nx = shape
    h = float(spacing)
    return (-h / 2, (nx - 0.5) * h, (nz - 0.5) * h, -h / 2)


def _show(fig: Figure, ax, velocity: np.ndarray, spacing: float, limits: tuple[float, float], title: str, bar: bool) -> None:
    image = ax.imshow(velocity, extent=extent_m(velocity.shape, spacing), cmap="viridis", vmin=limits[0], vmax=limits[1],
                      aspect="equal")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("depth (m)")
    if bar:
        fig.colorbar(image, ax=ax, label="velocity (m/s)")


def section_figure(velocity: np.ndarray, spacing: float, title: str = "",
                   limits: tuple[float, float] | None = None) -> Figure:
    """One velocity section [NZ, NX] m/s: axes in m, colour bar in m/s (`limits`, default its min and max)."""
    velocity = np.asarray(velocity, dtype=np.float64)
    nz, nx = velocity.shape
    fig = Figure(figsize=(min(12.0, 2.0 + 6.0 * nx / max(nz, nx)), min(9.0, 1.5 + 5.0 * nz / max(nz, nx))),
                 constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    lo, hi = limits or (float(velocity.min()), float(velocity.max()))
    _show(fig, ax, velocity, spacing, (lo, max(hi, lo + 1e-3)), title, bar=True)
    return fig


def section_grid(rows: Sequence[tuple[str, Sequence[np.ndarray], float]], limits: tuple[float, float],
                 column_titles: Sequence[str] = ()) -> Figure:
    """A grid of sections: one row per (label, [NZ, NX] sections in m/s, spacing in m); one colour scale
    `limits` in m/s, its bar at the end of each row."""
    n_rows = len(rows)
    n_cols = max(len(sections) for _, sections, _ in rows)
    fig = Figure(figsize=(2.6 * n_cols + 1.0, 2.4 * n_rows + 0.4), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    for r, (label, sections, spacing) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= len(sections):
                ax.set_axis_off()
                continue
            title = f"{label}" + (f"\n{column_titles[c]}" if c < len(column_titles) else "")
            _show(fig, ax, np.asarray(sections[c]), spacing, limits, title, bar=c == len(sections) - 1)
    return fig
