"""`fwi-run predict`: recorded gathers (SEG-Y IBM and IEEE floats, npy) -> velocity as npy,
SEG-Y and PNG; geometry adapted only by explicit options, else one line; optional refinement
by the fwi paradigm.

The predictions are compared with the checkpoint loaded by hand and run on the gathers the
tiny data module simulates (not through fwi_lightning.predict).
"""

from __future__ import annotations

import numpy as np
import pytest
import segyio
import torch
from matplotlib.image import imread

from fwi_lightning.cli import main
from fwi_lightning.evaluate import find_checkpoint
from fwi_lightning.predict import resample
from fwi_lightning.testing import tiny_batch
from results_helpers import load_direct, train, write_shots_segy


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, test batch of the tiny preset, the hand-loaded model's velocity for it [B, NZ, NX])."""
    run_dir = train(tmp_path_factory.mktemp("predict"))
    batch = tiny_batch("test")
    model = load_direct(find_checkpoint(run_dir))
    with torch.no_grad():
        expected = model(batch["data"])[:, 0].numpy()
    return run_dir, batch["data"].numpy(), expected


def outputs(prefix):
    return [prefix.with_name(prefix.name + s) for s in (".npy", ".segy", ".png")]


def test_round_trip_ibm_ieee_and_npy_to_npy_segy_png(trained, tmp_path, capsys):
    run_dir, data, expected = trained
    shots = data[0]  # [S, T, R] of test sample 0
    inputs = {
        "ibm": write_shots_segy(tmp_path / "ibm.sgy", shots, 0.002, fmt=1),
        "ieee": write_shots_segy(tmp_path / "ieee.segy", shots, 0.002, fmt=5),
        "npy": tmp_path / "shots.npy",
    }
    np.save(inputs["npy"], shots)
    for name, path in inputs.items():
        prefix = tmp_path / "out" / name
        assert main(["predict", str(run_dir), str(path), "--output", str(prefix)]) == 0
        printed = capsys.readouterr().out.split()
        npy, segy, png = outputs(prefix)
        assert [str(p) for p in (npy, segy, png)] == [w for w in printed if w != "wrote"]

        velocity = np.load(npy)
        assert velocity.shape == (16, 16)
        np.testing.assert_allclose(velocity, expected[0], rtol=1e-4 if name == "ibm" else 1e-6)

        with segyio.open(str(segy), ignore_geometry=True) as f:
            assert f.tracecount == 16 and len(f.samples) == 16  # one trace per lateral position, depth samples
            assert f.bin[segyio.BinField.Interval] == 10_000  # 10 m, in mm
            assert [f.header[i][segyio.TraceField.CDP_X] / 100 for i in (0, 15)] == [0.0, 150.0]
            np.testing.assert_array_equal(np.stack([f.trace[i] for i in range(16)], axis=1), velocity)

        image = imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_a_stack_of_samples_gives_one_file_per_sample(trained, tmp_path, capsys):
    run_dir, data, expected = trained
    np.save(tmp_path / "stack.npy", data)
    assert main(["predict", str(run_dir), str(tmp_path / "stack.npy"), "--formats", "npy,segy"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "stack-velocity.npy"), expected, rtol=1e-6)
    assert sorted(p.name for p in tmp_path.glob("stack-velocity-*.segy")) == ["stack-velocity-0.segy", "stack-velocity-1.segy"]


def test_geometry_mismatch_lists_both_geometries_exit_2(trained, tmp_path, capsys):
    run_dir, data, _ = trained
    wide = np.concatenate([data[0], data[0][:, :, :4]], axis=2)  # 20 receivers, not 16
    path = write_shots_segy(tmp_path / "wide.sgy", wide, 0.004, fmt=1)
    assert main(["predict", str(run_dir), str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "(2 shots x 20 receivers, 120 samples of 4 ms)" in captured.err
    assert "(2 shots x 16 receivers, 120 samples of 2 ms)" in captured.err
    assert captured.out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["wide.sgy"]


def test_explicit_selection_and_resampling_adapt_the_input(trained, tmp_path, capsys):
    """4 shots of which 1 and 3 are the survey's, 20 receivers of which 2..17, at 1 ms over 0.3 s:
    selected and resampled to 2 ms x 120 samples, the prediction equals the one from the survey's own gathers."""
    run_dir, data, expected = trained
    shots = data[0]  # [2, 120, 16] at 2 ms
    fine = np.zeros((2, 300, 16), dtype=np.float32)
    t_fine = np.arange(300) * 0.001
    for s in range(2):
        for r in range(16):
            fine[s, :, r] = np.interp(t_fine, np.arange(120) * 0.002, shots[s, :, r], right=0.0)
    recorded = np.zeros((4, 300, 20), dtype=np.float32)
    recorded[[1, 3], :, 2:18] = fine
    path = write_shots_segy(tmp_path / "field.sgy", recorded, 0.001, fmt=5)
    args = ["predict", str(run_dir), str(path), "--formats", "npy", "-o", str(tmp_path / "v")]
    assert main([*args, "--shots", "1,3", "--receivers", "2:18"]) == 2  # still 1 ms x 300
    assert "after the selections (2 shots x 16 receivers, 300 samples of 1 ms)" in capsys.readouterr().err
    assert main([*args, "--shots", "1,3", "--receivers", "2:18", "--resample-time"]) == 0
    adapted = np.load(tmp_path / "v.npy")
    reference = np.abs(expected[0]).mean()
    assert np.abs(adapted - expected[0]).mean() < 0.02 * reference  # resampling is not exact at the band edge


def test_resample_matches_an_analytic_sine():
    t_in = np.arange(400) * 0.001
    data = np.sin(2 * np.pi * 12.0 * t_in).astype(np.float32)[None, None, :, None]
    out = resample(data, 0.001, 0.004, 80)  # 4 ms, 80 samples: cut from 100
    t_out = np.arange(80) * 0.004
    assert out.shape == (1, 1, 80, 1)
    np.testing.assert_allclose(out[0, 0, 10:70, 0], np.sin(2 * np.pi * 12.0 * t_out[10:70]), atol=0.01)
    padded = resample(data, 0.001, 0.001, 500)
    assert padded.shape[2] == 500 and not padded[0, 0, 400:].any()


def test_refinement_by_the_fwi_paradigm_lowers_the_data_misfit(trained, tmp_path, capsys):
    run_dir, data, expected = trained
    np.save(tmp_path / "shots.npy", data[0])
    assert main(["predict", str(run_dir), str(tmp_path / "shots.npy"), "--refine", "4", "--refine-lr", "0.05",
                 "--formats", "npy", "-o", str(tmp_path / "r")]) == 0
    assert "refined by 4 fwi iterations" in capsys.readouterr().err
    refined = np.load(tmp_path / "r.npy")
    assert not np.allclose(refined, expected[0])
    operator = load_direct(find_checkpoint(run_dir)).problem.forward_operator()
    observed = torch.from_numpy(data[:1])

    def misfit(velocity):
        with torch.no_grad():
            simulated = operator(torch.from_numpy(velocity)[None, None].float())
        return float((simulated - observed).norm() / observed.norm())

    assert misfit(refined) < misfit(expected[0])


@pytest.mark.parametrize("case", ["no checkpoint", "truncated", "not segy", "bad selection", "missing header field", "no such device"])
def test_bad_input_is_one_line_exit_2_nothing_written(trained, tmp_path, capsys, case):
    run_dir, data, _ = trained
    good = write_shots_segy(tmp_path / "good.sgy", data[0], 0.002, fmt=1)
    target, source, extra = str(run_dir), str(good), []
    if case == "no checkpoint":
        (tmp_path / "empty_run").mkdir()
        target = str(tmp_path / "empty_run")
    elif case == "truncated":
        source = str(tmp_path / "cut.sgy")
        (tmp_path / "cut.sgy").write_bytes(good.read_bytes()[:5000])
    elif case == "not segy":
        source = str(tmp_path / "notes.txt")
        (tmp_path / "notes.txt").write_text("x" * 5000)
    elif case == "bad selection":
        extra = ["--shots", "0,7"]
    elif case == "missing header field":
        extra = ["--group-by", "ShotPoint"]
    else:
        extra = ["--device", "nonsense"]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["predict", target, source, "-o", str(tmp_path / "out"), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_foreign_checkpoint_is_one_line(tmp_path, capsys):
    torch.save([1, 2, 3], tmp_path / "list.ckpt")
    np.save(tmp_path / "shots.npy", np.zeros((2, 120, 16), np.float32))
    assert main(["predict", str(tmp_path / "list.ckpt"), str(tmp_path / "shots.npy")]) == 2
    err = capsys.readouterr().err
    assert "was not written by an fwi-lightning run" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.ckpt", "shots.npy"]
