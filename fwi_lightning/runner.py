"""Run an experiment: build every component from a validated config, fit, test, summarise.

The one walk from YAML to results::

    cfg = load_config(file, overrides); validate(cfg)
    run = Run.build(cfg)          # seed, data module, paradigm, callbacks, loggers, trainer
    run.fit(); run.test()         # fit, then test the best checkpoint
    run.write_summary()           # <run dir>/summary.json

An evaluation (``fwi-run test``) builds with ``checkpoint=`` (the paradigm comes from the
checkpoint, see `fwi_lightning.evaluate`) and calls `Run.evaluate` instead of fit/test.

A run that fails before its first checkpoint removes its own folder (`Run.discard`), so
failed starts leave nothing behind; earlier runs' folders are never touched.

The run folder (``<run_dir>/<group>/<name>-<timestamp>/``) holds the resolved
``config.yaml``, ``metrics.csv``, ``checkpoints/`` (best and last), ``figures/`` and
``summary.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fwi_lightning.config import Config
from fwi_lightning.errors import ConfigError


#: Set by rank 0 once its run folder exists; the processes Lightning launches for the
#: other ranks inherit it, so a distributed run writes one folder, not one per rank.
RUN_DIR_ENV = "FWI_LIGHTNING_RUN_DIR"


def _is_worker_rank() -> bool:
    """True in a process that Lightning launched for a rank other than 0."""
    return any(os.environ.get(var, "0") not in ("", "0") for var in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def make_run_dir(cfg: Config) -> Path:
    """Create a new, empty run folder; never reuse or overwrite an existing one.

    In a distributed run only rank 0 creates it; the other ranks use rank 0's.

    Raises:
        ConfigError: the folder cannot be created or written (before any training).
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and _is_worker_rank():
        return Path(inherited)
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
        os.environ[RUN_DIR_ENV] = str(run_dir)  # processes launched for other ranks inherit it
        return run_dir
    raise ConfigError(f"could not find a free run folder name under {root}", key="run_dir", file=cfg.origin("run_dir"))


def resolve_resume(cfg: Config) -> Path | None:
    """The checkpoint to resume from: ``resume: last`` is the newest ``last.ckpt`` of
    this experiment's earlier runs; a run folder means its ``checkpoints/last.ckpt``.

    Raises:
        ConfigError: nothing to resume from, or the file is not a checkpoint.
    """
    import zipfile

    v = cfg.values
    wanted = v.get("resume")
    if wanted is None:
        return None
    if not isinstance(wanted, str):
        raise cfg.error("resume", f"resume must be 'last' or a path, got {wanted!r}")
    if wanted == "last":
        root = Path(v["run_dir"]) / v["group"]
        found = sorted(root.glob(f"{v['name']}-*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise cfg.error("resume", f"no earlier run of '{v['name']}' with checkpoints/last.ckpt under {root}; run it first or give resume=PATH")
        return found[-1]
    path = Path(wanted)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise cfg.error("resume", f"no checkpoint at {path}; give a .ckpt file or a run folder holding checkpoints/last.ckpt")
    if not zipfile.is_zipfile(path):
        raise cfg.error("resume", f"{path} is not a readable checkpoint (corrupt or not written by torch.save)")
    return path


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


def _quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (accelerator lines, tips) and two misleading
    warnings out of the output: the CSV logger's "previous log files will be deleted"
    (the run folder is new; it holds only this run's config.yaml) and an internal
    deprecation of Lightning's own. Other warnings still show."""
    import logging
    import warnings

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")
    # the first ModelCheckpoint is the best-by-monitor one: "best" means what it should
    warnings.filterwarnings("ignore", message=".*called with Trainer configured with multiple `ModelCheckpoint`")


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
    resume_from: Path | None = None
    checkpoint: Path | None = None
    created: bool = False
    started: float = field(default_factory=time.time)

    @classmethod
    def build(cls, cfg: Config, *, run_dir: Path | None = None, checkpoint: Path | None = None,
              allow_changed: bool = False) -> "Run":
        """Seed, then build data module, paradigm, callbacks, loggers and trainer.

        Every error raised while building names the file and the full key it came from.

        Args:
            cfg: the validated config.
            run_dir: use this folder instead of creating a new run folder.
            checkpoint: evaluate this checkpoint: the paradigm is loaded from it
                (`fwi_lightning.evaluate.load_model`) and `evaluate` replaces fit/test.
            allow_changed: let ``resume`` continue although the ``model`` or ``data``
                settings differ from the resumed run's (``--allow-changed-config``).
        """
        with cfg.attributed():
            return cls._build(cfg, run_dir=run_dir, checkpoint=checkpoint, allow_changed=allow_changed)

    @classmethod
    def _build(cls, cfg: Config, *, run_dir: Path | None = None, checkpoint: Path | None = None,
               allow_changed: bool = False) -> "Run":
        import lightning.pytorch as pl

        from fwi_lightning import registry

        v = cfg.values
        _quiet_lightning()
        resume_from = resolve_resume(cfg)
        pl.seed_everything(v["seed"], workers=True, verbose=False)
        datamodule = registry.build("datamodules", v["data"], key="data", seed=v["seed"])
        with registry.located("data"):
            problem = datamodule.problem
        extra_callbacks: list[Any] = []
        notices: list[str] = []
        if resume_from is not None:
            from fwi_lightning.evaluate import check_state_dict, read_checkpoint

            resumed = read_checkpoint(resume_from)
            problem, changed_data = prepare_resume(cfg, resume_from, resumed, problem, allow_changed=allow_changed)
            if changed_data:
                datamodule.load_state_dict = _keep_state  # its saved knobs describe the old data
                notices.append("resuming with changed data: the data module's saved state (knob values) is not restored")
        if checkpoint is not None:
            from fwi_lightning.evaluate import SampleMetrics, load_model

            model = load_model(cfg, checkpoint, problem)
            extra_callbacks.append(SampleMetrics())
        else:
            model = registry.build("paradigms", v["model"], key="model", problem=problem)
        if resume_from is not None:
            check_state_dict(model, resumed.get("state_dict", {}), key="resume",
                             fix="resume from a run of this same model, or start a new run")
        created = run_dir is None
        run_dir = run_dir or make_run_dir(cfg)
        try:
            run = cls._assemble(cfg, run_dir, datamodule, model, resume_from, checkpoint, extra_callbacks, created)
            run.notices += notices
            return run
        except BaseException:
            if created:
                discard_folder(run_dir)
            raise

    @classmethod
    def _assemble(cls, cfg: Config, run_dir: Path, datamodule: Any, model: Any, resume_from: Path | None,
                checkpoint: Path | None, extra_callbacks: list[Any], created: bool) -> "Run":
        """Write config.yaml, then build callbacks, loggers and the trainer into `run_dir`."""
        import lightning.pytorch as pl
        from omegaconf import OmegaConf

        from fwi_lightning import registry

        v = cfg.values
        if not _is_worker_rank():
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(v)))
        callbacks = [built for built, _ in registry.build_mapping("callbacks", v.get("callbacks"), key="callbacks").values()]
        with _lightning_errors("checkpoint", v.get("checkpoint") or {}):
            callbacks += _checkpoint_callbacks(v.get("checkpoint") or {}, run_dir)
        from fwi_lightning.callbacks.guards import NonFiniteLossGuard
        from fwi_lightning.callbacks.resume import RandomState

        callbacks += [NonFiniteLossGuard(), RandomState(), *extra_callbacks]
        progress = _show_progress() and (v.get("trainer") or {}).get("enable_progress_bar", True) is not False
        if progress:
            from lightning.pytorch.callbacks import RichProgressBar

            callbacks.append(RichProgressBar())
        from fwi_lightning.logging import make_loggers, tracker_callbacks

        job_type = "evaluate" if checkpoint is not None else "train"
        loggers, notice = make_loggers(v.get("logger"), run_dir, run_dir.name, v, job_type=job_type)
        callbacks += tracker_callbacks(loggers)
        trainer_args = dict(v.get("trainer") or {})
        trainer_args.setdefault("enable_progress_bar", progress)
        trainer_args.setdefault("enable_model_summary", progress)
        with _lightning_errors("trainer", trainer_args):
            trainer = pl.Trainer(default_root_dir=str(run_dir), logger=loggers, callbacks=callbacks, **trainer_args)
        notices = [notice] if notice else []
        if resume_from is not None:
            notices.append(f"resuming from {resume_from}")
        if checkpoint is not None:
            notices.append(f"evaluating {checkpoint} (no training)")
        return cls(cfg, run_dir, datamodule, model, trainer, notices, resume_from=resume_from, checkpoint=checkpoint, created=created)

    def evaluate(self) -> dict[str, float]:
        """Test the loaded checkpoint on the data module's test split (no training) and
        write ``samples.csv``, one row of velocity metrics per test sample."""
        from fwi_lightning.evaluate import SAMPLES_FILE, SampleMetrics

        results = self.trainer.test(self.model, datamodule=self.datamodule, verbose=False)
        self.results = {k: float(v) for r in results for k, v in r.items()}
        if self.trainer.is_global_zero:
            for callback in self.trainer.callbacks:
                if isinstance(callback, SampleMetrics):
                    callback.write(self.run_dir / SAMPLES_FILE)
        return self.results

    def discard(self) -> bool:
        """Remove this run's folder if it holds no checkpoint this run wrote (a run that
        failed before its first checkpoint); True when removed. Rank 0 only; a folder
        given to `build` and earlier runs' folders are never touched."""
        if not self.created or _is_worker_rank():
            return False
        written = [p for p in (self.run_dir / "checkpoints").glob("*.ckpt") if p.stat().st_mtime >= self.started]
        if written and self.checkpoint is None:
            return False
        discard_folder(self.run_dir)
        return True

    def fit(self) -> None:
        """Fit, continuing from the resumed checkpoint when there is one."""
        self.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=str(self.resume_from) if self.resume_from else None)

    def test(self) -> dict[str, float]:
        """Test the best checkpoint (the last weights when none was saved)."""
        ckpt = "best" if self.best_checkpoint() else None
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=False)
        self.results = {k: float(v) for r in results for k, v in r.items()}
        return self.results

    def close(self) -> None:
        """Finish the trackers (W&B writes its closing lines now, not at exit)."""
        for logger in self.trainer.loggers:
            if type(logger).__name__.endswith("WandbLogger") and getattr(logger, "_experiment", None) is not None:
                logger.experiment.finish()

    def best_checkpoint(self) -> str | None:
        cb = self.trainer.checkpoint_callback
        return (cb.best_model_path or None) if cb is not None else None

    def write_summary(self) -> Path:
        """``summary.json``: final metrics, best checkpoint, seed, versions; for an
        evaluation also the checkpoint evaluated and the per-sample file."""
        summary = {
            "name": self.cfg.values["name"],
            "group": self.cfg.values["group"],
            "config_file": str(self.cfg.file) if self.cfg.file else None,
            "seed": self.cfg.values["seed"],
            "metrics": dict(sorted(self.results.items())),
            "best_checkpoint": self.best_checkpoint(),
            "resumed_from": str(self.resume_from) if self.resume_from else None,
            "best_score": _as_float(getattr(self.trainer.checkpoint_callback, "best_model_score", None)),
            "epochs": self.trainer.current_epoch,
            "global_step": self.trainer.global_step,
            "versions": versions(),
        }
        if self.checkpoint is not None:
            from fwi_lightning.evaluate import SAMPLES_FILE

            summary.update(evaluated_checkpoint=str(self.checkpoint), samples=SAMPLES_FILE, best_checkpoint=None, best_score=None)
        path = self.run_dir / "summary.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        tmp.replace(path)
        return path


def discard_folder(run_dir: Path) -> None:
    """Delete a run folder this process created (rank 0 only)."""
    import shutil

    if not _is_worker_rank():
        shutil.rmtree(run_dir, ignore_errors=True)
        if os.environ.get(RUN_DIR_ENV) == str(run_dir):
            del os.environ[RUN_DIR_ENV]


def prepare_resume(cfg: Config, checkpoint: Path, contents: dict[str, Any], problem: Any, *, allow_changed: bool) -> tuple[Any, bool]:
    """Refuse to resume with other settings; return the problem to build the model on
    (with the checkpoint's data normalisation, from its `contents`) and whether the data
    settings changed.

    The ``model`` and ``data`` sections (survey included) must equal those of the
    resumed run's ``config.yaml`` unless `allow_changed`; trainer, callbacks, logger and
    checkpoint settings may change (e.g. a larger ``max_epochs``).

    Raises:
        ConfigError: at ``resume``, naming the changed keys.
    """
    import dataclasses

    from omegaconf import OmegaConf

    from fwi_lightning.evaluate import changed_settings, describe_keys, run_config_file
    from fwi_lightning.problem import Problem

    changed: list[str] = []
    previous_file = run_config_file(checkpoint)
    if previous_file is not None:
        changed = changed_settings(OmegaConf.to_container(OmegaConf.load(previous_file)) or {}, cfg.values)
        if changed and not allow_changed:
            raise cfg.error(
                "resume",
                f"this config changes {describe_keys(changed)} of the run it resumes ({previous_file}); "
                "resume with that run's settings, start a new run, or pass --allow-changed-config to continue with the changes on purpose",
            )
    saved = (contents.get("hyper_parameters") or {}).get("problem")
    if saved is not None:
        problem = dataclasses.replace(problem, data_range=Problem.from_dict(saved).data_range)
    return problem, any(key.startswith("data.") for key in changed)


def _keep_state(state_dict: dict[str, Any]) -> None:
    """A data module's `load_state_dict` when resuming with changed data: keep the new state."""


@contextmanager
def _lightning_errors(section: str, settings: dict[str, Any]) -> Iterator[None]:
    """A configuration error Lightning raises while building becomes a `ConfigError`
    keyed at the argument of `section` its message names (the section when none)."""
    import re

    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        yield
    except (MisconfigurationException, ValueError, TypeError) as exc:
        message = " ".join(str(exc).split())
        named = [name for name in settings if re.search(rf"\b{re.escape(name)}\b", message)]
        key = f"{section}.{named[0]}" if named else section
        raise ConfigError(f"Lightning rejects this setting: {message}", key=key) from exc


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _checkpoint_callbacks(settings: dict[str, Any], run_dir: Path) -> list[Any]:
    """The best checkpoint(s) by the monitored metric after each validation, and
    ``last.ckpt`` after every epoch and, when asked, every N training steps.

    Lightning writes each checkpoint to a temporary file and renames it, so a kill
    mid-write never leaves a corrupt ``last.ckpt``.
    """
    from fwi_lightning.callbacks.resume import RunCheckpoint

    ckpt_dir = str(run_dir / "checkpoints")
    best = RunCheckpoint(
        dirpath=ckpt_dir,
        filename="best-epoch{epoch}-step{step}",
        monitor=settings.get("monitor", "val/loss"),
        mode=settings.get("mode", "min"),
        save_top_k=settings.get("save_top_k", 1),
        auto_insert_metric_name=False,
    )
    if not settings.get("save_last", True):
        return [best]
    last = RunCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True, every_n_train_steps=settings.get("every_n_train_steps"))
    return [best, last]


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
