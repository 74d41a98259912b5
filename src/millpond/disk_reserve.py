"""Disk space held in hand, so that a full disk still lets a store be drained.

LMDB writes every commit copy-on-write: a delete needs new pages as much as a send does, and
once the file system has no free block left every commit fails, deletes included, so nothing
can free space. This keeps ``reserve`` bytes allocated (``posix_fallocate``) past the pages in
use, ahead of need. When the disk cannot give more, the store is full: sends are refused
(StorageFull) while receives, deletes and purges commit into the reserve and free pages that
LMDB reuses. Allocating more is tried again at most once a second, so sends resume once space
is back. A file larger than its pages is a normal LMDB state (MDB_WRITEMAP makes one too).

Zero-filled ahead (``zero_ahead``, for durable stores): blocks that ``posix_fallocate`` gave are
"unwritten", and so are blocks a write past the end of the file takes; either way, the first
commit that writes into such a block makes fdatasync journal the file system's metadata too.
Writing zeros over the next ZERO_AHEAD bytes past the pages in use, a step at a time, turns
those blocks into plain written ones first, so a growing store's durable commits flush their
pages only (as PostgreSQL zero-fills its WAL segments): ~2 ms per MiB once, against ~60 µs per
page a commit takes into new space (a durable send of 1 KiB: 1.32x -> 1.13-1.19x one commit).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Enough for a drain's commits (each copies a few pages per table; the pages it frees are
# reused two commits later); a purge of a long queue in one commit may need more.
DEFAULT_DISK_RESERVE = 512 << 10
HEADROOM_MIN = 256 << 10  # allocated ahead at least this much, so that fallocate is seldom
RETRY_INTERVAL_S = 1.0
# Zero-filled this far past the pages in use; filled again once less than half is left.
ZERO_AHEAD = 1 << 20


class DiskReserve:
    """The allocation of one store's data file (``reserve`` 0: none kept)."""

    def __init__(self, data_file: str, reserve: int, zero_ahead: bool = False) -> None:
        self.reserve = reserve
        self.full = False  # the disk gave no more: sends are refused
        self._fd: int | None = os.open(data_file, os.O_RDWR) if reserve > 0 else None
        self._allocated = os.fstat(self._fd).st_size if self._fd is not None else 0
        self._retry_at = 0.0
        self._zero_ahead = zero_ahead and self._fd is not None
        self.enabled = self._fd is not None  # an attribute: read after every commit of sends
        self._zeroed = 0  # where the zeros this process wrote end (nothing filled yet)
        # the end of the pages in use past which there is work after a commit (the check that
        # runs after every commit of sends: see needs_care)
        self.limit = -1
        self._set_limit()

    def needs_care(self, used: int) -> bool:
        """Whether after_commit has work: the pages in use reach into the reserve, or the
        disk was full (cheap: called after every commit of sends)."""
        return used > self.limit or self.full

    def after_commit(self, used: int, free_inside: Callable[[], int]) -> None:
        """Keep ``reserve`` bytes at hand past ``used`` (where the pages in use end in the
        file): allocated beyond it, or free inside it (``free_inside()``, pages LMDB reuses;
        asked only when the allocation alone falls short)."""
        if self._fd is None or (not self.full and used + self.reserve <= self._allocated):
            return
        if self.full and time.monotonic() < self._retry_at:
            return
        needed = used + self.reserve - free_inside()
        # ahead by an eighth of the file too, so that a growing store seldom asks
        for size in (needed + max(HEADROOM_MIN, used // 8), needed):
            if size <= self._allocated:
                break
            try:
                os.posix_fallocate(self._fd, 0, size)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    continue  # try the least that keeps the reserve
                self._give_up(exc)
                return
            self._allocated = size
            break
        else:
            self.disk_full()
            return
        self.full = False
        self._set_limit()

    def zeros_due(self, used: int) -> bool:
        """Whether less than half of ZERO_AHEAD past ``used`` is zero-filled (and allocated
        space is there to fill)."""
        return (
            self._zero_ahead
            and used > self._zeroed - ZERO_AHEAD // 2
            and self._allocated > max(used, self._zeroed)
        )

    def fill_zeros(self, used: int) -> None:
        """Write zeros from ``used`` (or where the last fill ended) to ZERO_AHEAD past it,
        within the allocation, and flush them.

        Only under LMDB's write lock (a write transaction open, its own pages not yet written),
        with ``used`` read under it: no page past it is in use, and no other process writes
        one meanwhile. An error stops the zero-filling, not the store (it only saves time).
        """
        if self._fd is None:
            return
        start = max(used, self._zeroed)
        end = min(used + ZERO_AHEAD, self._allocated)
        if end > start:
            try:
                zeros = memoryview(bytes(end - start))
                written = 0
                while written < len(zeros):
                    written += os.pwrite(self._fd, zeros[written:], start + written)
                os.fdatasync(self._fd)
            except OSError as exc:
                log.warning("data file not zero-filled ahead (%s)", exc.strerror or exc)
                self._zero_ahead = False
            self._zeroed = end
        self._set_limit()

    def _set_limit(self) -> None:
        if self._fd is None:
            self.limit = -1
            return
        self.limit = self._allocated - self.reserve
        if self._zero_ahead and self._zeroed < self._allocated:  # more allocated to fill
            self.limit = min(self.limit, self._zeroed - ZERO_AHEAD // 2)

    def sends_refused(self, used: int, free_inside: Callable[[], int]) -> bool:
        """Whether a send must be refused now: the disk is full, and (asked again at most once
        a second) still is."""
        if self.full and time.monotonic() >= self._retry_at:
            self.after_commit(used, free_inside)
        return self.full

    def disk_full(self) -> None:
        """The disk has no space for more (a commit failed with ENOSPC, or an allocation)."""
        if not self.full:
            log.error("the disk is full: sends are refused until space is freed")
        self.full = True
        self._retry_at = time.monotonic() + RETRY_INTERVAL_S

    def _give_up(self, exc: OSError) -> None:
        # A file system that cannot allocate ahead (EOPNOTSUPP, say): no reserve is kept.
        log.warning("no disk reserve can be kept for the data (%s)", exc.strerror or exc)
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.enabled = False
            self.limit = -1
