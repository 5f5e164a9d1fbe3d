"""Run an experiment: build every component from a validated config, fit, test, summarise.

The one walk from YAML to results::

    cfg = load_config(file, overrides); validate(cfg)
    run = Run.build(cfg)          # seed, data module, paradigm, callbacks, loggers, trainer
    run.fit(); run.test()         # fit, then test the best checkpoint
    run.write_summary()           # <run dir>/summary.json

The run folder (``<run_dir>/<group>/<name>-<timestamp>/``) holds the resolved
``config.yaml``, ``metrics.csv``, ``checkpoints/`` (best and last), ``figures/`` and
``summary.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fwi_lightning.config import Config
from fwi_lightning.errors import ConfigError


def make_run_dir(cfg: Config) -> Path:
    """Create a new, empty run folder; never reuse or overwrite an existing one.

    Raises:
        ConfigError: the folder cannot be created or written (before any training).
    """
    v = cfg.values
    root = Path(v["run_dir"]) / v["group"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        run_dir = root / (f"{v['name']}-{stamp}" + (f"-{attempt}" if attempt else ""))
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot create the run folder {run_dir}: {exc.strerror}; set run_dir to a writable folder", key="run_dir", file=cfg.origin("run_dir")) from None
        if not os.access(run_dir, os.W_OK):
            raise ConfigError(f"run folder {run_dir} is not writable; set run_dir to a writable folder", key="run_dir", file=cfg.origin("run_dir"))
        return run_dir
    raise ConfigError(f"could not find a free run folder name under {root}", key="run_dir", file=cfg.origin("run_dir"))


def versions() -> dict[str, str]:
    """Versions of the framework, its core dependencies and every plugin distribution loaded."""
    from importlib import metadata

    from fwi_lightning import registry

    found = {}
    for dist in ("fwi-lightning", "torch", "lightning", "deepwave", *sorted(registry.loaded_distributions)):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = registry.loaded_distributions.get(dist, "?")
    return found


def _show_progress() -> bool:
    """Rich progress bars in a terminal; quiet in CI logs and pipes."""
    return sys.stderr.isatty() and not os.environ.get("CI")


@dataclass
class Run:
    """Everything built for one experiment."""

    cfg: Config
    run_dir: Path
    datamodule: Any
    model: Any
    trainer: Any
    notices: list[str] = field(default_factory=list)
    results: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(cls, cfg: Config, *, run_dir: Path | None = None) -> "Run":
        """Seed, then build data module, paradigm, callbacks, loggers and trainer."""
        import lightning.pytorch as pl
        from omegaconf import OmegaConf

        from fwi_lightning import registry

        v = cfg.values
        pl.seed_everything(v["seed"], workers=True, verbose=False)
        run_dir = run_dir or make_run_dir(cfg)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(v)))
        datamodule = registry.build("datamodules", v["data"], key="data", seed=v["seed"])
        model = registry.build("paradigms", v["model"], key="model", problem=datamodule.problem)
        callbacks = [built for built, _ in registry.build_mapping("callbacks", v.get("callbacks"), key="callbacks").values()]
        callbacks += _checkpoint_callbacks(v.get("checkpoint") or {}, run_dir)
        if _show_progress():
            from lightning.pytorch.callbacks import RichProgressBar

            callbacks.append(RichProgressBar())
        from fwi_lightning.logging import make_loggers

        loggers, notice = make_loggers(v.get("logger"), run_dir, run_dir.name, v)
        trainer_args = dict(v.get("trainer") or {})
        trainer_args.setdefault("enable_progress_bar", _show_progress())
        trainer_args.setdefault("enable_model_summary", _show_progress())
        trainer = pl.Trainer(default_root_dir=str(run_dir), logger=loggers, callbacks=callbacks, **trainer_args)
        return cls(cfg, run_dir, datamodule, model, trainer, [notice] if notice else [])

    def fit(self) -> None:
        self.trainer.fit(self.model, datamodule=self.datamodule)

    def test(self) -> dict[str, float]:
        """Test the best checkpoint (the last weights when none was saved)."""
        ckpt = "best" if self.best_checkpoint() else None
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=False)
        self.results = {k: float(v) for r in results for k, v in r.items()}
        return self.results

    def best_checkpoint(self) -> str | None:
        cb = self.trainer.checkpoint_callback
        return (cb.best_model_path or None) if cb is not None else None

    def write_summary(self) -> Path:
        """``summary.json``: final metrics, best checkpoint, seed, versions."""
        summary = {
            "name": self.cfg.values["name"],
            "group": self.cfg.values["group"],
            "config_file": str(self.cfg.file) if self.cfg.file else None,
            "seed": self.cfg.values["seed"],
            "metrics": dict(sorted(self.results.items())),
            "best_checkpoint": self.best_checkpoint(),
            "best_score": _as_float(getattr(self.trainer.checkpoint_callback, "best_model_score", None)),
            "epochs": self.trainer.current_epoch,
            "global_step": self.trainer.global_step,
            "versions": versions(),
        }
        path = self.run_dir / "summary.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        tmp.replace(path)
        return path


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _checkpoint_callbacks(settings: dict[str, Any], run_dir: Path) -> list[Any]:
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt_dir = run_dir / "checkpoints"
    return [
        ModelCheckpoint(
            dirpath=str(ckpt_dir),
            filename="best-{epoch}-{step}",
            monitor=settings.get("monitor", "val/loss"),
            mode=settings.get("mode", "min"),
            save_top_k=settings.get("save_top_k", 1),
            save_last=settings.get("save_last", True),
            every_n_train_steps=settings.get("every_n_train_steps"),
            auto_insert_metric_name=False,
        )
    ]


def count_parameters(model: Any) -> int:
    """Number of trainable parameters of a module."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def dry_run(cfg: Config) -> dict[str, Any]:
    """Build every component without training; return a summary (nothing is written)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fwi-dry-run-") as tmp:
        run = Run.build(cfg, run_dir=Path(tmp))
        problem = run.datamodule.problem
        return {
            "paradigm": cfg.values["model"]["name"],
            "network": (cfg.values["model"].get("network") or {}).get("name"),
            "datamodule": cfg.values["data"]["name"],
            "data shape [S,T,R]": list(problem.data_shape),
            "velocity shape [NZ,NX]": list(problem.velocity_shape),
            "velocity range m/s": list(problem.velocity_range),
            "parameters": count_parameters(run.model),
            "callbacks": [type(c).__name__ for c in run.trainer.callbacks],
            "loggers": [type(lg).__name__ for lg in run.trainer.loggers],
        }
