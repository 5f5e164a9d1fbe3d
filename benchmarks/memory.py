"""Peak memory of one data pass over many OpenFWI-size simulated samples.

Streams `--samples` models (70 x 70, 5 shots x 1000 samples x 70 receivers each: 1.4 MB
of gathers, 34 GB for OpenFWI's 24,000-sample FlatVel set if preloaded) through the
`simulated` data module with ``numerics: fast``, the full 1000 time steps and worker
processes, then reports peak resident memory from ``resource.getrusage``: this process,
and its children (the DataLoader workers, counted once they have exited). Forked workers
share most pages (torch's libraries) with the main process, so adding the RSS peaks
over-counts; the script also samples the proportional set size (PSS, shared pages split
between their users, from /proc/PID/smaps_rollup) of the main process plus its workers
every few batches and reports the largest sum: the memory the pass really occupies.

Usage: python benchmarks/memory.py [--samples 2000] [--workers 2] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import time
from pathlib import Path

from fwi_lightning.data.simulated import SimulatedDataModule
from fwi_lightning.physics import Survey


def peak_mb(who: int) -> float:
    """Peak resident set size in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(who).ru_maxrss / 1024.0


def children(pid: int) -> list[int]:
    """Child process ids of `pid` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def pss_mb(pid: int) -> float:
    """Proportional set size of one process in MB, 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    dm = SimulatedDataModule(
        seed=0, survey=Survey(), families={"flatvel": 1.0, "curvevel": 1.0, "flatfault": 1.0, "curvefault": 1.0},
        sizes={"train": args.samples, "val": 1, "test": 1}, batch_size=args.batch_size, num_workers=args.workers,
        numerics="fast", simulate_on="workers",
    )
    start, seen, gathers, peak_pss = time.perf_counter(), 0, 0, 0.0
    me = os.getpid()
    loader = iter(dm.train_dataloader())
    for step, batch in enumerate(loader):
        seen += batch["data"].shape[0]
        gathers += batch["data"].numel() * batch["data"].element_size()
        if step % 4 == 0:
            peak_pss = max(peak_pss, pss_mb(me) + sum(pss_mb(c) for c in children(me)))
    del loader  # workers exit, so their peaks reach RUSAGE_CHILDREN
    gc.collect()
    elapsed = time.perf_counter() - start
    main_mb, child_mb = peak_mb(resource.RUSAGE_SELF), peak_mb(resource.RUSAGE_CHILDREN)
    print(f"{seen} samples ({gathers / 1e9:.1f} GB of gathers streamed) in {elapsed:.0f} s, {seen / elapsed:.1f} samples/s")
    print(f"peak RSS: main process {main_mb:.0f} MB, largest worker {child_mb:.0f} MB, "
          f"sum of peaks {main_mb + args.workers * child_mb:.0f} MB (over-counts shared pages)")
    print(f"peak PSS of main process + workers together: {peak_pss:.0f} MB")


if __name__ == "__main__":
    main()
