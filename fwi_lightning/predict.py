"""``fwi-run predict RUN|CKPT INPUT``: a trained model's velocity for recorded gathers.

The walk::

    model = load_trained(target)              # paradigm + weights, on the checkpoint's own problem
    gathers = read_gathers(input)             # SEG-Y / npy / npz -> [N, S, T, R]
    data = adapt(gathers, survey, ...)        # select shots / receivers, resample time; else one-line refusal
    velocity = predict_velocity(model, data)  # [N, NZ, NX] m/s
    velocity[0] = refine(...)                 # optional: classical FWI from the prediction (the fwi paradigm)
    write_outputs(prefix, velocity, ...)      # npy, SEG-Y, PNG: temporary names, renamed at the end

The input must have the training survey's geometry (shots, receivers, samples and
sample interval); the model's input shape and the physics behind its weights depend on
it. Options adapt it explicitly; nothing is adapted silently.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.io.gathers import read_gathers
from fwi_lightning.io.segy import DEFAULT_GROUP_BY, Gathers

#: Output formats of `write_outputs`, by file suffix.
FORMATS = ("npy", "segy", "png")
#: Relative tolerance when comparing sample intervals.
DT_TOLERANCE = 1e-6


@dataclass
class PredictOptions:
    """Settings of one prediction (the ``fwi-run predict`` options).

    Attributes:
        output: path prefix of the outputs (``PREFIX.npy`` ...); None: ``INPUT-velocity`` beside the input.
        formats: which of `FORMATS` to write.
        group_by: SEG-Y header grouping traces into shots.
        dt: sample interval in s of npy/npz input, or of SEG-Y without one in its headers.
        npz_key: the array of an npz input.
        shots, receivers: selections (`parse_indices` syntax) applied before the geometry check.
        resample_time: resample to the training sample interval and cut or zero-pad to its length.
        refine_iterations: classical FWI iterations (the ``fwi`` paradigm) from the prediction; 0: none.
        refine_lr: Adam learning rate of the refinement, on the [-1, 1] velocity scale.
        batch_size: samples per network call.
        device: torch device of the network (``cpu``, ``cuda`` ...).
    """

    output: str | None = None
    formats: Sequence[str] = FORMATS
    group_by: str = DEFAULT_GROUP_BY
    dt: float | None = None
    npz_key: str | None = None
    shots: str | None = None
    receivers: str | None = None
    resample_time: bool = False
    refine_iterations: int = 0
    refine_lr: float = 0.01
    batch_size: int = 8
    device: str = "cpu"


# ---------------------------------------------------------------------------
# The model


def load_trained(target: str | Path):
    """The trained paradigm of a run folder or checkpoint, in eval mode, on the checkpoint's own problem.

    The paradigm's name comes from the run's ``config.yaml`` (``supervised`` without one).
    Loading goes through `fwi_lightning.evaluate.load_model`, as ``fwi-run test`` does.

    Raises:
        ConfigError: no checkpoint there, or not one written by fwi-lightning.
    """
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from fwi_lightning.evaluate import find_checkpoint, load_model, read_checkpoint, run_config_file
    from fwi_lightning.problem import Problem

    checkpoint = find_checkpoint(target)
    contents = read_checkpoint(checkpoint)
    hparams = (contents.get("hyper_parameters") if isinstance(contents, dict) else None) or {}
    if "problem" not in hparams:
        raise ConfigError(f"{checkpoint} was not written by an fwi-lightning run (no problem in it)", file=str(checkpoint))
    config = run_config_file(checkpoint)
    name = "supervised"
    if config is not None:
        name = (OmegaConf.to_container(OmegaConf.load(config)).get("model") or {}).get("name") or name
    model_section = {"name": name, "network": hparams.get("network")}
    model = load_model(SimpleNamespace(values={"model": model_section}), checkpoint, Problem.from_dict(hparams["problem"]))
    return model.eval()


# ---------------------------------------------------------------------------
# Geometry


def parse_indices(text: str | None, count: int, what: str) -> list[int] | None:
    """Indices from ``"0,2,4"``, ``"0:10:2"`` (Python slices) or a mix (``"0:3,7"``); None stays None.

    Raises:
        ConfigError: malformed, or an index outside 0..count-1 (key `what`).
    """
    if text is None:
        return None
    chosen: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if ":" in part:
                bounds = [int(b) if b.strip() else None for b in part.split(":")]
                chosen += list(range(count))[slice(*bounds)]
            elif part:
                chosen.append(int(part))
    except ValueError:
        raise ConfigError(f"expected indices like 0,2,4 or 0:10:2, got {text!r}", key=what) from None
    bad = [i for i in chosen if not 0 <= i < count]
    if bad or not chosen:
        raise ConfigError(f"expected indices in 0..{count - 1} (the input has {count}), got {text!r}", key=what)
    return chosen


def geometry_words(shots: int, receivers: int, samples: int, dt: float | None) -> str:
    """'5 shots x 70 receivers, 1000 samples of 1 ms'."""
    every = f" of {dt * 1000:g} ms" if dt else ""
    return f"{shots} shots x {receivers} receivers, {samples} samples{every}"


def resample(data: np.ndarray, dt_in: float, dt_out: float, nt_out: int) -> np.ndarray:
    """Resample [N, S, T, R] from interval `dt_in` to `dt_out` (polyphase, anti-aliased), then cut or
    zero-pad the time axis to `nt_out` samples (the start time stays 0)."""
    from scipy.signal import resample_poly

    if abs(dt_in - dt_out) > DT_TOLERANCE * dt_out:
        ratio = Fraction(dt_in / dt_out).limit_denominator(1000)
        data = resample_poly(data, ratio.numerator, ratio.denominator, axis=2)
    out = np.zeros((*data.shape[:2], nt_out, data.shape[3]), dtype=np.float32)
    n = min(nt_out, data.shape[2])
    out[:, :, :n] = data[:, :, :n]
    return out


def adapt(gathers: Gathers, survey: Any, *, shots: str | None = None, receivers: str | None = None,
          resample_time: bool = False) -> np.ndarray:
    """The input [N, S, T, R] in the training survey's geometry, by the explicit selections and resampling asked for.

    Raises:
        DataError: the geometry still differs: one line listing both geometries and the options that adapt it.
        ConfigError: a bad selection.
    """
    data = gathers.data
    chosen_shots = parse_indices(shots, data.shape[1], "shots")
    if chosen_shots is not None:
        data = data[:, chosen_shots]
    chosen_receivers = parse_indices(receivers, data.shape[3], "receivers")
    if chosen_receivers is not None:
        data = data[:, :, :, chosen_receivers]
    dt = gathers.dt if gathers.dt is not None else survey.dt
    if resample_time:
        data = resample(data, dt, survey.dt, survey.nt)
        dt = survey.dt
    wanted = (survey.n_shots, survey.nt, survey.n_receivers)
    same_dt = abs(dt - survey.dt) <= DT_TOLERANCE * survey.dt
    if tuple(data.shape[1:]) != wanted or not same_dt:
        _, s, t, r = data.shape
        adapted = " after the selections" if chosen_shots or chosen_receivers or resample_time else ""
        raise DataError(
            f"the input's geometry{adapted} ({geometry_words(s, r, t, dt)}) differs from the training survey's "
            f"({geometry_words(survey.n_shots, survey.n_receivers, survey.nt, survey.dt)}); adapt it with --shots / "
            "--receivers (select) and --resample-time (resample to the training interval and length)",
            file=gathers.source,
        )
    return np.ascontiguousarray(data, dtype=np.float32)


# ---------------------------------------------------------------------------
# Prediction and refinement


def predict_velocity(model: Any, data: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """The model's velocity for gathers [N, S, T, R] (raw amplitudes): [N, NZ, NX] float32 m/s."""
    import torch

    from fwi_lightning.progress import track

    starts = range(0, len(data), batch_size)
    out = []
    with torch.no_grad():
        for start in track(starts, len(starts), "predicting"):
            batch = torch.from_numpy(data[start:start + batch_size]).to(model.device)
            out.append(model(batch)[:, 0].float().cpu().numpy())
    return np.concatenate(out)


def refine(problem: Any, observed: np.ndarray, start: np.ndarray, iterations: int, lr: float) -> tuple[np.ndarray, list[float]]:
    """Classical FWI of one survey from a predicted model: the ``fwi`` paradigm on a ``single_survey``
    data module holding the observed gathers, run through `fwi_lightning.runner.Run` as ``fwi-run`` runs it.

    Args:
        problem: the trained model's problem (survey, velocity range, the data's processing).
        observed: [S, T, R] gathers in the survey's geometry.
        start: [NZ, NX] m/s, the initial model.
        iterations: optimiser steps. lr: Adam's step on the [-1, 1] scale of the velocity range.

    Returns:
        The refined model [NZ, NX] m/s and the data misfit of each iteration.
    """
    from fwi_lightning.config import load_config, validate
    from fwi_lightning.physics.operator import PROCESSING
    from fwi_lightning.progress import show_progress
    from fwi_lightning.runner import Run

    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ConfigError(f"expected a whole number of iterations >= 1, got {iterations!r}", key="refine")
    folder = Path(tempfile.mkdtemp(prefix="fwi-refine-"))
    try:
        np.save(folder / "observed.npy", np.asarray(observed, dtype=np.float32))
        np.save(folder / "start.npy", np.asarray(start, dtype=np.float32))
        processing = {k: v for k, v in problem.operator_settings.items() if k in PROCESSING}
        values = {
            "schema_version": 1, "seed": 0, "name": "refine", "group": "refine", "run_dir": str(folder / "runs"),
            "model": {"name": "fwi", "initial": {"name": "file", "path": str(folder / "start.npy")},
                      "optimizer": {"name": "adam", "lr": float(lr)}},
            "data": {"name": "single_survey", "survey": problem.survey.to_dict(), "observed": str(folder / "observed.npy"),
                     "velocity_range": list(problem.velocity_range), "steps_per_epoch": iterations, **processing},
            "trainer": {"max_epochs": 1, "devices": 1, "log_every_n_steps": 1, "num_sanity_val_steps": 0,
                        "enable_progress_bar": show_progress(), "enable_model_summary": False},
            "callbacks": {"figures": None},
            "checkpoint": {"save_last": False},
            "logger": {"name": "csv"},
        }
        run = Run.build(validate(load_config(None, values=values)))
        run.fit()
        run.close()
        refined = np.load(run.run_dir / "final_velocity.npy")
        with open(run.run_dir / "metrics.csv", newline="") as f:
            misfits = [float(row["train/data_misfit"]) for row in csv.DictReader(f) if row.get("train/data_misfit")]
        return refined, misfits
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------
# Outputs


def output_paths(prefix: Path, formats: Sequence[str], n: int) -> list[tuple[str, int | None, Path]]:
    """(format, sample or None, path) of every output: one npy of all samples; a SEG-Y and a PNG per sample
    (``PREFIX.segy``, or ``PREFIX-<i>.segy`` for several samples)."""
    paths: list[tuple[str, int | None, Path]] = []
    for fmt in formats:
        if fmt == "npy":
            paths.append((fmt, None, prefix.with_name(prefix.name + ".npy")))
        else:
            for i in range(n):
                tail = f"-{i}" if n > 1 else ""
                paths.append((fmt, i, prefix.with_name(f"{prefix.name}{tail}.{fmt}")))
    return paths


def write_outputs(prefix: Path, velocity: np.ndarray, spacing: float, velocity_range: Sequence[float],
                  formats: Sequence[str] = FORMATS, title: str = "") -> list[Path]:
    """Write [N, NZ, NX] m/s as npy ([NZ, NX] for one sample), SEG-Y and PNG; all or nothing (`AtomicFiles`)."""
    from fwi_lightning import plotting
    from fwi_lightning.io.atomic import AtomicFiles
    from fwi_lightning.io.segy import write_velocity_segy
    from fwi_lightning.sections import section_figure

    paths = output_paths(prefix, formats, len(velocity))
    with AtomicFiles() as files:
        for fmt, i, path in paths:
            tmp = files.temporary(path)
            if fmt == "npy":
                np.save(tmp, velocity[0] if len(velocity) == 1 else velocity)
            elif fmt == "segy":
                write_velocity_segy(tmp, velocity[i], spacing)
            else:
                name = title + (f", sample {i}" if len(velocity) > 1 else "")
                plotting.save(section_figure(velocity[i], spacing, name, limits=tuple(velocity_range)), tmp)
    return [path for _, _, path in paths]


def check_formats(formats: Sequence[str]) -> list[str]:
    """The formats asked for, each one of `FORMATS`.

    Raises:
        ConfigError: an unknown format.
    """
    chosen = [f.strip().lower() for f in formats if f.strip()]
    for fmt in chosen:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown output format '{fmt}'; choose from {', '.join(FORMATS)}", key="formats")
    if not chosen:
        raise ConfigError(f"no output format; choose from {', '.join(FORMATS)}", key="formats")
    return chosen


def run_predict(target: str, source: str, options: PredictOptions) -> tuple[list[Path], list[str]]:
    """``fwi-run predict``: read, check, predict, refine if asked, write. Returns (written files, notes).

    Everything that can fail on the user's input is checked before the first file is written.
    """
    formats = check_formats(options.formats)
    for name, value, low in (("refine", options.refine_iterations, 0), ("batch_size", options.batch_size, 1)):
        if value < low:
            raise ConfigError(f"expected a whole number >= {low}, got {value}", key=name)
    if options.refine_iterations and not options.refine_lr > 0:
        raise ConfigError(f"expected a learning rate > 0, got {options.refine_lr}", key="refine_lr")
    gathers = read_gathers(source, group_by=options.group_by, dt=options.dt, npz_key=options.npz_key)
    if options.refine_iterations and len(gathers.data) > 1:
        raise ConfigError("refinement fits one survey: give one sample (an [S, T, R] input or a SEG-Y file)", key="refine")
    model = load_trained(target)
    try:
        model = model.to(options.device)
    except (RuntimeError, AssertionError) as exc:
        raise ConfigError(f"cannot run on '{options.device}': {' '.join(str(exc).split())[:160]}", key="device") from None
    problem = model.problem
    data = adapt(gathers, problem.survey, shots=options.shots, receivers=options.receivers,
                 resample_time=options.resample_time)
    velocity = predict_velocity(model, data, options.batch_size)
    notes = [f"input: {gathers.describe()} from {gathers.source}"]
    if options.refine_iterations:
        velocity[0], misfits = refine(problem, data[0], velocity[0], options.refine_iterations, options.refine_lr)
        if misfits:
            notes.append(f"refined by {len(misfits)} fwi iterations: data misfit {misfits[0]:.4g} -> {misfits[-1]:.4g}")
    prefix = Path(options.output) if options.output else Path(source).with_name(Path(source).stem + "-velocity")
    how = f"predicted + {options.refine_iterations} fwi iterations" if options.refine_iterations else "predicted"
    written = write_outputs(prefix, velocity, problem.survey.spacing, problem.velocity_range, formats,
                            title=f"{how} velocity, {Path(source).name}")
    return written, notes
