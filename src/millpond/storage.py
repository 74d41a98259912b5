"""Storage: owns THE ``lmdb.Environment`` of a data directory, its tables and group commit.

Group commit, leader/follower style: a thread that wants to write queues its operation; the
first thread to find no commit in progress becomes the leader, runs every queued operation in
one write transaction, commits once (one fsync in "fsync" mode) and wakes the others. No thread
hop on an uncontended write, and one commit for many concurrent writers. A write transaction is
begun and committed by the same thread (LMDB requires it) and never awaits.

Durability modes:
    "fsync" (default): a write returns after LMDB flushed the data and meta pages to disk
        (fdatasync); it survives a process crash and a power loss.
    "os": the commit is written to the OS page cache without a flush; it survives a crash of
        the process (SIGKILL included), not a crash of the machine or a power loss, which can
        lose the last commits.

Space: the map starts at ``map_size`` and doubles when full, up to ``max_map_size``. Sends are
refused with StorageFull once the pages in use pass ``max_map_size - reserve``; the reserve is
kept for the copy-on-write pages of receives, deletes and purges, which can always commit.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import lmdb

from millpond.clock import Clock
from millpond.errors import AlreadyOpen, BrokerClosed, MillpondError, StorageFull

DURABILITY_MODES = ("fsync", "os")
DEFAULT_MAP_SIZE = 1 << 30  # 1 GiB to start; doubled when full
DEFAULT_MAX_MAP_SIZE = 1 << 40  # 1 TiB of address space; only the pages used reach the disk
DEFAULT_RESERVE = 64 << 20

READER_CHECK_INTERVAL_S = 60.0  # clear reader slots of dead processes this often
_open_lock = threading.Lock()
_open_here: dict[tuple[int, int], int] = {}  # (device, inode) of open directories -> pid

_TABLES = ("meta", "log", "vis", "qstate", "moved", "fifo", "dedup", "dedupexp")


class Tables:
    """The named databases, opened once per environment."""

    __slots__ = _TABLES

    def __init__(self, env: lmdb.Environment, txn: lmdb.Transaction) -> None:
        for name in _TABLES:
            setattr(self, name, env.open_db(name.encode(), txn=txn, create=True))


class _Op:
    __slots__ = ("fn", "sends", "atomic", "done", "result", "error")

    def __init__(
        self, fn: Callable[[lmdb.Transaction, int], Any], sends: int, atomic: bool
    ) -> None:
        self.fn = fn
        self.sends = sends
        self.atomic = atomic
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class Storage:
    """One data directory opened by this process.

    Args:
        path: the data directory (created if missing).
        clock: where ``now_ms`` comes from; read once per write transaction.
        durability: "fsync" (default) or "os"; see the module docstring for what each survives.
        map_size: initial LMDB map size in bytes.
        max_map_size: the most the data may grow to, in bytes.
        reserve: bytes below ``max_map_size`` at which sends start being refused.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        clock: Clock,
        durability: str = "fsync",
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int = DEFAULT_MAX_MAP_SIZE,
        reserve: int = DEFAULT_RESERVE,
    ) -> None:
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {DURABILITY_MODES}, not {durability!r}")
        if reserve >= max_map_size:
            raise ValueError("reserve must be smaller than max_map_size")
        self.path = os.fspath(path)
        self.clock = clock
        self.durability = durability
        self.max_map_size = max_map_size
        self.reserve = reserve
        os.makedirs(self.path, exist_ok=True)
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        with _open_lock:
            if _open_here.get(self._identity) == os.getpid():
                raise AlreadyOpen(
                    f"{self.path} is already open in this process; use that Broker "
                    "(LMDB must not open one environment twice in a process)"
                )
            _open_here[self._identity] = os.getpid()
        try:
            self._open(map_size)
        except BaseException:
            self._unregister()
            raise

    def _open(self, map_size: int) -> None:
        durability, max_map_size = self.durability, self.max_map_size
        self.env = lmdb.open(
            self.path,
            map_size=min(map_size, max_map_size),
            max_dbs=len(_TABLES) + 4,
            max_readers=512,
            sync=durability == "fsync",
            metasync=True,
            readahead=False,
        )
        # Slots of readers that died without closing (killed processes) pin old pages.
        self.env.reader_check()
        self._reader_checked = time.monotonic()
        with self.env.begin(write=True) as txn:
            self.tables = Tables(self.env, txn)
        self._page_size = self.env.stat()["psize"]
        self._pid = os.getpid()
        self._closed = False
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Op] = []
        self._leader_active = False
        self.commits = 0  # write transactions committed by this process (for tests and metrics)

    # -- writes -----------------------------------------------------------------------------

    def write(
        self, fn: Callable[[lmdb.Transaction, int], Any], *, sends: int = 0, atomic: bool = False
    ) -> Any:
        """Run ``fn(txn, now_ms)`` in a write transaction shared with concurrent callers.

        Returns fn's result once the transaction committed (durably in "fsync" mode), or raises
        what fn raised. A MillpondError from fn fails only its own call, and the rest of the
        batch still commits, so fn must raise before it writes anything, unless ``atomic``: then
        fn runs in a nested transaction that is rolled back if it raises (about 1.5 us more).
        ``sends`` counts the messages fn adds, so that a full store refuses them (StorageFull)
        and nothing else.
        """
        self._check_usable()
        op = _Op(fn, sends, atomic)
        with self._cond:
            self._pending.append(op)
            while self._leader_active and not op.done:
                self._cond.wait()
            if op.done:
                return _outcome(op)
            self._leader_active = True
            batch, self._pending = self._pending, []
        try:
            self._commit(batch)
        finally:
            with self._cond:
                self._leader_active = False
                self._cond.notify_all()
        return _outcome(op)

    def _commit(self, batch: list[_Op]) -> None:
        """Run ``batch`` in one transaction and mark every op done (caller is the leader)."""
        todo = batch
        while todo:
            try:
                self._run(todo)
                self.commits += 1
                return
            except lmdb.MapFullError:
                if not self._grow_map():
                    for op in todo:
                        if op.sends:
                            _fail(op, StorageFull("the data directory reached max_map_size"))
                    todo = [op for op in todo if not op.done]
                    if not todo:
                        return
                    self._grow_map(into_reserve=True)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)  # another process grew the map: adopt its size
            except BaseException as exc:
                if len(todo) == 1:
                    _fail(todo[0], exc)
                    return
                # One op broke the shared transaction: run each alone so only it fails.
                for op in todo:
                    self._commit([op])
                return
        return

    def _run(self, batch: list[_Op]) -> None:
        if time.monotonic() - self._reader_checked > READER_CHECK_INTERVAL_S:
            self._reader_checked = time.monotonic()
            self.env.reader_check()
        now_ms = self.clock.now_ms()
        results: list[tuple[_Op, Any, BaseException | None]] = []
        with self.env.begin(write=True) as txn:
            full = any(op.sends for op in batch) and self._sends_refused(txn)
            for op in batch:
                if op.sends and full:
                    results.append((op, None, StorageFull("the data directory is full")))
                    continue
                try:
                    if op.atomic:
                        with self.env.begin(write=True, parent=txn) as child:
                            results.append((op, op.fn(child, now_ms), None))
                    else:
                        results.append((op, op.fn(txn, now_ms), None))
                except MillpondError as exc:
                    results.append((op, None, exc))
        # Committed: only now may callers learn their results.
        for op, result, error in results:
            op.result, op.error, op.done = result, error, True

    def _sends_refused(self, txn: lmdb.Transaction) -> bool:
        """True when the pages in use leave less than the reserve below max_map_size."""
        limit = self.max_map_size - self.reserve
        info = self.env.info()
        if (info["last_pgno"] + 1) * self._page_size <= limit:
            return False  # the file never grew that far: certainly room
        used = sum(
            s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]
            for s in [txn.stat(getattr(self.tables, name)) for name in _TABLES] + [txn.stat()]
        )
        return used * self._page_size > limit

    def _grow_map(self, *, into_reserve: bool = False) -> bool:
        """Double the map (between transactions); False when already at max_map_size."""
        current = self.env.info()["map_size"]
        limit = self.max_map_size + (self.reserve if into_reserve else 0)
        if current >= limit:
            return False
        self.env.set_mapsize(min(current * 2, limit))
        return True

    # -- reads ------------------------------------------------------------------------------

    def read(self, fn: Callable[[lmdb.Transaction], Any]) -> Any:
        """Run ``fn(txn)`` in a read-only snapshot."""
        self._check_usable()
        try:
            with self.env.begin() as txn:
                return fn(txn)
        except lmdb.MapResizedError:
            self.env.set_mapsize(0)
            with self.env.begin() as txn:
                return fn(txn)

    # -- lifecycle --------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise BrokerClosed("the broker is closed")
        if os.getpid() != self._pid:
            # An LMDB environment must never be used across fork(): the child would write
            # through the parent's locks and map.
            raise BrokerClosed(
                "this broker was opened in another process (before fork()); "
                "open the data directory again in this process"
            )

    def close(self) -> None:
        """Flush and close; in "os" mode this is where the data reaches the disk."""
        if self._closed:
            return
        with self._cond:
            while self._leader_active:
                self._cond.wait()
            self._closed = True
        if os.getpid() == self._pid:
            self.env.sync(True)
            self.env.close()
            self._unregister()

    def _unregister(self) -> None:
        with _open_lock:
            if _open_here.get(self._identity) == os.getpid():
                del _open_here[self._identity]


def _fail(op: _Op, error: BaseException) -> None:
    op.result, op.error, op.done = None, error, True


def _outcome(op: _Op) -> Any:
    if op.error is not None:
        raise op.error
    return op.result
