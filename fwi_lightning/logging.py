"""Experiment trackers: Weights & Biases (offline without credentials) and the run folder's CSV.

Metrics are namespaced ``train/...``, ``val/...``, ``test/...`` by the paradigms; the W&B
logger here declares a best-value summary for each (``max`` for SSIM-like scores,
``min`` for errors and losses) the first time it sees it, so W&B tables compare best values.

A W&B run carries what its dashboards group and filter by: ``group`` (the experiment
group), ``tags``, ``job_type`` (``train`` for ``fwi-run FILE``, ``evaluate`` for
``fwi-run test``, or the YAML's), and the full config with every component's defaults.
Its test ends with ``test/samples``, a table of one row per test sample (`SampleTable`):
index, family (or domain), velocity errors, SSIM and a thumbnail of true | predicted
velocity, so a dashboard compares runs by geology.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from fwi_lightning.evaluate import SAMPLE_COLUMNS, SampleMetrics

#: Substrings of metric names where larger is better.
HIGHER_IS_BETTER = ("ssim", "accuracy", "psnr", "r2")


def summary_mode(metric: str) -> str:
    """'max' for scores where larger is better, else 'min'."""
    leaf = metric.rsplit("/", 1)[-1].lower()
    return "max" if any(s in leaf for s in HIGHER_IS_BETTER) else "min"


def has_wandb_credentials() -> bool:
    """True when an API key is in the environment or in ~/.netrc for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_mode(requested: str | None) -> tuple[str, str | None]:
    """The W&B mode to use and a one-line notice when it had to fall back to offline."""
    if requested:
        return requested, None
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"], None
    if has_wandb_credentials():
        return "online", None
    return "offline", "wandb: no credentials found, logging offline (sync later with `wandb sync <run dir>/wandb/offline-run-*`)"


def full_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config with every component's unset parameters at their defaults
    (`fwi_lightning.listing.with_defaults`), or as given when a component cannot be loaded."""
    from fwi_lightning.errors import FWIError
    from fwi_lightning.listing import with_defaults

    try:
        return with_defaults(config)
    except FWIError:
        return dict(config)


def make_loggers(logger_cfg: dict[str, Any] | None, run_dir: Path, run_name: str, config: dict[str, Any],
                 job_type: str = "train") -> tuple[list[Any], str | None]:
    """The run's loggers: always a CSV logger writing ``metrics.csv`` into the run folder,
    plus W&B when asked, with `job_type` unless the logger section sets one.
    Returns (loggers, notice line or None)."""
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name="", version="")]
    if not logger_cfg or logger_cfg.get("name") != "wandb":
        return loggers, None
    mode, notice = wandb_mode(logger_cfg.get("mode"))
    if mode == "disabled":
        return loggers, notice
    os.environ.setdefault("WANDB_SILENT", "true")  # W&B's own banner; the notice says what matters
    loggers.append(
        _wandb_logger_class()(
            project=logger_cfg.get("project", "fwi-lightning"),
            entity=logger_cfg.get("entity"),
            group=logger_cfg.get("group") or config.get("group"),
            tags=list(logger_cfg.get("tags") or []),
            notes=logger_cfg.get("notes"),
            job_type=logger_cfg.get("job_type") or job_type,
            name=run_name,
            save_dir=str(run_dir),
            mode=mode,
            config=full_config(config),
        )
    )
    return loggers, notice


def _is_scalar(value: Any) -> bool:
    """A number or a one-element tensor (not an image or table logged through `log_metrics`)."""
    import numbers

    return isinstance(value, numbers.Number) or (hasattr(value, "numel") and value.numel() == 1)


def _wandb_logger_class() -> type:
    from lightning.pytorch.loggers import WandbLogger

    class FWIWandbLogger(WandbLogger):
        """W&B logger that declares a min/max summary for every new metric, and logs the
        resolved config once (at init) instead of the module's hyper-parameters."""

        _defined: set[str]

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            # Lightning always passes `anonymous`, even unset, and W&B answers with a
            # deprecation line of its own; leave it out so the notice stays the one line.
            if self._wandb_init.get("anonymous") is None:
                self._wandb_init.pop("anonymous", None)

        def log_hyperparams(self, params: Any) -> None:  # config went in at init
            return None

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            defined = self.__dict__.setdefault("_defined", set())
            for key, value in metrics.items():
                if key not in defined and "/" in key and _is_scalar(value):
                    self.experiment.define_metric(key, summary=summary_mode(key))
                    defined.add(key)
            super().log_metrics(metrics, step)

    return FWIWandbLogger


def tracker_callbacks(loggers: list[Any]) -> list[Any]:
    """Callbacks the trackers need: a `SampleTable` when a W&B logger is among `loggers`."""
    if any(type(logger).__name__.endswith("WandbLogger") for logger in loggers):
        return [SampleTable()]
    return []


def thumbnail(true: Any, predicted: Any, velocity_range: tuple[float, float]) -> Any:
    """True | predicted velocity [NZ, NX] m/s side by side as an RGB uint8 image [NZ, 2 NX + 1, 3]
    (viridis over `velocity_range`, a white column between)."""
    import numpy as np
    from matplotlib import colormaps

    lo, hi = velocity_range
    gap = np.full((true.shape[0], 1), np.nan)
    joined = np.concatenate([true, gap, predicted], axis=1)
    rgba = colormaps["viridis"](np.clip((joined - lo) / (hi - lo), 0.0, 1.0))
    rgba[np.isnan(joined)] = 1.0
    return (rgba[..., :3] * 255).round().astype(np.uint8)


class SampleTable(SampleMetrics):
    """The per-sample test metrics of `fwi_lightning.evaluate.SampleMetrics`, with the batch's
    ``domain`` (combined source/target data) and a thumbnail for the first `max_images`
    samples, logged to every W&B logger as the table ``test/samples`` at the end of testing.

    Args:
        max_images: samples that get a thumbnail (the rest a blank cell).
    """

    def __init__(self, max_images: int = 64) -> None:
        super().__init__()
        self.max_images = max_images

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        start = len(self.rows)
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        for b, row in enumerate(self.rows[start:]):
            row["domain"] = batch.get("domain")
            row["thumbnail"] = None
            if start + b < self.max_images:
                row["thumbnail"] = thumbnail(batch["velocity"][b, 0].float().cpu().numpy(),
                                             outputs[b, 0].detach().float().cpu().numpy(), pl_module.problem.velocity_range)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        super().on_test_epoch_end(trainer, pl_module)
        if trainer.is_global_zero and self.rows:
            import wandb

            columns = ["index", "family", "domain", *SAMPLE_COLUMNS, "thumbnail"]
            data = [[row["index"], row["family"], row.get("domain"), *(row[c] for c in SAMPLE_COLUMNS),
                     None if row.get("thumbnail") is None else wandb.Image(row["thumbnail"])]
                    for row in sorted(self.rows, key=lambda r: r["index"])]
            for logger in trainer.loggers:
                if type(logger).__name__.endswith("WandbLogger"):
                    logger.experiment.log({"test/samples": wandb.Table(columns=columns, data=data)})
        self.rows = []
