"""Figures during training: velocity comparisons, a test gallery and training curves.

Saved as PNG under ``<trainer.default_root_dir>/figures/`` (the run folder) whatever
the logger, and also sent to W&B when the trainer has a `WandbLogger`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from fwi_lightning import plotting
from fwi_lightning.errors import ConfigError


class VelocityFigures(Callback):
    """Plot true / predicted / difference velocity and a shot gather for fixed validation samples.

    The gather is the middle shot after automatic gain control, clipped at a percentile
    (`plotting.agc`, `plotting.GATHER_CLIP_PERCENTILE`), so reflections show beside the
    direct wave.

    Every `every_n_epochs` validation epochs: ``figures/val_epoch<E>.png`` for the first
    `n_samples` of the first validation batch (the same samples each time). At the
    end of testing: ``figures/test_gallery.png`` from the first test batch. At the end
    of fitting: ``figures/training_curves.png`` from the epoch-level logged losses and
    validation metrics.

    Args:
        every_n_epochs: plot validation figures every N epochs (>= 1).
        n_samples: samples per figure (>= 1).
    """

    def __init__(self, every_n_epochs: int = 1, n_samples: int = 4):
        for key, value in (("every_n_epochs", every_n_epochs), ("n_samples", n_samples)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"expected a positive integer, got {value!r}", key=key)
        self.every_n_epochs = every_n_epochs
        self.n_samples = n_samples
        self.samples: dict[str, dict[str, torch.Tensor]] = {}
        self.history: dict[str, list[tuple[int, float]]] = defaultdict(list)

    # -- sample capture ------------------------------------------------------------

    def _capture(self, stage: str, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        if stage in self.samples or batch_idx != 0 or dataloader_idx != 0 or batch.get("velocity") is None:
            return
        self.samples[stage] = {k: batch[k][: self.n_samples].detach().cpu() for k in ("data", "velocity")}

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._capture("val", batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._capture("test", batch, batch_idx, dataloader_idx)

    # -- figures ---------------------------------------------------------------------

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or "val" not in self.samples or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        epoch = trainer.current_epoch
        self._plot(trainer, pl_module, "val", f"val_epoch{epoch:03d}.png", f"validation, epoch {epoch}")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if "test" in self.samples:
            self._plot(trainer, pl_module, "test", "test_gallery.png", "test")
        self.samples.pop("test", None)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for name, value in trainer.callback_metrics.items():
            if name.startswith(("train/", "val/")) and value.numel() == 1:
                self.history[name].append((trainer.current_epoch, float(value)))

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.history:
            self._publish(trainer, plotting.training_curves(self.history), "training_curves.png", "figures/training_curves")

    def _plot(self, trainer, pl_module, stage: str, filename: str, title: str) -> None:
        if not trainer.is_global_zero:
            return
        sample = self.samples[stage]
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            predicted = pl_module(sample["data"].to(pl_module.device)).float().cpu()
        pl_module.train(was_training)
        fig = plotting.velocity_comparison(
            pl_module.problem, sample["velocity"][:, 0].numpy(), predicted[:, 0].numpy(), sample["data"].numpy(), title
        )
        self._publish(trainer, fig, filename, f"figures/{stage}")

    @staticmethod
    def _publish(trainer, fig, filename: str, key: str) -> Path:
        """Save under the run folder's figures/ and log to every W&B logger."""
        from lightning.pytorch.loggers import WandbLogger

        path = plotting.save(fig, Path(trainer.default_root_dir) / "figures" / filename)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
        return path
