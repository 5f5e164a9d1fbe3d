"""Opening npy files with errors that say what a file is when it is not one.

A file handed over as npy may be something else: a SEG-Y (3200-byte textual header, then
a 400-byte binary header), a text file, a truncated download. numpy then speaks of
pickles or magic strings; `open_npy` names the file, what it looks like and what was
expected instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fwi_lightning.errors import DataError

#: The first bytes of every npy file.
NPY_MAGIC = b"\x93NUMPY"

#: Textual plus binary header of a SEG-Y file, in bytes.
SEGY_HEADER_BYTES = 3200 + 400


def describe_foreign(path: Path) -> str:
    """What a file that is not an npy file looks like, in a few words.

    A SEG-Y file starts with a 3200-byte textual header whose lines begin with ``C``
    (EBCDIC 0xC3 or ASCII), followed by a 400-byte binary header whose data sample
    format code (bytes 3225-3226, big-endian) is 1-16.
    """
    with open(path, "rb") as handle:
        head = handle.read(SEGY_HEADER_BYTES)
    if len(head) >= SEGY_HEADER_BYTES and head[0] in (0xC3, ord("C")):
        sample_format = int.from_bytes(head[3224:3226], "big")
        if 1 <= sample_format <= 16:
            return "it looks like a SEG-Y file (3200-byte textual header, 400-byte binary header)"
    if not head:
        return "it is empty"
    return f"it starts with bytes {head[:8]!r}, not the npy magic {NPY_MAGIC!r}"


def open_npy(path: str | Path, what: str) -> np.ndarray:
    """Memory-map an npy file; numeric arrays only.

    Args:
        path: the file.
        what: the expected content, e.g. ``"OpenFWI data [N, shots, time, receivers]"``.

    Raises:
        DataError: missing, not an npy file (saying what it looks like, e.g. a SEG-Y),
            unreadable or not numeric; each naming the file and `what`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found; expected {what}", file=str(path))
    with open(path, "rb") as handle:
        magic = handle.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:
        raise DataError(f"not an npy file: {describe_foreign(path)}; expected {what} saved with numpy.save", file=str(path))
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"a damaged or truncated npy file ({exc}); expected {what}", file=str(path)) from exc
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"holds {array.dtype} values; expected {what}", file=str(path))
    return array
