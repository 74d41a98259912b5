"""Crash hunt: writers other than plain sends and deletes, SIGKILLed at random moments.

Each test runs this file as a worker (``python tests/test_crash_hunt.py <scenario> ...``) that
sets a data directory up, prints "ready" and writes under load, logging each step before it is
attempted and after it is acknowledged (tests/crash_worker.py's Log: whole lines, fsynced). The
test SIGKILLs it, reopens the directory and checks the invariants of the scenario against the
log. MILLPOND_CRASH_CYCLES sets the number of kill cycles (default 3).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import millpond

HERE = Path(__file__).resolve()
CYCLES = int(os.environ.get("MILLPOND_CRASH_CYCLES", "3"))


# -- the worker --------------------------------------------------------------------------------


def _log(path: str) -> Any:
    sys.path.insert(0, str(HERE.parent))
    from crash_worker import Log  # noqa: PLC0415 - the worker runs this file as a script

    return Log(path)


def _forever(fn: Any, args: tuple[Any, ...]) -> None:
    import traceback

    try:
        while True:
            fn(*args)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)


def _run_threads(targets: list[tuple[Any, tuple[Any, ...]]]) -> None:
    threads = [threading.Thread(target=_forever, args=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    for thread in threads:
        thread.join()


def worker(argv: list[str]) -> None:
    scenario, data_dir, log_path, impl, durability = argv[:5]
    options: dict[str, Any] = {}
    if scenario == "grow":
        options["map_size"] = 1 << 16
    broker = millpond.open(data_dir, durability=durability, core=impl, **options)
    log = _log(log_path)
    run = secrets.token_hex(3)
    globals()["_worker_" + scenario](broker, log, run)


def _counter(run: str, thread: int) -> Any:
    n = 0

    def next_body() -> str:
        nonlocal n
        n += 1
        return f"{run}-{thread}-{n}"

    return next_body


def _worker_fanout(broker: millpond.Broker, log: Any, run: str) -> None:
    names = ("fan-a", "fan-b", "fan-c")
    if "fan" not in broker.list_topics():
        topic = broker.create_topic("fan")
        for name in names:
            topic.subscribe(broker.create_queue(name), raw_message_delivery=True)
    topic = broker.topic("fan")

    def publish(next_body: Any, rng: random.Random) -> None:
        if rng.random() < 0.5:
            body = next_body()
            log([f"P? {body}"])
            topic.publish(body)
            log([f"P {body}"])
        else:
            bodies = [next_body() for _ in range(rng.randint(2, 10))]
            log([f"P? {b}" for b in bodies])
            topic.publish_batch([{"Id": f"e{i}", "Message": b} for i, b in enumerate(bodies)])
            log([f"P {b}" for b in bodies])

    def drain(rng: random.Random) -> None:  # deletes keep the queues from growing for good
        queue = broker.queue(rng.choice(names))
        messages = queue.receive(10, visibility_timeout=600, wait_seconds=0)
        if messages:
            log([f"D? {queue.name} {m.body.decode()}" for m in messages])
            queue.delete_batch([m.receipt_handle for m in messages])
            log([f"D {queue.name} {m.body.decode()}" for m in messages])

    rngs = [random.Random() for _ in range(3)]
    _run_threads(
        [
            (publish, (_counter(run, 0), rngs[0])),
            (publish, (_counter(run, 1), rngs[1])),
            (drain, (rngs[2],)),
        ]
    )


def _worker_dlq(broker: millpond.Broker, log: Any, run: str, fifo: bool = False) -> None:
    suffix = ".fifo" if fifo else ""
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true"} if fifo else {}
    if "source" + suffix not in broker.list_queues():
        dlq = broker.create_queue("dlq" + suffix, attributes)
        policy = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1}
        broker.create_queue("source" + suffix, {**attributes, "RedrivePolicy": json.dumps(policy)})
    source = broker.queue("source" + suffix)

    def send(next_body: Any) -> None:
        bodies = [next_body() for _ in range(5)]
        log([f"S? {b}" for b in bodies])
        if fifo:
            source.send_batch([{"body": b, "group_id": b[-1]} for b in bodies])
        else:
            source.send_batch(bodies)
        log([f"S {b}" for b in bodies])

    def receive() -> None:  # visible again at once: the next receive dead-letters it
        source.receive(10, visibility_timeout=0, wait_seconds=0)

    _run_threads([(send, (_counter(run, 0),)), (receive, ()), (receive, ())])


def _worker_dlqfifo(broker: millpond.Broker, log: Any, run: str) -> None:
    _worker_dlq(broker, log, run, fifo=True)


MOVE_MESSAGES = 3000


def _worker_move(broker: millpond.Broker, log: Any, run: str) -> None:
    if "dlq" not in broker.list_queues():
        dlq = broker.create_queue("dlq")
        policy = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1}
        broker.create_queue("source", {"RedrivePolicy": json.dumps(policy)})
        target = broker.create_queue("target")
        for start in range(0, MOVE_MESSAGES, 10):
            dlq.send_batch([f"m-{i}" for i in range(start, start + 10)])
        log(["filled"])
        broker.start_message_move_task(dlq.arn, target.arn)
        log(["started"])

    def watch() -> None:
        time.sleep(0.01)

    _run_threads([(watch, ())])


def _worker_fifo(broker: millpond.Broker, log: Any, run: str) -> None:
    if "f.fifo" not in broker.list_queues():
        broker.create_queue("f.fifo", {"FifoQueue": "true"})
    queue = broker.queue("f.fifo")

    def send(thread: int, next_body: Any, rng: random.Random) -> None:
        group = f"g{thread}"
        if rng.random() < 0.5:
            body = next_body()
            log([f"S? {group} {body}"])
            message_id = queue.send(body, group_id=group, deduplication_id=body)
            log([f"S {group} {body} {message_id}"])
        else:
            bodies = [next_body() for _ in range(rng.randint(2, 10))]
            log([f"S? {group} {b}" for b in bodies])
            entries = [{"body": b, "group_id": group, "deduplication_id": b} for b in bodies]
            ids = queue.send_batch(entries)
            log([f"S {group} {b} {i}" for b, i in zip(bodies, ids, strict=True)])

    def receive() -> None:
        messages = queue.receive(10, visibility_timeout=600, wait_seconds=0)
        if messages:
            log([f"D? {m.message_id}" for m in messages])
            queue.delete_batch([m.receipt_handle for m in messages])
            log([f"D {m.message_id}" for m in messages])

    rngs = [random.Random() for _ in range(3)]
    _run_threads([(send, (t, _counter(run, t), rngs[t])) for t in range(3)] + [(receive, ())])


def _worker_attempt(broker: millpond.Broker, log: Any, run: str) -> None:
    """FIFO receives with a ReceiveRequestAttemptId each, their messages then deleted."""
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    queue = broker.create_queue("a.fifo", attributes)

    def send(next_body: Any) -> None:
        queue.send_batch([{"body": (b := next_body()), "group_id": b[-1]} for _ in range(8)])

    def receive() -> None:
        attempt = secrets.token_hex(8)
        log([f"A? {attempt}"])
        messages = queue.receive(10, visibility_timeout=600, attempt_id=attempt)
        log([" ".join(["A", attempt, *(m.message_id for m in messages)])])
        if messages:
            log([f"D? {m.message_id}" for m in messages])
            queue.delete_batch([m.receipt_handle for m in messages])
            log([f"D {m.message_id}" for m in messages])

    _run_threads([(send, (_counter(run, 0),)), (receive, ())])


def _worker_purge(broker: millpond.Broker, log: Any, run: str) -> None:
    """Sends to a set of queues while each is purged once (SQS allows one purge a minute)."""
    names = [f"{run}-p{i}" for i in range(20)]
    queues = [broker.create_queue(name) for name in names]
    purged = threading.Event()

    def send(next_body: Any, rng: random.Random) -> None:
        queue = rng.choice(queues)
        body = next_body()
        log([f"S? {queue.name} {body}"])
        queue.send(body)
        log([f"S {queue.name} {body}"])

    def purge(rng: random.Random) -> None:
        if purged.is_set():
            time.sleep(0.01)
            return
        for queue in queues:
            time.sleep(rng.uniform(0.005, 0.02))
            log([f"U? {queue.name}"])
            queue.purge()
            log([f"U {queue.name}"])
        purged.set()

    _run_threads(
        [
            (send, (_counter(run, 0), random.Random())),
            (send, (_counter(run, 1), random.Random())),
            (purge, (random.Random(),)),
        ]
    )


def _worker_queues(broker: millpond.Broker, log: Any, run: str) -> None:
    """Queues created, filled, purged or deleted; messages hidden and shown again."""

    def churn(thread: int, next_body: Any, rng: random.Random) -> None:
        name = f"{run}-{thread}-{next_body().rsplit('-', 1)[1]}"
        log([f"C? {name}"])
        queue = broker.create_queue(name)
        bodies = [f"{name}-{i}" for i in range(10)]
        queue.send_batch(bodies)
        log([f"C {name}"])
        if rng.random() < 0.5:
            log([f"X? {name}"])
            broker.delete_queue(name)
            log([f"X {name}"])
        else:
            queue.receive(3, visibility_timeout=600, wait_seconds=0)
            log([f"U? {name}"])
            queue.purge()
            log([f"U {name}"])

    def hide(queue: millpond.Queue, rng: random.Random) -> None:
        log(["R?"])
        messages = queue.receive(10, visibility_timeout=600, wait_seconds=0)
        if not messages:
            queue.send_batch([f"v-{i}" for i in range(10)])
            return
        for m in messages[:5]:  # visible at once after the change is acknowledged
            log([f"V? {m.message_id}"])
            queue.change_visibility(m.receipt_handle, 0)
            log([f"V {m.message_id}"])
        if len(messages) > 5:
            log([f"D? {m.message_id}" for m in messages[5:]])
            queue.delete_batch([m.receipt_handle for m in messages[5:]])
            log([f"D {m.message_id}" for m in messages[5:]])

    vis = broker.create_queue("vis")
    _run_threads(
        [
            (churn, (0, _counter(run, 0), random.Random())),
            (churn, (1, _counter(run, 1), random.Random())),
            (hide, (vis, random.Random())),
        ]
    )


def _worker_grow(broker: millpond.Broker, log: Any, run: str) -> None:
    queue = broker.create_queue("grow") if "grow" not in broker.list_queues() else None
    queue = queue or broker.queue("grow")

    def send(next_body: Any) -> None:
        body = next_body()
        log([f"S? {body}"])
        message_id = queue.send(body + "." * 4_000)
        log([f"S {body} {message_id}"])

    _run_threads([(send, (_counter(run, t),)) for t in range(3)])


# -- the tests ---------------------------------------------------------------------------------


def _kill_cycles(
    tmp_path: Path,
    scenario: str,
    impl: str,
    durability: str,
    check: Any,
    cycles: int = CYCLES,
    integrity: Any = None,
) -> None:
    """``cycles`` times: start the scenario's worker, SIGKILL it at a random moment, reopen the
    directory and call ``check(broker, log, lines)``: ``log`` is what ``integrity`` (default
    check_integrity) returns after checking the tables, ``lines`` the history, split."""
    from tests.test_durability import _drop_cut_line, check_integrity

    data_dir, log_path = str(tmp_path / "data"), tmp_path / "history.log"
    rng = random.Random()
    for cycle in range(cycles):
        err = tmp_path / f"worker-{cycle}.err"
        proc = _start_worker(scenario, [data_dir, str(log_path), impl, durability], err)
        time.sleep(rng.uniform(0.05, 0.4))
        proc.kill()
        proc.communicate(timeout=30)
        assert proc.returncode == -9, f"worker ended by itself:\n{err.read_text()}"
        _drop_cut_line(log_path)
        lines = [line.split(" ") for line in log_path.read_text().splitlines()]
        with millpond.open(data_dir, durability=durability, core=impl) as broker:
            check(broker, (integrity or check_integrity)(broker), lines)


def _stored(broker: millpond.Broker, log: dict[int, dict[int, bytes]], name: str) -> dict[str, str]:
    """{message id: body} of every record of queue ``name`` in ``log`` (check_integrity's
    scan), read off the tables so that nothing is received (and re-timed) by the check."""
    records = log.get(broker.queue(name).queue_id, {})
    decoded = [broker._core.decode_record(record) for record in records.values()]
    return {d[1]: bytes(d[3]).decode() for d in decoded if d is not None}


def _bodies(broker: millpond.Broker, log: dict[int, dict[int, bytes]], name: str) -> Counter[str]:
    return Counter(_stored(broker, log, name).values())


def _steps(lines: list[list[str]], kind: str, width: int = 1) -> set[Any]:
    return {" ".join(parts[1 : 1 + width]) for parts in lines if parts[0] == kind}


@pytest.mark.parametrize("durability", ["fsync", "os"])
def test_publish_reaches_every_queue_or_none(tmp_path: Path, impl: str, durability: str) -> None:
    def check(broker: millpond.Broker, log: Any, lines: list[list[str]]) -> None:
        acked, attempted = _steps(lines, "P"), _steps(lines, "P?")
        deleted = {tuple(p[1:3]) for p in lines if p[0] == "D?"}
        present = {name: _bodies(broker, log, name) for name in ("fan-a", "fan-b", "fan-c")}
        for name, bodies in present.items():
            assert all(n == 1 for n in bodies.values()), f"{name}: a publish stored twice"
            assert set(bodies) <= attempted, f"{name}: messages nobody published"
            lost = {b for b in acked if b not in bodies and (name, b) not in deleted}
            assert not lost, f"{name}: acknowledged publishes lost: {sorted(lost)[:5]}"
        for body in set().union(*present.values()):
            where = [n for n, b in present.items() if body in b or (n, body) in deleted]
            assert len(where) == 3, f"{body} reached only {where}"

    _kill_cycles(tmp_path, "fanout", impl, durability, check)


DURABILITY = pytest.mark.parametrize("durability", ["fsync", "os"])


@DURABILITY
@pytest.mark.parametrize("kind", ["standard", "fifo"])
def test_dead_lettering_receive_moves_each_message_once(
    tmp_path: Path, impl: str, durability: str, kind: str
) -> None:
    suffix = ".fifo" if kind == "fifo" else ""

    def check(broker: millpond.Broker, log: Any, lines: list[list[str]]) -> None:
        acked, attempted = _steps(lines, "S"), _steps(lines, "S?")
        source = _bodies(broker, log, "source" + suffix)
        dlq = _bodies(broker, log, "dlq" + suffix)
        both = source + dlq
        assert all(n == 1 for n in both.values()), "a message stored twice"
        assert set(both) <= attempted, "messages nobody sent"
        lost = acked - set(both)
        assert not lost, f"acknowledged sends lost: {sorted(lost)[:5]}"

    integrity = _all_logs if suffix else None
    _kill_cycles(
        tmp_path, "dlq" + kind.replace("standard", ""), impl, durability, check, integrity=integrity
    )


def _all_logs(broker: millpond.Broker) -> dict[int, dict[int, bytes]]:
    """check_integrity for FIFO queues (whose ``vis`` holds one entry per group, not per
    message): every record has its group member and every member its record, and the counters
    count the records. Returns {queue_id: {seq: record}}."""
    from tests.test_durability import _COUNTERS, _LOG_KEY, _QID

    tables = broker._storage.tables

    def scan(txn: Any) -> tuple[dict[int, dict[int, bytes]], set[tuple[int, int]], dict]:
        log: dict[int, dict[int, bytes]] = {}
        with txn.cursor(db=tables.log) as cur:
            for key, value in cur:
                queue_id, seq = _LOG_KEY.unpack(key)
                log.setdefault(queue_id, {})[seq] = bytes(value)
        members = set()
        with txn.cursor(db=tables.fifo) as cur:
            for key in cur.iternext(values=False):
                members.add((_QID.unpack_from(key)[0], int.from_bytes(key[-8:], "big")))
        counters = {}
        with txn.cursor(db=tables.counters) as cur:
            for key, value in cur:
                counters[_QID.unpack(key)[0]] = _COUNTERS.unpack(value)
        return log, members, counters

    log, members, counters = broker._storage.read(scan)
    fifo_ids = {broker.queue(n).queue_id for n in broker.list_queues() if n.endswith(".fifo")}
    in_log = {(q, seq) for q, records in log.items() if q in fifo_ids for seq in records}
    assert members == in_log, (
        f"members without a record: {sorted(members - in_log)[:5]}, "
        f"records without a member: {sorted(in_log - members)[:5]}"
    )
    for queue_id, (floor, gone, _fresh) in counters.items():
        records = log.get(queue_id, {})
        next_seq = max([floor] + [seq + 1 for seq in records])
        assert next_seq - 1 - gone == len(records), f"queue {queue_id}: counters are off"
    return log  # type: ignore[no-any-return]


@DURABILITY
def test_message_move_task_moves_each_message_once(
    tmp_path: Path, impl: str, durability: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_durability import check_integrity

    def check(broker: millpond.Broker, log: Any, lines: list[list[str]]) -> None:
        dlq, target = _bodies(broker, log, "dlq"), _bodies(broker, log, "target")
        both = dlq + target
        assert set(both) == {f"m-{i}" for i in range(MOVE_MESSAGES)}, "messages lost"
        assert all(n == 1 for n in both.values()), "a message moved twice"
        (task,) = broker.list_message_move_tasks(broker.queue("dlq").arn)
        assert task["ApproximateNumberOfMessagesMoved"] == sum(target.values()), task

    _kill_cycles(tmp_path, "move", impl, durability, check, cycles=1)

    # The task goes on where it stopped once the dead worker's lease runs out (made to run out
    # now), and ends with every message moved once.
    from millpond import dead_letters

    later = SimpleNamespace(time=lambda: time.time() + dead_letters.LEASE_S + 1)
    monkeypatch.setattr(dead_letters, "time", later)
    with millpond.open(str(tmp_path / "data"), durability=durability, core=impl) as broker:
        dlq_arn = broker.queue("dlq").arn
        deadline = time.monotonic() + 20
        while broker.list_message_move_tasks(dlq_arn)[0]["Status"] == "RUNNING":
            assert time.monotonic() < deadline, "the task did not resume"
            time.sleep(0.05)
        (task,) = broker.list_message_move_tasks(dlq_arn)
        log = check_integrity(broker)
        target = _bodies(broker, log, "target")
        assert task["Status"] == "COMPLETED", task
        assert set(target) == {f"m-{i}" for i in range(MOVE_MESSAGES)}
        assert all(n == 1 for n in target.values()), "a message moved twice"
        assert not _stored(broker, log, "dlq")
        assert task["ApproximateNumberOfMessagesMoved"] == MOVE_MESSAGES, task


@DURABILITY
def test_fifo_sends_keep_order_and_deduplication(
    tmp_path: Path, impl: str, durability: str
) -> None:
    def check(broker: millpond.Broker, log: Any, lines: list[list[str]]) -> None:
        queue = broker.queue("f.fifo")
        acked = {p[2]: (p[1], p[3]) for p in lines if p[0] == "S"}  # body -> (group, id)
        attempted = _steps(lines, "S?", 2)
        delete_attempted = _steps(lines, "D?")
        stored = _stored(broker, log, "f.fifo")
        bodies = Counter(stored.values())
        assert all(n == 1 for n in bodies.values()), "a message stored twice"
        by_body = {body: message_id for message_id, body in stored.items()}
        for body, (_group, message_id) in acked.items():
            if message_id in delete_attempted:
                continue
            assert by_body.get(body) == message_id, f"acknowledged send {body} lost"
        for body in bodies:
            assert any(a.endswith(" " + body) for a in attempted), f"{body}: nobody sent it"
        # Group order: each group is one thread's, whose bodies count up.
        seqs = sorted(log.get(queue.queue_id, {}))
        order: dict[str, list[int]] = {}
        for seq in seqs:
            decoded = broker._core.decode_record(log[queue.queue_id][seq])
            body = bytes(decoded[3]).decode()
            run_thread, number = body.rsplit("-", 1)
            order.setdefault(run_thread, []).append(int(number))
        for run_thread, numbers in order.items():
            assert numbers == sorted(numbers), f"{run_thread}: group out of order"
        # De-duplication ids survive: sending an acknowledged message again stores nothing.
        count = len(stored)
        for body, (group, message_id) in list(acked.items())[-20:]:
            again = queue.send(body, group_id=group, deduplication_id=body)
            assert again == message_id, f"{body}: de-duplication id forgotten"
        assert len(_stored(broker, _all_logs(broker), "f.fifo")) == count

    _kill_cycles(tmp_path, "fifo", impl, durability, check, integrity=_all_logs)


@DURABILITY
def test_a_receive_cut_off_by_a_crash_is_given_again_to_its_retry(
    tmp_path: Path, impl: str, durability: str
) -> None:
    """SQS's ReceiveRequestAttemptId: a receive whose answer was lost (here: its process died)
    is retried with the same id and gets the messages it hid, so none stays hidden unseen."""

    def check(broker: millpond.Broker, log: Any, lines: list[list[str]]) -> None:
        queue = broker.queue("a.fifo")
        received = [p[2:] for p in lines if p[0] == "A"]
        delete_acked, delete_tried = _steps(lines, "D"), _steps(lines, "D?")
        pending = {mid for mids in received for mid in mids if mid not in delete_acked}
        if pending & delete_tried:
            return  # killed mid-delete: which of those messages are left is not known
        attempts = [p[1] for p in lines if p[0] == "A?"]
        answered = {p[1] for p in lines if p[0] == "A"}
        retried: set[str] = set()
        if attempts and attempts[-1] not in answered:
            again = queue.receive(10, visibility_timeout=600, attempt_id=attempts[-1])
            retried = {m.message_id for m in again}
        hidden = int(queue.get_attributes()["ApproximateNumberOfMessagesNotVisible"])
        assert hidden == len(pending | retried), (
            f"{hidden} messages hidden, the worker and the retry got {len(pending | retried)}"
        )

    for run in range(CYCLES):  # a new directory each: a retry leaves its messages hidden
        (tmp_path / str(run)).mkdir()
        _kill_cycles(
            tmp_path / str(run), "attempt", impl, durability, check, cycles=1, integrity=_all_logs
        )


@DURABILITY
def test_a_purge_removes_what_was_sent_before_it_and_keeps_what_came_after(
    tmp_path: Path, impl: str, durability: str
) -> None:
    def check(broker: millpond.Broker, log: Any, lines: list[list[str]]) -> None:
        at = {(p[0], p[1]): i for i, p in enumerate(lines) if p[0] in ("U?", "U")}
        for (kind, name), index in at.items():
            if kind != "U":
                continue
            begun = at["U?", name]
            stored = set(_stored(broker, log, name).values())
            before = {p[2] for p in lines[:begun] if p[0] == "S" and p[1] == name}
            after = {p[2] for p in lines[index:] if p[0] == "S" and p[1] == name}
            after -= {p[2] for p in lines[:index] if p[0] == "S?" and p[1] == name}
            assert not before & stored, f"{name}: sends acknowledged before the purge survived"
            assert after <= stored, f"{name}: sends after the purge lost: {after - stored}"

    _kill_cycles(tmp_path, "purge", impl, durability, check)


@DURABILITY
def test_purge_delete_queue_and_change_visibility_are_kept(
    tmp_path: Path, impl: str, durability: str
) -> None:
    def check(broker: millpond.Broker, log: Any, lines: list[list[str]]) -> None:
        names = set(broker.list_queues())
        created, deleted, purged = _steps(lines, "C"), _steps(lines, "X"), _steps(lines, "U")
        deleting, purging = _steps(lines, "X?"), _steps(lines, "U?")
        back = deleted & names
        assert not back, f"deleted queues came back: {sorted(back)[:5]}"
        for name in created - deleting - purging:
            assert name in names, f"created queue {name} lost"
            assert len(_stored(broker, log, name)) == 10, f"{name}: messages lost"
        for name in purged - deleting:
            assert not _stored(broker, log, name), f"purged queue {name} has messages again"
        # The last visibility changes the worker made (nothing received after them): visible.
        vis = broker.queue("vis")
        last = max((i for i, p in enumerate(lines) if p[0] == "R?"), default=-1)
        shown = {p[1] for p in lines[last + 1 :] if p[0] == "V"}
        shown -= {p[1] for p in lines[last + 1 :] if p[0] == "D?"}
        if shown:
            received = {m.message_id for m in vis.receive(10, wait_seconds=0)}
            assert shown <= received, f"visibility changes lost: {shown - received}"

    _kill_cycles(tmp_path, "queues", impl, durability, check)


@DURABILITY
def test_sends_while_the_map_grows_are_kept(tmp_path: Path, impl: str, durability: str) -> None:
    def check(broker: millpond.Broker, log: Any, lines: list[list[str]]) -> None:
        stored = _stored(broker, log, "grow")
        acked = {p[2]: p[1] for p in lines if p[0] == "S"}  # id -> body
        attempted = _steps(lines, "S?")
        for message_id, body in acked.items():
            assert stored.get(message_id, "").split(".")[0] == body, f"{body} lost"
        assert {b.split(".")[0] for b in stored.values()} <= attempted

    _kill_cycles(tmp_path, "grow", impl, durability, check)


def _start_worker(scenario: str, args: list[str], err: Path) -> subprocess.Popen[bytes]:
    """Run this file as the scenario's worker; returns once it said "ready"."""
    from tests.test_durability import _wait_ready

    with open(err, "ab") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(HERE), scenario, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    _wait_ready(proc, err)
    return proc


@DURABILITY
def test_a_writer_killed_beside_another_loses_neither_ones_sends(
    tmp_path: Path, impl: str, durability: str
) -> None:
    """Two processes send to one small map (both grow it); one is killed mid-way, possibly
    holding the write lock: the other goes on, and every acknowledged send of both is kept."""
    from tests.test_durability import _drop_cut_line, check_integrity

    data_dir, log_path = str(tmp_path / "data"), tmp_path / "history.log"
    args = [data_dir, str(log_path), impl, durability]
    for cycle in range(max(1, CYCLES - 1)):  # two processes a cycle: one fewer cycle
        err = tmp_path / f"worker-{cycle}.err"
        first = _start_worker("grow", args, err)
        second = _start_worker("grow", args, err)
        time.sleep(random.uniform(0.05, 0.3))
        first.kill()
        first.communicate(timeout=30)
        time.sleep(0.3)  # the survivor goes on after the kill
        assert second.poll() is None, f"the other writer failed:\n{err.read_text()}"
        second.kill()
        second.communicate(timeout=30)
        _drop_cut_line(log_path)
        lines = [line.split(" ") for line in log_path.read_text().splitlines()]
        with millpond.open(data_dir, durability=durability, core=impl) as broker:
            stored = _stored(broker, check_integrity(broker), "grow")
        acked = {p[2]: p[1] for p in lines if p[0] == "S"}
        lost = [b for mid, b in acked.items() if stored.get(mid, "").split(".")[0] != b]
        assert not lost, f"acknowledged sends lost: {lost[:5]}"


def test_a_process_restarted_beside_a_writer_growing_the_map_opens(
    tmp_path: Path, impl: str
) -> None:
    """A process reopening the directory (say, restarted after a crash) while another one sends
    and grows the map: py-lmdb begins a transaction inside lmdb.open, which LMDB refuses with
    MDB_MAP_RESIZED when the data grew past the map size it just read. Each open must succeed."""
    data_dir, log_path = str(tmp_path / "data"), tmp_path / "history.log"
    err = tmp_path / "worker.err"
    writer = _start_worker("grow", [data_dir, str(log_path), impl, "os"], err)
    try:
        for _ in range(40):
            with millpond.open(data_dir, durability="os", core=impl, map_size=1 << 16) as broker:
                assert "grow" in broker.list_queues()
        assert writer.poll() is None, f"the writer failed:\n{err.read_text()}"
    finally:
        writer.kill()
        writer.communicate(timeout=30)


_TAKE_EVERY_READER_SLOT = """
import sys, time, lmdb
env = lmdb.open(sys.argv[1], max_dbs=12, max_readers=512)
txns = []
try:
    while True:
        txns.append(env.begin())
except lmdb.ReadersFullError:
    print("full", flush=True)
time.sleep(60)
"""


def test_a_process_killed_holding_every_reader_slot_does_not_stop_reads(
    tmp_path: Path, impl: str
) -> None:
    """LMDB's reader table outlives a killed process while another keeps the directory open:
    the dead process's slots stay taken until someone clears them (mdb_reader_check). Once they
    are all taken, every read transaction fails with MDB_READERS_FULL, so the live process must
    clear them then rather than fail its reads (and a new process could not open at all)."""
    data_dir = str(tmp_path / "data")
    with millpond.open(data_dir, durability="os", core=impl) as broker:
        broker.create_queue("q").send("kept")
        hog = subprocess.Popen(
            [sys.executable, "-c", _TAKE_EVERY_READER_SLOT, data_dir], stdout=subprocess.PIPE
        )
        assert hog.stdout is not None and hog.stdout.readline() == b"full\n"
        hog.kill()
        hog.communicate(timeout=30)
        assert broker.list_queues() == ["q"]  # a read: raised lmdb.ReadersFullError
        opened = subprocess.run(
            [
                sys.executable,
                "-c",
                "import millpond, sys; millpond.open(sys.argv[1]).close()",
                data_dir,
            ],
            capture_output=True,
            timeout=60,
        )
        assert opened.returncode == 0, opened.stderr.decode()


@pytest.mark.parametrize("durability", ["fsync", "os"])
def test_daemon_sigkilled_under_boto3_load_keeps_every_acknowledged_send(
    tmp_path: Path, durability: str
) -> None:
    pytest.importorskip("boto3")
    from botocore.config import Config

    from tests.daemon import Daemon

    data_dir = str(tmp_path / "data")
    daemon = Daemon(data_dir, durability=durability)
    config = Config(retries={"max_attempts": 0}, max_pool_connections=8)
    sqs = daemon.client(config=config)
    url = sqs.create_queue(QueueName="load")["QueueUrl"]
    fifo_url = sqs.create_queue(QueueName="load.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    acked: dict[str, tuple[str, str | None]] = {}  # message id -> (body, sequence number)
    stop = threading.Event()

    def send(thread: int) -> None:
        client = daemon.client(config=config)
        fifo = thread % 2 == 1
        target = fifo_url if fifo else url
        n = 0

        def entry(body: str) -> dict[str, str]:
            if not fifo:
                return {"MessageBody": body}
            group = f"g{thread}"
            return {"MessageBody": body, "MessageGroupId": group, "MessageDeduplicationId": body}

        try:
            while not stop.is_set():
                n += 1
                if n % 2:
                    body = f"{thread}-{n}"
                    answer = client.send_message(QueueUrl=target, **entry(body))
                    acked[answer["MessageId"]] = (body, answer.get("SequenceNumber"))
                else:
                    entries = [{"Id": str(i), **entry(f"{thread}-{n}-{i}")} for i in range(5)]
                    answer = client.send_message_batch(QueueUrl=target, Entries=entries)
                    for ok in answer.get("Successful", []):
                        body = entries[int(ok["Id"])]["MessageBody"]
                        acked[ok["MessageId"]] = (body, ok.get("SequenceNumber"))
        except Exception:  # the daemon was killed under this request
            return

    threads = [threading.Thread(target=send, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(random.uniform(0.3, 1.0))
    daemon.process.kill()
    daemon.process.wait()
    stop.set()
    for thread in threads:
        thread.join()
    daemon.stop()
    assert acked, "nothing was acknowledged before the kill"

    # The daemon restarted on the directory serves every acknowledged message.
    daemon = Daemon(data_dir, durability=durability)
    try:
        sqs = daemon.client(config=config)
        stored: dict[str, tuple[str, str | None]] = {}
        for queue_url in (url, fifo_url):
            while True:
                answer = sqs.receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=600,
                    WaitTimeSeconds=0,
                    AttributeNames=["SequenceNumber"],
                )
                if not answer.get("Messages"):
                    break
                for m in answer["Messages"]:
                    assert m["MessageId"] not in stored, "a message was delivered twice"
                    sequence = m.get("Attributes", {}).get("SequenceNumber")
                    stored[m["MessageId"]] = (m["Body"], sequence)
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    finally:
        daemon.stop()
    lost = {mid: sent for mid, sent in acked.items() if stored.get(mid) != sent}
    assert not lost, f"{len(lost)} acknowledged sends lost: {sorted(lost.items())[:5]}"


if __name__ == "__main__":
    worker(sys.argv[1:])
