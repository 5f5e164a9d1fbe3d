"""Cost and gradient error of the physics loss on OpenFWI-size models.

For each setting the script measures, per model (70 x 70 cells at 10 m, 5 shots, 70
receivers, 1000 samples at 1 ms, 15 Hz Ricker; flatvel models at 1500-4500 m/s,
predicted as the true model box-blurred over 9 x 9 cells):

* ``forward s``: one re-simulation without gradient (what producing the data costs);
* ``fwd+bwd s``: the loss (relative L2 misfit against the noise-free data of the
  ``fast`` pipeline) and its backward pass to the predicted velocity;
* ``ratio``: fwd+bwd over the data pipeline's forward (the ``fast`` row's ``forward s``);
* ``peak MB``: peak resident memory of the fwd+bwd above what the process held after a
  no-gradient forward, per model (``resource.getrusage`` ru_maxrss, measured in a fresh
  process per setting, so one setting's peak never hides another's);
* ``grad err``: ``||g - g_ref|| / ||g_ref||`` over all models' velocity gradients, with
  g_ref the gradient of the same numerics at sampling interval 1 (the setting's own
  exact quadrature), and against plain deepwave.

Settings: ``plain``: deepwave's defaults (``numerics: accurate``: Courant 0.6, PML 20,
two steps per 1 ms sample up to 4500 m/s) with every sample in the gradient;
``fast, interval 1``: the data's ``fast`` numerics (Courant 0.7, PML 10, one step per
sample), every sample; ``fast, interval 5``: every 5th sample; ``default``: the physics
loss's defaults on ``fast`` data (gradient sampling interval 10, the aliasing limit
being 13); ``default, 2 shots``: its random subset of 2 of the 5 shots per step.

Targets (issue "Step 13"): forward+backward at most 2x one forward, at most 100 MB per
model, at most 0.1 % gradient error.

Usage: python benchmarks/physics_loss.py [--models 4] [--rounds 2]

Measured 2026-12-03 on this shared 2-core machine (Intel Xeon), one torch thread, 4
models, best of 2 rounds, load average 1.96 -> 2.68 (other jobs running): per model,
plain deepwave 1.21 s fwd+bwd (23.5x the data's 0.051 s forward), 266 MB; the loss's
defaults (interval 10) 0.194 s (3.8x), 23 MB, gradient error 4.6e-4 %; with ``shots: 2``
0.075 s (1.45x), 7 MB. The full table: benchmarks/README.md, "Physics loss".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

#: name -> (numerics of the loss's problem, physics loss parameters)
SETTINGS = {
    "plain": ("accurate", {"model_gradient_sampling_interval": 1, "step_buckets": False}),
    "fast, interval 1": ("fast", {"model_gradient_sampling_interval": 1}),
    "fast, interval 5": ("fast", {"model_gradient_sampling_interval": 5}),
    "default": ("fast", {}),
    "default, 2 shots": ("fast", {"shots": 2}),
}
SIZES = {"train": 64, "val": 1, "test": 1}


def peak_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(name: str, models: int, rounds: int, out: str) -> None:
    """One setting, in this (fresh) process: print a JSON line, save the gradient to `out`."""
    from fwi_lightning import registry
    from fwi_lightning.data.simulated import SimulatedDataModule

    torch.set_num_threads(1)
    numerics, params = SETTINGS[name]
    common = dict(seed=0, families={"flatvel": 1.0}, sizes=SIZES, batch_size=models, num_workers=0, simulate_on="workers",
                  reference_size=2)
    data = SimulatedDataModule(numerics="fast", **common)
    batch = next(iter(data.train_dataloader()))
    batch = data.on_after_batch_transfer(batch, 0)
    problem = data.problem if numerics == "fast" else SimulatedDataModule(numerics=numerics, **common).problem
    loss = registry.build("losses", {"name": "physics", "misfit": "l2", **params}, key="losses.physics", problem=problem)
    prediction = torch.nn.functional.avg_pool2d(batch["velocity"], 9, stride=1, padding=4, count_include_pad=False)
    operator = problem.forward_operator()

    forward, backward = [], []
    with torch.no_grad():
        operator(prediction, simulator=loss.simulator)  # warm-up, and the baseline memory
    baseline = peak_mb()
    for _ in range(rounds):
        start = time.perf_counter()
        with torch.no_grad():
            operator(prediction, simulator=loss.simulator)
        forward.append(time.perf_counter() - start)
        v = prediction.clone().requires_grad_(True)
        start = time.perf_counter()
        loss({"velocity": v}, batch).backward()
        backward.append(time.perf_counter() - start)
    torch.save(v.grad, out)
    print(json.dumps({"forward_s": min(forward) / models, "fwd_bwd_s": min(backward) / models,
                      "peak_mb": (peak_mb() - baseline) / models, "interval": loss.simulator.model_gradient_sampling_interval}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--setting", help=argparse.SUPPRESS)  # the child process's one setting
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setting:
        measure(args.setting, args.models, args.rounds, args.out)
        return

    print(f"load average at start: {os.getloadavg()[0]:.2f}; {args.models} models, best of {args.rounds} rounds")
    results, grads = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(SETTINGS):
            out = os.path.join(tmp, f"{i}.pt")
            command = [sys.executable, __file__, "--setting", name, "--out", out, "--models", str(args.models),
                       "--rounds", str(args.rounds)]
            lines = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()
            results[name], grads[name] = json.loads(lines[-1]), torch.load(out)

    def error(name: str, reference: str) -> float:
        return float((grads[name] - grads[reference]).norm() / grads[reference].norm())

    data_forward = results["fast, interval 1"]["forward_s"]
    print("| setting | interval | forward s | fwd+bwd s | fwd+bwd / own forward | fwd+bwd / data forward (target <= 2) "
          "| peak MB (target <= 100) | grad err vs interval 1 (target <= 0.1 %) | grad err vs plain |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        own = "plain" if name == "plain" else "fast, interval 1"
        subset = "shots" in SETTINGS[name][1]  # another loss (2 of 5 shots): its gradient is not an approximation
        errors = ("n/a", "n/a") if subset else (f"{100 * error(name, own):.2g} %", f"{100 * error(name, 'plain'):.2f} %")
        print(f"| {name} | {r['interval']} | {r['forward_s']:.3f} | {r['fwd_bwd_s']:.3f} | {r['fwd_bwd_s'] / r['forward_s']:.2f} "
              f"| {r['fwd_bwd_s'] / data_forward:.2f} | {r['peak_mb']:.0f} | {errors[0]} | {errors[1]} |")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
