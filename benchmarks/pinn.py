"""The ``pinn`` paradigm against the finite-difference Simulator (forward) and against ``fwi`` (inversion).

1. Forward: ``experiments/pinn_forward_homogeneous.yaml`` for ``--forward-steps`` optimiser
   steps; the PINN's wavefield at the window's end (0.175 s) against the Simulator's
   snapshot at that time, as relative L2 over the grid. Figure ``pinn_forward.png``
   (PINN, Simulator, difference at t1, the middle and the end of the window).
2. Inversion: ``experiments/pinn_inversion_anomaly.yaml`` for ``--inversion-steps`` steps;
   the model error (MAE in m/s over the grid, and over the anomaly: the cells where the
   true model differs from the background by more than 10 m/s) of the starting and the
   recovered model, for ``--seeds`` seeds (0 .. N-1: the network initialisation and the
   random points; the table and figure show seed 0, the others the spread). Then the
   ``fwi`` paradigm on the same data module, from the same starting model, stopped when it
   has used the PINN's mean CPU time (process time), so both cost the same. Figure
   ``pinn_inversion.png`` (true, start, PINN, FWI and their errors).

Budgets are optimiser steps (PINN) and process CPU seconds (FWI, matched to the PINN's),
never wall-clock time, so load from other processes does not bias them. Run it with one
thread, one process: ``--threads 1``.

Usage:
    python benchmarks/pinn.py --threads 1 [--forward-steps 3000] [--inversion-steps 3000] [--seeds 3] [--out DIR]
    python benchmarks/pinn.py --threads 1 --tiny          # smoke run: a few steps of everything
    python benchmarks/pinn.py --threads 1 --only inversion   # one part again, the other kept in pinn.json

Measured 2026-12-03 (shared 2-core CPU, one thread, load about 2; 969 CPU s with --seeds 3):
forward relative L2 0.075 at 0.175 s after 3000 steps (162 CPU s); inversion MAE start 10.2,
PINN 10.1 (3000 steps, 202 CPU s; seeds 0-2: 10.20 +- 0.07), FWI 33.7 m/s at the same CPU time;
over the anomaly 85.0, 56.1 (seeds: 55.5 +- 0.6), 65.4 m/s.
Details: benchmarks/README.md, "PINN: forward against the Simulator, inversion against FWI".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
#: Cells whose true velocity differs from the background by more than this (m/s) form the anomaly.
ANOMALY_THRESHOLD_MPS = 10.0


def experiment(file: Path, run_dir: Path, steps: int) -> dict[str, Any]:
    """The experiment mapping of `file` with `steps` optimiser steps, validation at the end only."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(OmegaConf.load(file))
    per_epoch = values["data"]["steps_per_epoch"] = min(values["data"]["steps_per_epoch"], steps)
    values["run_dir"] = str(run_dir)
    values["trainer"].update(max_epochs=max(1, steps // per_epoch), check_val_every_n_epoch=max(1, steps // per_epoch))
    scheduler = values["model"].get("scheduler")
    if scheduler and "T_max" in scheduler:
        scheduler["T_max"] = steps
    return values


def fit(values: dict[str, Any], callbacks: list | None = None):
    """Validate, build and fit an experiment mapping; returns (the `Run`, process CPU seconds of the fit)."""
    from fwi_lightning.config import load_config, validate
    from fwi_lightning.runner import Run

    built = Run.build(validate(load_config(None, values=values)))
    for callback in callbacks or []:
        built.trainer.callbacks.append(callback)
    started = time.process_time()
    built.fit()
    seconds = time.process_time() - started
    built.close()
    return built, seconds


def cpu_budget(seconds: float):
    """A Lightning callback that stops training once the process has used `seconds` of CPU time in the fit."""
    from lightning.pytorch.callbacks import Callback

    class CPUBudget(Callback):
        def on_train_start(self, trainer, module):
            self.start = time.process_time()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if time.process_time() - self.start >= seconds:
                trainer.should_stop = True

    return CPUBudget()


def errors(velocity, true, background: float) -> dict[str, float]:
    """MAE (m/s) over the grid and over the anomaly's cells, of [NZ, NX] arrays."""
    import numpy as np

    anomaly = np.abs(true - background) > ANOMALY_THRESHOLD_MPS
    return {"mae_mps": float(np.abs(velocity - true).mean()), "anomaly_mae_mps": float(np.abs(velocity - true)[anomaly].mean())}


def forward(steps: int, out: Path) -> dict[str, Any]:
    built, seconds = fit(experiment(EXPERIMENTS / "pinn_forward_homogeneous.yaml", out / "runs", steps))
    model = built.model
    error = float(model.wavefield_error())
    model.save_wavefield_figure(out / "pinn_forward.png")
    t_end = model.steps[-1] * model.problem.survey.dt
    print(f"forward: {steps} steps, {seconds:.0f} CPU s: PINN vs Simulator at t = {t_end:.3f} s: relative L2 {error:.3f} "
          f"(goal <= 0.10)", flush=True)
    return {"steps": steps, "cpu_seconds": seconds, "end_time_s": t_end, "relative_l2": error, "run_dir": str(built.run_dir)}


def inversion(steps: int, out: Path, seeds: int = 1) -> dict[str, Any]:
    """The PINN with seeds 0 .. seeds - 1 (the table and the figure: seed 0; the others give the spread),
    then FWI for the PINN's mean CPU time."""
    import numpy as np

    from fwi_lightning.paradigms.initial import initial_velocity

    values = experiment(EXPERIMENTS / "pinn_inversion_anomaly.yaml", out / "runs", steps)
    runs = []
    for seed in range(seeds):
        built, seconds = fit(dict(values, seed=seed))
        model, datamodule = built.model, built.datamodule
        true = datamodule.true_velocity[0, 0].numpy()
        background = float(values["data"]["model"]["background_mps"])
        velocity = np.load(built.run_dir / "final_velocity.npy")
        row = errors(velocity, true, background)
        row.update(seed=seed, steps=steps, cpu_seconds=seconds, wavefield_relative_l2=float(model.wavefield_error()))
        print(f"inversion pinn seed {seed}: MAE {row['mae_mps']:6.2f} m/s, over the anomaly {row['anomaly_mae_mps']:6.1f} m/s, "
              f"{seconds:.0f} CPU s", flush=True)
        runs.append((row, model, datamodule, velocity))
    row, model, datamodule, pinn = runs[0]
    start = initial_velocity(model.hparams["initial"], model.problem, datamodule)[0, 0].numpy()
    results = {"start": errors(start, true, background), "pinn": row}
    if seeds > 1:
        rows = [r for r, *_ in runs]
        results["pinn_seeds"] = rows
        for key in ("mae_mps", "anomaly_mae_mps"):
            values_ = np.array([r[key] for r in rows])
            results["pinn_seed_" + key] = {"mean": float(values_.mean()), "std": float(values_.std(ddof=1)),
                                           "min": float(values_.min()), "max": float(values_.max())}
    seconds = float(np.mean([r["cpu_seconds"] for r, *_ in runs]))

    fwi_values = experiment(EXPERIMENTS / "pinn_inversion_anomaly.yaml", out / "runs", 100_000)
    fwi_values["name"] = "fwi_anomaly"
    fwi_values["model"] = {"name": "fwi", "initial": values["model"]["initial"], "optimizer": {"name": "adam", "lr": 0.01}}
    fwi_run, fwi_seconds = fit(fwi_values, [cpu_budget(seconds)])
    fwi = np.load(fwi_run.run_dir / "final_velocity.npy")
    results["fwi"] = errors(fwi, true, background)
    results["fwi"].update(steps=int(fwi_run.trainer.global_step), cpu_seconds=fwi_seconds)
    for label in ("start", "pinn", "fwi"):
        row = results[label]
        cost = f", {row['steps']} steps, {row['cpu_seconds']:.0f} CPU s" if "steps" in row else ""
        print(f"inversion {label:5s}: MAE {row['mae_mps']:6.2f} m/s, over the anomaly {row['anomaly_mae_mps']:6.1f} m/s{cost}",
              flush=True)
    margin = 1.0 - results["pinn"]["mae_mps"] / results["start"]["mae_mps"]
    results["pinn_mae_reduction"] = margin
    results["pinn_anomaly_mae_reduction"] = 1.0 - results["pinn"]["anomaly_mae_mps"] / results["start"]["anomaly_mae_mps"]
    print(f"PINN lowers the starting model's MAE by {100 * margin:.0f} % (FWI at the same CPU time: "
          f"{100 * (1.0 - results['fwi']['mae_mps'] / results['start']['mae_mps']):.0f} %); the anomaly's by "
          f"{100 * results['pinn_anomaly_mae_reduction']:.0f} % (FWI: "
          f"{100 * (1.0 - results['fwi']['anomaly_mae_mps'] / results['start']['anomaly_mae_mps']):.0f} %)", flush=True)
    if seeds > 1:
        spread = {key: results["pinn_seed_" + key] for key in ("mae_mps", "anomaly_mae_mps")}
        print(f"PINN over {seeds} seeds: MAE {spread['mae_mps']['mean']:.2f} +- {spread['mae_mps']['std']:.2f} m/s, "
              f"over the anomaly {spread['anomaly_mae_mps']['mean']:.1f} +- {spread['anomaly_mae_mps']['std']:.1f} m/s",
              flush=True)
    inversion_figure(model.problem, true, start, pinn, fwi, results, out / "pinn_inversion.png")
    return results


def inversion_figure(problem, true, start, pinn, fwi, results: dict[str, Any], path: Path) -> Path:
    """Top: true, start, PINN and FWI velocity; bottom: each minus the true model."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fwi_lightning import plotting

    fig = Figure(figsize=(13.5, 6.2), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 4)
    extent = plotting.velocity_extent(problem)
    lo, hi = float(true.min()), float(true.max())
    limit = float(np.abs(true - start).max())
    panels = [("true", true, None), ("start", start, "start"), ("PINN", pinn, "pinn"), ("FWI (same CPU time)", fwi, "fwi")]
    for col, (label, model, key) in enumerate(panels):
        shown = axes[0, col].imshow(model, extent=extent, cmap="viridis", vmin=lo, vmax=hi, aspect="auto")
        fig.colorbar(shown, ax=axes[0, col], label="m/s")
        title = label if key is None else f"{label}: MAE {results[key]['mae_mps']:.1f} m/s"
        axes[0, col].set_title(title, fontsize=9)
        if key is None:
            axes[1, col].set_axis_off()
            continue
        shown = axes[1, col].imshow(model - true, extent=extent, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        fig.colorbar(shown, ax=axes[1, col], label="m/s")
        axes[1, col].set_title(f"{label} - true (anomaly MAE {results[key]['anomaly_mae_mps']:.0f} m/s)", fontsize=9)
    for ax in axes.flat:
        ax.set_xlabel("x (km)")
        ax.set_ylabel("depth (km)")
    return plotting.save(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forward-steps", type=int, default=3000)
    parser.add_argument("--inversion-steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the measured setting)")
    parser.add_argument("--seeds", type=int, default=1, help="PINN inversion runs (seeds 0 .. N-1) for the spread")
    parser.add_argument("--tiny", action="store_true", help="smoke run: 20 steps of each")
    parser.add_argument("--out", default="benchmarks", help="folder of the figures, the json and the runs")
    parser.add_argument("--only", choices=("forward", "inversion"), default=None,
                        help="run one part; the other's entry of an existing pinn.json is kept")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("WANDB_MODE", "disabled")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = (20, 20) if args.tiny else (args.forward_steps, args.inversion_steps)
    started = time.process_time()
    summary = json.loads((out / "pinn.json").read_text()) if args.only and (out / "pinn.json").exists() else {}
    if args.only in (None, "forward"):
        summary["forward"] = forward(steps[0], out)
    if args.only in (None, "inversion"):
        summary["inversion"] = inversion(steps[1], out, args.seeds)
    summary.update(threads=args.threads, load_average=os.getloadavg())
    summary["cpu_seconds"] = time.process_time() - started
    (out / "pinn.json").write_text(json.dumps(summary, indent=2))
    print(f"{summary['cpu_seconds']:.0f} CPU s in all; {out / 'pinn.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
