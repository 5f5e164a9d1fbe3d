"""Classical FWI, deep-prior FWI and DL-initialised refinement on the Marmousi window, at equal iterations.

Runs ``experiments/fwi_marmousi.yaml`` (classical FWI from a smoothed true model, and
again from a model linear in depth, the start a practitioner without the true model has),
``experiments/deep_prior_marmousi.yaml``, ``experiments/refine_marmousi.yaml`` (FWI from a
trained network's prediction, with its own longer Adam steps) and that file again from the
linear start (the same optimiser without the network: what the network's start adds) with
the same number of iterations, then prints,
for each and for its initial model: the model MAE in m/s, SSIM (the project's
`structural_similarity` on the [0, 1] scale of the velocity range) and the final data
misfit (the ``physics`` loss, relative L2, over the whole band, every shot: the same
measure for all three, whatever band the run ended on). Writes ``marmousi_fwi.png``
(true, each initial and final model) and ``marmousi_fwi.json`` into ``--out``.

The refinement needs a run trained on this survey: give ``--trained-run`` (a run folder
of ``experiments/supervised_marmousi_survey.yaml``) or let the script train one first
(``--train-epochs``, default 10).

Usage:
    FWI_LIGHTNING_DATA=/path/to/data python benchmarks/marmousi_fwi.py [--iterations 300] [--trained-run RUN] [--out DIR]

Figures measured: benchmarks/README.md, "FWI on a Marmousi window".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
#: The start a practitioner without the true model has: linear in depth over the window's range.
LINEAR_START = "{name: linear, v_top_mps: 1500, v_bottom_mps: 3000}"


def run(file: Path, overrides: list[str]):
    """Fit (no test) one experiment through the runner; returns the `Run`."""
    from fwi_lightning.config import load_config, validate
    from fwi_lightning.runner import Run

    cfg = validate(load_config(file, overrides))
    built = Run.build(cfg)
    built.fit()
    built.close()
    return built


def scores(problem, velocity, true, observed):
    """(MAE m/s, SSIM, relative L2 data misfit over the whole band) of a [NZ, NX] model."""
    import torch

    from fwi_lightning.losses.physics import Physics
    from fwi_lightning.paradigms.survey_fit import model_errors

    v = torch.as_tensor(velocity, dtype=torch.float32)[None, None]
    t = torch.as_tensor(true, dtype=torch.float32)[None, None]
    errors = model_errors(problem, v, t)
    with torch.no_grad():
        misfit = Physics(problem).eval()({"velocity": v}, {"data": observed, "index": torch.zeros(1, dtype=torch.long)})
    return float(errors["train/model_mae_mps"]), float(errors["train/model_ssim"]), float(misfit)


def initial_of(built):
    """The initial model of a finished run, [NZ, NX] m/s (rebuilt from its settings)."""
    from fwi_lightning.paradigms.initial import initial_velocity

    model = built.model
    return initial_velocity(model.hparams["initial"], model.problem, built.datamodule)[0, 0].numpy()


def train_supervised(epochs: int, out: Path) -> Path:
    """Train ``supervised_marmousi_survey.yaml`` for `epochs` epochs; returns its run folder."""
    built = run(EXPERIMENTS / "supervised_marmousi_survey.yaml", [f"run_dir={out / 'runs'}", f"trainer.max_epochs={epochs}"])
    return built.run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300, help="iterations of every method (a multiple of 10)")
    parser.add_argument("--trained-run", default=None, help="run folder of supervised_marmousi_survey.yaml")
    parser.add_argument("--train-epochs", type=int, default=10, help="training epochs when no --trained-run is given")
    parser.add_argument("--out", default="runs/marmousi_fwi", help="folder of the runs, figure and json")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from fwi_lightning import plotting

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [f"run_dir={out / 'runs'}", f"trainer.max_epochs={args.iterations // 10}", "data.steps_per_epoch=10"]
    started = time.time()
    trained = Path(args.trained_run) if args.trained_run else train_supervised(args.train_epochs, out)
    methods = {
        "classical FWI": (EXPERIMENTS / "fwi_marmousi.yaml", []),
        "classical FWI, linear start": (EXPERIMENTS / "fwi_marmousi.yaml", [f"model.initial={LINEAR_START}"]),
        "linear start, refinement lr": (EXPERIMENTS / "refine_marmousi.yaml", [f"model.initial={LINEAR_START}"]),
        "deep-prior FWI": (EXPERIMENTS / "deep_prior_marmousi.yaml", []),
        "DL-initialised refinement": (EXPERIMENTS / "refine_marmousi.yaml", [f"model.initial.path={trained}"]),
    }
    results, panels = {}, []
    for label, (file, extra) in methods.items():
        t0 = time.time()
        built = run(file, common + extra)
        seconds = time.time() - t0
        datamodule, problem = built.datamodule, built.model.problem
        datamodule.set_knob("bandpass", None)
        observed = datamodule.processed()["data"]
        true = datamodule.true_velocity[0, 0].numpy()
        final = np.load(built.run_dir / "final_velocity.npy")
        start = initial_of(built)
        before, after = scores(problem, start, true, observed), scores(problem, final, true, observed)
        results[label] = {
            "initial": dict(zip(("mae_mps", "ssim", "data_misfit"), before)),
            "final": dict(zip(("mae_mps", "ssim", "data_misfit"), after)),
            "mae_reduction": 1.0 - after[0] / before[0],
            "seconds": seconds, "run_dir": str(built.run_dir),
        }
        panels.append((label, start, final, true))
        print(f"{label:28s} initial MAE {before[0]:7.1f} m/s SSIM {before[1]:.3f} misfit {before[2]:.2e} | "
              f"final MAE {after[0]:7.1f} m/s SSIM {after[1]:.3f} misfit {after[2]:.2e} | "
              f"MAE {-100 * results[label]['mae_reduction']:+.0f} % | {seconds:.0f} s", flush=True)

    true = panels[0][3]
    starts = np.stack([p[1] for p in panels])
    finals = np.stack([p[2] for p in panels])
    labels = [label for label, *_ in panels]
    figure = plotting.velocity_comparison(problem, np.stack([true] * len(panels)), finals, None,
                                          "final models: true, final, final - true", [f"{label}: final" for label in labels])
    plotting.save(figure, out / "marmousi_fwi.png")
    figure = plotting.velocity_comparison(problem, np.stack([true] * len(panels)), starts, None,
                                          "initial models: true, initial, initial - true", [f"{label}: initial" for label in labels])
    plotting.save(figure, out / "marmousi_fwi_initial.png")
    summary = {"iterations": args.iterations, "trained_run": str(trained), "total_seconds": time.time() - started,
               "load_average": os.getloadavg(), "methods": results}
    (out / "marmousi_fwi.json").write_text(json.dumps(summary, indent=2))
    classical, refined = results["classical FWI"], results["DL-initialised refinement"]
    print(f"classical FWI lowers its initial MAE by {100 * classical['mae_reduction']:.0f} % (goal >= 30 %); "
          f"refinement ends at {refined['final']['mae_mps']:.1f} m/s vs classical {classical['final']['mae_mps']:.1f} m/s "
          f"(goal: at or below); from a linear start {results['classical FWI, linear start']['final']['mae_mps']:.1f} m/s, "
          f"{results['linear start, refinement lr']['final']['mae_mps']:.1f} m/s with the refinement's optimiser; "
          f"{time.time() - started:.0f} s in all; {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
