"""Supervised vs adversarial vs multitask on CurveFault-like data at one CPU-time budget.

Runs `accuracy.py`'s benchmark once per paradigm, one after the other, with the same
preset, network (InversionNet, CPU widths), cached data set, seed and budget of training
CPU time (``--cpu-minutes``, `accuracy.CPUBudget`):
``experiments/supervised_curvefault.yaml``, ``experiments/velocitygan_curvefault.yaml``
(WGAN-GP critic, content 100 L1 + 100 L2) and ``experiments/multitask_curvefault.yaml``
(velocity + interfaces heads, uncertainty weighting). The critic's learning rate follows
the generator's (the preset's 1e-3).

Then, on the test set, each run's best checkpoint predicts velocity, and the boundary
sharpness is scored: layer boundaries are detected in the true and the predicted
velocity alike (`fwi_lightning.losses.tasks.interface_map`: a jump above
``--boundary-mps`` to the next cell down or right), and F1 counts a detected boundary
cell as right when a true one lies within one cell, and a true one as found when a
detected one does. For the multitask run, the F1 of its interface head (probability
above 0.5) is reported too.

Prints test MAE, RMSE, SSIM, MAE in m/s and boundary F1 per paradigm, writes them to
``paradigms_comparison.json`` in the current folder, and draws the three predictions of
a few test models beside the truth into ``--figure``.

Usage:
    python benchmarks/paradigms_curvefault.py [--cpu-minutes 8] [--threads 1] [--figure PNG] [key=value ...]

    # the README's comparison: 3 x 8 CPU-minutes, one thread, one arm at a time
    python benchmarks/paradigms_curvefault.py --cpu-minutes 8 --threads 1 logger=csv data.num_workers=0 \\
        data.sizes.train=1500 data.sizes.test=200
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from accuracy import parse_args, print_report, run

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = {
    "supervised": REPO / "experiments" / "supervised_curvefault.yaml",
    "adversarial": REPO / "experiments" / "velocitygan_curvefault.yaml",
    "multitask": REPO / "experiments" / "multitask_curvefault.yaml",
}
#: Overrides per arm beyond the shared ones: the critic learns at the generator's rate.
ARM_OVERRIDES = {"adversarial": ["model.critic_optimizer.lr=1.0e-3"]}
METRICS = ("mae", "rmse", "ssim", "mae_mps")
#: Test models drawn in the figure.
FIGURE_SAMPLES = 3


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boundary-mps", type=float, default=100.0,
                        help="velocity jump (m/s) between neighbouring cells that marks a boundary, for the F1")
    parser.add_argument("--figure", default=str(REPO / "benchmarks" / "paradigms_curvefault.png"), help="figure path")
    parser.add_argument("--arms", default=",".join(EXPERIMENTS), help="comma-separated paradigms to run")
    return parser.parse_known_args(argv)


def boundary_f1(predicted, true, tolerance: int = 1) -> tuple[float, float, float]:
    """(precision, recall, F1) of boundary maps [B, 1, NZ, NX] of 0/1, matched within `tolerance` cells.

    Summed over the whole batch: precision = detected cells with a true one within
    `tolerance` / detected cells; recall = true cells with a detected one within
    `tolerance` / true cells.
    """
    import torch.nn.functional as F

    size = 2 * tolerance + 1
    near_true = F.max_pool2d(true, size, stride=1, padding=tolerance)
    near_predicted = F.max_pool2d(predicted, size, stride=1, padding=tolerance)
    precision = float((predicted * near_true).sum() / predicted.sum().clamp(min=1))
    recall = float((true * near_predicted).sum() / true.sum().clamp(min=1))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def test_predictions(reports: dict[str, dict], threshold_mps: float) -> tuple[dict[str, dict], dict]:
    """Every arm's best checkpoint on the (shared) test set: boundary scores, and the arrays to draw."""
    import torch

    from fwi_lightning import registry
    from fwi_lightning.config import load_config, validate
    from fwi_lightning.losses.tasks import interface_map

    first = next(iter(reports.values()))
    cfg = validate(load_config(first["experiment"], first["overrides"]))
    datamodule = registry.build("datamodules", cfg.values["data"], key="data", seed=cfg.values["seed"])
    batches = list(datamodule.test_dataloader())
    true = torch.cat([b["velocity"] for b in batches])
    scores, drawn = {}, {"truth": true[:FIGURE_SAMPLES]}
    for arm, report in reports.items():
        paradigm = registry.load("paradigms", load_config(report["experiment"], report["overrides"]).values["model"]["name"])
        model = paradigm.load_from_checkpoint(report["best_checkpoint"], map_location="cpu").eval()
        with torch.no_grad():
            outputs = [model.outputs(datamodule.on_after_batch_transfer(b, 0)) for b in batches]
        predicted = torch.cat([o["velocity"] for o in outputs])
        precision, recall, f1 = boundary_f1(interface_map(predicted, threshold_mps), interface_map(true, threshold_mps))
        scores[arm] = {"boundary_precision": precision, "boundary_recall": recall, "boundary_f1": f1}
        if "interfaces" in outputs[0]:
            head = (torch.cat([o["interfaces"] for o in outputs]) > 0.5).float()
            head_true = interface_map(true, model.tasks["interfaces"].threshold_mps)
            scores[arm]["interface_head_f1"] = boundary_f1(head, head_true)[2]
        drawn[arm] = predicted[:FIGURE_SAMPLES]
    return scores, drawn


def draw(drawn: dict, velocity_range: tuple[float, float], path: str) -> None:
    """Rows: test models; columns: truth and each arm's prediction, one colour scale in m/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(drawn)
    rows = len(drawn["truth"])
    figure, axes = plt.subplots(rows, len(columns), figsize=(3.0 * len(columns), 2.8 * rows), squeeze=False)
    for row in range(rows):
        for col, name in enumerate(columns):
            image = axes[row][col].imshow(drawn[name][row, 0].numpy(), vmin=velocity_range[0], vmax=velocity_range[1],
                                          cmap="viridis")
            axes[row][col].set_xticks([])
            axes[row][col].set_yticks([])
            if row == 0:
                axes[row][col].set_title(name)
    figure.colorbar(image, ax=axes, shrink=0.8, label="velocity (m/s)")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    from fwi_lightning.errors import FWIError

    argv = list(sys.argv[1:] if argv is None else argv)
    options, shared = parse(argv)
    reports = {}
    try:
        for arm in options.arms.split(","):
            reports[arm] = run(parse_args([str(EXPERIMENTS[arm]), *shared, *ARM_OVERRIDES.get(arm, [])]))
            print_report(reports[arm])
        scores, drawn = test_predictions(reports, options.boundary_mps)
    except FWIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lo_hi = next(iter(reports.values()))
    from fwi_lightning.config import load_config

    velocity_range = tuple(load_config(lo_hi["experiment"], lo_hi["overrides"]).values["data"]["velocity_range"])
    draw(drawn, velocity_range, options.figure)
    arms = list(reports)
    print("\n| metric | " + " | ".join(arms) + " |\n| --- |" + " --- |" * len(arms))
    for name in METRICS:
        values = [reports[arm]["metrics"].get(f"test/{name}") for arm in arms]
        print(f"| test/{name} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in values) + " |")
    for name in ("boundary_precision", "boundary_recall", "boundary_f1", "interface_head_f1"):
        print(f"| {name} | " + " | ".join(f"{scores[a][name]:.4f}" if name in scores[a] else "-" for a in arms) + " |")
    print("| epochs / steps | " + " | ".join(f"{reports[a]['epochs']} / {reports[a]['steps']}" for a in arms) + " |")
    for arm in arms:
        reports[arm]["boundaries"] = scores[arm]
    Path("paradigms_comparison.json").write_text(json.dumps(reports, indent=2))
    print(f"figure: {options.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
