"""Several processes on one data directory: what one process changes, another sees as SQS/SNS
would show it to a single process."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

import millpond
from millpond import errors
from tests.daemon import Daemon
from tests.test_multiprocess_hunt import (
    _dead_lettered,
    _let_go,
    _moved,
    _other,
    _other_stays_open,
)

# -- long polls woken across processes ------------------------------------------------------------


def _long_poll_answered_by_another_process(q, data: str) -> float:  # type: ignore[no-untyped-def]
    """Seconds a 10 s long poll on ``q`` (a daemon's queue "q", data directory ``data``) took
    to get a message that this process sent meanwhile, opening the region's directory."""
    outcome: list[object] = []

    def poll() -> None:
        started = time.monotonic()
        outcome.append([m.body for m in q.receive(1, wait_seconds=10)])
        outcome.append(time.monotonic() - started)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)  # let the daemon park the poll
    with millpond.open(os.path.join(data, "us-east-1"), durability="os") as other:
        other.queue("q").send("hello")
    poller.join(15)
    assert outcome[0] == [b"hello"]
    assert isinstance(outcome[1], float)
    return outcome[1]


@pytest.mark.parametrize("doorbell", [True, False], ids=["doorbell", "no_doorbell"])
def test_a_send_from_another_process_wakes_a_daemon_long_poll(tmp_path, doorbell):
    # The daemon waited for long polls on its event loop, woken only by the commits of its
    # own process: a message sent by another process on the same data directory (README:
    # "Long polls are woken across processes by a futex doorbell file") lay unseen until the
    # poll's wait ended, 10 s here. Without the doorbell file (no C extension, as
    # MILLPOND_NO_EXTENSIONS=1 installs, or not Linux) embedded long polls re-check every
    # 10 ms; the daemon's waited out their whole wait. no_doorbell: the daemon here cannot
    # import the extension.
    env = None
    if not doorbell:
        hide = tmp_path / "no_extension"
        hide.mkdir()
        (hide / "sitecustomize.py").write_text(
            "import sys\nsys.modules['millpond._core_c'] = None\n"
        )
        env = {"PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])}
    data = str(tmp_path / "data")
    daemon = Daemon(data, native=True, env=env)
    try:
        with millpond.connect(daemon.native_url) as client:
            waited = _long_poll_answered_by_another_process(client.create_queue("q"), data)
    finally:
        daemon.stop()
    assert waited < 3, waited  # not the 10 s wait


def test_a_queue_deleted_by_another_process_ends_a_daemon_long_poll_on_it(tmp_path):
    # The same doorbell ends a daemon's long poll on a queue another process deletes (the
    # embedded poll's case is test_multiprocess_hunt's): it answered NonExistentQueue only
    # when its wait ran out.
    data = str(tmp_path / "data")
    daemon = Daemon(data, native=True)
    outcome: list[object] = []
    try:
        with millpond.connect(daemon.native_url) as client:
            q = client.create_queue("q")

            def poll() -> None:
                started = time.monotonic()
                try:
                    q.receive(1, wait_seconds=10)
                except errors.QueueDoesNotExist as exc:
                    outcome.append(exc)
                outcome.append(time.monotonic() - started)

            poller = threading.Thread(target=poll)
            poller.start()
            time.sleep(0.3)  # let the daemon park the poll
            with millpond.open(os.path.join(data, "us-east-1"), durability="os") as other:
                other.delete_queue("q")
            poller.join(15)
    finally:
        daemon.stop()
    assert isinstance(outcome[0], errors.QueueDoesNotExist)
    assert isinstance(outcome[1], float) and outcome[1] < 3, outcome  # not the 10 s wait


# -- a held Queue object whose queue another process deleted --------------------------------------

_FIFO = {"FifoQueue": "true"}


@pytest.mark.parametrize("name", ["q", "q.fifo"])
def test_handles_of_a_queue_another_process_deleted_get_queue_does_not_exist(data_dir, impl, name):
    # Every call on a Queue object whose queue is gone raises QueueDoesNotExist (SQS:
    # NonExistentQueue for any call on a deleted queue) but delete and change_visibility: the
    # handle of the message deleted with its queue found nothing, so a delete "succeeded" (as
    # for a message deleted already) and a visibility change said the message does not exist.
    # A worker holding a message when another process deleted its queue was told its delete
    # was done.
    attributes = _FIFO if name.endswith(".fifo") else {}
    ids = {"group_id": "g", "deduplication_id": "d"} if attributes else {}
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.create_queue(name, attributes)
        q.send("x", **ids)
        (m,) = q.receive(1)
        _other(data_dir, impl, f"b.delete_queue({name!r})")
        with pytest.raises(errors.QueueDoesNotExist):
            q.delete(m.receipt_handle)
        with pytest.raises(errors.QueueDoesNotExist):
            q.delete_entries([m.receipt_handle])  # the wire's DeleteMessageBatch
        with pytest.raises(errors.QueueDoesNotExist):
            q.change_visibility(m.receipt_handle, 0)
        with pytest.raises(errors.QueueDoesNotExist):
            q.change_visibility_entries([(m.receipt_handle, 0)])


@pytest.mark.parametrize("name", ["q", "q.fifo"])
def test_deleting_a_message_twice_still_succeeds(broker, name):
    # The check above is made only for a handle that found nothing on a queue that is gone: a
    # message deleted already is still deleted "again" without an error, as SQS does.
    attributes = _FIFO if name.endswith(".fifo") else {}
    ids = {"group_id": "g", "deduplication_id": "d"} if attributes else {}
    q = broker.create_queue(name, attributes)
    q.send("x", **ids)
    (m,) = q.receive(1)
    q.delete(m.receipt_handle)
    q.delete(m.receipt_handle)
    assert q.delete_entries([m.receipt_handle]) == [None]


# -- a topic another process deleted ---------------------------------------------------------------


def test_a_topic_another_process_deleted_is_not_found_here(data_dir, impl):
    # broker.topic() returned this process's object of the topic for as long as the process
    # lived after another process deleted the topic (only a delete made here dropped it),
    # while the process that deleted it got TopicNotFound: "the existing topic" was a lie
    # here, forever (queues are looked up again within a second).
    with millpond.open(data_dir, durability="os", core=impl) as b:
        b.create_topic("t")
        assert b.topic("t").name == "t"
        _other(data_dir, impl, "b.delete_topic('t')")
        with pytest.raises(errors.TopicNotFound):
            b.topic("t")
        with pytest.raises(errors.TopicNotFound):
            b.topic(b.arn("sns", "t"))
        _other(data_dir, impl, "b.create_topic('t')")  # created again: found again
        assert b.topic("t").name == "t"


# -- queue attributes another process changed, at this process's next call -------------------------


def test_a_batch_of_bodies_uses_attributes_another_process_changed(data_dir, impl, monkeypatch):
    # send_batch of plain bodies (its fast path) took DelaySeconds and MaximumMessageSize
    # from this process's copy of the queue before Queue._write looked for other processes'
    # changes: however long ago another process changed them, the first batch after went out
    # undelayed, or was taken over the new size limit.
    monkeypatch.setattr(millpond.broker, "REFRESH_INTERVAL_S", 0.0)
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.create_queue("q")
        _other(data_dir, impl, "b.queue('q').set_attributes({'DelaySeconds': 600})")
        q.send_batch([b"x", b"y"])
        assert q.get_attributes()["ApproximateNumberOfMessagesDelayed"] == "2"
        _other(data_dir, impl, "b.queue('q').set_attributes({'MaximumMessageSize': 1024})")
        with pytest.raises(errors.MessageTooLong):
            q.send_batch([b"z" * 2000])
        assert q.get_attributes()["ApproximateNumberOfMessagesDelayed"] == "2"


def test_counts_use_the_retention_another_process_set(data_dir, impl, monkeypatch):
    # get_attributes counted with the MessageRetentionPeriod of this process's copy (read
    # before its write looked for changes): a message past the retention another process set
    # was still counted.
    monkeypatch.setattr(millpond.broker, "REFRESH_INTERVAL_S", 0.0)
    clock = millpond.ManualClock(now_ms=int(time.time() * 1000))
    with millpond.open(data_dir, durability="os", core=impl, clock=clock) as b:
        q = b.create_queue("q")
        q.send("x")
        clock.advance(120)
        _other(data_dir, impl, "b.queue('q').set_attributes({'MessageRetentionPeriod': 60})")
        assert q.get_attributes()["ApproximateNumberOfMessages"] == "0"


def test_a_fifo_throughput_change_is_checked_against_the_stored_attributes(
    data_dir, impl, monkeypatch
):
    # set_attributes checked "perMessageGroupId only with DeduplicationScope messageGroup"
    # against this process's copy of the attributes, then merged the change into the stored
    # ones: after another process turned high throughput on, DeduplicationScope=queue passed
    # the check here and stored the combination SQS refuses. (A change made within this
    # process's refresh interval: the interval is stretched so that the test does not race it;
    # without any interval the check read the stale copy all the same.)
    monkeypatch.setattr(millpond.broker, "REFRESH_INTERVAL_S", 3600.0)
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.create_queue("q.fifo", _FIFO)
        _other(
            data_dir,
            impl,
            "b.queue('q.fifo').set_attributes({'DeduplicationScope': 'messageGroup', "
            "'FifoThroughputLimit': 'perMessageGroupId'})",
        )
        with pytest.raises(errors.InvalidAttributeValue, match="perMessageGroupId"):
            q.set_attributes({"DeduplicationScope": "queue"})
    with millpond.open(data_dir, durability="os", core=impl) as b:
        stored = b.queue("q.fifo").get_attributes()
    assert (stored["DeduplicationScope"], stored["FifoThroughputLimit"]) == (
        "messageGroup",
        "perMessageGroupId",
    )


# -- message move tasks ---------------------------------------------------------------------------


def test_a_move_task_goes_on_at_once_when_its_process_closes(data_dir, impl, monkeypatch):
    # A process that closes gives up its tasks' leases "so that another process goes on at
    # once", but the other process slept until the lease it had seen would have run out (10 s
    # after the last step): a rate-limited redrive stood still for up to 10 s whenever the
    # process running it closed (a worker restarted), with another one open all along.
    monkeypatch.setattr(millpond.broker, "REFRESH_INTERVAL_S", 0.0)
    with millpond.open(data_dir, durability="os", core=impl) as b:
        dlq = _dead_lettered(b, 100)
        child = _other_stays_open(
            data_dir,
            impl,
            "b.start_message_move_task(b.queue('dlq').arn, max_messages_per_second=20)",
        )
        b.queue("src")  # this process learns of the task: it waits on the lease from now on
        time.sleep(0.3)
        _let_go(child)  # closes its broker: the lease is given up
        before, closed_at = _moved(b, dlq), time.monotonic()
        while _moved(b, dlq) == before:
            assert time.monotonic() - closed_at < 5, "the task stood still after its process closed"
            time.sleep(0.05)


# -- the queue's access policy, changed by several clients at once -------------------------------


def test_concurrent_add_permissions_all_stay(tmp_path):
    # AddPermission read the Policy from the daemon's copy of the queue and wrote it back whole
    # with the new statement: of several clients (processes) adding permissions at once, each
    # answered 200 but most statements were lost, overwritten by a write built on a policy
    # without them (22 of 40 in a trial). RemovePermission had the same read-then-write.
    daemon = Daemon(str(tmp_path / "data"))
    try:
        sqs = daemon.client()
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        labels = [f"grant{i}" for i in range(8)]
        clients = [daemon.client() for _ in labels]
        start = threading.Barrier(len(labels))

        def change(client, label: str, verb: str) -> None:  # type: ignore[no-untyped-def]
            start.wait(10)
            if verb == "add":
                client.add_permission(
                    QueueUrl=url,
                    Label=label,
                    AWSAccountIds=["111122223333"],
                    Actions=["SendMessage"],
                )
            else:
                client.remove_permission(QueueUrl=url, Label=label)

        def all_at_once(verb: str) -> set[str]:
            threads = [
                threading.Thread(target=change, args=(client, label, verb))
                for client, label in zip(clients, labels)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
            policy = attributes["Attributes"].get("Policy")
            return {s["Sid"] for s in json.loads(policy)["Statement"]} if policy else set()

        assert all_at_once("add") == set(labels)
        assert all_at_once("remove") == set()
    finally:
        daemon.stop()


def test_the_doorbell_watcher_sleeps_until_a_ring(tmp_path):
    # A daemon's parked long polls learn of other processes' sends from one watcher thread.
    # It must not poll (issue: "never busy-polls"): with polls parked and nothing sent it
    # sleeps in a futex wait on the directory's doorbell; a ring (here from a second mapping
    # of the same file, as another process has) wakes the poll at once.
    import asyncio

    from millpond.server.context import Notifier
    from millpond.wakeups import Wakeups

    mine, theirs = Wakeups(str(tmp_path)), Wakeups(str(tmp_path))
    if not mine.cross_process:
        pytest.skip("no doorbell file here (not Linux, or no C extension)")
    checks = []
    generation = mine.generation(7)

    def rung() -> bool:
        checks.append(time.monotonic())
        return mine.generation(7) != generation

    async def main() -> float:
        notifier = Notifier(asyncio.get_running_loop())
        poll = asyncio.ensure_future(notifier.wait(1, 7, 10.0, rung, mine))
        await asyncio.sleep(0.5)  # parked, nothing sent
        quiet = len(checks)
        rang = time.monotonic()
        theirs.notify(7)
        await poll
        assert quiet <= 3, f"{quiet} checks in 0.5 s without a ring"
        return time.monotonic() - rang

    assert asyncio.run(main()) < 0.5
    mine.close()
    theirs.close()
