"""Evaluate a trained model on any data config, and check that a checkpoint fits a config.

``fwi-run test RUN_DIR|CKPT [EXPERIMENT.yaml] [key=value ...]`` walks::

    checkpoint = find_checkpoint(target)        # a run folder's best (else last) checkpoint
    cfg = evaluation_config(checkpoint, file, overrides)   # the run's config.yaml when no file
    run = Run.build(cfg, checkpoint=checkpoint)  # paradigm from the checkpoint, data from cfg
    run.evaluate()                               # trainer.test only: never trains

The paradigm is loaded with ``load_from_checkpoint`` and keeps the checkpoint's data
normalisation (``Problem.data_range``); the data module is built from the config, and
its survey and velocity range must equal the checkpoint's. The run folder gets
``summary.json``, ``samples.csv`` (one row per test sample) and the test figures.

The same checks guard ``resume``: `changed_settings` lists the ``model``/``data`` keys
that differ from the resumed run's ``config.yaml``, and `check_state_dict` turns a
checkpoint of another network into one line instead of a ``load_state_dict`` traceback.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

import torch
from lightning.pytorch.callbacks import Callback

from fwi_lightning.errors import ConfigError
from fwi_lightning.metrics.velocity import largest_window, structural_similarity
from fwi_lightning.problem import Problem

#: Config sections a checkpoint was trained with; resume refuses changes to them.
GUARDED_SECTIONS = ("model", "data")
#: Per-sample metrics in ``samples.csv``, after ``index`` and ``family``.
SAMPLE_COLUMNS = ("mae", "rmse", "ssim", "mae_mps", "rmse_mps")
SAMPLES_FILE = "samples.csv"


# ---------------------------------------------------------------------------
# Finding the checkpoint and its run's config


def find_checkpoint(target: str | Path) -> Path:
    """The checkpoint to evaluate: a ``.ckpt`` file, or a run folder's best checkpoint
    (``summary.json``'s ``best_checkpoint``, else ``checkpoints/best-*.ckpt``, else
    ``checkpoints/last.ckpt``).

    Raises:
        ConfigError: nothing to evaluate there, or not a readable checkpoint.
    """
    import json
    import zipfile

    path = Path(target)
    if path.is_dir():
        found = None
        summary = path / "summary.json"
        if summary.is_file():
            best = json.loads(summary.read_text()).get("best_checkpoint")
            found = Path(best) if best and Path(best).is_file() else None
        if found is None:
            best = sorted((path / "checkpoints").glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
            found = best[-1] if best else path / "checkpoints" / "last.ckpt"
        path = found
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}; give a .ckpt file or a run folder holding checkpoints/", file=str(target))
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path} is not a readable checkpoint (corrupt or not written by torch.save)", file=str(target))
    return path


def run_config_file(checkpoint: Path) -> Path | None:
    """The ``config.yaml`` of the run folder a checkpoint was written into, if there is one."""
    candidates = [checkpoint.parent / "config.yaml"]
    if checkpoint.parent.name == "checkpoints":
        candidates.insert(0, checkpoint.parent.parent / "config.yaml")
    return next((c for c in candidates if c.is_file()), None)


def evaluation_config(checkpoint: Path, file: str | None, overrides: list[str]):
    """The config of an evaluation: `file` (default: the checkpoint's run ``config.yaml``)
    with `overrides` on top; ``resume`` is cleared and the run is named ``<name>-test``.

    Raises:
        ConfigError: no file given and no ``config.yaml`` next to the checkpoint.
    """
    from fwi_lightning.config import load_config

    if file is None:
        found = run_config_file(checkpoint)
        if found is None:
            raise ConfigError(
                f"no config.yaml in the run folder of {checkpoint}; give the experiment file: fwi-run test {checkpoint} EXPERIMENT.yaml",
                file=str(checkpoint),
            )
        file = str(found)
    cfg = load_config(file, overrides)
    cfg.values["resume"] = None
    if not any(item.startswith("name=") for item in overrides):
        cfg.values["name"] = f"{cfg.values['name']}-test"
    return cfg


# ---------------------------------------------------------------------------
# Checks of a checkpoint against a config


_MISSING = object()


def flatten_keys(values: Any, prefix: str) -> dict[str, Any]:
    """Dotted key -> leaf value (a mapping flattens; anything else is a leaf)."""
    if isinstance(values, Mapping) and values:
        out: dict[str, Any] = {}
        for key, value in values.items():
            out.update(flatten_keys(value, f"{prefix}.{key}"))
        return out
    return {prefix: values}


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str) -> list[str]:
    """Dotted keys whose values differ between two nested mappings (sorted); a key set in
    only one of them differs too."""
    a, b = flatten_keys(old, prefix), flatten_keys(new, prefix)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))


def changed_settings(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Keys of the `GUARDED_SECTIONS` (model, data with its survey) that differ between an
    earlier run's resolved config and this one."""
    found: list[str] = []
    for section in GUARDED_SECTIONS:
        found += differences(previous.get(section) or {}, current.get(section) or {}, section)
    return found


def describe_keys(keys: list[str], limit: int = 4) -> str:
    """'a, b, c' or 'a, b, c, d and 3 more'."""
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, key: str, fix: str) -> None:
    """Refuse a checkpoint whose weights do not fit `model` (other network, width, paradigm).

    Raises:
        ConfigError: at `key`, naming the first missing, unexpected or mis-shaped weight and `fix`.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if not (missing or unexpected or shapes):
        return
    if shapes:
        k = shapes[0]
        what = f"weight '{k}' is {list(state[k].shape)} in the checkpoint but {list(own[k].shape)} in this model"
    else:
        what = f"{len(missing)} weights missing (e.g. '{missing[0]}')" if missing else ""
        if unexpected:
            what += ("; " if what else "") + f"{len(unexpected)} unexpected (e.g. '{unexpected[0]}')"
    raise ConfigError(f"the checkpoint holds another network than this config builds: {what}; {fix}", key=key)


def check_problem(trained: Problem, current: Problem) -> None:
    """The data must have the survey and velocity range the checkpoint was trained on.

    Raises:
        ConfigError: at ``data``, naming the keys that differ with both values.
    """
    old = {"survey": trained.survey.to_dict(), "velocity_range": list(trained.velocity_range)}
    new = {"survey": current.survey.to_dict(), "velocity_range": list(current.velocity_range)}
    a, b = flatten_keys(old, "data"), flatten_keys(new, "data")
    changed = differences(old, new, "data")
    if changed:
        shown = "; ".join(f"{k}: {a.get(k)} in the checkpoint, {b.get(k)} here" for k in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ConfigError(
            f"the data do not match the checkpoint's survey: {shown}{more}; set them as in training (the network's input and output shapes depend on them)",
            key="data",
        )


def check_network(hparams: Mapping[str, Any], model_section: Mapping[str, Any]) -> None:
    """The config's ``model.network`` must be the checkpoint's (when either has one).

    Raises:
        ConfigError: at ``model.network``, naming the keys that differ.
    """
    trained, wanted = hparams.get("network"), model_section.get("network")
    if trained is None and wanted is None:
        return
    changed = differences(trained or {}, wanted or {}, "model.network")
    if changed:
        raise ConfigError(
            f"the checkpoint's network differs from this config's at {describe_keys(changed)} (trained with {trained}); "
            "drop the model section or set it as in training",
            key="model.network",
        )


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents on CPU (the user's own file, as Lightning loads it).

    Raises:
        ConfigError: the file cannot be read as a checkpoint.
    """
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise ConfigError(f"cannot read the checkpoint: {' '.join(str(exc).split())[:200]}", file=str(path)) from None


def load_model(cfg, checkpoint: Path, problem: Problem):
    """The paradigm of ``cfg.values['model']['name']`` with the checkpoint's hyper-parameters
    and weights, on `problem` with the checkpoint's data normalisation.

    `problem` is the evaluation data's (its families label the per-family metrics, its
    operator re-simulates for the data misfit); its survey and velocity range must be
    the checkpoint's, and its data range is replaced by the checkpoint's.

    Raises:
        ConfigError: a checkpoint without hyper-parameters, another survey, or weights of
            another network or paradigm.
    """
    import dataclasses

    from fwi_lightning import registry

    contents = read_checkpoint(checkpoint)
    hparams = contents.get("hyper_parameters") or {}
    try:
        trained = Problem.from_dict(hparams["problem"])
        weights = contents["state_dict"]
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{checkpoint} was not written by an fwi-lightning run (no problem or weights in it)", file=str(checkpoint)) from None
    check_problem(trained, problem)
    check_network(hparams, cfg.values["model"])
    paradigm = registry.load("paradigms", cfg.values["model"]["name"], key="model.name")
    used = dataclasses.replace(problem, data_range=trained.data_range)
    settings = {k: v for k, v in hparams.items() if k != "problem"}
    with registry.located("model"):
        try:
            model = paradigm(problem=used, **settings)
        except TypeError as exc:
            raise ConfigError(f"the checkpoint's settings do not fit paradigm '{cfg.values['model']['name']}' ({exc}); "
                              "evaluate with the paradigm it was trained with", key="name") from None
    check_state_dict(model, weights, key="model",
                     fix=f"evaluate with the config it was trained with (drop the model section or set it as in {run_config_file(checkpoint) or 'its run'})")
    model.on_load_checkpoint(contents)  # as `load_from_checkpoint` does, before the weights
    model.load_state_dict(weights)
    return model


# ---------------------------------------------------------------------------
# Per-sample metrics


def sample_metrics(problem: Problem, prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each sample's velocity errors, on the scales of `fwi_lightning.metrics.velocity`.

    Args:
        problem: velocity range (OpenFWI scale) and grid (SSIM window).
        prediction, target: [B, 1, NZ, NX] velocity in m/s.

    Returns:
        [B] tensors ``mae``, ``rmse`` (on [-1, 1]), ``ssim`` (on [0, 1]), ``mae_mps``, ``rmse_mps`` (m/s).
    """
    lo, hi = problem.velocity_range
    error = (prediction.detach().double() - target.double()).flatten(1)
    mae_mps = error.abs().mean(dim=1)
    rmse_mps = error.pow(2).mean(dim=1).sqrt()
    unit = [(problem.normalise_velocity(v.detach().float()) + 1.0) / 2.0 for v in (prediction, target)]
    ssim = structural_similarity(*unit, window=largest_window(11, problem.velocity_shape), sigma=1.5, data_range=1.0)
    scale = 2.0 / (hi - lo)
    return {"mae": mae_mps * scale, "rmse": rmse_mps * scale, "ssim": ssim.double(), "mae_mps": mae_mps, "rmse_mps": rmse_mps}


class SampleMetrics(Callback):
    """Collect `sample_metrics` of every labelled test sample (of every rank); `write`
    saves them as CSV.

    Rows: ``index`` (the data module's sample index), ``family`` (label of
    ``problem.extra["families"]``), then `SAMPLE_COLUMNS`.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch.get("velocity") is None or outputs is None:
            return
        values = sample_metrics(pl_module.problem, outputs, batch["velocity"])
        families = list(pl_module.problem.extra.get("families") or [])
        for b in range(len(outputs)):
            family = int(batch["family"][b]) if "family" in batch else None
            row = {
                "index": int(batch["index"][b]) if "index" in batch else len(self.rows),
                "family": families[family] if family is not None and family < len(families) else family,
            }
            row.update({name: float(values[name][b]) for name in SAMPLE_COLUMNS})
            self.rows.append(row)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        """Under several processes each rank scored its own samples: collect them all."""
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, self.rows)
            self.rows = [row for rows in gathered for row in rows]

    def write(self, path: Path) -> Path:
        """Write the rows, sorted by index, to `path`."""
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["index", "family", *SAMPLE_COLUMNS])
            writer.writeheader()
            writer.writerows(sorted(self.rows, key=lambda r: r["index"]))
        return path
