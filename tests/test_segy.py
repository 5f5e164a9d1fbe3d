"""SEG-Y through segyio: shot gathers in (IBM and IEEE floats, big and little endian, rev0,
grouped by a chosen header), velocity sections out, and one-line refusals of bad files."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import segyio

from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.io.gathers import read_gathers
from fwi_lightning.io.segy import read_segy_gathers, read_velocity_segy, write_velocity_segy
from results_helpers import write_shots_segy


@pytest.fixture
def shots():
    """[3 shots, 50 samples, 4 receivers] of smooth values with a wide dynamic range."""
    t = np.arange(50)[None, :, None]
    s = np.arange(3)[:, None, None]
    r = np.arange(4)[None, None, :]
    return (np.sin(0.3 * t + s + 0.1 * r) * 10.0 ** (s - 1)).astype(np.float32)


@pytest.mark.parametrize(("fmt", "endian"), [(1, "big"), (5, "big"), (5, "little")])
def test_shots_read_back_in_every_format(tmp_path, shots, fmt, endian):
    path = write_shots_segy(tmp_path / "shots.sgy", shots, 0.002, fmt=fmt, endian=endian)
    gathers = read_segy_gathers(path)
    assert gathers.data.shape == (1, 3, 50, 4) and gathers.dt == pytest.approx(0.002)
    assert gathers.shots == [101, 102, 103]
    # IBM floats keep 21-24 bits of mantissa: exact to ~1e-6 relative; IEEE exactly
    np.testing.assert_allclose(gathers.data[0], shots, rtol=1e-6 if fmt == 1 else 0, atol=0)


def test_ibm_file_holds_ibm_floats_big_endian_rev0(tmp_path, shots):
    """The IBM file is really IBM: format code 1, revision 0, and a sample's bytes are IBM's, not IEEE's."""
    path = write_shots_segy(tmp_path / "ibm.sgy", shots, 0.002, fmt=1)
    raw = path.read_bytes()
    assert struct.unpack(">h", raw[3224:3226])[0] == 1  # format code, big-endian
    assert struct.unpack(">h", raw[3500:3502])[0] == 0  # SEG-Y revision 0
    value, first = float(shots[0, 1, 0]), raw[3600 + 240 + 4:3600 + 240 + 8]  # trace 0, sample 1 (sample 0 is 0)
    sign, exponent, fraction = first[0] >> 7, first[0] & 0x7F, int.from_bytes(first[1:], "big")
    ibm = (-1) ** sign * fraction / 16**6 * 16.0 ** (exponent - 64)
    assert ibm == pytest.approx(value, rel=1e-6)
    assert first != struct.pack(">f", value)


def test_grouping_by_another_header_in_file_order(tmp_path, shots):
    path = write_shots_segy(tmp_path / "esp.sgy", shots, 0.004, fmt=5, field="EnergySourcePoint", keys=[7, 3, 9])
    with pytest.raises(DataError, match="FieldRecord is 0 on every trace"):
        read_segy_gathers(path)
    gathers = read_segy_gathers(path, group_by="EnergySourcePoint")
    assert gathers.shots == [7, 3, 9] and gathers.dt == pytest.approx(0.004)
    np.testing.assert_array_equal(gathers.data[0], shots)


def test_unknown_header_name_suggests_the_closest(tmp_path, shots):
    path = write_shots_segy(tmp_path / "s.sgy", shots, 0.002)
    with pytest.raises(ConfigError, match="did you mean 'FieldRecord'"):
        read_segy_gathers(path, group_by="FieldRecrd")


def test_format_is_told_by_content_not_name(tmp_path, shots):
    segy = write_shots_segy(tmp_path / "shots.npy", shots, 0.002, fmt=5)  # a SEG-Y named .npy
    assert read_gathers(segy).dt == pytest.approx(0.002)
    np.save(tmp_path / "stack.npy", np.stack([shots, 2 * shots]))
    stacked = read_gathers(tmp_path / "stack.npy")
    assert stacked.data.shape == (2, 3, 50, 4) and stacked.dt is None
    np.savez(tmp_path / "g.npz", data=shots, other=np.zeros(3))
    np.testing.assert_array_equal(read_gathers(tmp_path / "g.npz").data[0], shots)
    with pytest.raises(DataError, match="name the gathers with --npz-key"):
        np.savez(tmp_path / "h.npz", a=shots, b=shots)
        read_gathers(tmp_path / "h.npz")


def test_velocity_section_round_trip_with_spacing(tmp_path):
    velocity = (1500.0 + np.arange(6 * 9).reshape(6, 9) * 25.0).astype(np.float32)
    path = write_velocity_segy(tmp_path / "v.segy", velocity, 12.5)
    with segyio.open(str(path), ignore_geometry=True) as f:
        assert f.tracecount == 9 and len(f.samples) == 6 and f.bin[segyio.BinField.Format] == 5
        assert f.bin[segyio.BinField.Interval] == 12500 and f.bin[segyio.BinField.MeasurementSystem] == 1
        np.testing.assert_array_equal(f.trace[4], velocity[:, 4])
        scalar = f.header[4][segyio.TraceField.SourceGroupScalar]
        assert scalar == -100 and f.header[4][segyio.TraceField.CDP_X] / -scalar == pytest.approx(4 * 12.5)
    back, spacing = read_velocity_segy(path)
    np.testing.assert_array_equal(back, velocity)
    assert spacing == 12.5


# -- bad files ------------------------------------------------------------------


def test_truncated_and_foreign_files_are_refused(tmp_path, shots):
    path = write_shots_segy(tmp_path / "s.sgy", shots, 0.002)
    cut = tmp_path / "cut.sgy"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="not a readable SEG-Y file"):
        read_segy_gathers(cut)
    text = tmp_path / "notes.sgy"
    text.write_text("just some text\n" * 400)
    with pytest.raises(DataError, match="not a readable SEG-Y file"):
        read_gathers(text)


def test_inconsistent_trace_lengths_are_refused(tmp_path, shots):
    path = write_shots_segy(tmp_path / "s.sgy", shots, 0.002)
    with segyio.open(str(path), "r+", ignore_geometry=True) as f:
        f.header[5] = {segyio.TraceField.TRACE_SAMPLE_COUNT: 40}
    with pytest.raises(DataError, match="trace 5 says it has 40 samples but the binary header says 50"):
        read_segy_gathers(path)


def test_missing_sample_interval_needs_dt(tmp_path, shots):
    path = write_shots_segy(tmp_path / "s.sgy", shots, 0.002)
    with segyio.open(str(path), "r+", ignore_geometry=True) as f:
        f.bin.update({segyio.BinField.Interval: 0})
        for i in range(f.tracecount):
            f.header[i] = {segyio.TraceField.TRACE_SAMPLE_INTERVAL: 0}
    with pytest.raises(DataError, match="no sample interval"):
        read_segy_gathers(path)
    assert read_segy_gathers(path, dt=0.003).dt == 0.003


def test_shots_of_unequal_size_are_refused(tmp_path, shots):
    path = write_shots_segy(tmp_path / "s.sgy", shots, 0.002)
    with segyio.open(str(path), "r+", ignore_geometry=True) as f:
        f.header[4] = {segyio.TraceField.FieldRecord: 101}  # first trace of shot 102 moves to shot 101
    with pytest.raises(DataError, match="unequal numbers of traces"):
        read_segy_gathers(path)
