"""Contract checks and tiny presets for component authors (plugins and built-ins alike).

Each ``check_*`` function takes a component as a registered name, a ``package.module:Attr``
string or the class itself, plus its YAML parameters as keyword arguments, and

1. validates those parameters exactly as ``fwi-run`` validates a YAML file
   (`fwi_lightning.config.validate`: unknown keys, types, nested components),
2. builds the component through the registry with the arguments the framework injects
   (`fwi_lightning.specs.INJECTED`) and asserts its contract directly (shapes, units,
   ranges, gradients, determinism),
3. runs one Lightning ``fast_dev_run`` fit + test of a tiny experiment using it, through
   the same `fwi_lightning.runner.Run` that ``fwi-run`` uses.

A failed contract raises ``AssertionError`` with a message saying what was expected;
a bad parameter raises the framework's own `ConfigError`. Use them from pytest::

    from fwi_lightning.testing import check_network

    def test_my_network():
        check_network("my_net", width=4)

The tiny preset is a 16 x 16 grid (160 m x 160 m at 10 m), 2 shots, 16 receivers and
120 time steps of 2 ms, simulated by deepwave: a check takes well under a second once
torch and Lightning are imported. `TINY_SETTINGS` holds the contract's *tiny settings*
of the built-ins: the parameters that shrink each one to that size.
"""

from __future__ import annotations

import copy
import functools
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

#: The tiny survey as its YAML mapping (``data.survey``): 16 x 16 cells of 10 m,
#: 120 samples of 2 ms (0.24 s), 2 shots, 16 receivers, 15 Hz Ricker.
TINY_SURVEY: dict[str, Any] = {
    "nz": 16, "nx": 16, "spacing": 10.0, "nt": 120, "dt": 0.002, "peak_freq": 15.0, "n_shots": 2, "n_receivers": 16,
}

#: Velocity range of the tiny preset, m/s.
TINY_VELOCITY_RANGE: tuple[float, float] = (1500.0, 4500.0)

#: Trainer settings of every check run: one batch of fit, validation and test, on CPU.
TINY_TRAINER: dict[str, Any] = {
    "fast_dev_run": True, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False,
}

#: The contract's tiny settings of the built-ins, per group and name: the YAML
#: parameters that make each one small enough for the tiny preset. Components that
#: need a file (``model_file``, ``openfwi``) get theirs from the test that checks them.
TINY_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "networks": {
        "tiny": {"width": 4},
        "inversionnet": {"channels": [4, 4, 4, 4, 4]},
        "unet": {"channels": [4, 8]},
        "lstm": {"hidden": 8, "layers": 1, "steps": 16, "channels": [8, 4]},
        "transformer": {"tokens": [4, 4], "dim": 8, "depth": 1, "heads": 2, "channels": [8, 4]},
        "generator": {"latent": 2, "latent_size": [2, 2], "channels": [4, 4]},
        "pinn_mlp": {"width": 8, "depth": 1},
        "pinn_siren": {"width": 8, "depth": 1},
    },
    "velocity": {
        "marmousi2": {"depth": "random"},  # a window at the top lies wholly in its 450 m of water
    },
    "datamodules": {
        "single_survey": {"survey": dict(TINY_SURVEY), "model": {"name": "flatvel"}, "velocity_range": list(TINY_VELOCITY_RANGE)},
    },
    "callbacks": {
        "early_stopping": {"monitor": "val/loss"},
        "figures": {"n_samples": 1},
        "frequency_curriculum": {"schedule": {"kind": "linear", "start": 10.0, "end": 40.0, "length": 2, "by": "step"}},
        "family_curriculum": {"schedule": {"kind": "step", "stages": [[0, {"flatvel": 1.0}]]}},
        "noise_curriculum": {"schedule": {"kind": "linear", "start": 30.0, "end": 10.0, "length": 2, "by": "step"}},
        "aperture_curriculum": {"knob": "active_shots", "schedule": {"kind": "step", "stages": [[0, 1], [1, 2]], "by": "step"}},
        "difficulty_curriculum": {"schedule": {"kind": "linear", "start": 0.2, "end": 0.8, "length": 2, "by": "step"}},
        "task_curriculum": {"schedule": {"kind": "step", "stages": [[0, {"l1": 1.0}]]}},
    },
}

#: The data section of the check runs of paradigms that fit one survey (default: `tiny_data_config`).
TINY_PARADIGM_DATA: dict[str, dict[str, Any]] = {
    name: {"name": "single_survey", **TINY_SETTINGS["datamodules"]["single_survey"]} for name in ("fwi", "deep_prior", "pinn")
}

#: The networks of the check runs of paradigms that take other than `TINY_NETWORK` (coordinate networks), per parameter.
TINY_PARADIGM_NETWORKS: dict[str, dict[str, dict[str, Any]]] = {
    "pinn": {"wavefield": {"name": "pinn_siren", "width": 8, "depth": 1},
             "velocity_network": {"name": "pinn_mlp", "width": 8, "depth": 1}},
}

#: The network every check run uses where the component under test is not a network.
TINY_NETWORK: dict[str, Any] = {"name": "tiny", "width": 4}

#: The keys of a training batch that pairs a source and a target stream (``source_target``),
#: which the ``adaptation`` paradigm trains on.
PAIRED_STREAMS: tuple[str, ...] = ("source", "target")

#: Relative slack on the velocity range (float rounding of a tanh output at the bounds).
RANGE_TOLERANCE = 1e-4


# ---------------------------------------------------------------------------
# Presets


def tiny_settings(group: str, name: str) -> dict[str, Any]:
    """The tiny settings of a built-in (a copy; empty when it needs none)."""
    return copy.deepcopy(TINY_SETTINGS.get(group, {}).get(name, {}))


def tiny_survey():
    """The tiny preset's `fwi_lightning.physics.survey.Survey` (see `TINY_SURVEY`)."""
    from fwi_lightning.physics.survey import Survey

    return Survey(**TINY_SURVEY)


def tiny_data_config(**overrides: Any) -> dict[str, Any]:
    """The ``data`` section of the tiny preset: the ``simulated`` data module, flat layers.

    4 training, 2 validation and 2 test models per epoch in batches of 2, no worker
    processes, the data range from 2 reference gathers.

    Args:
        **overrides: keys replaced in the section (e.g. ``families={curvevel: 1.0}``).
    """
    section = {
        "name": "simulated",
        "survey": dict(TINY_SURVEY),
        "families": {"flatvel": 1.0},
        "velocity_range": list(TINY_VELOCITY_RANGE),
        "sizes": {"train": 4, "val": 2, "test": 2},
        "batch_size": 2,
        "num_workers": 0,
        "reference_size": 2,
    }
    section.update(copy.deepcopy(overrides))
    return section


def tiny_source_target_config(**overrides: Any) -> dict[str, Any]:
    """The ``data`` section of a tiny source + target stream (``source_target``): flat layers as the
    source, curved layers as the target, both evaluated (target first).

    Args:
        **overrides: keys replaced in the section (e.g. ``target_labels=False``).
    """
    section = {
        "name": "source_target",
        "source": tiny_data_config(),
        "target": tiny_data_config(families={"curvevel": 1.0}),
        "eval_domains": ["target", "source"],
    }
    section.update(copy.deepcopy(overrides))
    return section


TINY_SETTINGS["datamodules"]["source_target"] = {k: v for k, v in tiny_source_target_config().items() if k != "name"}
TINY_PARADIGM_DATA["adaptation"] = tiny_source_target_config()


def tiny_datamodule(data: Optional[Mapping[str, Any]] = None, seed: int = 0):
    """A data module built from `data` (default `tiny_data_config`) as ``fwi-run`` builds it."""
    from fwi_lightning import registry

    return registry.build("datamodules", dict(data or tiny_data_config()), key="data", seed=seed)


def tiny_problem():
    """The `fwi_lightning.problem.Problem` of the tiny preset (its data range from simulated gathers)."""
    return tiny_datamodule().problem


def tiny_batch(split: str = "val", datamodule: Any = None) -> dict[str, Any]:
    """The first batch of `split` from `datamodule` (default: the tiny preset's), as a step receives it.

    Returns:
        ``data`` [B, S, T, R] raw amplitudes, ``velocity`` [B, 1, NZ, NX] m/s (labelled
        data), ``family`` [B], ``index`` [B].
    """
    datamodule = datamodule if datamodule is not None else tiny_datamodule()
    loader = getattr(datamodule, f"{split}_dataloader")()
    from lightning.pytorch.utilities import CombinedLoader

    if isinstance(loader, (list, tuple)):  # one loader per evaluated stream (source_target): the first
        loader = loader[0]
    batch = next(iter(loader))
    if isinstance(loader, CombinedLoader):  # it yields (batch, batch index, loader index)
        batch = batch[0]
    return datamodule.on_after_batch_transfer(batch, 0)


def tiny_experiment(model: Mapping[str, Any], *, data: Optional[Mapping[str, Any]] = None,
                    callbacks: Optional[Mapping[str, Any]] = None, run_dir: str | Path = "runs") -> dict[str, Any]:
    """A whole experiment mapping (what an experiment YAML holds) on the tiny preset.

    The default callbacks of ``defaults.yaml`` are switched off unless named in
    `callbacks`; the logger is CSV only; the trainer runs `TINY_TRAINER`.

    Args:
        model: the ``model`` section, ``{name: <paradigm>, **params}``.
        data: the ``data`` section; default `tiny_data_config`.
        callbacks: the ``callbacks`` section, ``{name: params}``.
        run_dir: root folder of the run folders.
    """
    chosen = {name: None for name in _default_callbacks()}
    chosen.update(copy.deepcopy(dict(callbacks or {})))
    return {
        "schema_version": 1,
        "seed": 0,
        "name": "contract",
        "run_dir": str(run_dir),
        "model": copy.deepcopy(dict(model)),
        "data": copy.deepcopy(dict(data or tiny_data_config())),
        "trainer": dict(TINY_TRAINER),
        "callbacks": chosen,
        "logger": {"name": "csv"},
    }


@dataclass
class CheckRun:
    """A finished experiment of a check.

    Attributes:
        run: the `fwi_lightning.runner.Run` (model, data module, trainer); the run
            folder of a check run was temporary and is gone.
        fit_metrics: epoch-level values logged during fit (``train/...``, ``val/...``).
        test_metrics: values logged by test (``test/...``).
    """

    run: Any
    fit_metrics: dict[str, float]
    test_metrics: dict[str, float]


def run_experiment(values: Mapping[str, Any]) -> CheckRun:
    """Validate, build, fit and test an experiment mapping as ``fwi-run`` does."""
    from fwi_lightning.config import load_config, validate
    from fwi_lightning.runner import Run

    run = Run.build(validate(load_config(None, values=dict(values))))
    run.fit()
    fit_metrics = _scalars(run.trainer.callback_metrics)
    test_metrics = run.test()
    run.close()
    return CheckRun(run, fit_metrics, test_metrics)


# ---------------------------------------------------------------------------
# Contract checks


def single_threaded(check: Callable) -> Callable:
    """Run `check` with one torch thread, restoring the setting after.

    Tiny tensors gain nothing from threads, and deepwave's threads synchronise every
    time step: on a busy CPU a threaded check runs tens of times slower.
    """

    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper



@single_threaded
def check_network(network: Any, *, paradigm: str = "supervised", **params: Any):
    """Check a backbone of the ``fwi_lightning.networks`` group; returns it, built on the tiny problem.

    Asserts: it is an ``nn.Module``; on a real batch ``[B, S, T, R]`` it returns
    ``[B, 1, NZ, NX]`` float32, finite and inside ``problem.velocity_range``; two
    different gathers give two different models (in training mode: an untrained
    network's fresh batch-norm statistics may blur them below float32 in eval mode); an L1 loss against the true velocity sends a finite gradient
    to every trainable parameter; a `VelocityNetwork`'s ``encode`` gives a finite
    ``embedding`` [B, C]; and a fast_dev_run fit + test with `paradigm` completes.

    Args:
        network: registered name, ``module:Attr`` or the class.
        paradigm: the paradigm of the check run.
        **params: the network's YAML parameters.
    """
    import torch
    from torch import nn

    from fwi_lightning import registry
    from fwi_lightning.networks.base import VelocityNetwork

    spec = {"name": _named("networks", network), **params}
    model = {"name": paradigm, "network": spec}
    _validate(tiny_experiment(model))
    datamodule = tiny_datamodule()
    problem, batch = datamodule.problem, tiny_batch("val", datamodule)
    built = registry.build("networks", spec, key="model.network", problem=problem)
    label = f"network '{spec['name']}'"
    assert isinstance(built, nn.Module), f"{label}: expected a torch.nn.Module, got {type(built).__name__}"

    built.train()
    prediction = built(batch["data"])
    _assert_velocity(prediction, problem, len(batch["data"]), label)
    assert not torch.equal(prediction[0], prediction[1]), f"{label}: two different gathers gave the same velocity"
    target = batch["velocity"]
    loss = (problem.normalise_velocity(prediction) - problem.normalise_velocity(target)).abs().mean()
    loss.backward()
    trainable = [(n, p) for n, p in built.named_parameters() if p.requires_grad]
    assert trainable, f"{label}: has no trainable parameters"
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"{label}: no gradient reaches {', '.join(missing[:5])} (unused in forward?)"
    bad = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert not bad, f"{label}: non-finite gradient in {', '.join(bad[:5])}"
    assert any(p.grad.abs().sum() > 0 for _, p in trainable), f"{label}: every gradient is zero"

    if isinstance(built, VelocityNetwork):
        built.eval()
        with torch.no_grad():
            embedding = built.embedding(built.encode(problem.normalise_data(batch["data"])))
        assert embedding.dim() == 2 and embedding.shape[0] == len(batch["data"]), (
            f"{label}: embedding(encode(data)) should be [B, C], got {list(embedding.shape)}")
        assert torch.isfinite(embedding).all(), f"{label}: non-finite embedding"

    _run_checked(tiny_experiment(model))
    return built


@single_threaded
def check_loss(loss: Any, *, paradigm: str = "supervised", **params: Any):
    """Check a loss of the ``fwi_lightning.losses`` group; returns it, built on the tiny problem.

    On a real batch and a prediction perturbed from the true velocity (m/s), asserts:
    a finite floating-point scalar; a finite, non-zero gradient with respect to the
    prediction. A *supervised* loss (one that raises `DataError` when the batch has no
    ``velocity``, as `VelocityLoss.normalised_target` does) must be smaller for the
    true velocity than for the perturbed one; an *unsupervised* one must give the same
    value with or without the labels. Any other error on an unlabelled batch fails.
    An ``OutputLoss`` gets the prediction as every output it reads. Then a fast_dev_run
    fit + test training on this loss alone completes (in `paradigm`, which must produce
    those outputs).

    Args:
        loss: registered name, ``module:Attr`` or the class.
        paradigm: the paradigm of the check run (it must take ``losses``).
        **params: the loss's YAML parameters (``weight`` is not one).
    """
    import torch

    from fwi_lightning import registry
    from fwi_lightning.errors import DataError

    name = _named("losses", loss)
    model = {"name": paradigm, "network": dict(TINY_NETWORK), "losses": {"contract": {"name": name, "weight": 1.0, **params}}}
    _validate(tiny_experiment(model))
    datamodule = tiny_datamodule()
    problem, batch = datamodule.problem, tiny_batch("val", datamodule)
    built = registry.build("losses", {"name": name, **params}, key="model.losses.contract", problem=problem)
    label = f"loss '{name}'"

    target = batch["velocity"]
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(0)) * 300.0
    perturbed = (target + noise).clamp(*problem.velocity_range)
    prediction = perturbed.clone().requires_grad_(True)
    value = _loss_value(built, prediction, batch)
    assert isinstance(value, torch.Tensor) and value.dim() == 0, f"{label}: expected a scalar tensor, got {_describe(value)}"
    assert value.dtype.is_floating_point and torch.isfinite(value), f"{label}: expected a finite float, got {value}"
    value.backward()
    assert prediction.grad is not None, f"{label}: not differentiable with respect to the prediction"
    assert torch.isfinite(prediction.grad).all(), f"{label}: non-finite gradient"
    assert prediction.grad.abs().sum() > 0, f"{label}: zero gradient for a prediction 300 m/s off the truth"

    unlabelled = {k: v for k, v in batch.items() if k != "velocity"}
    with torch.no_grad():
        try:
            without_labels = _loss_value(built, perturbed, unlabelled)
        except DataError:
            exact = _loss_value(built, target, batch)
            assert exact < value, f"{label}: supervised, yet the true velocity scores {float(exact):g}, not below {float(value):g}"
        except Exception as exc:
            raise AssertionError(f"{label}: on a batch without 'velocity' it raised {type(exc).__name__}: {exc}; a "
                                 "supervised loss raises DataError (VelocityLoss.normalised_target does)") from exc
        else:
            assert torch.allclose(without_labels, value.detach()), f"{label}: unsupervised, yet its value depends on the labels"

    _run_checked(tiny_experiment(model))
    return built


@single_threaded
def check_velocity_family(family: Any, **params: Any):
    """Check a velocity family of the ``fwi_lightning.velocity`` group; returns it, built on the tiny grid.

    Asserts that ``sample(seed, split, index)`` gives [NZ, NX] float32 finite models
    inside the velocity range; that a model depends on (seed, split, index) only (the
    same from a second instance, and in any order); that it varies with the index and
    with the seed; then a fast_dev_run fit + test on data simulated from this family.

    Args:
        family: registered name, ``module:Attr`` or the class.
        **params: the family's YAML parameters (``weight`` is not one).
    """
    import numpy as np

    from fwi_lightning import registry

    name = _named("velocity", family)
    data = tiny_data_config(families={"contract": {"name": name, "weight": 1.0, **params}})
    model = {"name": "supervised", "network": dict(TINY_NETWORK)}
    _validate(tiny_experiment(model, data=data))
    injected = {"shape": (TINY_SURVEY["nz"], TINY_SURVEY["nx"]), "spacing": TINY_SURVEY["spacing"],
                "velocity_range": TINY_VELOCITY_RANGE}
    spec = {"name": name, **params}
    built = registry.build("velocity", spec, key="data.families.contract", **injected)
    again = registry.build("velocity", spec, key="data.families.contract", **injected)
    label = f"velocity family '{name}'"
    lo, hi = TINY_VELOCITY_RANGE

    draws = {}
    for split in ("train", "val", "test"):
        for index in (3, 0, 1, 2):
            sample = built.sample(0, split, index)
            assert isinstance(sample, np.ndarray), f"{label}: sample() should return a numpy array, got {type(sample).__name__}"
            assert sample.shape == injected["shape"], f"{label}: expected shape {injected['shape']}, got {sample.shape}"
            assert sample.dtype == np.float32, f"{label}: expected float32, got {sample.dtype}"
            assert np.isfinite(sample).all(), f"{label}: non-finite velocity ({split}, {index})"
            assert lo <= sample.min() and sample.max() <= hi, (
                f"{label}: velocities {sample.min():g}..{sample.max():g} m/s outside [{lo:g}, {hi:g}]")
            draws[split, index] = sample
    for (split, index), sample in draws.items():
        assert np.array_equal(again.sample(0, split, index), sample), f"{label}: ({split}, {index}) differs between instances"
        assert np.array_equal(built.sample(0, split, index), sample), f"{label}: ({split}, {index}) differs when drawn again"
    train = [draws["train", i] for i in range(4)]
    assert any(not np.array_equal(train[0], other) for other in train[1:]), f"{label}: indices 0-3 give one and the same model"
    other_seed = [built.sample(1, "train", i) for i in range(4)]
    assert any(not np.array_equal(a, b) for a, b in zip(train, other_seed)), f"{label}: seeds 0 and 1 give the same models"

    _run_checked(tiny_experiment(model, data=data))
    return built


@single_threaded
def check_datamodule(datamodule: Any, **params: Any):
    """Check a data module of the ``fwi_lightning.datamodules`` group; returns it, built with seed 0.

    Asserts a `Problem` with a finite, increasing data range; that the first batch of
    every split (after ``on_after_batch_transfer``; each stream's of a training batch
    ``{source, target}``, which the check run then trains with the ``adaptation``
    paradigm) holds ``data`` [B, S, T, R] float32
    finite with (S, T, R) = ``problem.data_shape``, ``velocity`` [B, 1, NZ, NX] inside
    the velocity range when present, ``family`` and ``index`` integer [B]; that a second
    instance with the same seed gives the same validation batch; then a fast_dev_run
    fit + test reading from it.

    Args:
        datamodule: registered name, ``module:Attr`` or the class.
        **params: the data module's YAML parameters (the ``data`` section without ``name``).
    """
    import torch

    from fwi_lightning.problem import Problem

    data = {"name": _named("datamodules", datamodule), **params}
    model = {"name": "supervised", "network": dict(TINY_NETWORK)}
    _validate(tiny_experiment(model, data=data))
    built = tiny_datamodule(data)
    label = f"data module '{data['name']}'"
    problem = built.problem
    assert isinstance(problem, Problem), f"{label}: .problem should be a Problem, got {type(problem).__name__}"
    lo, hi = problem.data_range
    assert math.isfinite(lo) and math.isfinite(hi) and lo < hi, f"{label}: data range {problem.data_range} is not finite and increasing"

    for split in ("train", "val", "test"):
        batch = tiny_batch(split, built)
        if split == "train" and set(batch) == set(PAIRED_STREAMS):  # one batch per stream: train the run on both
            for stream, part in batch.items():
                _assert_batch(part, problem, f"{label} {split} {stream} batch")
            model = {"name": "adaptation", "network": dict(TINY_NETWORK)}
            continue
        _assert_batch(batch, problem, f"{label} {split} batch")
    first, repeat = tiny_batch("val", built), tiny_batch("val", tiny_datamodule(data))
    for key, value in first.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, repeat[key]), f"{label}: two instances with one seed disagree on val '{key}'"

    _run_checked(tiny_experiment(model, data=data))
    return built


@single_threaded
def check_callback(callback: Any, *, paradigm: str = "supervised", **params: Any) -> CheckRun:
    """Check a callback of the ``fwi_lightning.callbacks`` group; returns the check run (`CheckRun`).

    Asserts that it builds into a Lightning ``Callback`` and that a fast_dev_run fit +
    test with it (and `paradigm`) completes with finite results.

    Args:
        callback: registered name, ``module:Attr`` or the class.
        paradigm: the paradigm of the check run.
        **params: the callback's YAML parameters.
    """
    from lightning.pytorch.callbacks import Callback

    from fwi_lightning import registry

    name = _named("callbacks", callback)
    callbacks = {"contract": {"name": name, **params}}
    experiment = tiny_experiment(_with_network({"name": paradigm}), callbacks=callbacks)
    _validate(experiment)
    built = registry.build_mapping("callbacks", callbacks, key="callbacks")["contract"][0]
    assert isinstance(built, Callback), f"callback '{name}': expected a lightning Callback, got {type(built).__name__}"
    return _run_checked(experiment)


@single_threaded
def check_paradigm(paradigm: Any, *, data: Optional[Mapping[str, Any]] = None,
                   callbacks: Optional[Mapping[str, Any]] = None, **params: Any) -> CheckRun:
    """Check a paradigm of the ``fwi_lightning.paradigms`` group; returns the check run (`CheckRun`).

    Builds the experiment through the config path (a paradigm taking a network gets
    `TINY_NETWORK` unless `params` names one), runs fast_dev_run fit + test and
    asserts: a ``LightningModule``; finite ``train/loss`` and ``val/loss`` logged (the
    checkpoint monitors ``val/loss``); at least one parameter changed by the training
    step; finite test results; ``forward`` maps a batch's data [B, S, T, R] to velocity
    [B, 1, NZ, NX] inside the range; a saved checkpoint loads with
    ``load_from_checkpoint`` and predicts the same.

    Args:
        paradigm: registered name, ``module:Attr`` or the class.
        data: the ``data`` section; default the paradigm's `TINY_PARADIGM_DATA`, else `tiny_data_config`.
        callbacks: the ``callbacks`` section of the run.
        **params: the paradigm's YAML parameters (``network``, ``losses``, ...).
    """
    import torch
    from lightning.pytorch import LightningModule

    from fwi_lightning.config import load_config, validate
    from fwi_lightning.runner import Run

    name = _named("paradigms", paradigm)
    label = f"paradigm '{name}'"
    data = data if data is not None else copy.deepcopy(TINY_PARADIGM_DATA.get(name))
    with tempfile.TemporaryDirectory(prefix="fwi-contract-") as tmp:
        experiment = tiny_experiment(_with_network({"name": name, **params}), data=data, callbacks=callbacks, run_dir=tmp)
        run = Run.build(validate(load_config(None, values=experiment)))
        module = run.model
        assert isinstance(module, LightningModule), f"{label}: expected a LightningModule, got {type(module).__name__}"
        before = {n: p.detach().clone() for n, p in module.named_parameters()}
        run.fit()
        fit_metrics = _scalars(run.trainer.callback_metrics)
        for key in ("train/loss", "val/loss"):
            assert key in fit_metrics, f"{label}: '{key}' was not logged (logged: {', '.join(sorted(fit_metrics)) or 'nothing'})"
        changed = [n for n, p in module.named_parameters() if not torch.equal(before[n], p.detach())]
        assert changed, f"{label}: one training step changed no parameter"
        test_metrics = run.test()
        run.close()
        result = CheckRun(run, fit_metrics, test_metrics)
        assert test_metrics, f"{label}: testing logged nothing"
        bad = {k: v for k, v in {**fit_metrics, **test_metrics}.items() if not math.isfinite(v)}
        assert not bad, f"{label}: non-finite logged values {bad}"

        batch = tiny_batch("test", run.datamodule)
        module.eval()
        with torch.no_grad():
            prediction = module(batch["data"])
        _assert_velocity(prediction, run.datamodule.problem, len(batch["data"]), label)
        path = Path(tmp) / "contract.ckpt"
        run.trainer.save_checkpoint(path)
        restored = type(module).load_from_checkpoint(path, map_location="cpu")
        restored.eval()
        with torch.no_grad():
            again = restored(batch["data"])
        assert torch.allclose(again, prediction, rtol=1e-5, atol=1e-3), f"{label}: the checkpoint does not restore its predictions"
    return result


# ---------------------------------------------------------------------------
# Helpers


def component_name(group: str, component: Any) -> str:
    """How YAML names `component`: a string as given, a class as ``module:QualName``.

    Raises:
        TypeError: a class that cannot be imported back by that name (e.g. defined
            inside a function): move it to module level or register it.
    """
    from fwi_lightning import registry

    if isinstance(component, str):
        return component
    target = f"{component.__module__}:{component.__qualname__}"
    try:
        found = registry.load(group, target)
    except Exception as exc:
        raise TypeError(f"{component!r} cannot be named in YAML ({exc}); define it at module level or register it") from exc
    if found is not component:
        raise TypeError(f"'{target}' imports a different object than {component!r}; define it at module level")
    return target


def _named(group: str, component: Any) -> str:
    """`component_name`, asserting that every YAML parameter of the component is annotated
    (validation checks a value against its annotation; without one, anything passes)."""
    from fwi_lightning import registry
    from fwi_lightning.signature import unannotated

    name = component_name(group, component)
    missing = unannotated(registry.load(group, name), group)
    assert not missing, (
        f"{registry.SINGULAR[group]} '{name}': parameter '{missing[0]}' has no type annotation, "
        "so validation cannot check its YAML value; annotate it (e.g. int, float, Sequence[float])")
    return name


def _default_callbacks() -> list[str]:
    from omegaconf import OmegaConf

    from fwi_lightning.config import DEFAULTS

    return list((OmegaConf.to_container(OmegaConf.load(DEFAULTS)).get("callbacks") or {}))


def nested_components(group: str, component: Any) -> dict[str, Any]:
    """The parameters of a component that hold other components, with their `ComponentRef`.

    E.g. ``{"network": ComponentRef("networks"), "losses": ComponentRef("losses", mapping=True, weighted=True)}``
    for the supervised paradigm.
    """
    from fwi_lightning import registry
    from fwi_lightning.signature import signature_of

    cls = registry.load(group, component_name(group, component))
    return {p.name: p.ref for p in signature_of(cls, group).params.values() if p.ref is not None}


def _with_network(model: dict[str, Any]) -> dict[str, Any]:
    """`model` with `TINY_NETWORK` (or the paradigm's `TINY_PARADIGM_NETWORKS` entry) in each
    single-network parameter it leaves unset."""
    own = TINY_PARADIGM_NETWORKS.get(model["name"], {})
    for param, ref in nested_components("paradigms", model["name"]).items():
        if ref.group == "networks" and not ref.mapping:
            model.setdefault(param, dict(own.get(param, TINY_NETWORK)))
    return model


def _validate(experiment: Mapping[str, Any]) -> None:
    from fwi_lightning.config import load_config, validate

    validate(load_config(None, values=dict(experiment)))


def _run_checked(experiment: dict[str, Any]) -> CheckRun:
    """Fit and test `experiment` in a temporary run folder; assert finite results."""
    with tempfile.TemporaryDirectory(prefix="fwi-contract-") as tmp:
        result = run_experiment({**experiment, "run_dir": tmp})
    assert result.test_metrics, "the check run's test logged nothing"
    bad = {k: v for k, v in {**result.fit_metrics, **result.test_metrics}.items() if not math.isfinite(v)}
    assert not bad, f"the check run logged non-finite values: {bad}"
    return result


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


def _loss_value(loss: Any, prediction: Any, batch: Mapping[str, Any]) -> Any:
    """A loss on a velocity prediction given as every output it reads (all velocity-shaped in a check)."""
    from fwi_lightning.losses.base import evaluate, reads_of

    return evaluate(loss, {name: prediction for name in reads_of(loss)}, batch)


def _assert_velocity(velocity: Any, problem: Any, batch_size: int, label: str) -> None:
    """[B, 1, NZ, NX] float32, finite, inside the velocity range."""
    import torch

    expected = (batch_size, 1, *problem.velocity_shape)
    assert isinstance(velocity, torch.Tensor), f"{label}: expected a tensor, got {_describe(velocity)}"
    assert tuple(velocity.shape) == expected, f"{label}: expected velocity {list(expected)}, got {list(velocity.shape)}"
    assert velocity.dtype == torch.float32, f"{label}: expected float32 velocity, got {velocity.dtype}"
    assert torch.isfinite(velocity).all(), f"{label}: non-finite velocity"
    lo, hi = problem.velocity_range
    slack = RANGE_TOLERANCE * hi
    found = (float(velocity.detach().min()), float(velocity.detach().max()))
    assert lo - slack <= found[0] and found[1] <= hi + slack, (
        f"{label}: velocity {found[0]:g}..{found[1]:g} m/s outside velocity_range [{lo:g}, {hi:g}]")


def _assert_batch(batch: Mapping[str, Any], problem: Any, label: str) -> None:
    import torch

    assert isinstance(batch, Mapping), f"{label}: expected a dict, got {type(batch).__name__}"
    data = batch.get("data")
    assert isinstance(data, torch.Tensor), f"{label}: no 'data' tensor"
    size = len(data)
    assert tuple(data.shape) == (size, *problem.data_shape), (
        f"{label}: expected data [B, {', '.join(map(str, problem.data_shape))}], got {list(data.shape)}")
    assert data.dtype == torch.float32 and torch.isfinite(data).all(), f"{label}: data should be finite float32"
    assert data.abs().sum() > 0, f"{label}: all-zero data"
    if batch.get("velocity") is not None:
        _assert_velocity(batch["velocity"], problem, size, label)
    for key in ("family", "index"):
        value = batch.get(key)
        assert isinstance(value, torch.Tensor) and value.shape == (size,) and not value.dtype.is_floating_point, (
            f"{label}: expected integer '{key}' [B], got {_describe(value)}")


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}{list(shape) if shape is not None else ''}"


__all__ = [
    "TINY_SURVEY", "TINY_VELOCITY_RANGE", "TINY_TRAINER", "TINY_SETTINGS", "TINY_PARADIGM_DATA", "TINY_PARADIGM_NETWORKS", "TINY_NETWORK", "RANGE_TOLERANCE",
    "tiny_settings", "tiny_survey", "tiny_data_config", "tiny_source_target_config", "tiny_datamodule", "tiny_problem", "tiny_batch",
    "tiny_experiment", "CheckRun", "run_experiment", "component_name", "nested_components", "single_threaded",
    "check_network", "check_loss", "check_velocity_family", "check_datamodule", "check_callback", "check_paradigm",
]
