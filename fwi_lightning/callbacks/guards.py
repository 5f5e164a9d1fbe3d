"""Always-on run guards the runner adds to every experiment."""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch.callbacks import Callback

from fwi_lightning.errors import FWIError


class NonFiniteLossError(FWIError):
    """Training produced a NaN or infinite loss."""


class NonFiniteLossGuard(Callback):
    """Stop the run with one clear message when the training loss is NaN or infinite.

    Raised before any checkpoint of the bad step is written, so ``last.ckpt`` keeps the
    last good state.
    """

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        if not math.isfinite(value):
            last = getattr(trainer.checkpoint_callback, "dirpath", None)
            raise NonFiniteLossError(
                f"training loss became {value} at epoch {trainer.current_epoch}, step {trainer.global_step}; "
                f"the run stopped and its last good checkpoint is kept in {last}. Lower the learning rate "
                "or check the data (e.g. data.noise, velocity ranges)"
            )
