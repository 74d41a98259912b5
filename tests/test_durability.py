"""Durability: what was acknowledged survives a restart and a SIGKILL; what was deleted stays gone.

The restart test keeps an exact model of every message (body, attributes, id, receive count,
when it becomes visible) and checks it against a reopened store with a ManualClock set to the
same time. The crash tests run tests/crash_worker.py under load, SIGKILL it at a random moment,
reopen the directory and check the worker's history log: every acknowledged send is present
unless a delete of it was attempted, and no acknowledged delete is present. Set
MILLPOND_CRASH_CYCLES to run more kill cycles (default 5; the "os" mode runs half as many).
"""

from __future__ import annotations

import os
import random
import select
import struct
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import millpond
from millpond import core

T0 = 1_700_000_000_000
DAY_MS = 86_400_000
WORKER = Path(__file__).with_name("crash_worker.py")
CRASH_CYCLES = int(os.environ.get("MILLPOND_CRASH_CYCLES", "5"))

# Byte layouts of the tables (csrc/millpond.h; the pure-Python core is the executable spec).
_QID = struct.Struct(">I")
_LOG_KEY = struct.Struct(">IQ")
_VIS_KEY = struct.Struct(">IQQ")
_VIS_VALUE = struct.Struct(">QQQII")
_COUNTERS = struct.Struct(">QQQ")  # floor, gone, fresh


def _other_impl(impl: str) -> str:
    other = "py" if impl == "c" else "c"
    try:
        core.load(other)
    except ImportError:
        pytest.skip(f"core {other!r} is not built")
    return other


def _receive_all(queue: millpond.Queue, visibility_timeout: int) -> list[millpond.Message]:
    """Every message visible now, each received once (the loop ends when none is left)."""
    received: list[millpond.Message] = []
    while True:
        batch = queue.receive(10, visibility_timeout=visibility_timeout, wait_seconds=0)
        if not batch:
            return received
        received.extend(batch)


def check_integrity(broker: millpond.Broker) -> dict[int, dict[int, bytes]]:
    """Scan every table and check its invariants; returns {queue_id: {seq: record}}.

    Every record passes its CRC; every delivery entry has a record; every record has exactly one
    delivery entry, except fresh ones (at or past the queue's fresh cursor, not INDEXED), which
    have none; the counters count the records, and the floor and fresh cursor never pass the
    next seq.
    """
    storage = broker._storage
    tables = storage.tables

    def scan(txn: Any) -> tuple[dict[int, dict[int, bytes]], Counter[tuple[int, int]], dict]:
        log: dict[int, dict[int, bytes]] = {}
        with txn.cursor(db=tables.log) as cur:
            for key, value in cur:
                assert len(key) == _LOG_KEY.size, f"bad log key {key!r}"
                queue_id, seq = _LOG_KEY.unpack(key)
                log.setdefault(queue_id, {})[seq] = bytes(value)
        vis: Counter[tuple[int, int]] = Counter()
        with txn.cursor(db=tables.vis) as cur:
            for key, value in cur:
                assert len(key) == _VIS_KEY.size, f"bad vis key {key!r}"
                assert len(value) == _VIS_VALUE.size, f"bad vis value {value!r}"
                queue_id, _visible_at, seq = _VIS_KEY.unpack(key)
                vis[queue_id, seq] += 1
        counters = {}
        with txn.cursor(db=tables.counters) as cur:
            for key, value in cur:
                counters[_QID.unpack(key)[0]] = _COUNTERS.unpack(value)
        return log, vis, counters

    log, vis, counters = storage.read(scan)
    core = broker._core
    doubled = {k: n for k, n in vis.items() if n > 1}
    assert not doubled, f"messages with more than one delivery entry: {doubled}"
    assert set(log) <= set(counters), "records of a queue without counters"
    indexed = set()
    for queue_id, records in log.items():
        fresh = counters[queue_id][2]
        for seq, record in records.items():
            if seq < fresh or core.record_flags(record) & core.INDEXED:
                indexed.add((queue_id, seq))
    in_log = {(queue_id, seq) for queue_id, records in log.items() for seq in records}
    orphans = sorted(set(vis) - in_log)[:10]
    assert not orphans, f"delivery entries without a record: {orphans}"
    assert set(vis) == indexed, (
        f"delivered or indexed records without a delivery entry: {sorted(indexed - set(vis))[:10]}"
        f", fresh records with one: {sorted(set(vis) - indexed)[:10]}"
    )
    for queue_id, (floor, gone, fresh) in counters.items():
        records = log.get(queue_id, {})
        next_seq = max([floor] + [seq + 1 for seq in records])
        counted = next_seq - 1 - gone
        assert counted == len(records), (
            f"queue {queue_id}: counters say {counted} records, log holds {len(records)}"
        )
        assert fresh <= next_seq, f"queue {queue_id}: fresh cursor {fresh} past next seq {next_seq}"
        for seq, record in records.items():
            assert broker._core.decode_record(record) is not None, (
                f"queue {queue_id} seq {seq}: the record fails its CRC/length check"
            )
    return log


# -- 1. restart ------------------------------------------------------------------------------------


@dataclass
class Expected:
    """What the store must hold for one message."""

    body: bytes
    attributes: dict[str, Any]
    sent_ms: int
    visible_at: int
    receive_count: int = 0
    first_receive_ms: int = 0
    handle: str = ""
    deleted: bool = False


def _attributes(i: int) -> dict[str, Any] | None:
    if i % 3 == 0:
        return {
            "n": {"DataType": "Number", "StringValue": str(i)},
            "kind": {"DataType": "String", "StringValue": f"kind-{i % 5}"},
        }
    if i % 3 == 1:
        return {"blob": {"DataType": "Binary", "BinaryValue": bytes([i % 256]) * 7}}
    return None


@dataclass
class Model:
    clock: millpond.ManualClock
    messages: dict[str, Expected] = field(default_factory=dict)

    def sent(self, message_id: str, body: bytes, attributes: Any, delay_s: int) -> None:
        assert message_id not in self.messages, "a message id was given twice"
        now = self.clock.now_ms()
        self.messages[message_id] = Expected(body, attributes or {}, now, now + delay_s * 1000)

    def received(self, messages: list[millpond.Message], visibility_s: int) -> None:
        now = self.clock.now_ms()
        for m in messages:
            expected = self.messages[m.message_id]
            assert not expected.deleted
            assert expected.visible_at <= now, "received a message before it was visible"
            expected.receive_count += 1
            assert m.receive_count == expected.receive_count
            expected.first_receive_ms = expected.first_receive_ms or now
            expected.visible_at = now + visibility_s * 1000
            expected.handle = m.receipt_handle

    def alive(self) -> dict[str, Expected]:
        return {mid: e for mid, e in self.messages.items() if not e.deleted}

    def check(self, m: millpond.Message) -> None:
        """``m`` is a message received just now; it must match the model (then records it)."""
        expected = self.messages.get(m.message_id)
        assert expected is not None, f"unknown message {m!r}"
        assert not expected.deleted, f"deleted message {m.message_id} came back"
        assert m.body == expected.body
        assert m.attributes == expected.attributes
        assert m.sent_timestamp == expected.sent_ms
        assert m.receive_count == expected.receive_count + 1, m.message_id
        now = self.clock.now_ms()
        assert m.first_receive_timestamp == (expected.first_receive_ms or now), m.message_id


@pytest.mark.parametrize("reopen_with", ["same", "other"])
def test_restart_keeps_every_acknowledged_message(
    tmp_path: Path, impl: str, reopen_with: str
) -> None:
    data_dir = str(tmp_path / "data")
    reopen_impl = impl if reopen_with == "same" else _other_impl(impl)
    clock = millpond.ManualClock(now_ms=T0)
    model = Model(clock)
    rng = random.Random(7)

    broker = millpond.open(data_dir, durability="fsync", clock=clock, core=impl)
    queue = broker.create_queue("jobs", {"VisibilityTimeout": "60"})
    other = broker.create_queue("other")
    other_id = other.send(b"elsewhere")

    # Sends: single and batched, with and without attributes and delays.
    i = 0
    for _ in range(25):
        i += 1
        body, attrs, delay = f"single-{i}".encode(), _attributes(i), rng.choice((0, 0, 5, 60, 900))
        model.sent(queue.send(body, delay_seconds=delay, attributes=attrs), body, attrs, delay)
    clock.advance(1)
    for _ in range(4):
        entries: list[Any] = []
        meta = []
        for _ in range(rng.randint(3, 10)):
            i += 1
            body, attrs = f"batch-{i}".encode(), _attributes(i)
            if attrs is None and i % 2:
                entries.append(body)  # a bare body takes the queue's delay (0)
                meta.append((body, None, 0))
            else:
                delay = rng.choice((0, 5, 60))
                entries.append({"body": body, "attributes": attrs, "delay_seconds": delay})
                meta.append((body, attrs, delay))
        for message_id, (body, attrs, delay) in zip(queue.send_batch(entries), meta, strict=True):
            model.sent(message_id, body, attrs, delay)

    # Receives: the queue's visibility timeout and an explicit one.
    clock.advance(6)
    visible = sum(e.visible_at <= clock.now_ms() for e in model.messages.values())
    assert visible >= 20, "the test needs more visible messages"
    first = queue.receive(10, wait_seconds=0)
    model.received(first, 60)
    second = queue.receive(10, visibility_timeout=120, wait_seconds=0)
    model.received(second, 120)
    assert len(first) == len(second) == 10

    # Deletes: single and batched.
    queue.delete(first[0].receipt_handle)
    queue.delete_batch([m.receipt_handle for m in first[1:4] + second[:2]])
    for m in first[:4] + second[:2]:
        model.messages[m.message_id].deleted = True

    # Visibility changes: back to visible, and hidden for longer.
    clock.advance(1)
    for m, timeout in ((first[4], 0), (first[5], 300), (second[2], 0), (second[3], 1000)):
        queue.change_visibility(m.receipt_handle, timeout)
        model.messages[m.message_id].visible_at = clock.now_ms() + timeout * 1000

    # Past the first visibility timeout: second receives, so counts reach 2.
    clock.advance(61)
    third = queue.receive(10, visibility_timeout=30, wait_seconds=0)
    model.received(third, 30)
    assert any(m.receive_count == 2 for m in third)
    queue.delete(third[-1].receipt_handle)
    model.messages[third[-1].message_id].deleted = True

    # Handles taken before the restart, used after it.
    in_flight = [e for e in model.alive().values() if e.handle and e.visible_at > clock.now_ms()]
    assert len(in_flight) >= 2
    delete_later, hide_later = in_flight[0], in_flight[1]

    clock.advance(1)
    for _ in range(3):
        i += 1
        body = f"late-{i}".encode()
        model.sent(queue.send(body, attributes=_attributes(i)), body, _attributes(i), 0)
    broker.close()

    # -- reopen at the same time -------------------------------------------------------------
    clock = model.clock = millpond.ManualClock(now_ms=clock.now_ms())
    broker = millpond.open(data_dir, durability="fsync", clock=clock, core=reopen_impl)
    try:
        log = check_integrity(broker)
        assert broker.list_queues() == ["jobs", "other"]
        queue = broker.queue("jobs")
        assert queue.get_attributes(["VisibilityTimeout"]) == {"VisibilityTimeout": "60"}
        assert sum(map(len, log.values())) == len(model.alive()) + 1

        now = clock.now_ms()
        alive = model.alive().values()
        counts = queue.get_attributes()
        assert counts["ApproximateNumberOfMessages"] == str(sum(e.visible_at <= now for e in alive))
        assert counts["ApproximateNumberOfMessagesNotVisible"] == str(
            sum(e.visible_at > now and e.receive_count > 0 for e in alive)
        )
        assert counts["ApproximateNumberOfMessagesDelayed"] == str(
            sum(e.visible_at > now and e.receive_count == 0 for e in alive)
        )

        # Receipt handles from before the restart still work.
        queue.delete(delete_later.handle)
        delete_later.deleted = True
        queue.change_visibility(hide_later.handle, 500)
        hide_later.visible_at = clock.now_ms() + 500_000

        # Sweep through time: each message becomes visible exactly when the model says.
        due = sorted({max(e.visible_at, now) for e in model.alive().values()})
        seen: set[str] = set()
        for at in due:
            if at > clock.now_ms() + 1:
                clock.advance((at - 1 - clock.now_ms()) / 1000)
                early = _receive_all(queue, 43_200)
                assert not early, f"visible before their time ({clock.now_ms()}): {early}"
                clock.advance(0.001)
            assert clock.now_ms() == at
            got = _receive_all(queue, 43_200)
            want = {mid for mid, e in model.alive().items() if max(e.visible_at, now) == at}
            assert {m.message_id for m in got} == want, f"at {at}"
            assert len(got) == len(want), "a message was delivered twice"
            for m in got:
                model.check(m)
            model.received(got, 43_200)
            seen.update(want)
        assert seen == set(model.alive())

        # Past every visibility timeout: everything not deleted comes back, nothing deleted does.
        clock.advance(13 * 3600)
        everything = _receive_all(queue, 60)
        assert sorted(m.message_id for m in everything) == sorted(model.alive())
        for m in everything:
            model.check(m)
        deleted = {mid for mid, e in model.messages.items() if e.deleted}
        assert len(deleted) == 8

        # New sends never reuse an id from before the restart.
        assert queue.send(b"after restart") not in model.messages
        assert [m.message_id for m in _receive_all(broker.queue("other"), 60)] == [other_id]
        check_integrity(broker)
    finally:
        broker.close()


def test_deleted_queue_stays_deleted_after_restart(tmp_path: Path, impl: str) -> None:
    data_dir = str(tmp_path / "data")
    clock = millpond.ManualClock(now_ms=T0)
    with millpond.open(data_dir, clock=clock, core=impl) as broker:
        gone = broker.create_queue("gone")
        gone.send_batch([b"a", b"b"])
        broker.delete_queue("gone")
        kept = broker.create_queue("kept")
        kept_id = kept.send(b"k")
    with millpond.open(data_dir, clock=clock, core=impl) as broker:
        assert broker.list_queues() == ["kept"]
        with pytest.raises(millpond.errors.QueueDoesNotExist):
            broker.queue("gone")
        again = broker.create_queue("gone")
        assert _receive_all(again, 30) == []
        assert [m.message_id for m in _receive_all(broker.queue("kept"), 30)] == [kept_id]
        check_integrity(broker)


# -- 2./3. kill -9 -------------------------------------------------------------------------------


@dataclass
class History:
    """What the worker logged: attempted sends, acknowledged sends, attempted and acked deletes."""

    attempted: set[str] = field(default_factory=set)
    acked: dict[str, str] = field(default_factory=dict)
    delete_attempted: set[str] = field(default_factory=set)
    delete_acked: set[str] = field(default_factory=set)


def _drop_cut_line(path: Path) -> None:
    """Cut off a last line the kill interrupted (a write of several pages can stop part way
    on SIGKILL): it was never a whole record, and the next worker appends to this file."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def read_history(path: Path) -> History:
    history = History()
    if not path.exists():
        return history
    for number, line in enumerate(path.read_text().splitlines(), 1):
        kind, *rest = line.split(" ")
        if kind == "S?" and len(rest) == 1:
            history.attempted.add(rest[0])
        elif kind == "S" and len(rest) == 2:
            message_id, body = rest
            assert history.acked.setdefault(message_id, body) == body, (
                f"line {number}: message id {message_id} acknowledged for two bodies"
            )
        elif kind == "D?" and len(rest) == 1:
            history.delete_attempted.add(rest[0])
        elif kind == "D" and len(rest) == 1:
            history.delete_acked.add(rest[0])
        else:
            raise AssertionError(f"{path}:{number}: malformed history line {line!r}")
    return history


def _start(args: list[str], stderr_path: Path) -> subprocess.Popen[bytes]:
    with open(stderr_path, "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )


def _wait_ready(proc: subprocess.Popen[bytes], stderr_path: Path, timeout: float = 60) -> None:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if readable else b""
    if line != b"ready\n":
        proc.kill()
        proc.wait()
        pytest.fail(f"worker did not start ({line!r}):\n{stderr_path.read_text()}")


def _reader_pids(env: Any) -> set[int]:
    return {
        int(fields[0])
        for fields in (line.split() for line in env.readers().splitlines())
        if fields and fields[0].isdigit()
    }


def _check_after_kill(
    data_dir: str, impl: str, durability: str, history: History, killed_pid: int, check_ms: int
) -> int:
    """Reopen the killed worker's directory and check its history; returns the stored count."""
    clock = millpond.ManualClock(now_ms=check_ms)
    broker = millpond.open(data_dir, durability=durability, clock=clock, core=impl)
    try:
        env = broker._storage.env
        assert killed_pid not in _reader_pids(env), "the killed worker still holds a reader slot"
        assert env.reader_check() == 0
        log = check_integrity(broker)
        queue = broker.queue("crash")
        records = log.get(queue.queue_id, {})

        # Everything stored, through the API: visibility and delays have long expired.
        received = _receive_all(queue, 1)
        present = {m.message_id: m.body.decode() for m in received}
        assert len(present) == len(received), "a message was delivered twice"
        assert len(present) == len(records), "the API and the tables disagree"
        message_id, env_id = broker._core.message_id, broker._env_id
        assert set(present) == {message_id(env_id, queue.queue_id, seq) for seq in records}

        lost = {
            mid: body
            for mid, body in history.acked.items()
            if mid not in present and mid not in history.delete_attempted
        }
        assert not lost, f"{len(lost)} acknowledged send(s) lost: {sorted(lost.items())[:10]}"
        back = history.delete_acked & set(present)
        assert not back, f"{len(back)} acknowledged delete(s) came back: {sorted(back)[:10]}"
        wrong = {
            mid: (body, history.acked[mid])
            for mid, body in present.items()
            if mid in history.acked and history.acked[mid] != body
        }
        assert not wrong, f"bodies changed: {wrong}"
        phantoms = {body for body in present.values() if body not in history.attempted}
        assert not phantoms, f"messages nobody sent: {sorted(phantoms)[:10]}"
        assert len(set(present.values())) == len(present), "one send stored twice"
        return len(present)
    finally:
        broker.close()


def _crash_cycles(
    tmp_path: Path, impl: str, durability: str, cycles: int, holder_every: int = 0
) -> None:
    data_dir = str(tmp_path / "data")
    log_path = tmp_path / "history.log"
    rng = random.Random()
    for cycle in range(cycles):
        err = tmp_path / f"worker-{cycle}.err"
        holder = None
        if holder_every and cycle % holder_every == holder_every - 1:
            # Another process keeps the lock table alive across the kill.
            holder = _start(["--hold", "--durability", durability, data_dir, impl], err)
            _wait_ready(holder, err)
        try:
            worker = _start(
                [data_dir, str(log_path), impl, "--durability", durability, "--threads", "4"],
                err,
            )
            _wait_ready(worker, err)
            time.sleep(rng.uniform(0.05, 0.5))  # the random moment of the kill
            worker.kill()
            worker.communicate(timeout=30)
            status = worker.returncode
            assert status == -9, f"worker ended by itself ({status}):\n{err.read_text()}"

            _drop_cut_line(log_path)
            history = read_history(log_path)
            # Far in the future: every delay and visibility timeout has expired, and each
            # check is later than the visibility (1 s) the previous check left behind.
            check_ms = int(time.time() * 1000) + DAY_MS + cycle * 120_000
            stored = _check_after_kill(data_dir, impl, durability, history, worker.pid, check_ms)
        finally:
            if holder is not None:
                holder.communicate(timeout=30)
                assert holder.returncode == 0, err.read_text()
    # The workers did work: sends and deletes were acknowledged, and messages are stored.
    assert history.acked and history.delete_acked and stored > 0


def test_sigkill_loses_no_acknowledged_write_fsync(tmp_path: Path, impl: str) -> None:
    _crash_cycles(tmp_path, impl, "fsync", CRASH_CYCLES, holder_every=2)


def test_sigkill_loses_no_acknowledged_write_os_mode(tmp_path: Path, impl: str) -> None:
    _crash_cycles(tmp_path, impl, "os", max(2, CRASH_CYCLES // 2))


def _synced_directories(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The directories os.fsync is called on from now (by path), in order."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_a_new_data_directory_is_synced_into_its_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A power loss must not take away the directory entries naming the data of the first
    # acknowledged sends: each directory the open created is synced into its parent, and the
    # data directory itself once LMDB created its files in it.
    synced = _synced_directories(monkeypatch)
    path = tmp_path / "new" / "data"
    with millpond.open(path) as broker:
        broker.create_queue("q").send(b"first")
    assert synced == [str(tmp_path), str(tmp_path / "new"), str(path)]
    synced.clear()
    with millpond.open(path) as broker:  # nothing new: nothing more to sync
        assert broker.queue("q").receive()[0].body == b"first"
    assert synced == []


def test_an_existing_empty_directory_is_synced_once_it_holds_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = _synced_directories(monkeypatch)
    with millpond.open(tmp_path):
        pass
    assert synced == [str(tmp_path)]


def test_os_mode_does_not_sync_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "os" does not survive a power loss (README): it pays for no directory sync either.
    synced = _synced_directories(monkeypatch)
    with millpond.open(tmp_path / "new", durability="os"):
        pass
    assert synced == []
