"""Always-on run guards the runner adds to every experiment."""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch.callbacks import Callback

from fwi_lightning.errors import FWIError


class NonFiniteLossError(FWIError):
    """Training produced a NaN or infinite loss."""


class NonFiniteLossGuard(Callback):
    """Stop the run with one clear message when a training loss is NaN or infinite.

    Checked in ``on_before_backward``, which Lightning calls for the loss of automatic
    optimisation and for every ``manual_backward`` of manual optimisation (a GAN's
    generator and critic losses alike). Raising there stops the step before its
    gradients exist, so no optimiser applies the bad step and no checkpoint of it is
    written: ``last.ckpt`` keeps the last good state.
    """

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
        value = float(loss.detach())
        if not math.isfinite(value):
            last = getattr(trainer.checkpoint_callback, "dirpath", None)
            raise NonFiniteLossError(
                f"training loss became {value} at epoch {trainer.current_epoch}, step {trainer.global_step}; "
                f"the run stopped and its last good checkpoint is kept in {last}. Lower the learning rate "
                "or check the data (e.g. data.noise, velocity ranges)"
            )
