"""SEG-Y through segyio: shot gathers in, velocity sections out.

Reading (`read_segy_gathers`): any sample format segyio reads (4-byte IBM float, IEEE
float, integers), big-endian (the standard, and every rev0 file) or little-endian.
Traces are grouped into shots by one trace-header field (``FieldRecord`` by default,
bytes 9-12), in file order; within a shot the traces keep file order (the receivers).
The sample interval comes from the binary header (bytes 3217-3218) or, when that is 0,
the trace headers (bytes 117-118); the trace length from the binary header, checked
against every trace's own count (bytes 115-116).

Writing (`write_velocity_segy`): one trace per lateral position, depth samples, IEEE
float. Depth-domain SEG-Y has no unit of its own for the sample interval, so the
convention used is the common one: the interval field holds the depth step in mm
(10 m -> 10000, which time-domain readers show as "10 ms"), the measurement system
(bytes 3255-3256) is 1 (metres), and each trace's CDP_X / SourceX / GroupX hold its
lateral position in cm with coordinate scalar -100. The textual header says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fwi_lightning.errors import ConfigError, DataError

#: Header that groups traces into shots unless told otherwise.
DEFAULT_GROUP_BY = "FieldRecord"
#: Depth step in the sample-interval field: this many units per metre (mm).
DEPTH_UNITS_PER_M = 1000
#: Coordinate scalar of the lateral positions written (-100: stored in cm).
COORDINATE_SCALAR = -100


@dataclass
class Gathers:
    """Shot gathers read from a file.

    Attributes:
        data: [N, S, T, R] float32 raw amplitudes (sample, shot, time, receiver); a
            SEG-Y file is one sample (N = 1), an OpenFWI data file N.
        dt: sample interval in s (None when the file does not say, e.g. npy).
        shots: the value of the grouping header per shot (npy: 0..S-1).
        source: the file read.
    """

    data: np.ndarray
    dt: float | None
    shots: list[int]
    source: str

    def describe(self) -> str:
        """'5 shots x 70 receivers, 1000 samples of 1 ms' (the geometry in words)."""
        s, t, r = self.data.shape[1:]
        every = f" of {self.dt * 1000:g} ms" if self.dt else " (interval unknown)"
        return f"{s} shots x {r} receivers, {t} samples{every}"


def header_field(name: str, key: str = "group_by") -> int:
    """The segyio trace-header field of a name (``FieldRecord``, ``CDP``, ``EnergySourcePoint`` ...).

    Raises:
        ConfigError: not a trace-header field name (with the closest names).
    """
    import segyio

    from fwi_lightning.errors import suggestion

    names = {n: getattr(segyio.TraceField, n) for n in dir(segyio.TraceField)
             if not n.startswith("_") and isinstance(getattr(segyio.TraceField, n), int)}
    if name not in names:
        raise ConfigError(f"'{name}' is not a SEG-Y trace-header field{suggestion(name, names)}", key=key)
    return names[name]


def _open(path: Path):
    """segyio handle of `path` without geometry inference: big-endian first, then little-endian.

    Raises:
        DataError: missing, not SEG-Y, or truncated (segyio's reason in the message).
    """
    import segyio

    if not path.is_file():
        raise DataError("file not found; expected a SEG-Y file of shot gathers", file=str(path))
    reasons = []
    for endian in ("big", "little"):
        try:
            handle = segyio.open(str(path), "r", ignore_geometry=True, endian=endian)
        except (RuntimeError, OSError, ValueError) as exc:
            reasons.append(" ".join(str(exc).split()))
            continue
        if 1 <= int(handle.bin[segyio.BinField.Format]) <= 16:
            return handle
        handle.close()
        reasons.append("no valid sample format code")
    raise DataError(f"not a readable SEG-Y file ({reasons[0]}); expected 3200 + 400 header bytes, then traces of equal length",
                    file=str(path))


def read_segy_gathers(path: str | Path, group_by: str = DEFAULT_GROUP_BY, dt: float | None = None) -> Gathers:
    """Shot gathers of a SEG-Y file, [1, S, T, R] float32, grouped by the header `group_by`.

    Args:
        path: the file.
        group_by: trace-header field whose value names a trace's shot.
        dt: sample interval in s to use when the headers hold none.

    Raises:
        ConfigError: `group_by` is not a header field name.
        DataError: not SEG-Y or truncated; traces of unequal length; no sample interval
            in the headers (and no `dt`); the grouping header unset (0 on every trace)
            in a file of several traces; shots with unequal trace counts.
    """
    import segyio

    path = Path(path)
    field = header_field(group_by)
    with _open(path) as f:
        n_samples = len(f.samples)
        if f.tracecount == 0 or n_samples == 0:
            raise DataError("the SEG-Y file holds no traces (or traces of 0 samples)", file=str(path))
        counts = np.asarray(f.attributes(segyio.TraceField.TRACE_SAMPLE_COUNT)[:], dtype=np.int64)
        unequal = np.flatnonzero((counts != n_samples) & (counts != 0))
        if unequal.size:
            i = int(unequal[0])
            raise DataError(f"trace {i} says it has {counts[i]} samples but the binary header says {n_samples}: traces of "
                            "unequal length are not supported; resample them to one length", file=str(path))
        interval_us = float(segyio.tools.dt(f, fallback_dt=0.0))
        if interval_us <= 0 and dt is None:
            raise DataError("no sample interval in the binary header (bytes 3217-3218) or the trace headers (bytes 117-118); "
                            "give it with --dt SECONDS", file=str(path))
        keys = np.asarray(f.attributes(field)[:], dtype=np.int64)
        if f.tracecount > 1 and not keys.any():
            raise DataError(f"header field {group_by} is 0 on every trace, so it cannot group the traces into shots; "
                            "group by another field (--group-by, e.g. EnergySourcePoint)", file=str(path))
        traces = np.asarray(f.trace.raw[:], dtype=np.float32)  # [traces, T]
    shots = list(dict.fromkeys(keys.tolist()))
    members = [np.flatnonzero(keys == key) for key in shots]
    sizes = sorted({len(m) for m in members})
    if len(sizes) > 1:
        raise DataError(f"shots grouped by {group_by} hold unequal numbers of traces ({sizes[0]} to {sizes[-1]}); "
                        "every shot needs the same receivers", file=str(path))
    data = np.stack([traces[m].T for m in members])  # [S, T, R]
    if not np.isfinite(data).all():
        raise DataError("the traces hold NaN or infinite amplitudes", file=str(path))
    return Gathers(data=np.ascontiguousarray(data)[None], dt=interval_us / 1e6 if interval_us > 0 else dt, shots=shots,
                   source=str(path))


def write_velocity_segy(path: str | Path, velocity: np.ndarray, spacing: float) -> Path:
    """Write a velocity section [NZ, NX] in m/s as SEG-Y: one IEEE-float trace per lateral
    position (NX traces of NZ depth samples), the spacing in the headers (module docstring).

    Args:
        path: the file to write (overwritten).
        velocity: [NZ, NX] m/s.
        spacing: grid spacing in m (depth and lateral).

    Returns:
        `path`.
    """
    import segyio

    velocity = np.asarray(velocity, dtype=np.float32)
    nz, nx = velocity.shape
    step = int(round(spacing * DEPTH_UNITS_PER_M))
    spec = segyio.spec()
    spec.format = 5  # 4-byte IEEE float
    spec.samples = np.arange(nz) * float(step) / 1000.0
    spec.tracecount = nx
    lines = [
        "fwi-lightning velocity model, m/s",
        f"{nx} traces (one per lateral position) of {nz} depth samples",
        f"depth step {spacing:g} m, stored as {step} in bytes 3217-3218 (mm)",
        f"lateral position in CDP_X/SourceX/GroupX in cm (scalar {COORDINATE_SCALAR})",
        "trace i at x = i * spacing m; sample j at depth j * spacing m",
    ]
    text = "".join(f"C{i + 1:2d} {line}"[:80].ljust(80) for i, line in enumerate(lines)).ljust(3200)
    with segyio.create(str(path), spec) as f:
        f.text[0] = text.encode("ascii")
        f.bin.update({segyio.BinField.Interval: step, segyio.BinField.Samples: nz, segyio.BinField.Format: 5,
                      segyio.BinField.MeasurementSystem: 1, segyio.BinField.SEGYRevision: 0x0100})
        for i in range(nx):
            x = int(round(i * spacing * 100))
            f.header[i] = {
                segyio.TraceField.TRACE_SEQUENCE_LINE: i + 1, segyio.TraceField.TRACE_SEQUENCE_FILE: i + 1,
                segyio.TraceField.FieldRecord: 1, segyio.TraceField.CDP: i + 1, segyio.TraceField.TraceNumber: i + 1,
                segyio.TraceField.SourceGroupScalar: COORDINATE_SCALAR, segyio.TraceField.CDP_X: x,
                segyio.TraceField.SourceX: x, segyio.TraceField.GroupX: x,
                segyio.TraceField.TRACE_SAMPLE_COUNT: nz, segyio.TraceField.TRACE_SAMPLE_INTERVAL: step,
            }
            f.trace[i] = np.ascontiguousarray(velocity[:, i])
    return Path(path)


def read_velocity_segy(path: str | Path) -> tuple[np.ndarray, float]:
    """The section written by `write_velocity_segy`: ([NZ, NX] m/s, spacing in m)."""
    import segyio

    with _open(Path(path)) as f:
        velocity = np.asarray(f.trace.raw[:], dtype=np.float32).T
        spacing = float(f.bin[segyio.BinField.Interval]) / DEPTH_UNITS_PER_M
    return velocity, spacing
