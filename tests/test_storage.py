"""Storage: group commit, failures inside a shared batch, map growth and StorageFull, fork, close.

Ops are forced into one shared write transaction by holding the writer busy (``HeldWriter``):
while its op waits inside the transaction, the ops of other threads queue up and the next
leader commits them together.
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import millpond
from millpond.errors import BrokerClosed, PurgeQueueInProgress, QueueDoesNotExist, StorageFull

from .interrupts import Interrupt, interrupted_after

T0 = 1_700_000_000_000
KIB = 1024
MIB = 1 << 20
ATTRIBUTES = {"k": {"DataType": "String", "StringValue": "v"}}


def _receive_all(queue: millpond.Queue, visibility_timeout: int = 600) -> list[millpond.Message]:
    received: list[millpond.Message] = []
    while True:
        batch = queue.receive(10, visibility_timeout=visibility_timeout, wait_seconds=0)
        if not batch:
            return received
        received.extend(batch)


class Call(threading.Thread):
    """Runs ``fn`` in its own thread and keeps its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> Any:
        self.join(30)
        assert not self.is_alive(), "the call did not return"
        if self.error is not None:
            raise self.error
        return self.result


class HeldWriter:
    """Keeps a write transaction open until the block ends; writes queued meanwhile share the
    next transaction. ``put`` (key, value) is written to the meta table by the held op."""

    def __init__(self, storage: Any, put: tuple[bytes, bytes] | None = None) -> None:
        self.storage = storage
        self.put = put
        self.entered = threading.Event()
        self.release = threading.Event()
        self.call = Call(lambda: storage.write(self._hold))

    def _hold(self, txn: Any, now_ms: int) -> str:
        if self.put is not None:
            txn.put(*self.put, db=self.storage.tables.meta)
        self.entered.set()
        assert self.release.wait(30), "never released"
        return "held"

    def __enter__(self) -> HeldWriter:
        self.call.start()
        assert self.entered.wait(30), "the held op never ran"
        return self

    def wait_pending(self, n: int) -> None:
        """Until ``n`` ops wait for the next transaction."""
        deadline = time.monotonic() + 30
        while len(self.storage._pending) < n:
            assert time.monotonic() < deadline, f"only {len(self.storage._pending)} ops queued"
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        assert self.call.outcome() == "held"


def _start_all(calls: list[Call], held: HeldWriter) -> None:
    for n, call in enumerate(calls, 1):
        call.start()
        held.wait_pending(n)  # one at a time: the batch keeps this order


def _on_ram_disk(path: Path) -> bool:
    """True when ``path`` is on tmpfs/ramfs, where fsync costs nothing to share."""
    best, fstype = "", ""
    real = os.path.realpath(path)
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _dev, mount_point, kind, *_ = line.split()
            inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) > len(best):
                best, fstype = mount_point, kind
    return fstype in ("tmpfs", "ramfs")


# -- 4. group commit --------------------------------------------------------------------------


def test_concurrent_durable_sends_share_commits(tmp_path: Path, impl: str) -> None:
    if sys.platform != "linux" or _on_ram_disk(tmp_path):
        pytest.skip("needs a real disk: on a RAM disk a commit costs too little to share")
    threads, per_thread = 8, 40
    sends = threads * per_thread
    with millpond.open(str(tmp_path / "data"), durability="fsync", core=impl) as broker:
        queue = broker.create_queue("q")
        barrier = threading.Barrier(threads)
        ids: list[list[str]] = [[] for _ in range(threads)]

        def sender(t: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                ids[t].append(queue.send(f"{t}-{i}"))

        before = broker._storage.commits
        calls = [Call(lambda t=t: sender(t)) for t in range(threads)]
        for call in calls:
            call.start()
        for call in calls:
            call.outcome()
        commits = broker._storage.commits - before

        assert sum(map(len, ids)) == sends
        assert commits < 0.75 * sends, f"{commits} commits for {sends} concurrent sends"
        stored = {m.message_id: m.text for m in _receive_all(queue)}
        expected = {mid: f"{t}-{i}" for t in range(threads) for i, mid in enumerate(ids[t])}
        assert stored == expected


def test_a_lone_writer_commits_once_per_send(tmp_path: Path, impl: str) -> None:
    with millpond.open(str(tmp_path / "data"), durability="fsync", core=impl) as broker:
        queue = broker.create_queue("q")
        before = broker._storage.commits
        ids = [queue.send(f"m{i}") for i in range(30)]
        ids += queue.send_batch([f"b{i}" for i in range(10)])
        assert broker._storage.commits - before == 31
        assert len(set(ids)) == 40
        assert len(_receive_all(queue)) == 40


def test_an_interrupted_waiting_writer_still_leads_the_commit_it_was_handed(
    broker: millpond.Broker,
) -> None:
    """Ctrl-C in the main thread while its send waits behind another thread's commit: the
    send queued meanwhile is the next commit's leader. It must still lead it (then raise), or
    no write of the process would ever commit again."""
    queue = broker.create_queue("q")
    storage = broker._storage
    with HeldWriter(storage) as held:
        threading.Timer(0.3, held.release.set).start()
        with pytest.raises(Interrupt), interrupted_after(0.1):
            queue.send(b"interrupted")  # queued behind the held commit, then its successor
    later = Call(lambda: queue.send(b"later"))
    later.start()
    later.join(10)
    assert not later.is_alive(), "writes hang: nobody led the interrupted writer's commit"
    later.outcome()
    assert sorted(m.text for m in _receive_all(queue)) == ["interrupted", "later"]


# -- 5. a failing op in a shared batch ------------------------------------------------------------


def test_failing_send_in_a_shared_batch_fails_only_its_call(broker: millpond.Broker) -> None:
    gone = broker.create_queue("gone")
    kept = broker.create_queue("kept")
    broker.delete_queue("gone")  # `gone` is now a stale handle
    storage = broker._storage

    with HeldWriter(storage) as held:
        calls = [
            Call(lambda: kept.send(b"one")),
            Call(lambda: gone.send(b"lost")),
            Call(lambda: kept.send_batch([b"two", b"three"])),
            Call(lambda: gone.send_batch([b"lost", b"too"])),
            Call(lambda: kept.send(b"four", attributes=ATTRIBUTES)),
        ]
        _start_all(calls, held)
        before = storage.commits
    for call in calls:
        call.join(30)

    # The held transaction, then everything queued behind it in one more.
    assert storage.commits - before == 2
    for failing in (calls[1], calls[3]):
        with pytest.raises(QueueDoesNotExist):
            failing.outcome()
    ids = [calls[0].outcome(), *calls[2].outcome(), calls[4].outcome()]
    stored = {m.message_id: m for m in _receive_all(kept)}
    assert sorted(stored) == sorted(ids)
    assert sorted(m.text for m in stored.values()) == ["four", "one", "three", "two"]
    assert stored[ids[-1]].attributes == ATTRIBUTES
    assert broker.list_queues() == ["kept"]
    assert _receive_all(broker.create_queue("gone")) == []


def test_unexpected_error_in_a_shared_batch_fails_only_its_call(broker: millpond.Broker) -> None:
    queue = broker.create_queue("q")
    storage = broker._storage

    def broken(txn: Any, now_ms: int) -> None:
        txn.put(b"test:broken", b"1", db=storage.tables.meta)
        raise RuntimeError("broken op")

    with HeldWriter(storage) as held:
        calls = [
            Call(lambda: queue.send(b"a")),
            Call(lambda: storage.write(broken)),
            Call(lambda: queue.send_batch([b"b", b"c"])),
        ]
        _start_all(calls, held)
    with pytest.raises(RuntimeError, match="broken op"):
        calls[1].outcome()
    ids = [calls[0].outcome(), *calls[2].outcome()]

    stored = _receive_all(queue)
    assert sorted(m.message_id for m in stored) == sorted(ids)  # each once, none twice
    assert sorted(m.text for m in stored) == ["a", "b", "c"]
    assert storage.read(lambda txn: txn.get(b"test:broken", db=storage.tables.meta)) is None


def _writes_then_fails(storage: Any, key: bytes) -> Callable[[Any, int], None]:
    def op(txn: Any, now_ms: int) -> None:
        txn.put(key, b"1", db=storage.tables.meta)
        raise PurgeQueueInProgress("refused after writing")  # any MillpondError

    return op


def _meta(storage: Any, key: bytes) -> bytes | None:
    return storage.read(lambda txn: txn.get(key, db=storage.tables.meta))  # type: ignore[no-any-return]


def test_a_lone_atomic_op_that_fails_leaves_nothing_and_commits_nothing(
    broker: millpond.Broker,
) -> None:
    storage = broker._storage
    before = storage.commits
    with pytest.raises(PurgeQueueInProgress):
        storage.write(_writes_then_fails(storage, b"test:alone"), atomic=True)
    assert _meta(storage, b"test:alone") is None
    assert storage.commits == before  # rolled back, not committed
    storage.write(lambda txn, now_ms: txn.put(b"test:after", b"1", db=storage.tables.meta))
    assert _meta(storage, b"test:after") == b"1" and storage.commits == before + 1


def test_an_atomic_op_that_fails_in_a_shared_batch_rolls_back_only_itself(
    broker: millpond.Broker,
) -> None:
    queue = broker.create_queue("q")
    storage = broker._storage
    with HeldWriter(storage) as held:
        calls = [
            Call(lambda: queue.send(b"a")),
            Call(lambda: storage.write(_writes_then_fails(storage, b"test:shared"), atomic=True)),
            Call(lambda: queue.send(b"b")),
        ]
        _start_all(calls, held)
        before = storage.commits
    for call in calls:
        call.join(30)
    assert storage.commits - before == 2  # the held transaction, then the three together
    with pytest.raises(PurgeQueueInProgress):
        calls[1].outcome()
    assert _meta(storage, b"test:shared") is None
    assert sorted(m.text for m in _receive_all(queue)) == ["a", "b"]


def _one_mib_broker(data_dir: str, clock: millpond.ManualClock, impl: str) -> millpond.Broker:
    """A broker whose map starts at 1 MiB: a batch of 1 MiB of sends makes it grow."""
    return millpond.open(
        data_dir,
        durability="os",
        clock=clock,
        core=impl,
        map_size=MIB,
        max_map_size=64 * MIB,
        reserve=MIB,
    )


def _fill_the_map_in_the_same_batch(storage: Any, big: millpond.Queue, first: Call) -> None:
    """Run ``first`` and a 1 MiB send_batch to ``big`` in one write transaction, which hits
    MapFullError and is run again after the map grew."""
    with HeldWriter(storage) as held:
        send = Call(lambda: big.send_batch([bytes([i]) * (100 * KIB) for i in range(10)]))
        _start_all([first, send], held)
    assert len(send.outcome()) == 10
    assert storage.env.info()["map_size"] > MIB  # the batch did need a bigger map


def test_purge_sharing_a_batch_that_grows_the_map_is_not_refused(
    data_dir: str, clock: millpond.ManualClock, impl: str
) -> None:
    """The batch's first attempt hits MapFullError and is run again after the map grew: the
    purge in it must not count its own rolled-back attempt as the purge of the last 60 s."""
    broker = _one_mib_broker(data_dir, clock, impl)
    try:
        purged = broker.create_queue("purged")
        purged.send_batch([b"x", b"y"])
        big = broker.create_queue("big")
        storage = broker._storage
        assert storage.env.info()["map_size"] == MIB

        purge = Call(purged.purge)
        _fill_the_map_in_the_same_batch(storage, big, purge)
        purge.outcome()  # PurgeQueueInProgress here: the purge was refused by its own retry
        assert _receive_all(purged) == []
        clock.advance(30)
        with pytest.raises(PurgeQueueInProgress):
            purged.purge()  # the purge did count, once
    finally:
        broker.close()


def test_after_commit_runs_once_and_only_for_ops_that_committed(
    broker: millpond.Broker,
) -> None:
    storage = broker._storage
    ran: list[str] = []

    def op(name: str, fail: bool) -> Callable[[Any, int], None]:
        def fn(txn: Any, now_ms: int) -> None:
            storage.after_commit(lambda: ran.append(name))
            if fail:
                raise PurgeQueueInProgress(name)

        return fn

    storage.write(op("ok", False))
    with pytest.raises(PurgeQueueInProgress):
        storage.write(op("failed", True))
    with pytest.raises(PurgeQueueInProgress):
        storage.write(op("rolled back", True), atomic=True)
    assert ran == ["ok"]
    with pytest.raises(RuntimeError, match="outside a write op"):
        storage.after_commit(lambda: None)


@pytest.mark.parametrize("path", ["one message", "batch", "fifo"])
def test_fan_out_sends_are_counted_once_when_the_commit_is_run_again(
    data_dir: str, clock: millpond.ManualClock, impl: str, path: str
) -> None:
    """A publish sharing a batch that hits MapFullError is run again after the map grew: the
    "sent" metrics of its queues count its deliveries once (every fan-out path)."""
    broker = _one_mib_broker(data_dir, clock, impl)
    try:
        fifo = path == "fifo"
        suffix = ".fifo" if fifo else ""
        topic = broker.create_topic("t" + suffix, {"FifoTopic": "true"} if fifo else None)
        queues = [
            broker.create_queue(f"q{i}{suffix}", {"FifoQueue": "true"} if fifo else None)
            for i in range(3)
        ]
        for queue in queues:
            topic.subscribe(queue, raw_message_delivery=True)
        big = broker.create_queue("big")
        storage = broker._storage
        assert storage.env.info()["map_size"] == MIB

        def publish() -> Any:
            if path == "batch":
                return topic.publish_batch(
                    [{"Id": "a", "Message": "a"}, {"Id": "b", "Message": "b"}]
                )
            return topic.publish(
                "m", group_id="g" if fifo else None, deduplication_id="d" if fifo else None
            )

        published = Call(publish)
        _fill_the_map_in_the_same_batch(storage, big, published)
        published.outcome()
        sent = 2 if path == "batch" else 1
        assert [q.counters["sent"] for q in queues] == [sent] * 3
        assert big.counters["sent"] == 10
    finally:
        broker.close()


# -- 6. map growth and StorageFull ---------------------------------------------------------------


def _body(i: int) -> bytes:
    return struct.pack(">I", i) * (10 * KIB // 4)  # 10 KiB


def test_map_grows_then_refuses_sends_then_recovers(tmp_path: Path, impl: str) -> None:
    data_dir = str(tmp_path / "data")
    sizes = {"map_size": MIB, "max_map_size": 8 * MIB, "reserve": 2 * MIB}
    clock = millpond.ManualClock(now_ms=T0)
    broker = millpond.open(data_dir, durability="os", clock=clock, core=impl, **sizes)
    try:
        env = broker._storage.env
        assert env.info()["map_size"] == MIB
        queue = broker.create_queue("big")
        acked: dict[str, int] = {}
        map_sizes = []
        for i in range(2000):
            try:
                acked[queue.send(_body(i))] = i
            except StorageFull:
                break
            map_sizes.append(env.info()["map_size"])
        else:
            pytest.fail("2000 sends of 10 KiB never filled an 8 MiB store")

        # Grown automatically, beyond the initial map and up to the limit, never past it.
        assert len(acked) * 10 * KIB > 4 * MIB, f"refused after only {len(acked)} sends"
        assert map_sizes == sorted(map_sizes)
        assert MIB < map_sizes[-1] <= 8 * MIB
        assert os.path.getsize(os.path.join(data_dir, "data.mdb")) <= 8 * MIB

        # Refused again, a batch too, and a refused send stores nothing.
        with pytest.raises(StorageFull):
            queue.send(_body(999_999))
        with pytest.raises(StorageFull):
            queue.send_batch([b"small", b"ones"])
        assert queue.get_attributes()["ApproximateNumberOfMessages"] == str(len(acked))

        # Receives, visibility changes and deletes still commit when full.
        deleted: set[str] = set()
        first = queue.receive(10, visibility_timeout=600, wait_seconds=0)
        assert len(first) == 10
        queue.change_visibility(first[0].receipt_handle, 700)
        queue.delete(first[1].receipt_handle)
        deleted.add(first[1].message_id)
        while len(deleted) < len(acked) // 2:
            got = queue.receive(10, visibility_timeout=600, wait_seconds=0)
            assert got
            queue.delete_batch([m.receipt_handle for m in got])
            deleted.update(m.message_id for m in got)

        # With the space back, sends are accepted again.
        for i in range(100_000, 100_020):
            acked[queue.send(_body(i))] = i
        batch = list(range(200_000, 200_005))
        acked.update(zip(queue.send_batch([_body(i) for i in batch]), batch, strict=True))
        assert env.info()["map_size"] <= 8 * MIB
    finally:
        broker.close()

    # Nothing acknowledged was lost, nothing deleted came back; the full store reopens.
    clock.advance(3600)
    with millpond.open(data_dir, durability="os", clock=clock, core=impl, **sizes) as broker:
        stored = {m.message_id: m.body for m in _receive_all(broker.queue("big"))}
        alive = {mid: i for mid, i in acked.items() if mid not in deleted}
        assert sorted(stored) == sorted(alive)
        assert all(stored[mid] == _body(i) for mid, i in alive.items())


# -- 7. fork ----------------------------------------------------------------------------------


def _in_child(fn: Callable[[], Any], timeout: float = 30) -> Any:
    """Run ``fn`` in a forked child; returns what it returned (JSON), or its error as text."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_fd)
            try:
                payload = {"result": fn()}
            except BaseException as exc:
                payload = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(write_fd, json.dumps(payload).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                os.kill(pid, 9)
                pytest.fail("the forked child hung")
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
    payload = json.loads(b"".join(chunks))
    assert "error" not in payload, f"in the forked child: {payload['error']}"
    return payload["result"]


FORKED_CALLS = tuple(
    "send send_batch receive delete change_visibility get_attributes set_attributes purge "
    "create_queue queue list_queues delete_queue".split()
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_cannot_use_the_parents_broker(
    broker: millpond.Broker, queue: millpond.Queue
) -> None:
    in_flight = queue.send(b"in flight")
    [received] = queue.receive(1, visibility_timeout=300, wait_seconds=0)
    assert received.message_id == in_flight
    handle = received.receipt_handle
    sent = queue.send(b"before fork")
    before = queue.get_attributes()

    def child() -> dict[str, str]:
        calls: dict[str, Callable[[], Any]] = {
            "send": lambda: queue.send(b"from the child"),
            "send_batch": lambda: queue.send_batch([b"a", b"b"]),
            "receive": lambda: queue.receive(10, wait_seconds=0),
            "delete": lambda: queue.delete(handle),
            "change_visibility": lambda: queue.change_visibility(handle, 0),
            "get_attributes": queue.get_attributes,
            "set_attributes": lambda: queue.set_attributes({"VisibilityTimeout": "5"}),
            "purge": queue.purge,
            "create_queue": lambda: broker.create_queue("child"),
            "queue": lambda: broker.queue("never-looked-up"),
            "list_queues": broker.list_queues,
            "delete_queue": lambda: broker.delete_queue("q"),
        }
        outcomes = {}
        for name, call in calls.items():
            try:
                call()
                outcomes[name] = "returned"
            except BaseException as exc:
                outcomes[name] = type(exc).__name__
        broker.close()  # must not close the parent's environment
        return outcomes

    outcomes = _in_child(child)
    assert outcomes == dict.fromkeys(FORKED_CALLS, BrokerClosed.__name__)

    # The parent's broker and data are untouched, and it still works.
    assert broker.list_queues() == ["q"]
    after = queue.get_attributes()
    assert after["VisibilityTimeout"] == before["VisibilityTimeout"] == "30"
    for key in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"):
        assert after[key] == before[key] == "1"
    assert [m.message_id for m in _receive_all(queue)] == [sent]
    queue.delete(handle)
    assert queue.send(b"after fork")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_can_open_the_directory_again(
    broker: millpond.Broker, queue: millpond.Queue, data_dir: str, impl: str
) -> None:
    sent = queue.send(b"from the parent")
    now = broker.clock.now_ms()

    def child() -> list[str]:
        clock = millpond.ManualClock(now_ms=now)
        with millpond.open(data_dir, durability="os", clock=clock, core=impl) as own:
            q = own.queue("q")
            seen = [m.message_id for m in q.receive(10, visibility_timeout=0, wait_seconds=0)]
            return [*seen, q.send(b"from the child")]

    seen_in_child, child_sent = _in_child(child)
    assert seen_in_child == sent
    stored = {m.message_id: m.text for m in _receive_all(queue)}
    assert stored == {sent: "from the parent", child_sent: "from the child"}


# -- 8. closed broker ------------------------------------------------------------------------------


def test_calls_on_a_closed_broker_raise_broker_closed(
    data_dir: str, clock: millpond.ManualClock, impl: str
) -> None:
    broker = millpond.open(data_dir, durability="os", clock=clock, core=impl)
    queue = broker.create_queue("q")
    queue.send(b"kept")
    handle = queue.receive(1, visibility_timeout=60, wait_seconds=0)[0].receipt_handle
    broker.close()
    broker.close()  # closing twice is fine

    calls: dict[str, Callable[[], Any]] = {
        "send": lambda: queue.send(b"x"),
        "send_batch": lambda: queue.send_batch([b"x"]),
        "receive": lambda: queue.receive(1, wait_seconds=0),
        "delete": lambda: queue.delete(handle),
        "delete_batch": lambda: queue.delete_batch([handle]),
        "change_visibility": lambda: queue.change_visibility(handle, 0),
        "get_attributes": queue.get_attributes,
        "set_attributes": lambda: queue.set_attributes({"VisibilityTimeout": "5"}),
        "purge": queue.purge,
        "create_queue": lambda: broker.create_queue("other"),
        "queue": lambda: broker.queue("never-looked-up"),
        "list_queues": broker.list_queues,
        "delete_queue": lambda: broker.delete_queue("q"),
    }
    for name, call in calls.items():
        with pytest.raises(BrokerClosed):
            call()
            pytest.fail(f"{name} worked on a closed broker")

    with millpond.open(data_dir, durability="os", clock=clock, core=impl) as again:
        again_queue = again.queue("q")
        assert again_queue.get_attributes()["VisibilityTimeout"] == "30"
        assert again_queue.get_attributes()["ApproximateNumberOfMessagesNotVisible"] == "1"
        clock.advance(61)
        assert [m.text for m in _receive_all(again_queue)] == ["kept"]
    with pytest.raises(BrokerClosed):
        again_queue.send(b"after the with block")


def test_close_waits_for_the_commit_in_flight(
    data_dir: str, clock: millpond.ManualClock, impl: str
) -> None:
    broker = millpond.open(data_dir, durability="os", clock=clock, core=impl)
    with HeldWriter(broker._storage, put=(b"test:in-flight", b"committed")):
        closer = Call(broker.close)
        closer.start()
        closer.join(0.2)
        assert closer.is_alive(), "close() returned while a commit was in flight"
    closer.outcome()
    with millpond.open(data_dir, durability="os", clock=clock, core=impl) as again:
        storage = again._storage
        stored = storage.read(lambda txn: txn.get(b"test:in-flight", db=storage.tables.meta))
        assert stored == b"committed"


def test_write_racing_close_raises_broker_closed(
    data_dir: str, clock: millpond.ManualClock, impl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send that passed the closed-check just before close() ran must not reach LMDB."""
    broker = millpond.open(data_dir, durability="os", clock=clock, core=impl)
    queue = broker.create_queue("q")
    storage = broker._storage
    checked, resume = threading.Event(), threading.Event()
    check_usable = storage._check_usable

    def check_then_pause() -> None:
        check_usable()
        if threading.current_thread().name == "racing-send":
            checked.set()  # preempted right after the check...
            resume.wait(30)

    monkeypatch.setattr(storage, "_check_usable", check_then_pause)
    send = Call(lambda: queue.send(b"racing"))
    send.name = "racing-send"
    send.start()
    assert checked.wait(30)
    broker.close()  # ...while another thread closes the broker
    resume.set()
    with pytest.raises(BrokerClosed):
        send.outcome()


_CLOSE_UNDER_LOAD = r"""
import json, os, sys, threading, time
import millpond
from millpond.errors import BrokerClosed

data_dir, impl = sys.argv[1:3]
broker = millpond.open(data_dir, durability="fsync", core=impl)
queue = broker.create_queue("q")
acked, outcomes, enough = [], [], threading.Event()

def sender(t):
    i = 0
    try:
        while True:
            acked.append(queue.send(f"{t}-{i}"))
            i += 1
            if len(acked) >= 200:
                enough.set()
    except BrokerClosed:
        outcomes.append("BrokerClosed")
    except BaseException as exc:
        outcomes.append(repr(exc))

threads = [threading.Thread(target=sender, args=(t,), daemon=True) for t in range(8)]
for t in threads:
    t.start()
enough.wait(30)
closer = threading.Thread(target=broker.close, daemon=True)
closer.start()
closer.join(5)
deadline = time.monotonic() + 5
for t in threads:
    t.join(max(deadline - time.monotonic(), 0))
print(json.dumps({"closed": not closer.is_alive(), "outcomes": outcomes, "acked": list(acked)}))
sys.stdout.flush()
os._exit(0)
"""


def test_close_under_concurrent_sends_returns_and_keeps_what_was_acked(
    tmp_path: Path, impl: str
) -> None:
    """close() while 8 threads send: it returns promptly, every sender then gets BrokerClosed,
    and every acknowledged send is stored. (Run in a subprocess: a hung close must not hang
    the test run.)"""
    data_dir = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-c", _CLOSE_UNDER_LOAD, data_dir, impl],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["closed"], "close() did not return within 5 s while threads were sending"
    assert report["outcomes"] == ["BrokerClosed"] * 8
    with millpond.open(data_dir, durability="os", core=impl) as broker:
        stored = {m.message_id for m in _receive_all(broker.queue("q"))}
    missing = set(report["acked"]) - stored
    assert not missing, f"{len(missing)} acknowledged sends were lost by close()"


# -- an event loop leading the commits of submitted ops (the daemon) ------------------------------


def _drive_sends(ctx: Any, queue: millpond.Queue, count: int) -> list[str]:
    """``count`` concurrent sends through the daemon's Context.write, on a fresh event loop."""
    import asyncio

    async def main() -> list[str]:
        ctx.bind_loop(asyncio.get_running_loop())

        async def one(i: int) -> str:
            first = await ctx.write(queue, queue._send_write([b"m%d" % i], [b""], [0]))
            return queue._sent(first, 1)[0]

        return list(await asyncio.gather(*(one(i) for i in range(count))))

    return asyncio.run(main())


def test_a_daemon_loop_commits_short_commits_itself_one_per_iteration(tmp_path: Path) -> None:
    from millpond.server.context import Context

    ctx = Context(str(tmp_path), durability="fsync")
    try:
        queue = ctx.broker().create_queue("q")
        storage = queue._storage
        commits = storage.commits
        ids = _drive_sends(ctx, queue, 20)
        assert len(set(ids)) == 20
        assert storage.commits - commits == 1  # all 20 were read in one loop iteration
        assert storage._writer is None  # no thread hop: the loop led the commit
        assert len(_receive_all(queue)) == 20
    finally:
        ctx.close()


def test_a_daemon_loop_leaves_slow_commits_to_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from millpond import storage as storage_module
    from millpond.server.context import Context

    ctx = Context(str(tmp_path), durability="os")  # commits are timed in "os" mode too
    try:
        queue = ctx.broker().create_queue("q")
        storage = queue._storage
        assert storage._commit_seconds > 0
        monkeypatch.setattr(storage_module, "INLINE_COMMIT_MAX_S", 0.0)  # every commit is slow
        ids = _drive_sends(ctx, queue, 20)
        assert len(set(ids)) == 20
        assert storage._writer is not None and storage._writer.is_alive()
        assert len(_receive_all(queue)) == 20
    finally:
        ctx.close()


def test_a_daemon_loop_keeps_commits_slow_with_their_own_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits that take long because their ops do (a big SendMessageBatch wave), not the disk:
    the loop goes on leading them. The writer thread would not make that work any shorter (it
    holds the interpreter lock wherever it runs), and handing it over costs more CPU."""
    import asyncio
    import time as time_module

    from millpond.server.context import Context

    ctx = Context(str(tmp_path), durability="os")
    try:
        queue = ctx.broker().create_queue("q")
        storage = queue._storage
        send_write = queue._send_write

        def slow_send_write(*args: Any) -> Any:
            write = send_write(*args)
            fn = write.fn

            def slow(*fn_args: Any) -> Any:
                time_module.sleep(0.005)  # 5 ms of the op's own work in every commit
                return fn(*fn_args)

            return write._replace(fn=slow)

        monkeypatch.setattr(queue, "_send_write", slow_send_write)

        async def one_after_another() -> list[str]:
            ctx.bind_loop(asyncio.get_running_loop())
            ids = []
            for i in range(10):  # a commit each: each asks for a leader again
                first = await ctx.write(queue, queue._send_write([b"m%d" % i], [b""], [0]))
                ids.extend(queue._sent(first, 1))
            return ids

        assert len(set(asyncio.run(one_after_another()))) == 10
        assert storage._commit_seconds > 0.002  # slow commits ...
        assert storage._sync_seconds < 0.002  # ... that the disk is not slow for
        assert storage._writer is None  # still led by the loop
    finally:
        ctx.close()


def test_submits_after_the_committing_loop_closed_go_to_the_writer_thread(tmp_path: Path) -> None:
    from millpond.server.context import Context

    ctx = Context(str(tmp_path), durability="os")
    try:
        queue = ctx.broker().create_queue("q")
        _drive_sends(ctx, queue, 3)  # binds a loop, which asyncio.run then closes
        ids = _drive_sends(ctx, queue, 3)  # a new loop; the old committer must not be used
        assert len(ids) == 3
        done = threading.Event()
        queue._storage.submit(
            queue._op(*queue._send_write([b"x"], [b""], [0])[:2]), lambda op: done.set()
        )
        assert done.wait(10), "a submit after the loop closed was never committed"
        assert len(_receive_all(queue)) == 7
    finally:
        ctx.close()
