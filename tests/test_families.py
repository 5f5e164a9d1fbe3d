"""Velocity families: determinism from (seed, split, index), geometry of each family, model files."""

import os
from pathlib import Path

import numpy as np
import pytest

from fwi_lightning import registry
from fwi_lightning.data.families import CurveFault, CurveVel, FlatFault, FlatVel, Marmousi, Marmousi2, ModelFile, Style
from fwi_lightning.data.families.model_file import resample
from fwi_lightning.errors import ConfigError, DataError

SHAPE, SPACING, RANGE = (24, 32), 10.0, (1500.0, 4500.0)
GENERATED = {"flatvel": FlatVel, "curvevel": CurveVel, "flatfault": FlatFault, "curvefault": CurveFault, "style": Style}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_registered_families_are_deterministic_per_seed_split_index(name):
    family = registry.build_mapping("velocity", {name: 1.0}, key="data.families", weighted=True, shape=SHAPE, spacing=SPACING, velocity_range=RANGE)[name][0]
    assert isinstance(family, GENERATED[name])
    v = family.sample(7, "train", 3)
    assert v.shape == SHAPE and v.dtype == np.float32
    assert RANGE[0] <= v.min() and v.max() <= RANGE[1] and v.max() > v.min()
    assert np.array_equal(v, family.sample(7, "train", 3))
    for other in [(8, "train", 3), (7, "val", 3), (7, "train", 4)]:
        assert not np.array_equal(v, family.sample(*other)), other


def test_flatvel_layers_are_flat_increasing_and_counted_by_variant():
    for variant, (lo, hi) in (("A", (2, 5)), ("B", (6, 10))):
        family = FlatVel(SHAPE, SPACING, RANGE, variant=variant)
        counts = set()
        for i in range(30):
            v = family.sample(0, "train", i)
            assert np.all(v == v[:, :1])  # laterally constant
            assert np.all(np.diff(v[:, 0]) >= 0)  # increasing with depth
            counts.add(len(np.unique(v)))
        assert counts <= set(range(lo, hi + 1)) and len(counts) > 1


def test_curved_and_faulted_interfaces_vary_laterally():
    flat = FlatVel(SHAPE, SPACING, RANGE)
    for family in (CurveVel(SHAPE, SPACING, RANGE, amplitude=0.2), FlatFault(SHAPE, SPACING, RANGE), CurveFault(SHAPE, SPACING, RANGE)):
        lateral = [np.any(family.sample(0, "train", i) != family.sample(0, "train", i)[:, :1]) for i in range(20)]
        assert sum(lateral) >= 15, type(family).__name__
    assert not any(np.any(flat.sample(0, "train", i) != flat.sample(0, "train", i)[:, :1]) for i in range(20))


def test_flatfault_offsets_layers_by_the_throw_across_one_fault():
    family = FlatFault(SHAPE, SPACING, RANGE, throw=(0.25, 0.25), dip=(90.0, 90.0))  # vertical fault, 6-cell throw
    v = family.sample(0, "train", 1)
    columns = {tuple(c) for c in v.T}
    assert len(columns) == 2  # two walls, each a constant column
    a, b = (np.array(c) for c in columns)
    assert np.array_equal(a[6:], b[:-6]) or np.array_equal(b[6:], a[:-6])  # one wall dropped by 6 cells


def test_style_is_smooth():
    v = Style(SHAPE, SPACING, RANGE).sample(0, "train", 0)
    assert np.abs(np.diff(v, axis=1)).mean() < 0.02 * (RANGE[1] - RANGE[0])


@pytest.mark.parametrize(
    "kwargs, key",
    [({"variant": "C"}, "variant"), ({"layers": [5, 2]}, "layers"), ({"increasing": True, "layers": "3"}, "layers")],
)
def test_invalid_family_parameters_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        FlatVel(SHAPE, SPACING, RANGE, **kwargs)
    assert err.value.key == key


def _ramp_file(tmp_path: Path) -> Path:
    """40 x 200 cells at 5 m whose velocity encodes x: v = 1500 + 2 * x (x in m)."""
    x = np.arange(200) * 5.0
    path = tmp_path / "ramp.npy"
    np.save(path, np.broadcast_to(1500.0 + 2.0 * x, (40, 200)).astype(np.float32))
    return path


def test_resample_keeps_physical_positions():
    model = np.broadcast_to(1500.0 + 2.0 * np.arange(200) * 5.0, (40, 200))
    coarse = resample(model, 5.0, 10.0)
    assert coarse.shape == (20, 100)
    assert np.allclose(coarse[:, 2:-2], 1500.0 + 2.0 * np.arange(2, 98) * 10.0, rtol=1e-5)


def test_model_file_windows_come_from_disjoint_lateral_regions(tmp_path):
    family = ModelFile((8, 10), SPACING, (1500.0, 4000.0), path=str(_ramp_file(tmp_path)), file_spacing=5.0)
    extents = {}
    for split in ("train", "val", "test"):
        x = [(family.sample(0, split, i)[0] - 1500.0) / 2.0 for i in range(40)]  # lateral positions in m
        extents[split] = (min(w.min() for w in x), max(w.max() for w in x))
    # resampled width 100 columns: train 0-79, val 80-89, test 90-99 (10 m columns)
    assert extents["train"][1] < extents["val"][0] and extents["val"][1] < extents["test"][0]
    assert extents["val"] == pytest.approx((800.0, 890.0), abs=0.1)
    assert extents["test"] == pytest.approx((900.0, 990.0), abs=0.1)


def test_model_file_regions_m_hold_a_window_out_with_training_on_both_sides(tmp_path):
    """x encoded in the ramp's velocity: every train window lies in one extent, both extents are drawn."""
    regions = {"train": [[0, 300], [600, 995]], "test": [[350, 550]]}
    family = ModelFile((8, 10), SPACING, (1500.0, 4000.0), path=str(_ramp_file(tmp_path)), file_spacing=5.0, regions_m=regions)
    starts = {round(float(family.sample(0, "train", i)[0, 0] - 1500.0) / 20.0) * 10.0 for i in range(200)}  # to the 10 m column
    # 10 m columns: train windows start at 0..210 m (ending by 300) or 600..900 m (ending by 990)
    assert starts <= {10.0 * c for c in range(0, 22)} | {10.0 * c for c in range(60, 91)}
    assert min(starts) == 0.0 and max(starts) == 900.0 and any(s < 300 for s in starts) and any(s >= 600 for s in starts)
    test = family.sample(0, "test", 0)[0]
    assert 350.0 <= (test[0] - 1500.0) / 2.0 and (test[-1] - 1500.0) / 2.0 <= 550.0
    with pytest.raises(DataError, match="no val region in 'regions_m'"):
        family.sample(0, "val", 0)
    with pytest.raises(ConfigError, match="overlaps the test extent") as err:
        ModelFile((8, 10), SPACING, RANGE, path=str(_ramp_file(tmp_path)), file_spacing=5.0, regions_m={"train": [[0, 400]], "test": [[400, 500]]})
    assert err.value.key == "regions_m"
    with pytest.raises(ConfigError, match="not both"):
        ModelFile((8, 10), SPACING, RANGE, path=str(_ramp_file(tmp_path)), file_spacing=5.0, fractions={"train": 1.0}, regions_m={"train": [[0, 400]]})
    with pytest.raises(ConfigError, match="x_start < x_end"):
        ModelFile((8, 10), SPACING, RANGE, path=str(_ramp_file(tmp_path)), file_spacing=5.0, regions_m={"train": [[400, 0]]})
    with pytest.raises(DataError, match="a train region is 6 columns wide"):
        ModelFile((8, 10), SPACING, RANGE, path=str(_ramp_file(tmp_path)), file_spacing=5.0, regions_m={"train": [[0, 50]]}).sample(0, "train", 0)


def test_model_file_errors_name_the_file_and_expectation(tmp_path):
    with pytest.raises(DataError, match="not found") as err:
        ModelFile(SHAPE, SPACING, RANGE, path=str(tmp_path / "missing.npy"), file_spacing=5.0)
    assert "missing.npy" in str(err.value)
    np.save(tmp_path / "cube.npy", np.ones((2, 3, 4), np.float32))
    with pytest.raises(DataError, match="expected a 2D numeric array"):
        ModelFile(SHAPE, SPACING, RANGE, path=str(tmp_path / "cube.npy"), file_spacing=5.0)
    (tmp_path / "junk.npy").write_bytes(b"not an npy file at all")
    with pytest.raises(DataError, match="not an npy file"):
        ModelFile(SHAPE, SPACING, RANGE, path=str(tmp_path / "junk.npy"), file_spacing=5.0)
    holes = np.full((40, 200), 2000.0, np.float32)
    holes[3, 4] = np.nan
    np.save(tmp_path / "holes.npy", holes)
    with pytest.raises(DataError, match="NaN"):
        ModelFile((8, 10), SPACING, RANGE, path=str(tmp_path / "holes.npy"), file_spacing=5.0).sample(0, "train", 0)
    with pytest.raises(DataError, match="a val region is 10 columns wide"):
        ModelFile((8, 16), SPACING, RANGE, path=str(_ramp_file(tmp_path)), file_spacing=5.0).sample(0, "train", 0)
    with pytest.raises(DataError, match="outside velocity_range"):
        ModelFile((8, 10), SPACING, (1500.0, 2500.0), path=str(_ramp_file(tmp_path)), file_spacing=5.0, clip=False).sample(0, "train", 0)


def test_model_file_clips_to_the_range(tmp_path):
    family = ModelFile((8, 10), SPACING, (1500.0, 2500.0), path=str(_ramp_file(tmp_path)), file_spacing=5.0)
    assert family.sample(0, "test", 0).max() == 2500.0


def test_missing_marmousi_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FWI_LIGHTNING_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError) as err:
        Marmousi(SHAPE, SPACING, RANGE)
    assert f"{tmp_path}/marmousi/marmousi_vp_z751_x2301_d4m_f32.npy" in str(err.value)
    assert "FWI_LIGHTNING_DATA" in str(err.value) and "set 'path'" in str(err.value)


@pytest.mark.skipif(not os.environ.get("FWI_LIGHTNING_DATA"), reason="FWI_LIGHTNING_DATA not set")
def test_marmousi_windows_start_in_the_water_layer():
    family = Marmousi((70, 70), 10.0, (1500.0, 4500.0))
    v = family.sample(0, "val", 0)
    assert v.shape == (70, 70) and np.all(v[0] == 1500.0) and v.max() > 2000.0
    assert family.model.shape == (301, 921)  # 3000 m x 9200 m at 10 m


@pytest.mark.skipif(not os.environ.get("FWI_LIGHTNING_DATA"), reason="FWI_LIGHTNING_DATA not set")
def test_marmousi2_windows_sit_under_its_water_layer():
    family = Marmousi2((30, 40), 20.0, (1500.0, 4700.0))
    assert family.model.shape == (176, 851)  # 3.5 km x 17 km at 20 m, as the file
    v = family.sample(0, "train", 0)
    assert v.shape == (30, 40) and np.all(v[:20] == 1500.0) and v[-1].min() > 1500.0  # about 450 m of water


def test_missing_marmousi2_names_its_own_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FWI_LIGHTNING_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="Marmousi2 model not found.*marmousi2_vp_z176_x851_d20m_f32.npy .176 x 851"):
        Marmousi2(SHAPE, SPACING, RANGE)
