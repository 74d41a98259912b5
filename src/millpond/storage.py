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
        lose the last commits and, on a file system that does not keep writes in order, leave
        the file corrupt (LMDB's MDB_NOSYNC).

Space: the map starts at ``map_size`` and doubles when full, up to ``max_map_size``. Sends are
refused with StorageFull once the pages in use pass ``max_map_size - reserve``; the reserve is
kept for the copy-on-write pages of receives, deletes and purges, which can always commit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import lmdb

from millpond import directories
from millpond.clock import Clock
from millpond.disk_reserve import DEFAULT_DISK_RESERVE, DiskReserve
from millpond.errors import (
    AlreadyOpen,
    BrokerClosed,
    InvalidParameterValue,
    MillpondError,
    StorageFull,
)
from millpond.lmdb_meta import LastPage
from millpond.wake import Wake, new_wake, wake_all

DURABILITY_MODES = ("fsync", "os")
DEFAULT_MAP_SIZE = 1 << 30  # 1 GiB to start; doubled when full
DEFAULT_MAX_MAP_SIZE = 1 << 40  # 1 TiB of address space; only the pages used reach the disk
DEFAULT_RESERVE = 64 << 20

_process_id = os.getpid()  # kept current across fork() without a getpid() per call
# fork() waits this long at most for the write transactions in flight to end (see _before_fork)
FORK_WAITS_FOR_COMMIT_S = 1.0
_held_for_fork: list[threading.Lock] = []  # the transaction locks _before_fork took


def _before_fork() -> None:
    """Let the commits in flight end before fork(), and hold off the next ones until it is done.

    A write transaction open at fork() belongs to a thread the child does not have, so the
    child could never close its copy of the environment, nor (py-lmdb refuses a second open
    of the same files in a process) open the directory again. A commit that outlasts
    FORK_WAITS_FOR_COMMIT_S is not waited for: that child's open then raises AlreadyOpen.
    """
    deadline = time.monotonic() + FORK_WAITS_FOR_COMMIT_S
    for pid, storage in list(_open_here.values()):
        lock = storage._txn_lock
        if pid == _process_id and lock.acquire(timeout=max(deadline - time.monotonic(), 0)):
            _held_for_fork.append(lock)


def _after_fork_in_parent() -> None:
    while _held_for_fork:
        _held_for_fork.pop().release()


def _after_fork_in_child() -> None:
    global _process_id
    _process_id = os.getpid()
    _after_fork_in_parent()  # a lock still held now was in a transaction of a thread left behind


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)

READER_CHECK_INTERVAL_S = 60.0  # clear reader slots of dead processes this often
# A committer (an event loop) leads the commits of submitted ops itself while LMDB's commit
# (the pages written out and synced) takes less than this; longer ones go to the writer thread
# so that the loop keeps serving while the disk works. The ops' own work is left out: it holds
# the interpreter lock wherever it runs, and a large batch of it is no slow disk.
INLINE_COMMIT_MAX_S = 0.002
GATHER_WINDOW_S = 0.05  # a thread that wrote this recently counts as an active writer
MAX_GATHER_S = 0.0005  # the longest a leader waits for the others (and at most half a commit)
_open_lock = threading.Lock()
# Environments inherited through fork() in the middle of a commit (see _drop_after_fork)
_abandoned: list[lmdb.Environment] = []
# (device, inode) of each open data directory -> (pid that opened it, its Storage)
_open_here: dict[tuple[int, int], tuple[int, Storage]] = {}

_T = TypeVar("_T")

_TABLES = ("meta", "log", "vis", "counters", "moved", "fifo", "dedup", "dedupexp")


class Tables:
    """The named databases, opened once per environment."""

    __slots__ = (*_TABLES, "next_seqs")

    meta: lmdb._Database
    log: lmdb._Database
    vis: lmdb._Database
    counters: lmdb._Database
    moved: lmdb._Database
    fifo: lmdb._Database
    dedup: lmdb._Database
    dedupexp: lmdb._Database

    # The C core's cache of each queue's next seq (its NextSeqs, made on first use); the
    # commit confirms it (Storage._run).
    next_seqs: Any

    def __init__(self, env: lmdb.Environment, txn: lmdb.Transaction[bytes]) -> None:
        for name in _TABLES:
            setattr(self, name, env.open_db(name.encode(), txn=txn, create=True))
        self.next_seqs = None


class _ReadGate:
    """Read transactions of this process, and moments with none of them open.

    py-lmdb (3.0) remaps the environment on set_mapsize() under every open read transaction
    (which then fails with a raw lmdb error), and an abort waits until no operation of any
    thread runs on the environment (which readers taking turns can put off for good). Growing
    the map, aborting and closing therefore happen ``quiet()``: new reads wait, open ones finish
    first.
    """

    __slots__ = ("_cond", "_reads", "_quiet")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._reads = 0  # read transactions open
        self._quiet = 0  # writers waiting for, or holding, a moment without reads

    def enter(self) -> None:
        with self._cond:
            while self._quiet:
                self._cond.wait()
            self._reads += 1

    def leave(self) -> None:
        with self._cond:
            self._reads -= 1
            if not self._reads and self._quiet:
                self._cond.notify_all()

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        with self._cond:
            self._quiet += 1
            self._cond.wait_for(lambda: not self._reads)
        try:
            yield
        finally:
            with self._cond:
                self._quiet -= 1
                self._cond.notify_all()


class _Op:
    __slots__ = (
        "fn",
        "sends",
        "atomic",
        "done",
        "result",
        "error",
        "wake",
        "settle",
        "token",
        "after",
    )

    def __init__(
        self, fn: Callable[[lmdb.Transaction[bytes], int], Any], sends: int, atomic: bool
    ) -> None:
        self.fn = fn
        self.sends = sends
        self.atomic = atomic
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.wake: Wake | None = None  # a follower's: set by a leader
        self.settle: Callable[[_Op], None] | None = None  # submit(): called once committed
        self.token: Any = None  # submit(): the caller's, for settle (an asyncio future, say)
        self.after: list[Callable[[], None]] | None = None  # after_commit(): of its latest run


class Storage:
    """One data directory opened by this process.

    Args:
        path: the data directory (created if missing).
        clock: where ``now_ms`` comes from; read once per write transaction.
        durability: "fsync" (default) or "os"; see the module docstring for what each survives.
        map_size: initial LMDB map size in bytes.
        max_map_size: the most the data may grow to, in bytes.
        reserve: bytes below ``max_map_size`` at which sends start being refused.
        disk_reserve: bytes of disk kept allocated past the data in use, so that a full disk
            still lets receives and deletes commit (see disk_reserve.py); 0 keeps none.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        clock: Clock,
        durability: str = "fsync",
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int = DEFAULT_MAX_MAP_SIZE,
        reserve: int = DEFAULT_RESERVE,
        disk_reserve: int = DEFAULT_DISK_RESERVE,
    ) -> None:
        _check_sizes(map_size=map_size, max_map_size=max_map_size, reserve=reserve)
        _check_sizes(disk_reserve=disk_reserve)  # may be 0: no disk kept in hand
        if durability not in DURABILITY_MODES:
            raise InvalidParameterValue(
                f"durability must be one of {DURABILITY_MODES}, not {durability!r}"
            )
        if reserve >= max_map_size:
            raise InvalidParameterValue("reserve must be smaller than max_map_size")
        self.path = os.fspath(path)
        self.clock = clock
        self.durability = durability
        self.max_map_size = max_map_size
        self.reserve = reserve
        created = directories.make_dirs(self.path)
        new_files = not os.path.exists(os.path.join(self.path, "data.mdb"))
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        # Held while a write transaction is open: py-lmdb refuses set_mapsize() meanwhile, a
        # reader that met a map grown by another process must adopt it between writes, and
        # fork() waits for it (_before_fork).
        self._txn_lock = threading.Lock()
        self._disk = DiskReserve("", 0)  # none until the data file exists (below)
        with _open_lock:
            pid, other = _open_here.get(self._identity, (0, None))
            if pid == os.getpid():
                raise AlreadyOpen(
                    f"{self.path} is already open in this process; use that Broker "
                    "(LMDB must not open one environment twice in a process)"
                )
            # inherited through fork(): close our copy first
            if other is not None and not other._drop_after_fork():
                raise AlreadyOpen(
                    f"{self.path} cannot be opened in this process: it was forked while a "
                    "commit of the parent's broker was in flight (for more than "
                    f"{FORK_WAITS_FOR_COMMIT_S} s), and that copy of the environment cannot "
                    "be let go; open it in a process forked at another moment, or started "
                    'with the "spawn" or "forkserver" method'
                )
            _open_here[self._identity] = (os.getpid(), self)
        try:
            self._open(map_size)
            self._disk = DiskReserve(
                os.path.join(self.path, "data.mdb"), disk_reserve, zero_ahead=durability == "fsync"
            )
            self._keep_disk_reserve(fill_zeros=False)  # the first commit of sends fills
            if durability == "fsync" and (created or new_files):
                directories.sync_new_entries(self.path, created, new_files)
        except BaseException:
            self._unregister()
            raise

    def _open(self, map_size: int) -> None:
        self.env = self._open_env(min(map_size, self.max_map_size))
        # Slots of readers that died without closing (killed processes) pin old pages.
        self.env.reader_check()
        self._reader_checked = time.monotonic()
        while True:
            try:
                with self._txn_lock, self.env.begin(write=True) as txn:
                    self.tables = Tables(self.env, txn)
                break
            except lmdb.MapResizedError:
                # another process grew the map since lmdb.open (or since the last try): take
                # its size (nothing is open yet)
                self.env.set_mapsize(0)
        self._page_size = self.env.stat()["psize"]
        self._last_page = LastPage(self.env, os.path.join(self.path, "data.mdb"), self._page_size)
        self._pid = os.getpid()
        self._closed = False
        self._mutex = threading.Lock()
        self._reads = _ReadGate()
        self._idle = threading.Condition(self._mutex)  # close() waits on it for the last leader
        self._pending: list[_Op] = []
        self._leader_active = False
        self._writers: dict[int, float] = {}  # thread id -> last write (monotonic s)
        # While a leader gathers: how many queued ops it waits for, and the Wake it sleeps on
        self._gathering: tuple[int, Wake] | None = None
        self._commit_seconds = 0.0  # moving average of a commit's duration
        self._sync_seconds = 0.0  # ... of LMDB's commit in it (writing out, fsync)
        self._gathers = self.durability == "fsync"  # gathering pays only when commits are slow
        self._send_limit = self.max_map_size - self.reserve
        self._closing = False
        self._writer: threading.Thread | None = None  # started by the first submit()
        self._writer_due = threading.Semaphore(0)
        self._committer: Callable[[], None] | None = None  # see set_committer()
        self._map_size = self.env.info()["map_size"]
        self.commits = 0  # write transactions committed by this process (for tests and metrics)
        self._running: _Op | None = None  # the op whose fn runs now (leader's thread)

    def _open_env(self, map_size: int) -> lmdb.Environment:
        """lmdb.open, again for as long as another process grows the data meanwhile.

        py-lmdb begins a transaction inside lmdb.open (for the main database), which LMDB
        refuses with MDB_MAP_RESIZED when another process's commits passed the map size the
        open just read off the file; opening again reads the size they left.
        """
        while True:
            try:
                return lmdb.open(
                    self.path,
                    map_size=map_size,
                    max_dbs=len(_TABLES) + 4,
                    max_readers=512,
                    sync=self.durability == "fsync",
                    metasync=True,
                    readahead=False,
                )
            except lmdb.MapResizedError:
                continue

    # -- writes -----------------------------------------------------------------------------

    def write(
        self,
        fn: Callable[[lmdb.Transaction[bytes], int], _T],
        *,
        sends: int = 0,
        atomic: bool = False,
    ) -> _T:
        """Run ``fn(txn, now_ms)`` in a write transaction shared with concurrent callers.

        Returns fn's result once the transaction committed (durably in "fsync" mode), or raises
        what fn raised. A MillpondError from fn fails only its own call, and the rest of the
        batch still commits, so fn must raise before it writes anything, unless ``atomic``: then
        what fn wrote is rolled back if it raises (fn runs in a nested transaction when it
        shares the commit with others; alone, the commit's own transaction is not committed).
        ``sends`` counts the messages fn adds, so that a full store refuses them (StorageFull)
        and nothing else.
        """
        self._check_usable()
        op = _Op(fn, sends, atomic)
        wake = None  # a follower's (another thread leads): set by a leader
        gatherer = None
        with self._mutex:
            if self._closing:  # close() began since the check above: take nothing new
                raise BrokerClosed("the broker is closed")
            if self._leader_active:
                op.wake = wake = new_wake()
                self._pending.append(op)
                gatherer = self._gather_complete()
            else:
                self._leader_active = True
        if wake is not None:
            self._writers[threading.get_ident()] = time.monotonic()  # seen contending
            try:
                # Set by a leader: our op is done, or we lead next. The gathering leader (if
                # this op is the last it waits for) is woken once this thread let go of the GIL.
                wake.wait(then_set=gatherer)
            except BaseException:  # a signal handler's (the main thread), once the wait ended
                if wake.is_set() and not op.done:
                    self._lead(op)  # handed the lead: take it, or no commit would run again
                raise
        if not op.done:
            self._lead(op)
        if op.error is not None:
            raise op.error
        return op.result  # type: ignore[no-any-return]  # what fn returned

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` once the writes of the op now running on this thread are committed.

        For effects outside the store, such as metrics: an op may run more than once (its batch
        runs again after the map grew, or alone after another op broke the transaction) and
        its writes may be rolled back, so counting inside it would count its reruns too.
        ``fn`` runs once, before the op's caller learns its result, and only if the op's
        writes were committed; it must be quick and must not raise. Call it from inside a
        write op (fn of write() or submit()) only.
        """
        op = self._running
        if op is None:
            raise RuntimeError("after_commit() outside a write op")
        if op.after is None:
            op.after = [fn]
        else:
            op.after.append(fn)

    def submit(
        self,
        fn: Callable[[lmdb.Transaction[bytes], int], Any],
        settle: Callable[[_Op], None],
        *,
        sends: int = 0,
        atomic: bool = False,
        token: Any = None,
    ) -> None:
        """As write(), without waiting: ``settle(op)`` runs once the commit is done.

        For event loops: the op joins the same group commit as everyone else, and no thread
        waits for it. ``settle`` runs on the committing thread; it must be quick and must not
        raise (an asyncio caller hands ``op.result``/``op.error`` to its loop from there);
        ``op.token`` is ``token``.
        """
        self._check_usable()
        op = _Op(fn, sends, atomic)
        op.settle = settle
        op.token = token
        gatherer = None
        with self._mutex:
            if self._closing:
                raise BrokerClosed("the broker is closed")
            self._pending.append(op)
            lead = not self._leader_active  # else the current leader, or its successor, takes it
            if lead:
                self._leader_active = True
            else:
                gatherer = self._gather_complete()
        if lead:
            self._hand_off()
        elif gatherer is not None:
            gatherer.set()

    def set_committer(self, schedule: Callable[[], None] | None) -> None:
        """Let an event loop lead the commits of submitted ops while commits are short.

        ``schedule()`` is called (from any thread) when submitted ops need a leader; it must
        make the loop call :meth:`lead_submitted` soon. Every op submitted before that call
        runs in one commit, with no thread hop and no hand-off of the interpreter lock. Once
        LMDB's commits take INLINE_COMMIT_MAX_S or more (a slow disk), the writer thread leads them
        instead and the loop keeps serving during the fsync. None: the writer thread always.
        """
        self._committer = schedule

    def lead_submitted(self) -> None:
        """Commit the submitted ops now, on this thread (the committer's loop)."""
        self._lead(None, gather=False)

    def _hand_off(self) -> None:
        """Give the queued submitted ops a leader (the caller set _leader_active)."""
        committer = self._committer
        if committer is not None and self._sync_seconds < INLINE_COMMIT_MAX_S:
            try:
                committer()
                return
            except RuntimeError:  # its loop is closed: nobody there to lead
                self._committer = None
        self._wake_writer()

    def _wake_writer(self) -> None:
        """Make the writer thread lead the next commit (for ops with nobody waiting on them)."""
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._writer_loop, name="millpond-writer", daemon=True
            )
            self._writer.start()
        self._writer_due.release()

    def _writer_loop(self) -> None:
        while True:
            self._writer_due.acquire()
            if self._closed:
                return
            self._lead(None)

    def _lead(self, op: _Op | None, gather: bool = True) -> None:
        """Commit everything queued (``op`` included), then hand leadership on (caller leads)."""
        interrupted = None
        if gather and self._writers:
            try:
                self._gather()
            except BaseException as exc:  # a signal handler's: commit and hand on first
                interrupted = exc
        if self._pending:
            with self._mutex:
                batch = self._pending
                self._pending = []
            if op is not None and op not in batch:
                batch.insert(0, op)
        else:  # nothing queued (one writer): no lock needed, as only the leader takes ops out
            batch = [] if op is None else [op]
        started = time.perf_counter()
        try:
            self._commit(batch)
        finally:
            elapsed = time.perf_counter() - started
            self._commit_seconds += (elapsed - self._commit_seconds) / 8  # moving average
            with self._mutex:
                successor = self._pending[0] if self._pending else None
                if successor is None:
                    self._leader_active = False
                    if self._closing:
                        self._idle.notify_all()
            wakes = []
            for other in batch:
                if other.settle is not None:
                    other.settle(other)  # submitted: its caller learns the outcome now
                elif other is not op and other.wake is not None:
                    wakes.append(other.wake)  # done: its thread returns the outcome
            if successor is not None and successor.wake is not None:
                wakes.append(successor.wake)  # its waiting thread leads the next commit
            if wakes:
                wake_all(wakes)  # once this thread let go of the GIL (see wake.py)
            if successor is not None and successor.wake is None:
                self._hand_off()  # submitted: the committer or the writer thread leads it
        if interrupted is not None:
            raise interrupted

    def _gather(self) -> None:
        """Under contention, wait a little so one commit serves every active writer.

        Threads whose operations were just committed need a moment to come back with their
        next one; waiting up to half a commit for them (only while fewer are queued than
        threads wrote recently, as PostgreSQL's commit_delay/commit_siblings) turns
        alternating half-batches into full ones. The last of them to queue its op wakes the
        leader at once (no polling). One writer never waits.
        """
        now = time.monotonic()
        writers = self._writers
        for ident, seen in list(writers.items()):
            if now - seen > GATHER_WINDOW_S:
                writers.pop(ident, None)
        # the other threads seen contending (this leader's own op is not queued)
        wanted = len(writers) - (threading.get_ident() in writers)
        if wanted < 2 or not self._gathers:
            return
        with self._mutex:
            if len(self._pending) >= wanted:
                return
            gathered = new_wake()
            self._gathering = (wanted, gathered)
        try:
            gathered.wait(min(self._commit_seconds / 2, MAX_GATHER_S))
        finally:
            self._gathering = None  # a late set() of its Wake is harmless

    def _gather_complete(self) -> Wake | None:
        """The gathering leader's Wake if the op just queued is the last it waits for, taken so
        that only the caller sets it (the caller holds the mutex)."""
        gathering = self._gathering
        if gathering is not None and len(self._pending) >= gathering[0]:
            self._gathering = None
            return gathering[1]
        return None

    def _commit(self, batch: list[_Op]) -> None:
        """Run ``batch`` in one transaction and mark every op done (caller is the leader)."""
        todo = batch
        disk_retried = False
        while todo:
            try:
                if self._run(todo):
                    self.commits += 1
                return
            except lmdb.MapFullError:
                # A reader slot left by a killed process pins every page freed since: clear
                # it and try again before growing the map, or the map (and the file) would
                # grow by everything written for as long as the dead reader is not noticed.
                if not self.env.reader_check() and not self._grow_map():
                    # At max_map_size (and no reader of a dead process pinning old pages):
                    # sends are refused first; if what is left still does not fit, it fails
                    # too rather than retrying forever.
                    sends = [op for op in todo if op.sends]
                    for op in sends or todo:
                        _fail(op, StorageFull("the data directory reached max_map_size"))
                    todo = [op for op in todo if not op.done]
            except lmdb.MapResizedError:
                self._adopt_map_size()  # another process grew the map
            except lmdb.DiskError as exc:
                if not _no_space(exc):
                    raise
                # Nothing of it was stored. The sends fail (as they will until space is
                # freed); the rest runs again, into the reserve kept for it, once.
                self._disk.disk_full()
                for op in todo if disk_retried else [op for op in todo if op.sends]:
                    _fail(op, StorageFull("the disk is full"))
                todo = [op for op in todo if not op.done]
                disk_retried = True
            except BaseException as exc:
                if len(todo) == 1:
                    _fail(todo[0], exc)
                    return
                # One op broke the shared transaction: run each alone so only it fails.
                for op in todo:
                    self._commit([op])
                return

    def _run(self, batch: list[_Op]) -> bool:
        """Run ``batch`` in one write transaction; False if it was rolled back instead (a lone
        atomic op that failed). Each op gets its result or error at once (a rerun of the batch
        replaces them) and is marked done only once the transaction ended."""
        if not self.commits & 1023 and (
            time.monotonic() - self._reader_checked > READER_CHECK_INTERVAL_S
        ):
            self._reader_checked = time.monotonic()
            self.env.reader_check()
        now_ms = self.clock.now_ms()
        # An atomic op alone in its commit needs no nested transaction (which copies every
        # page it touches): if it fails, the whole transaction is simply not committed.
        alone = batch[0].atomic and len(batch) == 1
        with self._txn_lock:  # no set_mapsize() while the transaction is open
            txn = self.env.begin(write=True)
            rolled_back = False
            try:
                # Sends are checked one by one only near a limit (a full disk, or a map near
                # max_map_size): one big group commit must not eat the reserve that receives
                # and deletes need to drain the store.
                guarded = self._disk.full or self._map_size > self._send_limit
                sends = False
                for op in batch:
                    op.after = None  # what an earlier run of it asked for is void
                    if op.sends:
                        sends = True
                        if guarded:
                            refused = self._refusal(txn)
                            if refused is not None:
                                op.result, op.error = None, refused
                                continue
                    self._running = op
                    try:
                        if op.atomic and not alone:
                            op.result = self._nested(txn, op, now_ms)
                        else:
                            op.result = op.fn(txn, now_ms)
                        op.error = None
                    except MillpondError as exc:
                        if alone:
                            self._abort(txn)
                            rolled_back = True
                        op.result, op.error = None, exc
            except BaseException:
                self._abort(txn)
                raise
            finally:
                self._running = None
            if not rolled_back:
                syncing = time.perf_counter()
                txn.commit()
                self._sync_seconds += (time.perf_counter() - syncing - self._sync_seconds) / 8
                if self.tables.next_seqs is not None:
                    self.tables.next_seqs.confirm(txn)  # its seqs hold in the next transaction
                # Only sends grow the file much (receives add a few index entries; deletes
                # free pages): the disk reserve is looked after when they commit.
                if sends and self._disk.enabled and self._disk.needs_care(self._used_bytes()):
                    self._keep_disk_reserve()
        # Committed (or, for a lone atomic op that failed, rolled back): only now may callers
        # learn their results, and the effects of the ops that succeeded take place.
        for op in batch:
            if op.after is not None:
                if op.error is None:
                    for fn in op.after:
                        fn()
                op.after = None
            op.done = True
        return not rolled_back

    def _refusal(self, txn: lmdb.Transaction[bytes]) -> StorageFull | None:
        """Why a send may not go into ``txn`` now (near a limit), or None if it may.

        Checked against the pages in use so far, this transaction's included."""
        if self._disk.full and self._disk.sends_refused(
            self._used_bytes(), lambda: self._free_bytes(txn)
        ):
            return StorageFull("the disk is full")
        if self._map_size > self._send_limit and self._sends_refused(txn):
            return StorageFull("the data directory is full")
        return None

    def _nested(self, txn: lmdb.Transaction[bytes], op: _Op, now_ms: int) -> Any:
        """Run ``op`` in a transaction nested in ``txn``: rolled back alone if it raises."""
        child = self.env.begin(write=True, parent=txn)
        next_seqs = self.tables.next_seqs
        if next_seqs is not None:
            next_seqs.nest(txn, child)
        try:
            result = op.fn(child, now_ms)
        except BaseException:
            self._abort(child)
            if next_seqs is not None:
                next_seqs.unnest(child, txn, False)
            raise
        child.commit()
        if next_seqs is not None:
            next_seqs.unnest(child, txn, True)
        return result

    def _abort(self, txn: lmdb.Transaction[bytes]) -> None:
        with self._reads.quiet():  # py-lmdb's abort waits for every thread's operations
            txn.abort()

    def _sends_refused(self, txn: lmdb.Transaction[bytes]) -> bool:
        """True when the pages in use leave less than the reserve below max_map_size.

        Only asked once the map itself is larger than that (a smaller map cannot hold more).
        """
        return self._pages_in_use(txn) * self._page_size > self.max_map_size - self.reserve

    def _pages_in_use(self, txn: lmdb.Transaction[bytes]) -> int:
        return sum(
            s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]
            for s in [txn.stat(getattr(self.tables, name)) for name in _TABLES] + [txn.stat()]
        )

    def _free_bytes(self, txn: lmdb.Transaction[bytes] | None = None) -> int:
        """Bytes of pages inside the data file that no table uses (LMDB's free list, and the
        two meta pages, which are few): space commits take before the file grows."""
        if txn is None:
            with self.env.begin() as read:
                in_use = self._pages_in_use(read)
        else:
            in_use = self._pages_in_use(txn)
        return max(0, self._used_bytes() - (in_use + 2) * self._page_size)

    def _keep_disk_reserve(self, fill_zeros: bool = True) -> None:
        """Allocate disk ahead after a commit, and zero-fill it ahead (see disk_reserve.py).
        Never raises: the commit is done, and its callers must learn so (a raise would run it
        again); an LMDB error here (a map another process grew meanwhile) leaves it to the
        next commit. ``fill_zeros`` needs the caller to hold _txn_lock."""
        try:
            used = self._used_bytes()
            self._disk.after_commit(used, self._free_bytes)
            if fill_zeros and self._disk.zeros_due(used):
                # LMDB's write lock, so that no process writes pages past the ones in use
                # while zeros go there; nothing is written in this transaction
                txn = self.env.begin(write=True)
                try:
                    self._disk.fill_zeros(self._used_bytes())
                finally:
                    txn.abort()
        except lmdb.Error:
            pass

    def _used_bytes(self) -> int:
        """Where the pages in use end in the data file."""
        return (self._last_page.last_pgno() + 1) * self._page_size

    def _grow_map(self) -> bool:
        """Double the map (between transactions); False when already at max_map_size."""
        current = self.env.info()["map_size"]
        if current >= self.max_map_size:
            return False
        # remapping fails the reads open in other threads
        with self._txn_lock, self._reads.quiet():
            self.env.set_mapsize(min(current * 2, self.max_map_size))
        self._map_size = self.env.info()["map_size"]
        return True

    def _adopt_map_size(self) -> None:
        """Take the map size another process grew the data to (between write transactions)."""
        with self._txn_lock, self._reads.quiet():
            self.env.set_mapsize(0)
        self._map_size = self.env.info()["map_size"]

    # -- reads ------------------------------------------------------------------------------

    def read(self, fn: Callable[[lmdb.Transaction[bytes]], _T]) -> _T:
        """Run ``fn(txn)`` in a read-only snapshot."""
        self._check_usable()
        while True:
            self._reads.enter()
            try:
                if self._closed:  # close() ran while this read waited to enter
                    raise BrokerClosed("the broker is closed")
                with self.env.begin() as txn:
                    return fn(txn)
            except lmdb.MapResizedError:
                pass
            except lmdb.ReadersFullError:
                # The reader table is full of slots left by killed processes (nothing frees
                # them but a reader check): clear them and read again; full of live readers,
                # it is a real limit.
                if not self.env.reader_check():
                    raise
                continue
            finally:
                self._reads.leave()
            # Another process grew the map: adopt its size, then read again (as often as it
            # grows meanwhile: several processes filling a small map grow it in quick turns).
            self._adopt_map_size()

    # -- lifecycle --------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise BrokerClosed("the broker is closed")
        if _process_id != self._pid:
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
        if _process_id != self._pid:  # inherited through fork(): the parent's commits are not
            self._drop_after_fork()  # ours to wait for (their threads do not exist here)
            return
        with self._mutex:
            self._closing = True
            while self._leader_active:
                self._idle.wait()
            self._closed = True
        if self._writer is not None:
            self._writer_due.release()  # it sees _closed and ends
            self._writer.join(timeout=30)
        if os.getpid() == self._pid:
            # Reads in flight finish first (closing the environment would fail them with a raw
            # lmdb error); the ones waiting to start see _closed and raise BrokerClosed.
            with self._reads.quiet():
                self.env.sync(True)
                self.env.close()
            self._disk.close()
            self._last_page.close()
            self._unregister()

    def _unregister(self) -> None:
        with _open_lock:
            if _open_here.get(self._identity, (0, None))[0] == os.getpid():
                del _open_here[self._identity]

    def _drop_after_fork(self) -> bool:
        """In a forked child: let go of the parent's environment so the child can reopen;
        False when it cannot be.

        py-lmdb (3.0) makes closing an environment inherited through fork() safe: the
        parent's readers and locks are not touched. But it waits for a write transaction to
        end on the thread that began it, and when the fork came during a commit (one that
        _before_fork did not wait for) that thread does not exist here: the environment is
        then left open (kept referenced, so that no collection closes it either) instead of
        waiting for good.
        """
        self._closed = True
        self._disk.close()  # the parent's descriptor: the parent keeps its own
        self._last_page.close()
        if self.env in _abandoned:
            return False
        if self._txn_lock.locked():  # held by a thread of the parent, in a transaction
            _abandoned.append(self.env)
            return False
        try:
            self.env.close()
        except lmdb.Error:
            pass
        return True


def key_names_after(
    txn: Any, db: Any, kind: bytes, prefix: str, after: str, limit: int | None
) -> list[str]:
    """The names of the keys ``kind + name`` of ``db`` whose name starts with ``prefix`` and
    sorts after ``after``, in order, at most ``limit`` (a listing page); caller holds the txn.

    The cursor starts at the first such key: a page reads its own keys, not those before it.
    UTF-8 bytes sort as the names' code points do, so key order is str order.
    """
    matching = kind + prefix.encode()
    start = matching
    if after:
        start = max(start, kind + after.encode() + b"\0")  # the first key past ``after``
    names: list[str] = []
    with txn.cursor(db=db) as cur:
        if cur.set_range(start):
            for key in cur.iternext(values=False):
                if not key.startswith(matching) or len(names) == limit:
                    break
                names.append(key[len(kind) :].decode())
    return names


def _check_sizes(**sizes: Any) -> None:
    """Sizes in bytes: whole numbers, positive (disk_reserve may be 0)."""
    for name, value in sizes.items():
        least = 0 if name == "disk_reserve" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InvalidParameterValue(
                f"{name} must be a whole number of bytes, at least {least}, not {value!r}"
            )


def _no_space(exc: lmdb.DiskError) -> bool:
    """Whether LMDB's DiskError is ENOSPC (py-lmdb gives the text, not the errno)."""
    return os.strerror(errno.ENOSPC) in str(exc)


def _fail(op: _Op, error: BaseException) -> None:
    op.result, op.error, op.done = None, error, True
