"""``fwi-run compare RUN_DIR...``: what differs between finished runs, and how they scored.

From the run folders alone (no tracker needed)::

    runs = [RunRecord.load(d) for d in run_dirs]   # config.yaml, metrics.csv, summary.json
    keys = differing_keys(runs)                    # dotted config keys whose values differ
    header, rows = table(runs, keys)               # run, those keys, best val/*, test/*
    write comparison.md, comparison.csv, predictions.png

Best values: each ``val/...`` column of ``metrics.csv`` at its best epoch (max for scores
such as SSIM, min for errors and losses; `fwi_lightning.logging.summary_mode`, the rule
the W&B summaries follow). Test values: ``summary.json``'s metrics. The figure grid
shows each run's prediction of the first test samples of its own data config (the
checkpoint ``fwi-run test`` would evaluate), under the first run's true models.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fwi_lightning.errors import ConfigError, FWIError

#: Files written into the output folder.
TABLE_MD, TABLE_CSV, GRID_PNG = "comparison.md", "comparison.csv", "predictions.png"


@dataclass
class RunRecord:
    """One finished run as its folder records it.

    Attributes:
        folder: the run folder.
        config: the resolved config (``config.yaml``) flattened to dotted keys.
        best: best value of each ``val/...`` metric over the epochs of ``metrics.csv``.
        test: the test metrics of ``summary.json``.
    """

    folder: Path
    config: dict[str, Any]
    best: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | Path) -> "RunRecord":
        """Read a run folder.

        Raises:
            ConfigError: not a run folder (no ``config.yaml``).
        """
        from omegaconf import OmegaConf

        from fwi_lightning.evaluate import flatten_keys

        folder = Path(folder)
        if not (folder / "config.yaml").is_file():
            raise ConfigError("not a run folder (no config.yaml); give folders that fwi-run wrote, runs/<group>/<name>-<time>/",
                              file=str(folder))
        values = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml")) or {}
        config = {k: v for section, value in values.items() for k, v in flatten_keys(value, section).items()}
        test = {}
        if (folder / "summary.json").is_file():
            test = {k: float(v) for k, v in (json.loads((folder / "summary.json").read_text()).get("metrics") or {}).items()}
        return cls(folder, config, best_values(folder / "metrics.csv"), test)


def best_values(path: Path) -> dict[str, float]:
    """Best value of each ``val/...`` column of a ``metrics.csv`` (empty when there is none)."""
    from fwi_lightning.logging import summary_mode

    if not path.is_file():
        return {}
    columns: dict[str, list[float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for name, value in row.items():
                if name and name.startswith("val/") and value not in ("", None):
                    columns.setdefault(name, []).append(float(value))
    return {name: (max if summary_mode(name) == "max" else min)(values) for name, values in sorted(columns.items())}


def differing_keys(runs: Sequence[RunRecord]) -> list[str]:
    """Dotted config keys whose values are not the same in every run (a key missing in one differs)."""
    missing = object()
    keys = sorted(set().union(*(run.config for run in runs)))
    return [k for k in keys if len({json.dumps(run.config.get(k, missing), default=str, sort_keys=True) for run in runs}) > 1]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def table(runs: Sequence[RunRecord], keys: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: run folder name, the `keys`' values, ``best val/...``, ``test/...``."""
    best = sorted(set().union(*(run.best for run in runs)))
    test = sorted(set().union(*(run.test for run in runs)))
    header = ["run", *keys, *(f"best {k}" for k in best), *test]
    rows = [[run.folder.name, *(_cell(run.config.get(k)) for k in keys), *(_cell(run.best.get(k)) for k in best),
             *(_cell(run.test.get(k)) for k in test)] for run in runs]
    return header, rows


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown (GitHub) table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def sample_predictions(run: RunRecord, n_samples: int) -> tuple[np.ndarray, np.ndarray, float, tuple[float, float]]:
    """The run's best checkpoint on the first `n_samples` test samples of its own config:
    (true [n, NZ, NX] m/s, predicted [n, NZ, NX] m/s, spacing m, velocity range m/s).

    Raises:
        FWIError: no checkpoint, or data that cannot be built (e.g. files moved).
    """
    import torch

    from fwi_lightning import registry
    from fwi_lightning.config import validate
    from fwi_lightning.evaluate import evaluation_config, find_checkpoint, load_model

    checkpoint = find_checkpoint(run.folder)
    cfg = validate(evaluation_config(checkpoint, None, []))
    with cfg.attributed():
        datamodule = registry.build("datamodules", cfg.values["data"], key="data", seed=cfg.values["seed"])
        model = load_model(cfg, checkpoint, datamodule.problem).eval()
    true, predicted = [], []
    for batch in datamodule.test_dataloader():
        batch = datamodule.on_after_batch_transfer(batch, 0)
        with torch.no_grad():
            predicted.append(model(batch["data"])[:, 0].float().numpy())
        if batch.get("velocity") is not None:
            true.append(batch["velocity"][:, 0].float().numpy())
        if sum(len(p) for p in predicted) >= n_samples:
            break
    problem = model.problem
    truth = np.concatenate(true)[:n_samples] if true else np.empty((0, *problem.velocity_shape))
    return truth, np.concatenate(predicted)[:n_samples], problem.survey.spacing, tuple(problem.velocity_range)


def prediction_grid(runs: Sequence[RunRecord], n_samples: int) -> tuple[Any, list[str]]:
    """The figure: a row of the first run's true models, then a row of predictions per run; and notes
    on runs left out (their data or checkpoint could not be loaded) or scored on other samples."""
    from fwi_lightning.sections import section_grid

    rows, notes, reference, limits = [], [], None, None
    for run in runs:
        try:
            true, predicted, spacing, velocity_range = sample_predictions(run, n_samples)
        except FWIError as exc:
            notes.append(f"{run.folder.name}: left out of the figure ({exc})")
            continue
        if reference is None:
            reference, limits = true, velocity_range
            if len(true):
                rows.append((f"true ({run.folder.name})", list(true), spacing))
        elif reference.shape != true.shape or not np.allclose(reference, true):
            notes.append(f"{run.folder.name}: its test samples differ from the first run's (other data config)")
        rows.append((run.folder.name, list(predicted), spacing))
    if not rows:
        return None, notes
    return section_grid(rows, limits, column_titles=[f"test sample {i}" for i in range(n_samples)]), notes


def run_compare(run_dirs: Sequence[str], out: str | Path, n_samples: int = 4, figure: bool = True) -> tuple[str, list[Path], list[str]]:
    """``fwi-run compare``: write the table (Markdown, CSV) and the grid into `out`, all or nothing.

    Returns:
        (the Markdown table, files written, notes).

    Raises:
        ConfigError: no run folders, a folder that is not a run, or `n_samples` < 1.
    """
    from fwi_lightning import plotting
    from fwi_lightning.io.atomic import AtomicFiles

    if not run_dirs:
        raise ConfigError("give at least one run folder")
    if n_samples < 1:
        raise ConfigError(f"expected at least 1 sample, got {n_samples}", key="samples")
    runs = [RunRecord.load(d) for d in run_dirs]
    header, rows = table(runs, differing_keys(runs))
    text = markdown(header, rows)
    fig, notes = prediction_grid(runs, n_samples) if figure else (None, [])
    out = Path(out)
    written = [out / TABLE_MD, out / TABLE_CSV] + ([out / GRID_PNG] if fig is not None else [])
    with AtomicFiles() as files:
        files.temporary(out / TABLE_MD).write_text(text)
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header, *rows])
        files.temporary(out / TABLE_CSV).write_text(buffer.getvalue())
        if fig is not None:
            plotting.save(fig, files.temporary(out / GRID_PNG))
    return text, written, notes
