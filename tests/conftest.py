"""Shared fixtures: W&B off, the shared data folder, and fake plugin distributions."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
if SHARED_DATA.is_dir():
    os.environ.setdefault("FWI_LIGHTNING_DATA", str(SHARED_DATA))


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """Install a fake distribution on sys.path: `make(dist, version, entry_points, modules)`.

    `entry_points` maps a group suffix to {name: "module:attr"}; `modules` maps a module
    name to its source. Both land in a fresh folder prepended to sys.path, exactly as an
    installed plugin's dist-info and code would.
    """
    made = []

    def make(dist: str, version: str = "1.0", entry_points: dict | None = None, modules: dict | None = None) -> Path:
        root = tmp_path / f"site-{dist}"
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        lines = []
        for group, items in (entry_points or {}).items():
            lines.append(f"[fwi_lightning.{group}]")
            lines += [f"{name} = {target}" for name, target in items.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        for module, source in (modules or {}).items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(root))
        made.append(root)
        return root

    yield make
    for root in made:
        for module in [m for m, mod in sys.modules.items() if getattr(mod, "__file__", "") and str(root) in str(mod.__file__)]:
            del sys.modules[module]


def pytest_configure(config):
    """One torch thread per test process: the tests' tensors are tiny, and on a 2-core
    machine thread hand-offs cost more than they give (measured: 13 s vs 113 s for the
    network/loss/metric tests under load)."""
    import torch

    torch.set_num_threads(1)
