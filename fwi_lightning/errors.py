"""Errors that teach: one line naming the file, the key path, the problem and the fix.

`fwi-run` turns every `FWIError` into that one line on stderr and exit status 2;
the Python API raises them as ordinary exceptions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FWIError(Exception):
    """Base of every user-facing error of fwi-lightning.

    Args:
        message: what is wrong and how to fix it, one line.
        key: the dotted YAML key path the problem sits at, if any.
        file: the YAML or data file the problem comes from, if any.
    """

    def __init__(self, message: str, *, key: str | None = None, file: str | None = None):
        super().__init__(message)
        self.message = message
        self.key = key
        self.file = file

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.key:
            where.append(f"key '{self.key}'")
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class ConfigError(FWIError):
    """A YAML file or command-line override that cannot be used as written."""


class RegistryError(FWIError):
    """A component name that cannot be resolved to exactly one loadable object."""


class DataError(FWIError):
    """A data file (npy, SEG-Y, velocity model) that is missing, corrupt or mis-shaped."""


def closest(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The registered or valid names closest to `word`, best first."""
    choices = list(choices)
    found = difflib.get_close_matches(word, choices, n=n, cutoff=0.5)
    if not found:
        found = [c for c in choices if word.lower() in c.lower() or c.lower() in word.lower()][:n]
    return found


def suggestion(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' tail, or '' when nothing is close."""
    found = closest(word, choices)
    if not found:
        return ""
    return " (did you mean " + " or ".join(f"'{f}'" for f in found) + "?)"
