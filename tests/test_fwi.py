"""Classical FWI (`fwi` paradigm), the single-survey data module, frequency continuation and initial models."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from fwi_lightning import testing
from fwi_lightning.cli import main
from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.paradigms.initial import check_initial, initial_velocity
from fwi_lightning.physics import filters

#: Two layers on the tiny grid: 2000 m/s above 80 m, 3000 m/s below (m/s).
TWO_LAYERS = np.where(np.arange(16)[:, None] < 8, 2000.0, 3000.0) * np.ones((16, 16))


@pytest.fixture(scope="module")
def two_layers(tmp_path_factory) -> dict:
    """The ``single_survey`` section of a two-layer model (a ``model_file`` window at the origin)."""
    path = tmp_path_factory.mktemp("fwi") / "two_layers.npy"
    np.save(path, TWO_LAYERS.astype(np.float32))
    survey = dict(testing.TINY_SURVEY, n_shots=4, nt=150)
    return {
        "name": "single_survey", "survey": survey, "velocity_range": [1500.0, 4500.0], "window_origin_m": [0.0, 0.0],
        "model": {"name": "model_file", "path": str(path), "file_spacing": 10.0, "fractions": {"test": 1.0}},
    }


def fwi_experiment(tmp_path: Path, data: dict, **model) -> dict:
    experiment = testing.tiny_experiment({"name": "fwi", **model}, data=data, run_dir=tmp_path)
    experiment["trainer"] = {**testing.TINY_TRAINER, "fast_dev_run": False, "max_epochs": 1, "log_every_n_steps": 1,
                             "check_val_every_n_epoch": 1}
    return experiment


# ---------------------------------------------------------------------------
# the data module


def test_single_survey_serves_its_true_model_and_the_operators_data(two_layers):
    datamodule = testing.tiny_datamodule(two_layers)
    batch = datamodule.processed()
    assert torch.equal(batch["velocity"][0, 0], torch.as_tensor(TWO_LAYERS, dtype=torch.float32))
    # the observed data is the data module's own operator applied to the true model (what the physics loss compares)
    expected = datamodule.problem.forward_operator()(batch["velocity"])
    assert torch.allclose(batch["data"], expected, atol=1e-6 * float(expected.abs().max()))
    train = list(datamodule.dataloader("train"))
    assert len(train) == 1 and torch.equal(train[0]["data"], datamodule.dataloader("val").dataset.item["data"][None])


def test_single_survey_knob_filters_the_observed_data(two_layers):
    datamodule = testing.tiny_datamodule(two_layers)
    full = datamodule.processed()["data"]
    datamodule.set_knob("bandpass", [None, 5.0])
    low = datamodule.processed()["data"]
    assert torch.allclose(low, filters.bandpass(full, 0.002, None, 5.0), atol=1e-6 * float(full.abs().max()))
    power = lambda d: torch.fft.rfft(d, dim=2).abs().pow(2).sum(dim=(0, 1, 3))  # noqa: E731
    high = torch.fft.rfftfreq(full.shape[2], d=0.002) > 15.0
    assert power(low)[high].sum() < 0.01 * power(full)[high].sum()
    with pytest.raises(ConfigError, match="unknown knob"):
        datamodule.set_knob("bandpas", [None, 5.0])


def test_observed_file_is_read_and_checked_against_the_survey(two_layers, tmp_path):
    datamodule = testing.tiny_datamodule(two_layers)
    clean = datamodule.clean_data()[0].numpy()
    np.save(tmp_path / "observed.npy", 2.0 * clean)
    unlabelled = {k: v for k, v in two_layers.items() if k not in ("model", "window_origin_m")}
    from_file = testing.tiny_datamodule({**unlabelled, "observed": str(tmp_path / "observed.npy")})
    batch = from_file.processed()
    assert "velocity" not in batch and torch.allclose(batch["data"][0], torch.as_tensor(2.0 * clean))
    np.save(tmp_path / "short.npy", clean[:, :10])
    with pytest.raises(DataError, match=r"\[4, 150, 16\]") as error:
        testing.tiny_datamodule({**unlabelled, "observed": str(tmp_path / "short.npy")}).problem
    assert error.value.key == "observed"  # relative to the data section; fwi-run prefixes it (see the CLI test)
    with pytest.raises(ConfigError, match="no true model and no observed data"):
        testing.tiny_datamodule(unlabelled)


def test_window_outside_the_model_is_refused(two_layers):
    with pytest.raises(ConfigError, match="leaves the model") as error:
        testing.tiny_datamodule({**two_layers, "window_origin_m": [0.0, 50.0]})
    assert error.value.key == "data.window_origin_m"


# ---------------------------------------------------------------------------
# frequency continuation


def test_frequency_curriculum_turns_the_band_of_data_and_operator_together(two_layers):
    """FWI's frequency continuation is the shared `frequency_curriculum`: the knob it turns
    band-limits the observed data and the operator the physics loss re-simulates with."""
    from fwi_lightning.callbacks.curricula import FrequencyCurriculum

    class Trainer:
        datamodule = testing.tiny_datamodule(two_layers)
        current_epoch = 0
        global_step = 0

    callback = FrequencyCurriculum(schedule={"kind": "step", "stages": [[0, 4.0], [1, 8.0], [3, None]]})
    seen = []
    for epoch in range(5):
        Trainer.current_epoch = epoch
        callback.on_train_epoch_start(Trainer, None)
        seen.append(Trainer.datamodule.knobs()["bandpass"])
    assert seen == [[None, 4.0], [None, 8.0], [None, 8.0], None, None]
    assert Trainer.datamodule.problem.forward_operator().bandpass is None


# ---------------------------------------------------------------------------
# initial models


def test_initial_models(two_layers, tmp_path):
    datamodule = testing.tiny_datamodule(two_layers)
    problem = datamodule.problem
    smoothed = initial_velocity(check_initial({"name": "smoothed_truth", "sigma_m": 30.0}), problem, datamodule)
    assert np.allclose(smoothed[0, 0].numpy(), gaussian_filter(TWO_LAYERS, 3.0, mode="nearest"), atol=1e-3)
    linear = initial_velocity(check_initial({"name": "linear", "v_top_mps": 1500.0, "v_bottom_mps": 3000.0}), problem, datamodule)
    assert linear[0, 0, 0, 3] == 1500.0 and linear[0, 0, -1, 3] == 3000.0 and linear[0, 0, 5, 0] == linear[0, 0, 5, 15]
    np.save(tmp_path / "start.npy", np.full((16, 16), 9000.0, dtype=np.float32))
    from_file = initial_velocity(check_initial({"name": "file", "path": str(tmp_path / "start.npy")}), problem, datamodule)
    assert float(from_file.max()) == 4500.0  # clipped to the velocity range
    np.save(tmp_path / "two_layers.npy", TWO_LAYERS)
    blurred = initial_velocity(check_initial({"name": "file", "path": str(tmp_path / "two_layers.npy"), "sigma_m": 30.0}),
                               problem, datamodule)
    assert np.allclose(blurred[0, 0].numpy(), smoothed[0, 0].numpy())  # sigma_m blurs a file (or a run) as the truth
    with pytest.raises(ConfigError) as error:
        check_initial({"name": "linear", "v_top_mps": 1500.0})
    assert error.value.key == "initial.v_bottom_mps"


# ---------------------------------------------------------------------------
# fitting


def test_fwi_lowers_the_model_error_of_a_smoothed_start_and_writes_the_final_model(two_layers, tmp_path):
    data = {**two_layers, "steps_per_epoch": 80}
    experiment = fwi_experiment(tmp_path, data, optimizer={"name": "adam", "lr": 0.02},
                                initial={"name": "smoothed_truth", "sigma_m": 40.0})
    result = testing.run_experiment(experiment)
    module = result.run.model
    start = gaussian_filter(TWO_LAYERS, 4.0, mode="nearest")
    final = np.load(Path(result.run.trainer.default_root_dir) / "final_velocity.npy")
    assert final.shape == (16, 16)
    assert np.array_equal(final, module.current_velocity()[0, 0].detach().numpy())
    start_mae, final_mae = np.abs(start - TWO_LAYERS).mean(), np.abs(final - TWO_LAYERS).mean()
    assert final_mae < 0.7 * start_mae, (start_mae, final_mae)
    assert -1.0 <= float(module.grid.min()) and float(module.grid.max()) <= 1.0
    assert result.fit_metrics["train/model_mae_mps"] == pytest.approx(np.abs(
        module.current_velocity()[0, 0].detach().numpy() - TWO_LAYERS).mean(), rel=0.2)


def test_lbfgs_runs_with_lightnings_closure_and_lowers_the_data_misfit(two_layers, tmp_path):
    import csv

    experiment = fwi_experiment(tmp_path, {**two_layers, "steps_per_epoch": 4},
                                optimizer={"name": "lbfgs", "lr": 1.0, "max_iter": 5, "line_search_fn": "strong_wolfe"},
                                initial={"name": "smoothed_truth", "sigma_m": 40.0})
    testing.run_experiment(experiment)
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    misfits = [float(r["train/data_misfit"]) for r in rows if r.get("train/data_misfit")]
    assert len(misfits) >= 4  # one logged value per closure evaluation (several per L-BFGS step)
    assert misfits[-1] < 0.5 * misfits[0], misfits


def test_bounds_hold_after_a_step_that_would_leave_them(two_layers, tmp_path):
    experiment = fwi_experiment(tmp_path, {**two_layers, "steps_per_epoch": 2}, optimizer={"name": "sgd", "lr": 1.0e6},
                                initial={"name": "linear", "v_top_mps": 1600.0, "v_bottom_mps": 4400.0})
    result = testing.run_experiment(experiment)
    module = result.run.model
    grid = module.grid.detach()
    assert -1.0 <= float(grid.min()) and float(grid.max()) <= 1.0
    assert float(grid.min()) == -1.0 or float(grid.max()) == 1.0  # the huge step was projected onto a bound
    lo, hi = module.problem.velocity_range
    velocity = module.current_velocity().detach()
    assert lo <= float(velocity.min()) and float(velocity.max()) <= hi


def test_fwi_contract():
    testing.check_paradigm("fwi", callbacks={"frequency_curriculum": {"schedule": {"kind": "step", "stages": [[0, 10.0], [1, None]]}}})


# ---------------------------------------------------------------------------
# bad input through the command line


def _experiment_file(tmp_path: Path, two_layers: dict, **model) -> Path:
    import yaml

    values = fwi_experiment(tmp_path / "runs", copy.deepcopy(two_layers), **model)
    values.pop("run_dir")
    path = tmp_path / "fwi.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize(("case", "overrides", "fragments"), [
    ("missing-observed", ["data.model=null", "data.window_origin_m=null", "data.observed=/nonexistent/obs.npy"],
     ["/nonexistent/obs.npy", "data.observed"]),
    ("lbfgs-shot-subset", ["model.optimizer={name: lbfgs}", "model.losses={physics: {weight: 1.0, shots: 2}}"],
     ["model.optimizer.name", "L-BFGS"]),
    ("initial-run-missing", ["model.initial={name: run, path: /nonexistent/run}"], ["model.initial.path", "/nonexistent/run"]),
])
def test_bad_fwi_input_gives_one_line_and_exit_2(case, overrides, fragments, two_layers, tmp_path, capsys):
    path = _experiment_file(tmp_path, two_layers)
    runs = tmp_path / "runs"
    earlier = runs / "fwi" / "fwi-earlier"
    earlier.mkdir(parents=True)
    (earlier / "final_velocity.npy").write_bytes(b"kept")
    status = main([str(path), f"run_dir={runs}", *overrides])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    assert (earlier / "final_velocity.npy").read_bytes() == b"kept"
