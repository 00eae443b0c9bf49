"""Progress of long steps (encoding, training, evaluating), reported to whoever listens.

Library code opens a :func:`task` around a long step and advances it; nothing is shown unless a
reporter is installed with :func:`reporting` (the CLI installs one that draws progress bars with
an ETA). Tasks nest: a stream run's fit holds a training task that holds encoding tasks.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Protocol


class Reporter(Protocol):
    """Receives tasks: ``start`` returns a handle; ``advance(handle, n)``; ``finish(handle)``."""

    def start(self, description: str, total: int | None) -> object:
        """A new task (``total`` None when unknown)."""
        ...

    def advance(self, handle: object, n: int) -> None:
        """``n`` more units of the task are done."""
        ...

    def finish(self, handle: object) -> None:
        """The task ended (done or not)."""
        ...


_local = threading.local()


def _reporter() -> Reporter | None:
    return getattr(_local, "reporter", None)


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Send the tasks opened in this thread within the block to ``reporter``."""
    previous = _reporter()
    _local.reporter = reporter
    try:
        yield
    finally:
        _local.reporter = previous


@contextlib.contextmanager
def task(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A long step; yields ``advance(n=1)``. Costs nothing when no reporter listens."""
    reporter = _reporter()
    if reporter is None:
        yield _nothing
        return
    handle = reporter.start(description, total)
    try:
        yield lambda n=1: reporter.advance(handle, n)
    finally:
        reporter.finish(handle)


def listening() -> bool:
    """Whether a reporter listens in this thread (so work may be cut into reported chunks)."""
    return _reporter() is not None


def _nothing(n: int = 1) -> None:
    return None
