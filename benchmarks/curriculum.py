"""Does a curriculum help? CurveFault-like test accuracy with and without curricula.

Runs `accuracy.py`'s fixed-budget benchmark twice with the same preset, budget, network,
data and seed: ``experiments/supervised_curvefault.yaml`` (no curriculum) and
``experiments/curriculum_curvefault.yaml`` (frequency continuation + self-paced
sampling), the curricula's schedules stretched to the budget's training
(`FREQUENCY_STAGES`, `DIFFICULTY_EPOCHS`),
one after the other. Prints both runs' test metrics side by side and writes them to
``curriculum_comparison.json`` in the current folder.

Usage:
    python benchmarks/curriculum.py [--minutes 30] [--preset cpu] [--threads 2] [key=value ...]

    # the README's comparison: 2 x 30 minutes on 2 cores
    python benchmarks/curriculum.py --minutes 30 --preset cpu --threads 2 logger=csv trainer.precision=bf16-mixed
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from accuracy import parse_args, print_report, run

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "experiments" / "supervised_curvefault.yaml"
CURRICULUM = REPO / "experiments" / "curriculum_curvefault.yaml"
#: Schedules for a 30-minute ``cpu`` run (~50 epochs of 188 steps, measured for
#: supervised_curvefault.yaml in benchmarks/README.md), their epochs scaled linearly with
#: ``--minutes``: the cut-off stages over the first ~quarter, the hard share 0.5 at ~half.
FREQUENCY_STAGES = [(0, 6.0), (3, 10.0), (6, 15.0), (9, 25.0), (12, None)]
DIFFICULTY_EPOCHS = 25
METRICS = ("mae", "rmse", "ssim", "mae_mps", "rmse_mps", "data_misfit")


def main(argv: list[str] | None = None) -> int:
    from fwi_lightning.errors import FWIError

    argv = list(sys.argv[1:] if argv is None else argv)
    scale = parse_args(["x", *argv]).minutes / 30.0
    stages = ",".join(f"[{round(epoch * scale)},{'null' if hz is None else hz}]" for epoch, hz in FREQUENCY_STAGES)
    stretch = [f"callbacks.frequency_curriculum.schedule.stages=[{stages}]",
               f"callbacks.difficulty_curriculum.schedule.length={max(1, round(DIFFICULTY_EPOCHS * scale))}"]
    reports = {}
    try:
        for label, experiment, extra in (("without", BASELINE, []), ("with", CURRICULUM, stretch)):
            reports[label] = run(parse_args([str(experiment), *argv, *extra]))
            print_report(reports[label])
    except FWIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n| metric | without curricula | with curricula |\n| --- | --- | --- |")
    for name in METRICS:
        values = [reports[label]["metrics"].get(f"test/{name}") for label in ("without", "with")]
        if None not in values:
            print(f"| test/{name} | {values[0]:.4f} | {values[1]:.4f} |")
    Path("curriculum_comparison.json").write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
