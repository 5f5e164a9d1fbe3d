"""Progress bars of the commands that are not Lightning loops (prediction, export).

Rich bars on stderr in a terminal, nothing in pipes and CI logs: the same rule as the
training bars (`fwi_lightning.runner`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def show_progress() -> bool:
    """True in a terminal (stderr a tty) outside CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def track(items: Iterable[T], total: int, description: str, completed: int = 0) -> Iterator[T]:
    """Yield `items`, advancing a bar of `total` steps (starting at `completed`) by one per item."""
    if not show_progress():
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total, completed=completed)
        for item in items:
            yield item
            bar.advance(task)
