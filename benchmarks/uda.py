"""Does unsupervised domain adaptation help on Marmousi? Source-only, each method and fine-tuning at one step budget.

Every variant trains the network of ``experiments/uda_marmousi.yaml`` for the same number
of optimiser steps (``--steps``; never wall time, the machine is shared) on the same data
(built once with the experiment's seed and cached, so every variant sees the same source
and target samples), then is scored on the same Marmousi test windows (the target's test
split, a region training never saw):

* ``source_only``: ``methods: {}`` (``experiments/source_only_marmousi.yaml``);
* ``dann``, ``mmd``, ``coral``, ``physics``: one method each, with the weights of
  `METHODS`; ``uda_marmousi``: the methods of ``experiments/uda_marmousi.yaml``;
* ``finetune``: the source-only model of the first seed, then ``--steps`` more steps of
  supervised training on ``--finetune-size`` labelled Marmousi windows of the training
  region (``experiments/finetune_marmousi.yaml``): the labelled reference, not a UDA method.

``source_only`` and the unsupervised variant with the lowest first-seed MAE run with
``--seeds`` training seeds (network and classifier initialisation, sample order); the
others with the first. Reports target test MAE (m/s, and normalised to [-1, 1]) and SSIM,
mean ± std over seeds, as a Markdown table, and writes every number to ``--out`` (JSON).

Usage:
    python benchmarks/uda.py [--steps 300] [--seeds 3] [--threads 1] [--only source_only,dann] [key=value ...]

    python benchmarks/uda.py --steps 2 --seeds 2 --threads 1 data.source.sizes.train=32 data.target.sizes.train=32   # smoke
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
UDA = REPO / "experiments" / "uda_marmousi.yaml"
FINETUNE = REPO / "experiments" / "finetune_marmousi.yaml"

#: The single-method variants and their ``methods`` settings.
METHODS: dict[str, dict[str, Any]] = {
    "dann": {"dann": {"weight": 0.1}},
    "mmd": {"mmd": 1.0},
    "coral": {"coral": 1.0},
    "physics": {"physics": {"weight": 0.5, "misfit": "l2", "shots": 1}},
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps of every variant")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds of source-only and the best method")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one process, one run at a time)")
    parser.add_argument("--finetune-size", type=int, default=200, help="labelled Marmousi windows of fine-tuning (100..1000)")
    parser.add_argument("--only", default=None, help="comma-separated variants to run (default: all)")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=METHODS",
                        help="an extra variant, its methods as YAML, e.g. 'coral_light={coral: 0.1}' (repeatable)")
    parser.add_argument("--out", default="uda_benchmark.json", help="JSON file of every run's numbers")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of uda_marmousi.yaml (data, network)")
    return parser.parse_args(argv)


def target_test_metrics(model: Any, datamodule: Any) -> dict[str, float]:
    """Mean per-sample MAE (m/s and normalised) and SSIM of `model` on the target's test windows."""
    import torch

    from fwi_lightning.evaluate import sample_metrics

    loader = datamodule.target.test_dataloader()
    rows: dict[str, list[float]] = {"mae_mps": [], "mae": [], "ssim": []}
    model.eval()
    with torch.no_grad():
        for batch in loader:
            batch = datamodule.target.on_after_batch_transfer(batch, 0)
            values = sample_metrics(datamodule.problem, model(batch["data"]), batch["velocity"])
            for name in rows:
                rows[name] += values[name].tolist()
    return {name: float(sum(v) / len(v)) for name, v in rows.items()}


def trainer(steps: int, root: Path):
    import lightning.pytorch as pl

    return pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, limit_val_batches=0, num_sanity_val_steps=0,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=str(root))


def train(model_section: dict[str, Any], datamodule: Any, seed: int, steps: int, root: Path) -> tuple[Any, dict[str, float]]:
    """Build the paradigm on `datamodule`'s problem with `seed`, train `steps` steps; returns (model, costs)."""
    import lightning.pytorch as pl

    from fwi_lightning import registry

    pl.seed_everything(seed, verbose=False)
    model = registry.build("paradigms", model_section, key="model", problem=datamodule.problem)
    started, cpu = time.time(), time.process_time()
    run = trainer(steps, root)
    run.fit(model, datamodule=datamodule)
    return model, {"steps": run.global_step, "cpu_s": time.process_time() - cpu, "wall_s": time.time() - started}


def main(argv: list[str] | None = None) -> int:
    import tempfile

    import torch

    from fwi_lightning import registry
    from fwi_lightning.config import load_config, validate

    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    cfg = validate(load_config(str(UDA), args.overrides)).values
    workers = cfg["data"]["target"].get("num_workers", 0)  # fine-tuning data loads as the target does
    tune = validate(load_config(str(FINETUNE), [f"data.sizes.train={args.finetune_size}", f"data.num_workers={workers}"])).values
    wanted = set(args.only.split(",")) if args.only else None
    variants = {"source_only": {}, **METHODS, "uda_marmousi": cfg["model"]["methods"]}
    for extra in args.variant:
        label, _, methods = extra.partition("=")
        variants[label] = yaml.safe_load(methods)
    variants = {k: v for k, v in variants.items() if wanted is None or k in wanted}
    datamodule = registry.build("datamodules", cfg["data"], key="data", seed=cfg["seed"])
    for stream in (datamodule.source, datamodule.target):  # fill the caches now, outside every variant's cost
        for split in ("train", "test"):
            stream.dataloader(split)
    seeds = list(range(args.seeds))
    results: dict[str, list[dict[str, float]]] = {}
    source_model = None
    with tempfile.TemporaryDirectory(prefix="uda-benchmark-") as tmp:
        root = Path(tmp)

        def record(label: str, model_section: dict[str, Any], seed: int, data: Any = None) -> Any:
            model, costs = train(model_section, datamodule if data is None else data, seed, args.steps, root)
            scores = {**target_test_metrics(model, datamodule), **costs, "seed": seed}
            results.setdefault(label, []).append(scores)
            print(f"{label} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()), flush=True)
            return model

        for label, methods in variants.items():
            model = record(label, {**cfg["model"], "methods": methods}, seeds[0])
            if label == "source_only":
                source_model = model
        best = min((k for k in results if k not in ("source_only", "finetune")), key=lambda k: results[k][0]["mae_mps"], default=None)
        for label in [k for k in ("source_only", best) if k is not None and k in results]:
            for seed in seeds[1:]:
                record(label, {**cfg["model"], "methods": variants[label]}, seed)
        if source_model is not None and (wanted is None or "finetune" in wanted):
            import lightning

            checkpoint = root / "source_only.ckpt"
            torch.save({"state_dict": source_model.state_dict(), "hyper_parameters": dict(source_model.hparams),
                        "pytorch-lightning_version": lightning.__version__}, checkpoint)
            tuning = registry.build("datamodules", tune["data"], key="data", seed=cfg["seed"] + 1)
            section = {**tune["model"], "network": cfg["model"]["network"], "transfer": {"init_from": str(checkpoint), "parts": ["network"]}}
            record("finetune", section, seeds[0], data=tuning)
    report(results, best, args)
    return 0


def report(results: dict[str, list[dict[str, float]]], best: str | None, args: argparse.Namespace) -> None:
    """Print the Markdown table and write the JSON file."""
    def cell(label: str, name: str, digits: int) -> str:
        values = [r[name] for r in results[label]]
        mean = statistics.fmean(values)
        if len(values) < 2:
            return f"{mean:.{digits}f}"
        return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"

    base = statistics.fmean(r["mae_mps"] for r in results["source_only"]) if "source_only" in results else None
    print(f"\n{args.steps} steps per variant, target test windows; best unsupervised method: {best}\n")
    print("| variant | seeds | target MAE (m/s) | target MAE (normalised) | target SSIM | vs source-only | CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, rows in results.items():
        mean = statistics.fmean(r["mae_mps"] for r in rows)
        change = f"{100.0 * (mean - base) / base:+.1f} %" if base else ""
        cpu = statistics.fmean(r["cpu_s"] for r in rows)
        print(f"| {label} | {len(rows)} | {cell(label, 'mae_mps', 1)} | {cell(label, 'mae', 4)} | {cell(label, 'ssim', 3)} | "
              f"{change} | {cpu:.0f} |")
    Path(args.out).write_text(json.dumps({"steps": args.steps, "best": best, "results": results}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
