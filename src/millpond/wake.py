"""Wake: the one-shot flag group commit hands off with (see csrc/millpond_wake.h).

A follower sleeps on its op's Wake until the leader committed the op; the leader sleeps on one
while it gathers the others' ops. With the C core on Linux, setting and waiting happen without
the GIL: a leader sets all its followers' Wakes after letting go of the GIL, and the last
follower of a gather wakes the leader in the same step as it falls asleep. No thread is woken
while the one waking it still holds the GIL, only to find it held and sleep a second time;
followers woken together still queue for the GIL (measured: 2.8 -> 2.1-2.5 voluntary context
switches per message with 8 threads, 1.5 when pinned to one CPU). On this project's 2-core VM
a thread woken on the other core takes ~26 µs to run, one on the same core ~6 µs; group
commit's cycle is one such hand-off per thread.

Elsewhere (the pure-Python core, or not Linux) a lock stands in, with the same calls.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Protocol, cast

from millpond.core import load as load_core


class Wake(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout_s: float = -1.0, then_set: Wake | None = None) -> bool: ...


class LockWake:
    """Wake on a threading.Lock, held until set. As the C Wake, a signal does not end a wait:
    the exception its handler raised comes once the wait is over."""

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        self._set = True  # before the release: a waiter that sees the lock free sees this
        with contextlib.suppress(RuntimeError):  # set already
            self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout_s: float = -1.0, then_set: Wake | None = None) -> bool:
        if then_set is not None:
            then_set.set()
        deadline = None if timeout_s < 0 else time.monotonic() + timeout_s
        interrupted: BaseException | None = None
        while not self._set:
            left = -1.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                if not self._lock.acquire(timeout=left):
                    break  # timed out
            except BaseException as exc:  # a signal handler's (main thread): wait on first
                interrupted = exc
        if interrupted is not None:
            raise interrupted
        return self._set


def lock_wake_all(wakes: list[Wake]) -> None:
    for wake in wakes:
        wake.set()


def implementation(core: str) -> tuple[Callable[[], Wake], Callable[[list[Wake]], None]]:
    """(Wake factory, wake_all) for the core ``"c"`` or ``"py"``."""
    if core == "c":
        from millpond import _core_c

        if _core_c.WAKE_SUPPORTED:  # its Wakes only ever meet each other (never a LockWake)
            return cast(Callable[[], Wake], _core_c.Wake), cast(
                Callable[[list[Wake]], None], _core_c.wake_all
            )
    return LockWake, lock_wake_all


# The pair for the core in use (see millpond.core).
new_wake, wake_all = implementation(load_core().IMPLEMENTATION)
