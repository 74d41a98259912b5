"""Several processes sharing one data directory: what crosses process boundaries.

The other process is a small script run with ``subprocess`` (a fresh interpreter, nothing
inherited from this one); it opens the same data directory, does its part and exits, or waits
for a line on stdin when it must stay open meanwhile.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import millpond
import millpond.broker
import millpond.dead_letters
import millpond.storage
from millpond import errors

_PRELUDE = (
    "import sys, millpond\n"
    "b = millpond.open(sys.argv[1], durability='os', core=sys.argv[2], map_size=int(sys.argv[3]))\n"
)
_MAP_SIZE = millpond.storage.DEFAULT_MAP_SIZE


def _other(data_dir: str, impl: str, code: str, map_size: int = _MAP_SIZE) -> None:
    """Run ``code`` (with ``b``, the other process's broker) in another process, to the end."""
    done = subprocess.run(
        [sys.executable, "-c", _PRELUDE + code + "\nb.close()\n", data_dir, impl, str(map_size)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def _other_stays_open(data_dir: str, impl: str, code: str) -> subprocess.Popen[str]:
    """Start ``code`` in another process that stays open until a line comes on its stdin;
    returns once ``code`` has run (the process prints "ready")."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _PRELUDE + code + "\nprint('ready', flush=True)\nsys.stdin.readline()\nb.close()\n",
            data_dir,
            impl,
            str(_MAP_SIZE),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def _let_go(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.write("\n")
    child.stdin.close()
    assert child.wait(30) == 0


# -- topics: the subscribed queues' attributes as another process left them ---------------------


def test_a_publish_uses_queue_attributes_changed_by_another_process(data_dir, impl, monkeypatch):
    # A publish delivered with the cached DelaySeconds (and MaximumMessageSize) of the
    # subscribed queue for as long as nothing else in this process refreshed the queue
    # definitions: another process's change was never seen by a process that only publishes.
    monkeypatch.setattr(millpond.broker, "REFRESH_INTERVAL_S", 0.0)
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.create_queue("q")
        topic = b.create_topic("t")
        topic.subscribe(q, raw_message_delivery=True)
        topic.publish("before")
        _other(data_dir, impl, "b.queue('q').set_attributes({'DelaySeconds': 600})")
        topic.publish("after")
        counts = q.get_attributes()
        assert counts["ApproximateNumberOfMessages"] == "1"  # "before"
        assert counts["ApproximateNumberOfMessagesDelayed"] == "1"  # "after", by 600 s


# -- long polls -----------------------------------------------------------------------------------


def test_deleting_a_queue_in_another_process_ends_a_long_poll_on_it(data_dir, impl):
    # A long poll on a queue that another process deleted (without having looked the queue up
    # first: delete_queue by name) slept on until its wait ended, or until some process closed
    # its broker: delete_queue rang the queue's doorbell only for a queue cached in its process.
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.create_queue("q")
        outcome: list[object] = []
        polling = threading.Event()

        def poll() -> None:
            polling.set()
            started = time.monotonic()
            try:
                outcome.append(q.receive(1, wait_seconds=20))
            except errors.QueueDoesNotExist as exc:
                outcome.append(exc)
            outcome.append(time.monotonic() - started)

        poller = threading.Thread(target=poll)
        poller.start()
        assert polling.wait(10)
        time.sleep(0.1)  # let it sleep in its long poll
        child = _other_stays_open(data_dir, impl, "b.delete_queue('q')")  # deleted when it returns
        try:
            poller.join(10)
            assert not poller.is_alive(), "the long poll did not notice the queue was deleted"
        finally:
            _let_go(child)
            poller.join(30)
        assert isinstance(outcome[0], errors.QueueDoesNotExist)
        # well before its 20 s (the child's start-up is in it: bounded loosely for a loaded CI)
        assert isinstance(outcome[1], float) and outcome[1] < 12


# -- a reader killed in another process -----------------------------------------------------------


def _send_receive_delete(q: millpond.Queue, rounds: int) -> None:
    for _ in range(rounds):
        q.send_batch([b"x" * 3000] * 10)
        messages = q.receive(10)
        q.delete_batch([m.receipt_handle for m in messages])


def test_a_reader_killed_in_another_process_does_not_make_the_map_grow(data_dir, impl):
    # A process killed inside a read transaction leaves a reader slot that pins every page
    # freed after it: nothing freed could be reused, and on MapFullError the map was doubled
    # again and again (the stale slot is cleared only every 1024 commits and 60 s, or once
    # max_map_size is reached): a steady send/receive/delete load made the data file grow by
    # every byte written (~20 MB for 2,000 messages of 3 KB, 64 MB map from 256 KB).
    with millpond.open(
        data_dir, durability="os", core=impl, map_size=256 << 10, max_map_size=1 << 30
    ) as b:
        q = b.create_queue("q")
        _send_receive_delete(q, 50)
        before = b._storage.env.info()["map_size"]
        code = (
            "import lmdb, os, sys; env = lmdb.open(sys.argv[1], max_dbs=12, max_readers=512); "
            "txn = env.begin(); os.kill(os.getpid(), 9)"
        )
        killed = subprocess.run([sys.executable, "-c", code, data_dir], timeout=60)
        assert killed.returncode == -9
        _send_receive_delete(q, 100)
        assert b._storage.env.info()["map_size"] <= 2 * before
        assert q.get_attributes()["ApproximateNumberOfMessages"] == "0"


# -- a Queue object held while another process changes the queue ---------------------------------


def test_a_held_queue_uses_attributes_changed_by_another_process(data_dir, impl, monkeypatch):
    # send and receive read DelaySeconds and VisibilityTimeout before Queue._write refreshed
    # the definitions: the first call after another process's change used the old value.
    monkeypatch.setattr(millpond.broker, "REFRESH_INTERVAL_S", 0.0)
    clock = millpond.ManualClock(now_ms=int(time.time() * 1000))
    with millpond.open(data_dir, durability="os", core=impl, clock=clock) as b:
        q = b.create_queue("q")
        _other(data_dir, impl, "b.queue('q').set_attributes({'DelaySeconds': 600})")
        q.send("x")
        assert q.get_attributes()["ApproximateNumberOfMessagesDelayed"] == "1"
        _other(data_dir, impl, "b.queue('q').set_attributes({'DelaySeconds': 0})")
        q.send("y")
        _other(data_dir, impl, "b.queue('q').set_attributes({'VisibilityTimeout': 600})")
        (m,) = q.receive(1)
        assert m.body == b"y"
        clock.advance(31)
        assert q.receive(1) == []  # hidden for the new 600 s, not the old 30 s


# -- the map grown by another process -------------------------------------------------------------

_GROW = "b.queue('q').send(b'x' * (600 << 10))  # MapFull: grows the map and commits"


def test_a_read_adopts_a_map_grown_twice_by_another_process(data_dir, impl):
    # Storage.read() adopted another process's map size once and read again; when the map had
    # grown once more in between, the second MapResizedError reached the caller as a raw
    # lmdb.MapResizedError (several processes filling a small map grow it in quick
    # succession). The second growth is forced between the adoption and the retry.
    with millpond.open(data_dir, durability="os", core=impl, map_size=64 << 10) as b:
        b.create_queue("q")
        _other(data_dir, impl, _GROW, map_size=64 << 10)
        storage = b._storage
        adopt = storage._adopt_map_size

        def adopt_then_let_the_other_process_grow_again() -> None:
            adopt()
            storage._adopt_map_size = adopt  # type: ignore[method-assign]
            _other(data_dir, impl, _GROW, map_size=64 << 10)

        storage._adopt_map_size = adopt_then_let_the_other_process_grow_again  # type: ignore[method-assign]
        assert b.list_queues() == ["q"]
        assert b.queue("q").get_attributes()["ApproximateNumberOfMessages"] == "2"


# -- message move tasks: one process moves, another takes over when it is gone -------------------


def _dead_lettered(b: millpond.Broker, n: int) -> millpond.Queue:
    """A dead-letter queue holding ``n`` messages from its source queue "src"."""
    dlq = b.create_queue("dlq")
    src = b.create_queue(
        "src", {"RedrivePolicy": f'{{"deadLetterTargetArn":"{dlq.arn}","maxReceiveCount":1}}'}
    )
    for start in range(0, n, 10):
        src.send_batch([f"m{i}" for i in range(start, min(n, start + 10))])
    while src.receive(10, visibility_timeout=0):
        pass
    return dlq


def _moved(b: millpond.Broker, dlq: millpond.Queue) -> int:
    return int(b.list_message_move_tasks(dlq.arn)[0]["ApproximateNumberOfMessagesMoved"])


def test_a_rate_limited_move_task_keeps_its_rate_with_another_process_open(data_dir, impl):
    # Every process that opened the directory ran every running task: with a second process
    # open, a task at 10 messages/s moved about twice that.
    with millpond.open(data_dir, durability="os", core=impl) as b:
        dlq = _dead_lettered(b, 100)
        b.start_message_move_task(dlq.arn, max_messages_per_second=10)
        child = _other_stays_open(data_dir, impl, "pass")  # its broker resumes the task
        started = time.monotonic()
        time.sleep(2.5)
        moved, elapsed = _moved(b, dlq), time.monotonic() - started
        _let_go(child)
        # one batch of 10 at once, then 10/s (an upper bound: a slow machine only moves fewer)
        assert moved <= 10 + 10 * (elapsed + 0.5) + 10, moved


def test_a_move_task_goes_on_in_another_process_when_its_process_dies(data_dir, impl, monkeypatch):
    # A process that has the directory open while a task runs elsewhere waits on the task's
    # lease and takes over once the lease runs out unrenewed (its process was killed).
    monkeypatch.setattr(millpond.dead_letters, "LEASE_S", 1.0)
    with millpond.open(data_dir, durability="os", core=impl) as b:
        _dead_lettered(b, 20)
    child = _other_stays_open(
        data_dir,
        impl,
        "import millpond.dead_letters; millpond.dead_letters.LEASE_S = 1.0\n"
        "b.start_message_move_task(b.queue('dlq').arn, max_messages_per_second=10)",
    )
    with millpond.open(data_dir, durability="os", core=impl) as b:  # resumes the task
        dlq = b.queue("dlq")
        time.sleep(0.5)
        child.kill()  # SIGKILL: its lease is never given up, and runs out a second later
        child.wait()
        deadline = time.monotonic() + 30
        while b.list_message_move_tasks(dlq.arn)[0]["Status"] == "RUNNING":
            assert time.monotonic() < deadline, "the task was never taken over"
            time.sleep(0.1)
        assert b.list_message_move_tasks(dlq.arn)[0]["Status"] == "COMPLETED"
        assert dlq.get_attributes()["ApproximateNumberOfMessages"] == "0"
        assert b.queue("src").get_attributes()["ApproximateNumberOfMessages"] == "20"


def test_a_move_task_started_elsewhere_is_taken_over_by_a_process_opened_before_it(
    data_dir, impl, monkeypatch
):
    # A process learnt of move tasks only when it opened the directory: one that was open
    # before another process started a task never took it over, and when the starter went
    # away the task stayed RUNNING, moving nothing, until some process opened the directory.
    monkeypatch.setattr(millpond.dead_letters, "LEASE_S", 1.0)
    monkeypatch.setattr(millpond.broker, "REFRESH_INTERVAL_S", 0.0)
    with millpond.open(data_dir, durability="os", core=impl) as b:
        dlq = _dead_lettered(b, 20)
        child = _other_stays_open(
            data_dir,
            impl,
            "import millpond.dead_letters; millpond.dead_letters.LEASE_S = 1.0\n"
            "b.start_message_move_task(b.queue('dlq').arn, max_messages_per_second=10)",
        )
        b.queue("src")  # this process goes on using the directory
        child.kill()  # its lease runs out a second later, unrenewed
        child.wait()
        deadline = time.monotonic() + 30
        while b.list_message_move_tasks(dlq.arn)[0]["Status"] == "RUNNING":
            assert time.monotonic() < deadline, "the task was never taken over"
            b.queue("src")
            time.sleep(0.1)
        assert b.list_message_move_tasks(dlq.arn)[0]["Status"] == "COMPLETED"
        assert b.queue("src").get_attributes()["ApproximateNumberOfMessages"] == "20"
