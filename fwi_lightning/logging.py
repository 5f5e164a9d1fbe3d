"""Experiment trackers: Weights & Biases (offline without credentials) and the run folder's CSV.

Metrics are namespaced ``train/...``, ``val/...``, ``test/...`` by the paradigms; the W&B
logger here declares a best-value summary for each (``max`` for SSIM-like scores,
``min`` for errors and losses) the first time it sees it, so W&B tables compare best values.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

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


def make_loggers(logger_cfg: dict[str, Any] | None, run_dir: Path, run_name: str, config: dict[str, Any]) -> tuple[list[Any], str | None]:
    """The run's loggers: always a CSV logger writing ``metrics.csv`` into the run folder,
    plus W&B when asked. Returns (loggers, notice line or None)."""
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
            name=run_name,
            save_dir=str(run_dir),
            mode=mode,
            config=config,
        )
    )
    return loggers, notice


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
            for key in metrics:
                if key not in defined and "/" in key:
                    self.experiment.define_metric(key, summary=summary_mode(key))
                    defined.add(key)
            super().log_metrics(metrics, step)

    return FWIWandbLogger
