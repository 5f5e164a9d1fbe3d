"""Write several files all or nothing: each to a temporary name beside its target, renamed at the end.

A failure (or Ctrl-C) before the renames removes every temporary file, so a reader never
finds a half-written output under the real name::

    with AtomicFiles() as files:
        np.save(files.temporary(out / "velocity.npy"), velocity)
        figure.savefig(files.temporary(out / "velocity.png"))
    # both renamed here, or neither when the block raised
"""

from __future__ import annotations

import os
from pathlib import Path


class AtomicFiles:
    """Temporary names for targets, renamed onto them when the ``with`` block ends without error."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []

    def temporary(self, target: str | Path) -> Path:
        """A fresh temporary path in the target's folder (same suffix, so writers keep their format)."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")
        self.pending.append((tmp, target))
        return tmp

    def __enter__(self) -> "AtomicFiles":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            for tmp, target in self.pending:
                os.replace(tmp, target)
        else:
            for tmp, _ in self.pending:
                tmp.unlink(missing_ok=True)
        self.pending = []
