"""Clocks: the only place millpond reads the time.

Everything below the broker takes ``now_ms`` as an argument; the broker asks its clock once per
write transaction. Tests use ``ManualClock`` so that no test sleeps to wait for a timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Clock:
    """Wall-clock time in integer milliseconds since the Unix epoch."""

    def now_ms(self) -> int:
        raise NotImplementedError

    def on_advance(self, callback: Callable[[], None]) -> None:
        """Register ``callback`` to run when time jumps (only manual clocks jump)."""

    def off_advance(self, callback: Callable[[], None]) -> None:
        """Unregister a ``callback`` given to on_advance (a broker closing)."""


class SystemClock(Clock):
    """The real clock (``time.time()``)."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock(Clock):
    """A clock that moves only when told to: ``clock.advance(seconds)``.

    Args:
        now_ms: the starting time in ms since the epoch (default: the real time at creation).
    """

    def __init__(self, now_ms: int | None = None) -> None:
        self._now_ms = time.time_ns() // 1_000_000 if now_ms is None else int(now_ms)
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (may be fractional) and wake long polls."""
        if seconds < 0:
            raise ValueError("a ManualClock only moves forward")
        with self._lock:
            self._now_ms += round(seconds * 1000)
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def on_advance(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def off_advance(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
