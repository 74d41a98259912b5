"""Interrupting a blocked call of the test's main thread, as Ctrl-C would (by SIGALRM)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


class Interrupt(Exception):
    """What :func:`interrupted_after` raises in the main thread."""


@contextlib.contextmanager
def interrupted_after(seconds: float) -> Iterator[None]:
    """Raise :class:`Interrupt` in the main thread ``seconds`` from now, inside the block."""

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupt()

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
