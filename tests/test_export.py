"""`fwi-run export`: an OpenFWI-layout dataset from a family mix, equal to the same samples
simulated directly, read back and trained on by the `openfwi` data module, resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

import fwi_lightning.export as export
from fwi_lightning.cli import main
from fwi_lightning.data.simulated import choose_family
from fwi_lightning.physics.simulator import Simulator
from fwi_lightning.testing import TINY_SURVEY, run_experiment, tiny_data_config, tiny_datamodule, tiny_experiment

FAMILIES = {"flatvel": 1.0, "curvevel": 1.0}


@pytest.fixture
def experiment(tmp_path):
    values = tiny_experiment({"name": "supervised", "network": {"name": "tiny", "width": 4}},
                             data=tiny_data_config(families=FAMILIES))
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))  # the family order is the YAML's
    return path


def export_to(experiment, out, samples=5, per_file=3, *extra):
    return main(["export", str(experiment), str(out), "--samples", str(samples), "--per-file", str(per_file), *extra])


def test_first_file_equals_the_samples_simulated_directly(experiment, tmp_path, capsys):
    out = tmp_path / "ds"
    assert export_to(experiment, out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["data1.npy", "data2.npy", "export.json", "model1.npy", "model2.npy"]
    data, models = np.load(out / "data1.npy"), np.load(out / "model1.npy")
    assert data.shape == (3, 2, 120, 16) and data.dtype == np.float32
    assert models.shape == (3, 1, 16, 16) and np.load(out / "data2.npy").shape == (2, 2, 120, 16)

    # directly: each family's own sample at (seed 0, train, index), simulated by a Simulator of the survey
    module = tiny_datamodule(tiny_data_config(families=FAMILIES))
    families = [family for _, family, _ in module.split_families["train"]]
    simulator = Simulator(module.operator.survey.__class__(**TINY_SURVEY), (1500.0, 4500.0), "fast", step_buckets=True)
    data = np.concatenate([data, np.load(out / "data2.npy")])
    models = np.concatenate([models, np.load(out / "model2.npy")])
    drawn = []
    for i in range(5):
        choice = choose_family(0, "train", i, [0.5, 0.5])
        drawn.append(choice)
        model = families[choice].sample(0, "train", i)
        np.testing.assert_array_equal(models[i, 0], model)
        with torch.no_grad():
            direct = simulator(torch.from_numpy(model)[None]).numpy()[0]
        np.testing.assert_allclose(data[i], direct, rtol=1e-5, atol=1e-6 * np.abs(direct).max())
    assert set(drawn) == {0, 1}  # both families in the export (sample 4 is curvevel)


def test_the_openfwi_module_trains_on_the_export(experiment, tmp_path):
    out = tmp_path / "ds"
    assert export_to(experiment, out, 8, 2) == 0
    data = {"name": "openfwi", "data_dir": str(out), "file_split": {"train": 0.5, "val": 0.25, "test": 0.25},
            "survey": {k: TINY_SURVEY[k] for k in ("spacing", "dt", "peak_freq")}, "batch_size": 2}
    check = run_experiment(tiny_experiment({"name": "supervised", "network": {"name": "tiny", "width": 4}}, data=data,
                                           run_dir=tmp_path / "runs"))
    problem = check.run.datamodule.problem
    assert problem.data_shape == (2, 120, 16) and problem.velocity_shape == (16, 16)
    assert len(check.run.datamodule.datasets["train"]) == 4
    assert np.isfinite(check.fit_metrics["train/loss"]) and np.isfinite(check.test_metrics["test/mae"])


def test_an_interrupted_export_resumes_at_the_first_missing_pair(experiment, tmp_path, monkeypatch, capsys):
    reference = tmp_path / "reference"
    assert export_to(experiment, reference, 7, 3) == 0
    out = tmp_path / "ds"
    real = export.simulate_rows
    calls = []

    def interrupted(datamodule, split, start, stop, advance=lambda n: None, device=None):
        calls.append(start)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(datamodule, split, start, stop, advance, device)

    monkeypatch.setattr(export, "simulate_rows", interrupted)
    assert export_to(experiment, out, 7, 3) == 130
    assert sorted(p.name for p in out.iterdir()) == ["data1.npy", "export.json", "model1.npy"]  # nothing half-written
    first = (out / "data1.npy").stat().st_mtime_ns
    (out / ".data2.tmp-99999.npy").write_bytes(b"stale")  # a killed run's leftover

    monkeypatch.setattr(export, "simulate_rows", real)
    assert export_to(experiment, out, 7, 3) == 0
    assert "resumed: 1 of 3 file pairs were complete" in capsys.readouterr().err
    assert (out / "data1.npy").stat().st_mtime_ns == first
    assert not list(out.glob(".*"))
    for k in (1, 2, 3):
        for kind in ("data", "model"):
            np.testing.assert_array_equal(np.load(out / f"{kind}{k}.npy"), np.load(reference / f"{kind}{k}.npy"))


def test_other_settings_in_the_same_folder_are_refused(experiment, tmp_path, capsys):
    out = tmp_path / "ds"
    assert export_to(experiment, out, 2, 2) == 0
    capsys.readouterr()
    assert export_to(experiment, out, 2, 2, "data.survey.nt=100") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds an export with other settings (data, shapes differ)" in err
    assert np.load(out / "data1.npy").shape == (2, 2, 120, 16)


def test_export_needs_the_simulated_module(experiment, tmp_path, capsys):
    assert export_to(experiment, tmp_path / "ds", 2, 2) == 0
    values = tiny_experiment({"name": "supervised", "network": {"name": "tiny", "width": 4}},
                             data={"name": "openfwi", "data_dir": str(tmp_path / "ds"), "file_split": {"train": 1.0}})
    (tmp_path / "files.yaml").write_text(yaml.safe_dump(values))
    capsys.readouterr()
    assert export_to(tmp_path / "files.yaml", tmp_path / "again", 2, 2) == 2
    err = capsys.readouterr().err
    assert "data.name must be 'simulated'" in err and err.count("\n") == 1


# -- simulation settings of the pipelines (small items of the same step) ----------------


def test_a_coarse_record_is_simulated_without_deepwaves_notice(monkeypatch):
    """dt = 10 ms at 10 m and 4500 m/s takes 9 CFL sub-steps per sample: deepwave says so, the simulator does not."""
    import warnings

    import deepwave
    import deepwave._common

    from fwi_lightning.physics.survey import Survey

    survey = Survey(nz=16, nx=16, spacing=10.0, nt=30, dt=0.01, peak_freq=5.0, n_shots=1, n_receivers=4)
    simulator = Simulator(survey, (1500.0, 4500.0), "fast")
    velocity = torch.full((1, 16, 16), 2000.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monkeypatch.setattr(deepwave._common, "_warned_once_causes", set())
        simulator(velocity)
        quiet = [str(w.message) for w in caught]
        monkeypatch.setattr(deepwave._common, "_warned_once_causes", set())
        deepwave.scalar(velocity, 10.0, 0.01, source_amplitudes=torch.ones(1, 1, 30), source_locations=torch.tensor([[[1, 8]]]),
                        receiver_locations=torch.tensor([[[1, 2]]]), max_vel=4500.0, pml_width=10, courant_number=0.7)
        direct = [str(w.message) for w in caught[len(quiet):]]
    assert any("exceeds the stable internal time step" in m for m in direct)  # the case arises
    assert not any("exceeds the stable internal time step" in m for m in quiet)


def test_data_misfit_of_a_checkpoint_simulates_with_the_pipelines_threads(monkeypatch):
    """A problem rebuilt from a checkpoint's settings has a simulator without a thread setting; the metric
    still simulates on one thread (the data pipeline's), with the same numbers."""
    import deepwave

    from fwi_lightning.metrics.data_misfit import PIPELINE_CPU_THREADS, DataMisfit
    from fwi_lightning.problem import Problem

    module = tiny_datamodule()
    rebuilt = Problem.from_dict(module.problem.to_dict())
    assert rebuilt.forward_operator().simulator.cpu_threads is None
    velocity = torch.full((1, 1, 16, 16), 2500.0)
    observed = module.operator(torch.full((1, 1, 16, 16), 2600.0))
    seen = []
    real = deepwave.scalar

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(deepwave, "scalar", spy)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        metric = DataMisfit(rebuilt)
        metric.update(velocity, observed)
        assert seen == [PIPELINE_CPU_THREADS] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        expected = (observed - rebuilt.forward_operator()(velocity)).norm() / observed.norm()
    assert float(metric.compute()) == pytest.approx(float(expected), rel=1e-6)


def test_simulating_on_a_device_gives_the_same_files(experiment, tmp_path, capsys):
    """The device path (velocity-only batches simulated where they are, as on a GPU) on the CPU device."""
    assert export_to(experiment, tmp_path / "loader", 3, 2) == 0
    assert export_to(experiment, tmp_path / "device", 3, 2, "--device", "cpu") == 0
    for name in ("data1.npy", "data2.npy", "model1.npy", "model2.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "device" / name), np.load(tmp_path / "loader" / name))
    assert export_to(experiment, tmp_path / "nowhere", 3, 2, "--device", "nonsense") == 2
    assert "cannot simulate on 'nonsense'" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()


def test_more_samples_and_other_workers_extend_the_export(experiment, tmp_path, capsys):
    out = tmp_path / "ds"
    assert export_to(experiment, out, 4, 3) == 0
    first = (out / "data1.npy").stat().st_mtime_ns
    assert export_to(experiment, out, 7, 3, "data.batch_size=1") == 0
    assert "resumed: 1 of 3 file pairs were complete" in capsys.readouterr().err
    assert (out / "data1.npy").stat().st_mtime_ns == first
    assert [np.load(out / f"model{k}.npy").shape[0] for k in (1, 2, 3)] == [3, 3, 1]  # the short file was rewritten
    assert export_to(tmp_path / "mix.yaml", tmp_path / "ref", 7, 3) == 0
    for k in (1, 2, 3):
        np.testing.assert_array_equal(np.load(out / f"data{k}.npy"), np.load(tmp_path / "ref" / f"data{k}.npy"))
