"""Scale, limits and leaks: what a long-running broker sees after days of churn.

Each test cycles an operation (create/delete, subscribe/unsubscribe, move tasks, ...) and
asserts that what the broker keeps in memory and in LMDB does not grow with the number of
cycles: zero or bounded growth, never timings.
"""

from __future__ import annotations

import threading

import lmdb
import pytest

import millpond
import millpond.errors
import millpond.wakeups

from .test_dead_letters import redrive, wait_for


def _stored_move_tasks(broker: millpond.Broker) -> list[dict[str, object]]:
    tasks: list[dict[str, object]] = broker._storage.read(broker._move_tasks._tasks)
    return tasks


def _redrive_once(broker: millpond.Broker, dlq: millpond.Queue, source: millpond.Queue) -> None:
    """Dead-letter one message of ``source``, move it back with a move task, delete it."""
    source.send("x")
    assert source.receive(1, visibility_timeout=0)
    assert source.receive(1) == []  # the second receive moved it to the dead-letter queue
    broker.start_message_move_task(dlq.arn)
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "COMPLETED")
    (back,) = source.receive(1)
    source.delete(back.receipt_handle)


# -- message move tasks ---------------------------------------------------------------------------


def test_finished_move_tasks_leave_no_thread_or_event_behind(broker):
    # A daemon that redrives a dead-letter queue now and then, for days: each task's thread
    # and wake-up event used to stay in MoveTasks' dicts after the task ended.
    dlq = broker.create_queue("dlq")
    source = broker.create_queue("source", redrive(dlq, 1))
    tasks = broker._move_tasks
    for _ in range(20):
        _redrive_once(broker, dlq, source)
        wait_for(lambda: not any(t.is_alive() for t in list(tasks._threads.values())))
    wait_for(lambda: not tasks._threads and not tasks._wakes, timeout=2)


def test_a_deleted_queue_takes_its_move_task_records_with_it(broker):
    # Task records were kept for good after their source queue was deleted (every start,
    # list and definitions refresh reads all of them), and a new queue of the same name
    # listed the deleted queue's tasks as its own.
    for i in range(15):
        dlq = broker.create_queue(f"dlq{i}")
        source = broker.create_queue(f"source{i}", redrive(dlq, 1))
        _redrive_once(broker, dlq, source)
        broker.delete_queue(source.name)
        broker.delete_queue(dlq.name)
    assert _stored_move_tasks(broker) == []
    dlq = broker.create_queue("dlq0")
    broker.create_queue("source0", redrive(dlq, 1))
    assert broker.list_message_move_tasks(dlq.arn, 10) == []


def test_a_deleted_destination_keeps_the_task_record_of_the_source(broker):
    # Only the tasks OF the deleted queue go: a task that moved messages INTO it belongs to
    # its source, which still lists it (FAILED or COMPLETED, as it ended).
    dlq = broker.create_queue("dlq")
    source = broker.create_queue("source", redrive(dlq, 1))
    _redrive_once(broker, dlq, source)
    broker.delete_queue("source")
    (task,) = broker.list_message_move_tasks(dlq.arn, 10)
    assert task["Status"] == "COMPLETED"


# -- queue create/delete churn -------------------------------------------------------------------


def _meta_entries(broker: millpond.Broker) -> int:
    meta = broker._storage.tables.meta
    entries: int = broker._storage.read(lambda txn: txn.stat(meta)["entries"])
    return entries


def test_deleting_a_queue_that_never_dead_lettered_leaves_nothing_in_storage(broker):
    # Temporary queues (one per request or per client, created and deleted all day): each
    # deleted queue left its id -> name record in meta for good. Only a queue that may have
    # dead-lettered messages needs it, to name itself in their DeadLetterQueueSourceArn.
    broker.create_queue("first")
    broker.delete_queue("first")
    before = _meta_entries(broker)
    for i in range(40):
        queue = broker.create_queue(f"temp-{i}")
        queue.send("x")
        fifo = broker.create_queue(f"temp-{i}.fifo", {"FifoQueue": "true"})
        fifo.send("x", group_id="g", deduplication_id="d")
        broker.delete_queue(queue.name)
        broker.delete_queue(fifo.name)
    assert _meta_entries(broker) == before


def test_a_deleted_source_still_names_itself_on_its_dead_letters(broker):
    dlq = broker.create_queue("dlq")
    from_start = broker.create_queue("from-start", redrive(dlq, 1))
    later = broker.create_queue("later")
    later.set_attributes(redrive(dlq, 1))
    for source in (from_start, later):
        source.send(source.name)
        assert source.receive(1, visibility_timeout=0)
        assert source.receive(1) == []  # moved to the dead-letter queue
    later.set_attributes({"RedrivePolicy": ""})  # its dead letters still came from it
    arns = {from_start.arn, later.arn}
    broker.delete_queue("from-start")
    broker.delete_queue("later")
    got = dlq.receive(10)
    assert {m.dead_letter_source_arn for m in got} == arns


# -- topics and subscriptions ---------------------------------------------------------------------


def _kept_per_subscription(broker: millpond.Broker) -> int:
    topics = broker._topics
    return len(topics._policies) + len(topics.undelivered) + len(topics._reported)


def test_unsubscribe_forgets_the_subscriptions_undelivered_count(broker):
    # Subscriptions whose queue went away (their messages counted undelivered, the reason
    # logged once) used to stay in Topics.undelivered and ._reported after Unsubscribe: one
    # entry each per subscription ever made, for the broker's lifetime.
    topic = broker.create_topic("t")
    for i in range(30):
        queue = broker.create_queue(f"q{i}")
        sub = topic.subscribe(queue, filter_policy={"k": ["v"]})
        broker.delete_queue(queue.name)
        topic.publish("m", attributes={"k": {"DataType": "String", "StringValue": "v"}})
        assert sub.undelivered == 1
        sub.unsubscribe()
    assert _kept_per_subscription(broker) == 0


def test_delete_topic_forgets_its_subscriptions_undelivered_counts(broker):
    for i in range(30):
        topic = broker.create_topic(f"t{i}")
        queue = broker.create_queue(f"q{i}")
        topic.subscribe(queue, filter_policy={"k": ["v"]})
        broker.delete_queue(queue.name)
        topic.publish("m", attributes={"k": {"DataType": "String", "StringValue": "v"}})
        broker.delete_topic(topic.name)
    assert _kept_per_subscription(broker) == 0


# -- the manual clock -----------------------------------------------------------------------------


def test_a_closed_broker_lets_go_of_its_manual_clock(data_dir, clock):
    # One ManualClock for a whole test session, a broker opened and closed per test: each
    # closed broker's wake-ups stayed registered on the clock (kept alive, and called at every
    # advance).
    for _ in range(20):
        millpond.open(data_dir, durability="os", clock=clock).close()
    assert clock._callbacks == []
    with millpond.open(data_dir, durability="os", clock=clock) as broker:
        assert len(clock._callbacks) == 1
        queue = broker.create_queue("q")
        queue.send("x", delay_seconds=5)
        clock.advance(5)
        assert [m.text for m in queue.receive(1)] == ["x"]


def test_a_directory_refused_at_open_lets_go_of_the_manual_clock(tmp_path, clock):
    (tmp_path / "data").mkdir()
    millpond.open(str(tmp_path / "data"), durability="os").close()
    env = lmdb.open(str(tmp_path / "data"), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(b"env", b"not an identity")
    env.close()
    with pytest.raises(millpond.errors.IncompatibleDataFormat):
        millpond.open(str(tmp_path / "data"), durability="os", clock=clock)
    assert clock._callbacks == []


# -- long-poll wake-ups without the doorbell (no C extension, or not Linux) ----------------------


def test_deleted_queues_leave_no_wakeup_generation_without_the_doorbell(
    data_dir, clock, impl, monkeypatch
):
    # Without the futex doorbell, Wakeups counts a generation per queue id in a dict: every
    # deleted queue (notified at its delete) and every long-polled one stayed there for good,
    # and each ManualClock advance walked them all.
    monkeypatch.setattr(millpond.wakeups, "_doorbell_class", lambda: None)
    with millpond.open(data_dir, durability="os", clock=clock, core=impl) as broker:
        assert not broker._wakeups.cross_process
        wakeups = broker._wakeups
        for i in range(10):
            queue = broker.create_queue(f"q{i}")
            outcome: list[BaseException] = []
            poll = threading.Thread(target=_long_poll, args=(queue, outcome))
            poll.start()
            wait_for(lambda queue_id=queue.queue_id: queue_id in wakeups._generations)  # waits
            broker.delete_queue(queue.name)
            poll.join(5)
            assert isinstance(outcome[0], millpond.errors.QueueDoesNotExist)
        assert wakeups._generations == {}


def _long_poll(queue: millpond.Queue, outcome: list[BaseException]) -> None:
    try:
        queue.receive(1, wait_seconds=20)
    except BaseException as exc:  # noqa: BLE001 - handed to the test
        outcome.append(exc)
