"""The daemon's state: one Broker per region, a thread pool for blocking calls, long polls.

Regions are kept apart as AWS keeps them: each region's queues and topics live in their own
data directory (``<data>/<region>``), opened on first use. Blocking broker calls run on a
thread pool, where concurrent requests meet in the storage's group commit; long polls wait on
the event loop, so a waiting ReceiveMessage holds no thread and ends when its client goes.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import millpond
from millpond.broker import Broker
from millpond.errors import MillpondError, QueueDoesNotExist, TooManyRegions
from millpond.server.http_protocol import DeadlineHttpProtocol
from millpond.server.send_batches import SendBatch
from millpond.wakeups import Wakeups

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")


MAX_REGION_LENGTH = 50  # AWS's longest region names have 14 characters
# Regions a daemon serves unless its config says otherwise: every AWS region name fits.
DEFAULT_MAX_REGIONS = 64
# The doorbells of parked long polls are read for sends of other processes at most this
# often (the embedded pollers' fallback re-checks as often: wakeups.FALLBACK_POLL_S); between
# rings the watcher sleeps in a futex wait, up to DOORBELL_IDLE_S at a time.
DOORBELL_CHECK_S = 0.01
DOORBELL_IDLE_S = 1.0


def valid_region(name: Any) -> bool:
    """Whether ``name`` is shaped like an AWS region (a directory of its own under the data;
    one longer than a file name may be made an internal error of the request)."""
    return (
        isinstance(name, str)
        and len(name) <= MAX_REGION_LENGTH
        and _REGION.fullmatch(name) is not None
    )


class Notifier:
    """asyncio side of the broker's wake-ups: parked long polls woken from any thread.

    A notice wakes as many polls of its queue as messages it announces (the longest parked
    first), not every one: each woken poll runs a receive, and hundreds of them per send made
    sends crawl. No message is left waiting meanwhile, as long as the polls keep the rule
    (see server.sqs.long_poll): a woken poll looks for messages; one that takes some wakes
    another (there may be more); one that ends without looking passes its wake-up on
    (pass_on). A poll that finds nothing has seen every message made receivable before its
    look; any later one comes with a notice of its own, a doorbell ring or a visibility time
    (wake_at).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # the parked polls of each (broker, queue), longest parked first; woken ones leave
        self._waiters: dict[tuple[int, int], dict[asyncio.Future[None], None]] = {}
        # the polls of each (broker, queue) looking for messages now (see look), and the
        # notices that came meanwhile and found no poll parked: owed to the lookers
        self._looking: dict[tuple[int, int], int] = {}
        self._owed: dict[tuple[int, int], int] = {}
        # (broker, queue) -> the timer that wakes a poll when a hidden message shows again
        self._timers: dict[tuple[int, int], asyncio.TimerHandle] = {}
        # Parked long polls that another process may wake: its sends ring the doorbell file,
        # not this process's listeners. (broker, queue) -> ["has its doorbell rung since the
        # last look of a poll?", the broker's Wakeups when it has a doorbell file], read by a
        # thread: a check per queue, not per poll.
        self._doorbells: dict[tuple[int, int], list[Any]] = {}
        self._doorbells_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self.parked = 0  # long polls waiting now (see LoopCommitter: they send nothing)

    def listener(self, broker_key: int) -> Callable[[int | None, int], None]:
        def notified(queue_id: int | None, count: int) -> None:
            # Only wake the loop when someone waits there: most sends have no long poll.
            key = (broker_key, queue_id)
            if queue_id is None or key in self._waiters or key in self._looking:
                self._loop.call_soon_threadsafe(self._wake, broker_key, queue_id, count)

        return notified

    def _wake(self, broker_key: int, queue_id: int | None, count: int = 1) -> None:
        """Wake ``count`` polls of the queue; queue None: every poll of the broker."""
        if queue_id is not None:
            self._wake_some((broker_key, queue_id), count)
            return
        for key in [key for key in self._waiters if key[0] == broker_key]:
            self._wake_some(key, None)

    def _wake_some(self, key: tuple[int, int], count: int | None) -> None:
        """Wake the ``count`` longest parked polls of ``key`` (None: all of them)."""
        waiters = self._waiters.get(key)
        while waiters and (count is None or count > 0):
            future = next(iter(waiters))
            del waiters[future]  # woken: no later notice counts it as parked
            if not future.done():
                future.set_result(None)
                count = None if count is None else count - 1
        looking = self._looking.get(key, 0)
        if looking and count != 0:  # a poll looking now may have looked too early: it looks again
            owed = self._owed.get(key, 0) + (looking if count is None else count)
            self._owed[key] = min(owed, looking)

    def look(self, broker_key: int, queue_id: int) -> None:
        """A poll of the queue starts looking for messages: until look_ended() or wait(...,
        looked=True), a notice that finds no poll parked is owed to it."""
        key = (broker_key, queue_id)
        self._looking[key] = self._looking.get(key, 0) + 1

    def look_ended(self, broker_key: int, queue_id: int) -> bool:
        """A poll's look ended. True: a notice came meanwhile and woke no poll; the caller
        looks again, or passes it on (pass_on)."""
        key = (broker_key, queue_id)
        looking = self._looking[key] - 1
        if looking:
            self._looking[key] = looking
        else:
            del self._looking[key]
        owed = self._owed.pop(key, 0)
        if owed > 1:
            self._owed[key] = owed - 1  # (no more than the polls still looking)
        return owed > 0

    def pass_on(self, broker_key: int, queue_id: int) -> None:
        """A poll woken for a message will not look for it (or took some, and there may be
        more): wake another in its place."""
        self._wake_some((broker_key, queue_id), 1)

    def wake_all(self) -> None:
        """Every long poll returns now (shutdown)."""
        for key in list(self._waiters):
            self._wake_some(key, None)

    def wake_at(self, broker_key: int, queue_id: int, delay: float) -> None:
        """Wake a poll of the queue in ``delay`` seconds, when a hidden message shows again.
        A timer of the queue's, not the poll's: the poll that learnt of the message may have
        gone by then, and the polls parked before it never looked."""
        key = (broker_key, queue_id)
        when = self._loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= when:
                return  # the poll it wakes looks again and sets the next timer
            timer.cancel()
        self._timers[key] = self._loop.call_at(when, self._time_up, key)

    def _time_up(self, key: tuple[int, int]) -> None:
        del self._timers[key]
        self._wake_some(key, 1)

    async def wait(
        self,
        broker_key: int,
        queue_id: int,
        timeout: float,
        rung: Callable[[], bool] | None = None,
        bell: Wakeups | None = None,
        looked: bool = False,
    ) -> bool:
        """Until a notice of ``queue_id`` in this process wakes this poll, ``rung()`` (the
        queue's doorbell moved: a send of another process) turns true, or ``timeout``.
        ``bell``: the broker's Wakeups, when its doorbell file lets the watcher sleep until a
        ring. ``looked``: the poll ends its look (see look) as it parks. True when woken: the
        caller looks for messages, or passes the wake-up on."""
        key = (broker_key, queue_id)
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiters.setdefault(key, {})[future] = None  # parked before its look ends
        if looked and self.look_ended(broker_key, queue_id):
            self._leave(key, future)
            return True
        if rung is not None:
            self._watch(key, rung, bell)
        self.parked += 1
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that comes in the same
            # loop iteration as the wake-up, and the poll of a client just gone would go on to
            # take a message for nobody.
            await asyncio.wait((future,), timeout=timeout)
        except BaseException:
            self._leave(key, future)
            if future.done():  # woken as it was cancelled: the message is another poll's
                self.pass_on(broker_key, queue_id)
            raise
        finally:
            self.parked -= 1
        self._leave(key, future)
        return future.done()

    def _leave(self, key: tuple[int, int], future: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.pop(future, None)
            if not waiters:
                del self._waiters[key]
                with self._doorbells_lock:
                    self._doorbells.pop(key, None)

    def _watch(self, key: tuple[int, int], rung: Callable[[], bool], bell: Wakeups | None) -> None:
        with self._doorbells_lock:
            # the newest poll's check: a ring before its look was in what it found
            self._doorbells[key] = [rung, bell]
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch_doorbells, daemon=True, name="millpond-doorbells"
                )
                self._watcher.start()

    def _watch_doorbells(self) -> None:
        """Wake a parked long poll of each queue whose doorbell rang, while any is parked. One
        thread reads them all (a futex wait per poll would hold a thread each, and the loop
        must not block), then sleeps until the next ring of the data directory's doorbell file
        (its slot that rings with every queue's), at most once per DOORBELL_CHECK_S under load.
        Polls of several regions (or without a doorbell file) are read every DOORBELL_CHECK_S.
        A ring wakes one poll of the queue (see the class); the queue's check then follows the
        doorbell from there, until a poll parks with its own."""
        last_check = 0.0
        while True:
            with self._doorbells_lock:
                if not self._doorbells:
                    self._watcher = None
                    return
                watched = [(key, check, bell) for key, (check, bell) in self._doorbells.items()]
            closed = [key for key, _, bell in watched if bell is not None and bell.closed]
            if closed:  # the daemon shuts down: its brokers close, nothing rings any more
                self._unwatch(closed)
                continue
            bells = {id(bell): bell for _, _, bell in watched}
            bell = next(iter(bells.values())) if len(bells) == 1 else None
            # read before the checks: a ring after them ends the wait below at once
            generation = bell.any_generation() if bell is not None else 0
            moved = [(key, check, bell) for key, check, bell in watched if check()]
            if moved:
                # armed again before the wake: a later ring is heard, whatever the woken poll
                # does (it may end without parking again)
                again = [
                    (key, check, _armed_again(check, bell, key[1])) for key, check, bell in moved
                ]
                with self._doorbells_lock:
                    for key, check, armed in again:
                        entry = self._doorbells.get(key)
                        if entry is not None and entry[0] is check:  # (else a poll parked since)
                            entry[0] = armed
                try:
                    self._loop.call_soon_threadsafe(self._wake_each, [key for key, _, _ in moved])
                except RuntimeError:  # the loop is closed: nobody waits any more
                    with self._doorbells_lock:
                        self._doorbells.clear()
            now = time.monotonic()
            pause, last_check = DOORBELL_CHECK_S - (now - last_check), now
            if bell is None:
                time.sleep(DOORBELL_CHECK_S)
                continue
            if pause > 0:  # rings come often (this process's sends ring too): a check per pause
                time.sleep(pause)
            bell.wait_any(generation, DOORBELL_IDLE_S)

    def _unwatch(self, keys: list[tuple[int, int]]) -> None:
        with self._doorbells_lock:
            for key in keys:
                self._doorbells.pop(key, None)

    def _wake_each(self, keys: list[tuple[int, int]]) -> None:
        for key in keys:
            self._wake_some(key, 1)


def _armed_again(
    check: Callable[[], bool], bell: Wakeups | None, queue_id: int
) -> Callable[[], bool]:
    """The doorbell check of a queue after ``check`` rang: has the doorbell moved since now?
    Without a doorbell file, ``check`` again (it always rings: the fallback's re-check)."""
    if bell is None:
        return check
    generation = bell.generation(queue_id)
    return lambda: bell.generation(queue_id) != generation


class Settler:
    """Hands committed results to the event loop: one loop wake-up per burst of commits.

    ``settle(op)`` resolves the future in ``op.token``. A commit the loop led itself (see
    Storage.set_committer) resolves its futures on the spot.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.loop_thread = threading.get_ident()  # made by bind_loop, on the loop's thread
        self._lock = threading.Lock()
        self._ready: list[Any] = []
        self._scheduled = False

    def settle(self, op: Any) -> None:  # on the committing thread
        if threading.get_ident() == self.loop_thread:
            _resolve(op)
            return
        with self._lock:
            self._ready.append(op)
            schedule, self._scheduled = not self._scheduled, True
        if schedule:
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            ready, self._ready, self._scheduled = self._ready, [], False
        for op in ready:
            _resolve(op)


def _resolve(op: Any) -> None:
    future = op.token
    if type(future) is SendBatch:
        future.settle(op)
        return
    if future.cancelled():
        return  # its request went away; the write itself stands
    if op.error is not None:
        future.set_exception(op.error)
    else:
        future.set_result(op.result)


# How long the loop may hold a commit back for writes still coming in (see LoopCommitter):
# up to this many commits' duration, and at most LOOP_GATHER_MAX_S; and no longer than
# LOOP_GATHER_QUIET_S with no new write.
LOOP_GATHER_COMMITS = 4
LOOP_GATHER_MAX_S = 0.002
LOOP_GATHER_QUIET_S = 0.0002


class LoopCommitter:
    """The schedule() of Storage.set_committer: the loop leads the commit once the writes it
    may expect are in.

    Not at once: after one more round of the loop's ready callbacks, so that the requests
    read in this iteration (their tasks made ready by the same I/O) reach their write first
    and share the commit: fewer, larger commits, each an fsync during which the loop serves
    nothing (daemon SendMessage, 64 connections: medians 0.46x -> 0.52x the empty handler).

    Then, round after round, until a write has come from as many requests as the daemon has
    connections open (but those in a parked long poll), or no new write came for
    LOOP_GATHER_QUIET_S, or the commit has waited a few commits' time. Under steady load the
    connections otherwise fall into two waves, each with a commit of its own: the requests
    that arrive while the loop is blocked in one commit's fsync make the next. The loop is
    not idle meanwhile: it serves the requests it waits for. 64 connections: 35 -> 61 sends
    a commit, the server's CPU 55.4 -> 49.8 us a request. One connection commits at once;
    connections that send nothing (idle in a pool) cost each commit LOOP_GATHER_QUIET_S at
    most.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, loop_thread: int, storage: Any, ctx: Context
    ) -> None:
        self._loop = loop
        self._loop_thread = loop_thread
        self._storage = storage
        self._ctx = ctx
        self._first = 0  # ctx.joined before the first write of the commit held back
        self._expected: int | None = None  # the most writes it may wait for (None: unknown)
        self._joined = 0  # ctx.joined at the last round
        self._last_write = 0.0  # when a round last saw a new write (time.monotonic())
        self._deadline = 0.0

    def __call__(self) -> None:
        if threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._storage.lead_submitted)
            return
        now = time.monotonic()
        longest = min(self._storage._commit_seconds * LOOP_GATHER_COMMITS, LOOP_GATHER_MAX_S)
        self._deadline = now + longest
        self._joined = self._ctx.joined
        self._first = self._joined - 1  # the write that asked for this commit is in
        self._last_write = now
        # A write may come from each connection but those whose request is a parked long poll
        connections = DeadlineHttpProtocol.server_connections
        notifier = self._ctx.notifier
        parked = 0 if notifier is None else notifier.parked
        self._expected = None if connections is None else len(connections) - parked
        self._loop.call_soon(self._loop.call_soon, self._round)

    def _round(self) -> None:
        joined = self._ctx.joined
        now = time.monotonic()
        if joined != self._joined:
            self._joined = joined
            self._last_write = now
        expected = self._expected
        if (
            now < self._deadline
            and now - self._last_write < LOOP_GATHER_QUIET_S
            and (expected is None or joined - self._first < expected)
        ):
            self._loop.call_soon(self._round)
            return
        self._storage.lead_submitted()


class Context:
    """Everything a request handler needs."""

    def __init__(
        self,
        data_dir: str,
        *,
        durability: str = "fsync",
        region: str = "us-east-1",
        account_id: str = "123456789012",
        workers: int = 64,
        clock: millpond.Clock | None = None,
        credentials: dict[str, str] | None = None,
        max_regions: int = DEFAULT_MAX_REGIONS,
    ) -> None:
        self.data_dir = data_dir
        # Each region is a data directory and an open LMDB environment (file descriptors, an
        # address-space mapping): without a limit, requests signed for ever new region names
        # would make directories until the daemon ran out of them.
        self.max_regions = max_regions
        # access key id -> secret: when set, requests must be signed with one (SigV4)
        self.credentials = credentials or None
        self.durability = durability
        self.region = region
        self.account_id = account_id
        self.clock = clock
        self._brokers: dict[str, Broker] = {}
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="millpond-io")
        self.notifier: Notifier | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False  # set on SIGTERM/SIGINT: long polls return at once
        self.stats: dict[str, int] = {}
        self._send_batches: dict[Any, SendBatch] = {}  # queue -> the sends of its next commit
        self.joined = 0  # writes handed to the storage's commits, ever (see LoopCommitter)

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.notifier = Notifier(loop)
        self.settler = Settler(loop)
        for broker in self._brokers.values():
            self._attach(broker)

    def _attach(self, broker: Broker) -> None:
        """Wire a broker to the loop: long-poll wake-ups, and commits led by the loop itself
        while they are short (one commit per loop iteration serves every request read in it;
        a thread hop per commit costs more than it overlaps on a fast disk)."""
        assert self.loop is not None and self.notifier is not None
        broker._wakeups.add_listener(self.notifier.listener(id(broker)))
        committer = LoopCommitter(self.loop, self.settler.loop_thread, broker._storage, self)
        broker._storage.set_committer(committer)

    def broker(self, region: str | None = None) -> Broker:
        """The broker of ``region`` (the default region when None), opened on first use."""
        region = region or self.region
        broker = self._brokers.get(region)
        if broker is not None:
            return broker
        if not valid_region(region):
            region = self.region
        with self._lock:
            broker = self._brokers.get(region)
            if broker is None:
                self._check_region_limit(region)
                broker = millpond.open(
                    os.path.join(self.data_dir, region),
                    durability=self.durability,
                    clock=self.clock,
                    region=region,
                    account_id=self.account_id,
                )
                if self.loop is not None:
                    self._attach(broker)
                self._brokers[region] = broker
        return broker

    def _check_region_limit(self, region: str) -> None:
        """Refuse a region with no data here once max_regions are open (caller holds _lock);
        a region whose directory exists is always served (as open_regions does at start)."""
        if len(self._brokers) < self.max_regions or region == self.region:
            return
        if os.path.isdir(os.path.join(self.data_dir, region)):
            return
        raise TooManyRegions(
            f"This daemon serves at most {self.max_regions} regions (max_regions) and serves "
            f"that many already; region {region} has no data here."
        )

    def existing_broker(self, region: str) -> Broker | None:
        """The broker of ``region`` if that region has data here; None otherwise (nothing is
        created: for requests that may not create a region, as unsigned ones)."""
        broker = self._brokers.get(region)
        if broker is None and valid_region(region):
            if os.path.isdir(os.path.join(self.data_dir, region)):
                broker = self.broker(region)
        return broker

    def open_regions(self) -> None:
        """Open the broker of every region that has a data directory here."""
        for name in sorted(os.listdir(self.data_dir)):
            if valid_region(name) and os.path.isdir(os.path.join(self.data_dir, name)):
                self.broker(name)

    def brokers(self) -> list[Broker]:
        return list(self._brokers.values())

    def begin_shutdown(self) -> None:
        """On the loop: end every long poll so the server can finish and exit."""
        self.stopping = True
        if self.notifier is not None:
            self.notifier.wake_all()

    def request_shutdown(self) -> None:
        """From a signal handler: begin_shutdown on the loop."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.begin_shutdown)

    async def write(self, queue: Any, write: Any) -> Any:
        """Commit one queue ``Write`` (see Queue._drive) and return its result, on the loop.

        The write joins the storage's group commit through ``submit``: no thread waits per
        request, and one commit (led by the loop itself while commits are short) settles every
        request read since the last one.
        """
        queue._broker._refresh_definitions()
        future = self.loop.create_future()  # type: ignore[union-attr]
        self.joined += 1
        queue._storage.submit(
            queue._op(write.fn, write.args),
            self.settler.settle,
            sends=write.sends,
            atomic=write.atomic,
            token=future,
        )
        try:
            return await future
        except QueueDoesNotExist:
            queue._broker._forget(queue)
            raise

    def send(self, queue: Any, data: bytes, blob: bytes, delay_ms: int) -> asyncio.Future[int]:
        """Store one prepared message in a standard queue, with the other sends to that queue
        in the same commit (see send_batches.py): the future of its seq, on the loop (a future
        to await, not a coroutine: one frame less in a SendMessage's await chain)."""
        future: asyncio.Future[int] = self.loop.create_future()  # type: ignore[union-attr]
        self.joined += 1
        batch = self._send_batches.get(queue)
        if batch is None or not batch.join(data, blob, delay_ms, future):
            batch = SendBatch(queue, self._send_batches)
            batch.join(data, blob, delay_ms, future)
            queue._broker._refresh_definitions()
            # sends=1: a send op (refused when the store is full); how many messages it
            # stores is known only when it runs
            queue._storage.submit(
                queue._op(batch.store, ()), self.settler.settle, sends=1, token=batch
            )
            self._send_batches[queue] = batch  # submitted: the next sends may join it
        return future

    async def drive(self, queue: Any, steps: Any) -> Any:
        """Run a queue verb written as steps (Queue._drive's async twin), on the event loop."""
        try:
            write = next(steps)
            while True:
                try:
                    result = await self.write(queue, write)
                except MillpondError as exc:
                    write = steps.throw(exc)
                else:
                    write = steps.send(result)
        except StopIteration as stop:
            return stop.value

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking broker call on the pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        """Finish queued calls, then close every broker (flushing "os" mode data)."""
        self.executor.shutdown(wait=True)
        for broker in self._brokers.values():
            broker.close()
        self._brokers.clear()
