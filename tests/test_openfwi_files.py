"""OpenFWI files as downloaded: the FlatVel-A experiment from a data_dir, pairing by name,
OpenFWI's split and normalisation range, and the bad inputs a new user hit."""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from fwi_lightning.cli import main
from fwi_lightning.data.families.model_file import ModelFile, resampling_bytes
from fwi_lightning.data.openfwi import OpenFWIDataModule, split_by_file
from fwi_lightning.errors import ConfigError, DataError

EXPERIMENT = Path(__file__).parents[1] / "experiments" / "openfwi_flatvel_a.yaml"

#: Tiny OpenFWI layout: 4 pairs of 4 samples, 5 shots x 100 samples x 16 receivers, 16 x 16 cells.
FILES, ROWS, DATA_SHAPE, MODEL_SHAPE = 4, 4, (5, 100, 16), (1, 16, 16)


def write_layout(root: Path, files: int = FILES, subfolders: bool = True, high: float = 4500.0) -> Path:
    """OpenFWI's download layout: data/data{i}.npy [N, S, T, R] and model/model{i}.npy [N, 1, NZ, NX] m/s."""
    rng = np.random.default_rng(1)
    data_dir, model_dir = (root / "data", root / "model") if subfolders else (root, root)
    data_dir.mkdir(parents=True, exist_ok=True)
    model_dir.mkdir(parents=True, exist_ok=True)
    for i in range(1, files + 1):
        np.save(data_dir / f"data{i}.npy", (rng.standard_normal((ROWS, *DATA_SHAPE)) * 5).astype(np.float32))
        np.save(model_dir / f"model{i}.npy", rng.uniform(1600.0, high, (ROWS, *MODEL_SHAPE)).astype(np.float32))
    return root


def run_cli(*args, capsys):
    status = main([str(a) for a in args])
    return status, capsys.readouterr().err.strip()


def test_flatvel_a_experiment_trains_and_tests_from_data_dir_alone(tmp_path, capsys):
    root = write_layout(tmp_path / "flatvel-a")
    small = [
        f"data.data_dir={root}", f"run_dir={tmp_path / 'runs'}", "model.network={name: tiny, width: 4}",
        "data.batch_size=2", "data.num_workers=0", "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.devices=1",
        "logger.name=csv", "callbacks.figures=null",
    ]
    status = main([str(EXPERIMENT), *small])
    out = capsys.readouterr()
    assert status == 0, out.err
    run_dir = Path(out.out.strip().splitlines()[-1].removeprefix("run dir: "))
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = summary["metrics"]
    assert metrics and all(math.isfinite(v) for v in metrics.values())
    # 3 training files of 4 rows in batches of 2 -> 6 steps; the last file (4 rows) tests
    assert summary["global_step"] == 6
    mae = [v for k, v in metrics.items() if k.startswith("test/mae")]
    assert mae and 0 < mae[0] < 3000.0


def test_data_dir_splits_by_file_as_openfwi_and_takes_shapes_and_range(tmp_path):
    root = write_layout(tmp_path / "flatvel-a")
    dm = OpenFWIDataModule(data_dir=str(root), batch_size=2)
    names = {split: [Path(f).name for f in ds.data_files] for split, ds in dm.datasets.items()}
    assert names == {"train": ["data1.npy", "data2.npy", "data3.npy"], "val": ["data4.npy"], "test": ["data4.npy"]}
    assert dm.datasets["val"] is dm.datasets["test"]  # OpenFWI validates on its test files
    assert [Path(f).name for f in dm.datasets["train"].model_files] == ["model1.npy", "model2.npy", "model3.npy"]
    problem = dm.problem
    assert problem.velocity_range == (1500.0, 4500.0)
    assert problem.data_shape == DATA_SHAPE and problem.velocity_shape == MODEL_SHAPE[1:]
    batch = next(iter(dm.test_dataloader()))
    expected = np.load(root / "model" / "model4.npy")[batch["index"].numpy()]
    assert np.array_equal(batch["velocity"].numpy(), expected)


def test_split_by_file_gives_openfwi_flatvel_a_its_48_and_12_files():
    files = [f"data{i}.npy" for i in range(1, 61)]
    split = split_by_file(files, {"train": 0.8, "test": 0.2}, "flatvel-a")
    assert split["train"] == files[:48] and split["test"] == files[48:] and split["val"] is split["test"]
    own = split_by_file(files, {"train": 0.8, "val": 0.1, "test": 0.1}, "flatvel-a")
    assert (len(own["train"]), own["val"], own["test"]) == (48, files[48:54], files[54:])
    with pytest.raises(DataError, match="too few for file_split"):
        split_by_file(files[:2], {"train": 0.5, "val": 0.1, "test": 0.4}, "tiny")


def test_model_files_pair_with_data_files_by_name(tmp_path):
    root = write_layout(tmp_path / "flat", files=2, subfolders=False)
    dm = OpenFWIDataModule(data_files={"train": str(root / "data*.npy")})
    assert [Path(f).name for f in dm.datasets["train"].model_files] == ["model1.npy", "model2.npy"]
    assert "velocity" in dm.datasets["train"][0]
    unlabelled = OpenFWIDataModule(data_files={"train": str(root / "data*.npy")}, labels=False)
    assert "velocity" not in unlabelled.datasets["train"][0]
    (root / "model2.npy").unlink()
    with pytest.raises(DataError, match="data2.npy: no model file pairs.*model2.npy.*model_files.train.*labels: false"):
        OpenFWIDataModule(data_files={"train": str(root / "data*.npy")})


def test_velocity_range_is_a_stated_setting_and_outside_cells_are_reported(tmp_path):
    root = write_layout(tmp_path / "fast", files=1, high=6000.0)
    models = np.load(root / "model" / "model1.npy")
    outside = int((models > 4500.0).sum())
    with pytest.warns(UserWarning, match=rf"model1.npy: {outside} of {models.size} cells .* outside velocity_range \[1500, 4500\]"):
        problem = OpenFWIDataModule(data_files={"train": str(root / "data" / "data*.npy")}).problem
    assert problem.velocity_range == (1500.0, 4500.0)
    sampled = OpenFWIDataModule(data_files={"train": str(root / "data" / "data*.npy")}, velocity_range=None).problem
    assert sampled.velocity_range == pytest.approx((models.min(), models.max()))


def test_nan_in_data_names_the_file_and_row(tmp_path):
    root = write_layout(tmp_path / "nan", files=2)
    data = np.load(root / "data" / "data2.npy")
    data[1, 0, 5, 3] = np.nan
    np.save(root / "data" / "data2.npy", data)
    dm = OpenFWIDataModule(data_files={"train": str(root / "data" / "data*.npy")})
    with pytest.raises(DataError, match="data2.npy: row 1 holds 1 NaN"):
        for i in range(len(dm.datasets["train"])):
            dm.datasets["train"][i]


def test_null_entries_count_as_not_given(tmp_path):
    root = write_layout(tmp_path / "a", files=2)
    listing = tmp_path / "test.txt"
    listing.write_text(f"{root}/data/data2.npy\t{root}/model/model2.npy\n")
    dm = OpenFWIDataModule(
        data_files={"train": str(root / "data" / "data1.npy"), "test": None}, split_files={"test": str(listing)},
        model_files={"train": None},
    )
    assert dm.datasets["test"].data_files == [f"{root}/data/data2.npy"]
    assert dm.datasets["train"].model_files == [str(root / "model" / "model1.npy")]


def write_segy(path: Path) -> None:
    """A minimal SEG-Y: EBCDIC textual header of 'C' lines, binary header with format code 5 (IEEE float)."""
    textual = ("C 1 SEG-Y WRITTEN FOR A TEST".ljust(80) * 40).encode("cp500")
    binary = bytearray(400)
    binary[24:26] = (5).to_bytes(2, "big")
    path.write_bytes(textual + bytes(binary) + bytes(240 + 4 * 100))


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("null-model-files", None),
        ("null-data-files", None),
        ("segy", ["data1.npy", "looks like a SEG-Y file", "expected OpenFWI data [N, shots, time, receivers] saved with numpy.save"]),
        ("nan", ["data1.npy", "row 0 holds", "NaN"]),
        ("unpaired", ["data1.npy", "no model file pairs", "model_files.train"]),
        ("bad-file-split", ["key 'data.file_split.tran'", "unknown split"]),
    ],
)
def test_bad_inputs_exit_2_with_one_line_or_run(tmp_path, capsys, case, fragments):
    root = write_layout(tmp_path / "f")
    args = [EXPERIMENT, f"data.data_dir={root}", "model.network={name: tiny, width: 4}", "--dry-run"]
    if case == "null-model-files":
        args.append("data.model_files.test=null")
    elif case == "null-data-files":
        listing = tmp_path / "test.txt"
        listing.write_text(f"{root}/data/data2.npy\t{root}/model/model2.npy\n")
        args += ["data.data_files.test=null", f"data.split_files.test={listing}"]
    elif case == "segy":
        write_segy(root / "data" / "data1.npy")
    elif case == "nan":
        data = np.load(root / "data" / "data1.npy")
        data[0, 0, 0, 0] = np.nan
        np.save(root / "data" / "data1.npy", data)
    elif case == "unpaired":
        (root / "model" / "model1.npy").unlink()
    elif case == "bad-file-split":
        args.append("data.file_split={tran: 0.8, test: 0.2}")
    status, err = run_cli(*args, capsys=capsys)
    if fragments is None:
        assert status == 0, err
        return
    assert status == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, err


def test_model_file_refuses_a_resampling_too_big_for_memory_before_allocating(tmp_path):
    path = tmp_path / "openfwi_model.npy"
    np.save(path, np.full((70, 70), 2000.0, np.float32))
    # 70 cells at 1 m resampled to 5 mm: 69 / 0.005 + 1 = 13801 per side, 28 bytes per cell = 4.97 GiB
    with pytest.raises(ConfigError, match=r"gives 13801 x 13801 cells and needs 5\.0 GiB \(limit 4 GiB\); set file_spacing") as err:
        ModelFile((16, 16), 0.005, (1500.0, 4500.0), path=str(path), file_spacing=1.0)
    assert err.value.key == "file_spacing"
    assert resampling_bytes((13801, 13801)) == 13801 * 13801 * 28
    ModelFile((16, 16), 0.5, (1500.0, 4500.0), path=str(path), file_spacing=1.0)  # 139 x 139: fine


def test_model_file_warns_once_with_the_clipped_count_and_a_covering_range(tmp_path):
    model = np.full((20, 40), 2000.0, np.float32)
    model[5:, :] = 6000.0
    path = tmp_path / "fast.npy"
    np.save(path, model)
    family = ModelFile((8, 10), 10.0, (1500.0, 4500.0), path=str(path), file_spacing=10.0, fractions={"train": 1.0})
    with pytest.warns(UserWarning, match=r"fast.npy: clipping velocities: 600 of 800 cells \(75.00%\).*velocity_range: \[1500, 6000\]"):
        family.sample(0, "train", 0)
    again = ModelFile((8, 10), 10.0, (1500.0, 4500.0), path=str(path), file_spacing=10.0, fractions={"train": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per file: a second family on the same file stays quiet
        window = again.sample(0, "train", 0)
    assert window.max() == 4500.0
