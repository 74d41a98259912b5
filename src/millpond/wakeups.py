"""Wake-ups for long polls, within a process and across processes sharing a data directory.

Linux with the C extension: a doorbell file (``millpond.doorbell`` in the data directory) of
futex counters, one slot per queue id (modulo ``SLOTS``). A commit that adds visible messages
rings its queue's slot; a long poll sleeps on the slot in the kernel, so a send in any process
wakes it within the scheduler's latency and nobody polls. Elsewhere (or with the pure-Python
core only): a condition variable wakes pollers of this process, and pollers re-check every
``FALLBACK_POLL_S`` for messages sent by other processes.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from millpond._core_c import Doorbell

SLOTS = 1024
FALLBACK_POLL_S = 0.01
DOORBELL_FILE = "millpond.doorbell"


def _doorbell_class() -> type[Doorbell] | None:
    try:
        from millpond._core_c import DOORBELL_SUPPORTED, Doorbell
    except ImportError:
        return None
    return Doorbell if DOORBELL_SUPPORTED else None


class Wakeups:
    """generation(queue) / notify(queue) / wait(queue, generation, timeout).

    A poller reads the generation, looks for messages, and waits only if the generation has
    not moved since: a send that commits in between is never missed.
    """

    def __init__(self, path: str) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._generations: dict[int, int] = {}
        self._mm: mmap.mmap | None = None
        self._bell: Doorbell | None = None
        self._sleepers = 0  # threads inside wait(): the mapping must outlive them
        self._listeners: list[Callable[[int | None, int], None]] = []
        self._closing = False
        self._pid = os.getpid()  # a forked child has none of the opener's sleeping threads
        bell_class = _doorbell_class()
        if bell_class is not None:
            fd = os.open(os.path.join(path, DOORBELL_FILE), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < SLOTS * 8:
                    os.ftruncate(fd, SLOTS * 8)  # zero-filled; every opener agrees on the size
                self._mm = mmap.mmap(fd, SLOTS * 8, mmap.MAP_SHARED)
            finally:
                os.close(fd)
            self._bell = bell_class(self._mm, SLOTS)

    @property
    def cross_process(self) -> bool:
        """True when sends in other processes wake this process's long polls at once."""
        return self._bell is not None

    def generation(self, queue_id: int) -> int:
        bell = self._bell  # read once: close() may let go of it meanwhile
        if bell is not None:
            try:
                return bell.generation(queue_id)
            except ValueError:  # closed meanwhile: no wait will follow
                pass
        return self._generations.get(queue_id, 0)

    def add_listener(self, callback: Callable[[int | None, int], None]) -> None:
        """Also call ``callback(queue_id, count)`` on every notify (``count`` messages may have
        become receivable; queue None: every queue, any number), from the notifying thread:
        the daemon's event loop waits this way instead of in a thread."""
        self._listeners.append(callback)

    def notify(self, queue_id: int, count: int = 1) -> None:
        """``count`` messages may have become receivable in ``queue_id``: wake its long polls
        (the daemon's listener wakes as many polls as that, not every one)."""
        for callback in self._listeners:
            callback(queue_id, count)
        bell = self._bell  # read once: close() may let go of it meanwhile, after a commit
        if bell is not None:
            try:  # (no `with suppress`: this runs after every commit)
                bell.ring(queue_id)
            except ValueError:  # closed meanwhile: nobody left to wake
                pass
            return
        with self._cond:
            self._generations[queue_id] = self._generations.get(queue_id, 0) + 1
            self._cond.notify_all()

    def notify_many(self, queue_ids: Collection[int]) -> None:
        """:meth:`notify` each of ``queue_ids`` (one message each) in one call: a publish's
        fan-out wakes every queue it wrote to (a call of notify per queue cost ~9k of a publish
        to 10 queues's ~427k instructions, callgrind)."""
        for callback in self._listeners:
            for queue_id in queue_ids:
                callback(queue_id, 1)
        bell = self._bell  # read once: close() may let go of it meanwhile, after a commit
        if bell is not None:
            try:
                bell.ring_many(queue_ids)  # one call: a call of ring per queue cost ~0.6k each
            except ValueError:  # closed meanwhile: nobody left to wake
                pass
            return
        with self._cond:
            generations = self._generations
            for queue_id in queue_ids:
                generations[queue_id] = generations.get(queue_id, 0) + 1
            self._cond.notify_all()

    def forget(self, queue_id: int) -> None:
        """``queue_id`` was deleted (and notified): drop its generation, else every queue ever
        deleted or long-polled would keep one. A poller about to wait on it with the old
        generation sees the change; one that read 0 sleeps one FALLBACK_POLL_S, then finds the
        queue gone."""
        if self._bell is None:
            with self._cond:
                self._generations.pop(queue_id, None)

    def notify_everyone(self) -> None:
        """Time jumped (a manual clock): every queue may have messages that became visible."""
        for callback in self._listeners:
            callback(None, 0)
        bell = self._bell  # read once: close() may let go of it meanwhile
        if bell is not None:
            with contextlib.suppress(ValueError):  # closed meanwhile: nobody left to wake
                bell.ring_all()
            return
        with self._cond:
            for queue_id in self._generations:
                self._generations[queue_id] += 1
            self._cond.notify_all()

    def wait(self, queue_id: int, generation: int, timeout: float) -> None:
        """Sleep until ``queue_id`` is notified after ``generation`` was read, or ``timeout``."""
        bell = self._bell
        if bell is not None:
            self._sleep(lambda: bell.wait(queue_id, generation, timeout))
            return
        with self._cond:
            self._generations.setdefault(queue_id, 0)
            if self._generations[queue_id] == generation:
                self._cond.wait(min(timeout, FALLBACK_POLL_S))

    @property
    def closed(self) -> bool:
        """True once close() began: a thread that waits on the doorbell should stop."""
        return self._closing

    def any_generation(self) -> int:
        """With a doorbell file: the generation of the slot every notify of every process
        moves (for wait_any). 0 once closed."""
        bell = self._bell  # read once: close() may let go of it meanwhile
        if bell is None:
            assert self._closing, "any_generation() needs the doorbell file"
            return 0
        try:
            return bell.any_generation()
        except ValueError:  # closed meanwhile
            return 0

    def wait_any(self, generation: int, timeout: float) -> None:
        """With a doorbell file: sleep until any queue is notified, by any process, after
        any_generation() gave ``generation``, or ``timeout`` (one thread watching many
        queues: the daemon's parked long polls). Returns at once once closed."""
        bell = self._bell
        if bell is None:
            assert self._closing, "wait_any() needs the doorbell file"
            return
        self._sleep(lambda: bell.wait_any(generation, timeout))

    def _sleep(self, wait: Callable[[], object]) -> None:
        """Run a doorbell ``wait`` counted as a sleeper: close() unmaps only once none is left."""
        with self._cond:
            if self._closing:
                return
            self._sleepers += 1
        try:
            with contextlib.suppress(ValueError):  # the doorbell closed meanwhile
                wait()
        finally:
            with self._cond:
                self._sleepers -= 1
                self._cond.notify_all()

    def close(self) -> None:
        """Wake every sleeper, wait until they are out, then unmap the doorbell.

        In a process forked from the opener only the mapping is let go: the sleepers counted
        (and any lock held) belong to threads that do not exist here.
        """
        if os.getpid() != self._pid:
            self._closing = True  # (no lock: its holder may be a thread not copied here)
            self._unmap()
            return
        with self._cond:
            self._closing = True
        if self._bell is not None:
            with contextlib.suppress(ValueError):  # closed already
                self._bell.ring_all()
            with self._cond:
                self._cond.wait_for(lambda: self._sleepers == 0, timeout=30)
        self._unmap()

    def _unmap(self) -> None:
        if self._bell is not None:
            self._bell.close()
            self._bell = None
        if self._mm is not None:
            self._mm.close()
            self._mm = None
