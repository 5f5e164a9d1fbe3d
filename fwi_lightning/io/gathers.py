"""Seismic input of any supported format as `Gathers` [N, S, T, R]: SEG-Y, npy or npz.

The format is told by the file's first bytes, not its name: ``\\x93NUMPY`` is npy,
``PK`` an npz (zip) archive, anything else is tried as SEG-Y. npy/npz hold OpenFWI's
layout: one sample [S, T, R] (shot, time, receiver) or a stack [N, S, T, R]; they carry
no sample interval, so ``dt`` is what the caller gives (None: assumed the training one).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fwi_lightning.data.npyfiles import NPY_MAGIC, open_npy
from fwi_lightning.errors import DataError
from fwi_lightning.io.segy import DEFAULT_GROUP_BY, Gathers, read_segy_gathers

#: What an npy/npz input must hold.
LAYOUT = "gathers [shots, time, receivers] or [N, shots, time, receivers] (OpenFWI's layout)"


def read_gathers(path: str | Path, *, group_by: str = DEFAULT_GROUP_BY, dt: float | None = None,
                 npz_key: str | None = None) -> Gathers:
    """Read shot gathers from SEG-Y, npy or npz.

    Args:
        path: the file.
        group_by: SEG-Y trace-header field grouping traces into shots.
        dt: sample interval in s: the npy/npz interval, or the SEG-Y one when its
            headers hold none.
        npz_key: the array of an npz archive (default: ``data``, or its only array).

    Raises:
        DataError: missing, unreadable or mis-shaped input (naming the file).
        ConfigError: an unknown `group_by` field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found; expected SEG-Y, npy or npz {LAYOUT}", file=str(path))
    with open(path, "rb") as handle:
        head = handle.read(len(NPY_MAGIC))
    if head == NPY_MAGIC:
        array = np.asarray(open_npy(path, LAYOUT))
        key = None
    elif zipfile.is_zipfile(path):
        array, key = _npz_array(path, npz_key)
    else:
        return read_segy_gathers(path, group_by=group_by, dt=dt)
    if array.ndim not in (3, 4) or 0 in array.shape:
        raise DataError(f"holds an array of shape {list(array.shape)}; expected {LAYOUT}", file=str(path))
    values = np.array(array, dtype=np.float32)  # a writable copy, not the memory map
    if not np.isfinite(values).all():
        raise DataError("the gathers hold NaN or infinite amplitudes", file=str(path))
    data = values[None] if values.ndim == 3 else values
    return Gathers(data=np.ascontiguousarray(data), dt=dt, shots=list(range(data.shape[1])),
                   source=str(path) + (f"[{key}]" if key else ""))


def _npz_array(path: Path, key: str | None) -> tuple[np.ndarray, str]:
    """The chosen array of an npz archive and its name."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            chosen = key or ("data" if "data" in names else names[0] if len(names) == 1 else None)
            if chosen is None or chosen not in names:
                raise DataError(f"the archive holds {', '.join(names) or 'no arrays'}; name the gathers with --npz-key",
                                file=str(path))
            return archive[chosen], chosen
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"a damaged npz archive ({' '.join(str(exc).split())}); expected {LAYOUT}", file=str(path)) from None
