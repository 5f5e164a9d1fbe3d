"""What a resumed run needs beyond Lightning's own checkpoint contents.

The runner adds both callbacks to every experiment, so that a run killed at any step
and resumed (``resume=last`` or ``resume=PATH``) continues exactly as the uninterrupted
run would have (``tests/test_resume.py``).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint


class RandomState(Callback):
    """Save the global random generators (Python, NumPy, torch CPU and CUDA) with each
    checkpoint and restore them on resume, so dropout masks, noise draws and random
    augmentations after the resume point match the uninterrupted run."""

    def state_dict(self) -> dict[str, Any]:
        """The generator states as tensors and plain values (loadable with ``weights_only``)."""
        name, keys, position, has_gauss, gauss = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss)),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        name, keys, position, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class RunCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` that carries its record of the best checkpoints into a resumed
    run's new folder.

    A resumed run writes to a new run folder, and Lightning's `ModelCheckpoint` forgets
    its best-k scores when the folder changes: the first validation after the resume
    would then count as the best whatever its score, and the final test could use a
    different checkpoint than the uninterrupted run. Here the earlier run's best-k files
    are linked (or copied) into the new folder and the record continues from them; the
    earlier run's files are never touched.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        previous = state_dict.get("dirpath")
        if previous is not None and self.dirpath is not None and Path(previous).resolve() != Path(self.dirpath).resolve():
            state_dict = self._adopt(state_dict)
        super().load_state_dict(state_dict)

    def _adopt(self, state: dict[str, Any]) -> dict[str, Any]:
        """`state` with its best-k files brought into this callback's folder."""
        folder = Path(self.dirpath)
        folder.mkdir(parents=True, exist_ok=True)
        moved: dict[str, str] = {}
        for old in state.get("best_k_models", {}):
            source = Path(old)
            if source.is_file():
                target = folder / source.name
                _link_or_copy(source, target)
                moved[old] = str(target)
        best_k = {moved[old]: score for old, score in state.get("best_k_models", {}).items() if old in moved}
        best = moved.get(state.get("best_model_path", ""), "")
        return {
            **state,
            "dirpath": self.dirpath,
            "best_k_models": best_k,
            "best_model_path": best,
            "best_model_score": state.get("best_model_score") if best else None,
            "kth_best_model_path": moved.get(state.get("kth_best_model_path", ""), ""),
            "kth_value": state.get("kth_value") if best_k else self.kth_value,
            "last_model_path": "",
        }


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link `source` to `target` (no extra disk), copying across file systems."""
    try:
        os.link(source, target)
    except FileExistsError:  # brought in already (by another rank, or an earlier attempt)
        return
    except OSError:
        shutil.copy2(source, target)
