"""The embedded broker under threads: races a user of a thread pool would hit.

Real threads for the races, bounded joins (no test may hang), a ManualClock where time matters.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import millpond
from millpond import errors

FIFO = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}


class Call(threading.Thread):
    """Runs ``fn`` in its own thread; keeps its result or exception and how long it took."""

    def __init__(self, fn: Any) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        started = time.monotonic()
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc
        self.seconds = time.monotonic() - started

    def outcome(self, timeout: float = 10) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "the call did not return"
        if self.error is not None:
            raise self.error
        return self.result


# -- delete_queue while other threads use the queue ---------------------------------------------


@pytest.mark.parametrize("attributes", [{}, FIFO], ids=["standard", "fifo"])
def test_delete_queue_ends_long_polls_with_queue_does_not_exist(broker, attributes):
    # broker.delete_queue promises that long polls on the queue end with QueueDoesNotExist;
    # a FIFO receive found no messages in a deleted queue instead, so its long poll slept its
    # whole wait and then answered an empty list, as if the queue were still there.
    name = "jobs.fifo" if attributes else "jobs"
    queue = broker.create_queue(name, attributes)
    polls = [Call(lambda: queue.receive(10, wait_seconds=20)) for _ in range(3)]
    for poll in polls:
        poll.start()
    time.sleep(0.2)  # let them block first
    broker.delete_queue(name)
    for poll in polls:
        with pytest.raises(errors.QueueDoesNotExist):
            poll.outcome()
        assert poll.seconds < 5
    with pytest.raises(errors.QueueDoesNotExist):
        queue.receive(10)  # a short poll too


# -- many consumer threads -----------------------------------------------------------------------


def test_one_send_per_message_wakes_as_many_long_polls_as_there_are_messages(broker):
    # Six threads long-poll one queue; two sends: two polls return at once, one message each,
    # and the other four keep waiting (closing the broker ends them with BrokerClosed).
    queue = broker.create_queue("jobs")
    polls = [Call(lambda: queue.receive(1, wait_seconds=20)) for _ in range(6)]
    for poll in polls:
        poll.start()
    time.sleep(0.2)  # let them block first
    queue.send("one")
    queue.send("two")
    deadline = time.monotonic() + 5
    while sum(not poll.is_alive() for poll in polls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # a third poll returning (empty, or with a message twice) would show now
    returned = [poll for poll in polls if not poll.is_alive()]
    assert sorted(m.text for poll in returned for m in poll.outcome()) == ["one", "two"]
    assert all(len(poll.outcome()) == 1 for poll in returned)
    broker.close()
    for poll in polls:
        if poll not in returned:
            with pytest.raises(errors.BrokerClosed):
                poll.outcome()


def test_fifo_consumer_threads_never_share_a_group_and_keep_its_order(broker):
    # Four threads receive (batches of up to 3), then delete, from 4 groups of 30 messages. A
    # group is marked held between its receive and the delete; the visibility (60 s on a
    # ManualClock that never moves) cannot run out, so no other thread may get the group then.
    queue = broker.create_queue("jobs.fifo", FIFO)
    for i in range(30):
        queue.send_batch([{"body": f"{g}:{i}", "group_id": f"g{g}"} for g in range(4)])
    lock = threading.Lock()
    held: dict[str, int] = {}
    delivered: dict[str, list[int]] = {f"{g}": [] for g in range(4)}
    shared: list[tuple[str, int, int]] = []

    def consume(me: int) -> None:
        while True:
            messages = queue.receive(3, visibility_timeout=60)
            if not messages:
                with lock:
                    if sum(map(len, delivered.values())) == 120:
                        return
                time.sleep(0.001)
                continue
            with lock:
                for m in messages:
                    group, number = m.text.split(":")
                    if held.setdefault(group, me) != me:
                        shared.append((group, me, held[group]))
                    delivered[group].append(int(number))
                for m in messages:  # released before the delete unblocks the group
                    held.pop(m.text.split(":")[0], None)
            queue.delete_batch([m.receipt_handle for m in messages])

    consumers = [Call(lambda me=me: consume(me)) for me in range(4)]
    for consumer in consumers:
        consumer.start()
    for consumer in consumers:
        consumer.outcome(30)
    assert shared == []
    assert delivered == {f"{g}": list(range(30)) for g in range(4)}
    counts = queue.get_attributes()
    assert counts["ApproximateNumberOfMessages"] == "0"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "0"


# -- broker.close() ------------------------------------------------------------------------------


class _EnvClosedDuringFirstSync:
    """The broker's LMDB environment, except that the first sync() waits (at most 0.5 s) until
    close() is called from elsewhere: another closer, if two close at once."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self._synced = False
        self._closed = threading.Event()

    def sync(self, force: bool = False) -> None:
        if not self._synced:
            self._synced = True
            self._closed.wait(0.5)
        self._env.sync(force)

    def close(self) -> None:
        self._env.close()
        self._closed.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


def test_close_from_two_threads_at_once_returns_in_both(data_dir, clock, impl, monkeypatch):
    # A shutdown path and a ``with`` block (or two workers) may close the same broker at once.
    # Both waited for the commit in flight, then both flushed and closed the environment: the
    # one that came second flushed a closed environment and raised lmdb.Error from close().
    broker = millpond.open(data_dir, durability="os", clock=clock, core=impl)
    storage = broker._storage
    monkeypatch.setattr(storage, "env", _EnvClosedDuringFirstSync(storage.env))
    entered, release = threading.Event(), threading.Event()

    def hold(txn: Any, now_ms: int) -> str:
        entered.set()
        assert release.wait(10)
        return "held"

    holder = Call(lambda: storage.write(hold))
    holder.start()
    assert entered.wait(10)
    closers = [Call(broker.close) for _ in range(2)]
    for closer in closers:
        closer.start()
    time.sleep(0.1)  # both wait for the commit in flight
    release.set()
    assert holder.outcome() == "held"
    for closer in closers:
        closer.outcome()
    with pytest.raises(errors.BrokerClosed):
        broker.queue("q")


def test_close_waits_for_a_read_in_flight_and_later_reads_raise_broker_closed(
    data_dir, clock, impl
):
    # Reads (broker.queue, list_queues, list_dead_letter_source_queues, tags, the refresh of
    # definitions every write does) run in a read transaction of their own. close() waited for
    # the commit in flight but not for them: it closed the environment under an open read,
    # which then failed with a raw lmdb.Error instead of finishing (or raising BrokerClosed).
    broker = millpond.open(data_dir, durability="os", clock=clock, core=impl)
    broker.create_queue("jobs")
    storage = broker._storage
    inside, release = threading.Event(), threading.Event()

    def slow_list(txn: Any) -> list[str]:
        inside.set()
        assert release.wait(10)
        return [key.decode() for key, _ in txn.cursor(db=storage.tables.meta)]

    reader = Call(lambda: storage.read(slow_list))
    reader.start()
    assert inside.wait(10)
    closer = Call(broker.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "close() returned while a read was in flight"
    release.set()
    assert "q:jobs" in reader.outcome()
    closer.outcome()
    with pytest.raises(errors.BrokerClosed):
        broker.list_queues()


def test_a_read_racing_close_raises_broker_closed(data_dir, clock, impl, monkeypatch):
    """A read that passed the closed-check just before close() ran must not reach LMDB."""
    broker = millpond.open(data_dir, durability="os", clock=clock, core=impl)
    storage = broker._storage
    checked, resume = threading.Event(), threading.Event()
    check_usable = storage._check_usable

    def check_then_pause() -> None:
        check_usable()
        if threading.current_thread().name == "racing-read":
            checked.set()  # preempted right after the check...
            assert resume.wait(10)

    monkeypatch.setattr(storage, "_check_usable", check_then_pause)
    read = Call(broker.list_queues)
    read.name = "racing-read"
    read.start()
    assert checked.wait(10)
    broker.close()  # ...while another thread closes the broker
    resume.set()
    with pytest.raises(errors.BrokerClosed):
        read.outcome()


def test_a_send_committed_as_the_broker_closes_does_not_fail_on_its_wake_up(broker):
    # close() lets go of the doorbell while a send that has just committed is still to ring
    # it: that send raised ValueError("the doorbell is closed") for a message it had stored
    # (a caller would resend it: a duplicate). Here the doorbell is closed under the send's
    # check that it is open, as in that window.
    q = broker.create_queue("q")
    bell = broker._wakeups._bell
    if bell is None:
        pytest.skip("no doorbell here (not Linux, or no C core)")
    bell.close()
    q.send("committed")
    assert [m.text for m in q.receive(1)] == ["committed"]


def test_concurrent_attribute_changes_leave_the_cached_attributes_as_stored(tmp_path):
    # Each change is read from and written to the store in its own transaction, in some order;
    # the process's copy was then set by each caller after its commit, in another order, so
    # it could end on an older definition than the stored one (a Policy statement missing
    # from GetQueueAttributes, say, though stored) until another process changed the queue.
    with millpond.open(str(tmp_path), durability="os") as broker:
        queue = broker.create_queue("q")
        for round_ in range(30):
            values = [str(100 + round_ * 10 + i) for i in range(8)]
            start = threading.Barrier(len(values))

            def change(value: str, start: threading.Barrier) -> None:
                start.wait(10)
                queue.set_attributes({"VisibilityTimeout": value})

            threads = [threading.Thread(target=change, args=(v, start)) for v in values]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            stored = broker._storage.read(lambda txn: broker._definition_in(txn, "q"))
            assert (
                queue.get_attributes()["VisibilityTimeout"]
                == (stored["attributes"]["VisibilityTimeout"])
            ), f"round {round_}"
