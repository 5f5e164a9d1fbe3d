"""Progress bars of the commands that are not Lightning loops (prediction, export).

Rich bars on stderr in a terminal, nothing in pipes and CI logs: the same rule as the
training bars (`fwi_lightning.runner`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def show_progress() -> bool:
    """True in a terminal (stderr a tty) outside CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def progress_bar(total: int, description: str, completed: int = 0) -> Iterator[Callable[[int], None]]:
    """A bar of `total` steps starting at `completed`; yields ``advance(n)`` (a no-op without a terminal)."""
    if not show_progress():
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total, completed=completed)
        yield lambda n=1: bar.advance(task, n)


def track(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    """Yield `items`, advancing a bar of `total` steps by one per item."""
    with progress_bar(total, description) as advance:
        for item in items:
            yield item
            advance(1)
