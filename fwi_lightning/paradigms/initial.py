"""Initial velocity models for the paradigms that fit one survey (``fwi``, ``deep_prior``).

The YAML section ``initial`` names one kind:

* ``{name: smoothed_truth, sigma_m: 200}``: the data module's true model blurred by a
  Gaussian of sigma `sigma_m` m (the usual synthetic FWI start);
* ``{name: linear, v_top_mps: 1500, v_bottom_mps: 3500}``: velocity linear in depth;
* ``{name: file, path: start.npy}``: an npy [NZ, NX] in m/s on the survey grid;
* ``{name: run, path: runs/default/sup-.../, paradigm: supervised}``: a trained run's
  prediction on this survey's observed data (a run folder: its best, else last,
  checkpoint; or a ``.ckpt`` file). The run must have been trained on this survey's
  grid and gather shape.

``file`` and ``run`` also take ``sigma_m``: blur the model by a Gaussian of that sigma
in m, keeping only its long wavelengths (the part of a network's prediction FWI needs
from its start; its sharp, possibly wrong interfaces are left to FWI). Every initial
model is clipped to the problem's velocity range.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.problem import Problem

KINDS = ("smoothed_truth", "linear", "file", "run")
PARAMETERS = {"smoothed_truth": ("sigma_m",), "linear": ("v_top_mps", "v_bottom_mps"), "file": ("path", "sigma_m"),
              "run": ("path", "paradigm", "sigma_m")}
DEFAULT_INITIAL = {"name": "smoothed_truth", "sigma_m": 200.0}


def check_initial(spec: Mapping[str, Any] | None, *, key: str = "initial") -> dict[str, Any]:
    """The initial-model section with its kind and parameters checked (before any data exists).

    Null entries are dropped, so an experiment can replace a base file's kind and clear
    its parameters (``{name: run, sigma_m: null, path: ...}``).

    Raises:
        ConfigError: an unknown kind or parameter, or a missing one.
    """
    values = {k: v for k, v in dict(DEFAULT_INITIAL if spec is None else spec).items() if v is not None}
    kind = values.pop("name", None)
    if kind not in KINDS:
        raise ConfigError(f"unknown initial model {kind!r}; choose one of {', '.join(KINDS)}", key=f"{key}.name")
    unknown = [k for k in values if k not in PARAMETERS[kind]]
    if unknown:
        raise ConfigError(f"initial model '{kind}' takes {', '.join(PARAMETERS[kind])}, not '{unknown[0]}'", key=f"{key}.{unknown[0]}")
    required = {"linear": ("v_top_mps", "v_bottom_mps"), "file": ("path",), "run": ("path",)}.get(kind, ())
    for name in required:
        if values.get(name) is None:
            raise ConfigError(f"initial model '{kind}' needs '{name}'", key=f"{key}.{name}")
    for name in ("sigma_m", "v_top_mps", "v_bottom_mps"):
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ConfigError(f"expected a number > 0, got {value!r}", key=f"{key}.{name}")
    return {"name": kind, **values}


def initial_velocity(spec: Mapping[str, Any], problem: Problem, datamodule: Any, *, key: str = "initial") -> torch.Tensor:
    """Build the initial model of `spec` (from `check_initial`): [1, 1, NZ, NX] float32 m/s in the range.

    Args:
        spec: the checked section.
        problem: grid, spacing and velocity range.
        datamodule: the run's data module (``true_velocity`` for ``smoothed_truth``; its
            processed batch for ``run``).
        key: the section's key relative to the model section.

    Raises:
        ConfigError: no true model for ``smoothed_truth``; a run of another survey.
        DataError: a missing or mis-shaped file or checkpoint.
    """
    kind = spec["name"]
    nz, nx = problem.velocity_shape
    if kind == "smoothed_truth":
        truth = getattr(datamodule, "true_velocity", None)
        if truth is None:
            raise ConfigError("a smoothed true model needs a data module with a known true model (single_survey with 'model'); "
                              "choose linear, file or run", key=f"{key}.name")
        model = truth[0, 0].double().numpy()
        spec = {"sigma_m": DEFAULT_INITIAL["sigma_m"], **spec}
    elif kind == "linear":
        depth = np.linspace(0.0, 1.0, nz)[:, None]
        model = np.repeat(spec["v_top_mps"] + (spec["v_bottom_mps"] - spec["v_top_mps"]) * depth, nx, axis=1)
    elif kind == "file":
        model = _read_model(Path(spec["path"]).expanduser(), (nz, nx), key)
    else:
        model = _run_prediction(spec, problem, datamodule, key)
    if spec.get("sigma_m"):
        model = gaussian_filter(np.asarray(model, dtype=np.float64), float(spec["sigma_m"]) / problem.survey.spacing, mode="nearest")
    tensor = torch.as_tensor(np.asarray(model, dtype=np.float32))[None, None]
    return tensor.clamp(*problem.velocity_range)


def _read_model(path: Path, shape: tuple[int, int], key: str) -> np.ndarray:
    from fwi_lightning.data.npyfiles import open_npy

    try:
        array = open_npy(path, "an initial velocity model [NZ, NX] in m/s")
    except DataError as exc:
        raise DataError(exc.message, key=f"{key}.path", file=exc.file) from None
    if tuple(array.shape) != shape:
        raise DataError(f"expected a model of {list(shape)} cells (the survey grid), got {list(array.shape)}",
                        key=f"{key}.path", file=str(path))
    return np.asarray(array, dtype=np.float64)


def run_checkpoint(path: Path, key: str) -> tuple[Path, str | None]:
    """(checkpoint file, paradigm name from the run's config.yaml or None) of a run folder or ``.ckpt`` file.

    The checkpoint is the one `fwi-run test` evaluates (`fwi_lightning.evaluate.find_checkpoint`:
    the run's recorded best, else its newest best, else ``last.ckpt``).
    """
    from fwi_lightning.errors import ConfigError
    from fwi_lightning.evaluate import find_checkpoint, run_config_file

    try:
        path = find_checkpoint(path)
    except ConfigError as exc:
        raise DataError(exc.message, key=f"{key}.path", file=exc.file) from None
    config = run_config_file(path)
    name = None
    if config is not None:
        from omegaconf import OmegaConf

        name = (OmegaConf.to_container(OmegaConf.load(config)).get("model") or {}).get("name")
    return path, name


def _run_prediction(spec: Mapping[str, Any], problem: Problem, datamodule: Any, key: str) -> np.ndarray:
    """A trained run's prediction on this survey's processed observed data, [NZ, NX] m/s."""
    from fwi_lightning import registry

    checkpoint, found_name = run_checkpoint(Path(spec["path"]).expanduser(), key)
    name = spec.get("paradigm") or found_name or "supervised"
    cls = registry.load("paradigms", name)
    try:
        model = cls.load_from_checkpoint(checkpoint, map_location="cpu")
    except Exception as exc:  # a corrupt or foreign file
        raise DataError(f"cannot load a '{name}' paradigm from it: {type(exc).__name__}: {exc}", key=f"{key}.path",
                        file=str(checkpoint)) from None
    theirs = (tuple(model.problem.velocity_shape), tuple(model.problem.data_shape))
    ours = (tuple(problem.velocity_shape), tuple(problem.data_shape))
    if theirs != ours:
        raise ConfigError(
            f"the run {checkpoint} was trained on a {theirs[0][0]} x {theirs[0][1]} grid with gathers {list(theirs[1])}, "
            f"this survey has {ours[0][0]} x {ours[0][1]} and {list(ours[1])}; train it on this survey", key=f"{key}.path")
    model.eval()
    with torch.no_grad():
        return model(datamodule.processed()["data"])[0, 0].double().numpy()
