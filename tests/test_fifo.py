"""FIFO queues: group order and locking, de-duplication, FIFO receipt-handle rules, FIFO DLQs."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

import millpond
from millpond import errors

from .test_dead_letters import wait_for


@pytest.fixture
def fq(broker: millpond.Broker) -> millpond.Queue:
    return broker.create_queue("jobs.fifo", {"FifoQueue": "true"})


def send(q, body, group="g", dedup=None):  # type: ignore[no-untyped-def]
    return q.send(body, group_id=group, deduplication_id=dedup or body)


def texts(messages) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.text for m in messages]


# -- creating ----------------------------------------------------------------------------------


def test_fifo_queue_attributes_and_naming_rules(broker):
    q = broker.create_queue("a.fifo", {"FifoQueue": True, "ContentBasedDeduplication": "true"})
    attrs = q.get_attributes()
    assert attrs["FifoQueue"] == "true" and attrs["ContentBasedDeduplication"] == "true"
    assert attrs["DeduplicationScope"] == "queue" and attrs["FifoThroughputLimit"] == "perQueue"
    assert broker.create_queue("a.fifo", {"FifoQueue": "true"}) is q
    with pytest.raises(errors.InvalidParameterValue, match="must end with .fifo"):
        broker.create_queue("b", {"FifoQueue": "true"})
    with pytest.raises(errors.InvalidParameterValue, match="FifoQueue=true"):
        broker.create_queue("c.fifo")
    with pytest.raises(errors.InvalidAttributeName, match="only when FifoQueue"):
        broker.create_queue("d", {"DeduplicationScope": "queue"})
    with pytest.raises(errors.InvalidAttributeValue, match="perMessageGroupId"):
        broker.create_queue(
            "e.fifo", {"FifoQueue": "true", "FifoThroughputLimit": "perMessageGroupId"}
        )
    high = broker.create_queue(
        "f.fifo",
        {
            "FifoQueue": "true",
            "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId",
        },
    )
    assert high.get_attributes()["FifoThroughputLimit"] == "perMessageGroupId"
    with pytest.raises(errors.InvalidAttributeValue, match="Modifying queue type"):
        q.set_attributes({"FifoQueue": "false"})
    # AWS-validated: test_set_unsupported_attribute_fifo (FifoQueue=true on a FIFO queue is a no-op)
    q.set_attributes({"FifoQueue": "true"})
    assert q.get_attributes()["FifoQueue"] == "true"
    with pytest.raises(errors.InvalidAttributeValue, match="DeduplicationScope"):
        q.set_attributes({"DeduplicationScope": "topic"})


def test_required_and_refused_parameters(fq, broker):
    with pytest.raises(errors.MissingParameter, match="MessageGroupId"):
        fq.send("x", deduplication_id="1")
    with pytest.raises(errors.InvalidParameterValue, match="ContentBasedDeduplication"):
        fq.send("x", group_id="g")
    with pytest.raises(errors.InvalidParameterValue, match="not valid for this queue type"):
        fq.send("x", group_id="g", deduplication_id="1", delay_seconds=5)
    with pytest.raises(errors.InvalidParameterValue, match="MessageGroupId can only include"):
        fq.send("x", group_id="has space", deduplication_id="1")
    with pytest.raises(errors.InvalidParameterValue, match="MessageDeduplicationId"):
        fq.send("x", group_id="g", deduplication_id="x" * 129)
    fq.send("x", group_id="g", deduplication_id="1", delay_seconds=0)
    standard = broker.create_queue("standard")
    with pytest.raises(errors.InvalidParameterValue, match="not valid for this queue type"):
        standard.send("x", deduplication_id="1")
    standard.send("tenant message", group_id="tenant-7")  # fair queues
    (m,) = standard.receive()
    assert m.group_id == "tenant-7" and m.sequence_number is None


# -- order and groups ----------------------------------------------------------------------------


def test_strict_order_within_a_group_and_group_locking(fq, clock):
    for i in range(5):
        send(fq, f"a{i}", "A")
    for i in range(3):
        send(fq, f"b{i}", "B")
    first = fq.receive(2)
    assert texts(first) == ["a0", "a1"]
    # A is locked while a0/a1 are in flight; B flows.
    assert texts(fq.receive(10)) == ["b0", "b1", "b2"]
    assert fq.receive(10) == []
    for m in first:
        fq.delete(m.receipt_handle)
    rest = fq.receive(10)
    assert texts(rest) == ["a2", "a3", "a4"]
    assert [m.group_id for m in rest] == ["A"] * 3
    seqs = [int(m.sequence_number) for m in first + rest]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


def test_a_receive_fills_from_one_group_first_then_others(fq):
    for g in "XYZ":
        for i in range(4):
            send(fq, f"{g}{i}", g)
    got = texts(fq.receive(10))
    assert got[:4] == ["X0", "X1", "X2", "X3"]
    assert got[4:8] == ["Y0", "Y1", "Y2", "Y3"]
    assert got[8:] == ["Z0", "Z1"]


def test_visibility_expiry_redelivers_in_order(fq, clock):
    for i in range(3):
        send(fq, f"m{i}")
    assert texts(fq.receive(2, visibility_timeout=10)) == ["m0", "m1"]
    clock.advance(10)
    again = fq.receive(10)
    assert texts(again) == ["m0", "m1", "m2"]
    assert [m.receive_count for m in again] == [2, 2, 1]


def test_messages_before_a_still_hidden_one_are_receivable(fq, clock):
    for i in range(3):
        send(fq, f"m{i}")
    m0, m1, m2 = fq.receive(3)
    fq.change_visibility(m0.receipt_handle, 0)  # m0 back; m1 and m2 still in flight
    assert texts(fq.receive(10)) == ["m0"]
    send(fq, "m3")  # new messages do not unlock the group
    assert fq.receive(10) == []


def test_delay_applies_per_queue_and_blocks_the_group_in_order(broker, clock):
    q = broker.create_queue("d.fifo", {"FifoQueue": "true", "DelaySeconds": 5})
    send(q, "first")
    clock.advance(3)
    send(q, "second")
    assert q.receive(10) == []
    clock.advance(2)
    assert texts(q.receive(10)) == ["first"]


# -- de-duplication --------------------------------------------------------------------------------


def test_deduplication_window_survives_delete(fq, clock):
    original = fq.send("one", group_id="g", deduplication_id="d1")
    assert fq.send("one again", group_id="g", deduplication_id="d1") == original
    (m,) = fq.receive(10)
    assert m.text == "one" and m.deduplication_id == "d1"
    fq.delete(m.receipt_handle)
    clock.advance(299)
    assert fq.send("still a duplicate", group_id="g", deduplication_id="d1") == original
    assert fq.receive(10) == []
    clock.advance(1)
    fresh = fq.send("new", group_id="g", deduplication_id="d1")
    assert fresh != original and texts(fq.receive(10)) == ["new"]


def test_content_based_deduplication_and_batches(broker):
    q = broker.create_queue("c.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    ids = q.send_batch(
        [
            {"body": "same", "group_id": "g"},
            {"body": "same", "group_id": "h"},
            {"body": "other", "group_id": "g"},
        ]
    )
    assert ids[0] == ids[1] != ids[2]
    got = q.receive(10)
    assert texts(got) == ["same", "other"]
    assert got[0].deduplication_id == __import__("hashlib").sha256(b"same").hexdigest()
    assert q.get_attributes()["ApproximateNumberOfMessagesNotVisible"] == "2"


def test_deduplication_scope_message_group(broker):
    q = broker.create_queue("s.fifo", {"FifoQueue": "true", "DeduplicationScope": "messageGroup"})
    a = q.send("a", group_id="g1", deduplication_id="same")
    b = q.send("b", group_id="g2", deduplication_id="same")
    assert a != b
    assert q.send("a2", group_id="g1", deduplication_id="same") == a
    assert sorted(texts(q.receive(10))) == ["a", "b"]


# -- receipt handles -----------------------------------------------------------------------------


def test_expired_fifo_handle_is_refused_unless_extended(fq, clock):
    send(fq, "m")
    (m,) = fq.receive(visibility_timeout=10)
    clock.advance(10)
    with pytest.raises(errors.InvalidParameterValue, match="receipt handle has expired"):
        fq.delete(m.receipt_handle)
    (m2,) = fq.receive(visibility_timeout=10)
    with pytest.raises(errors.InvalidParameterValue, match="receipt handle has expired"):
        fq.delete(m.receipt_handle)  # an older receive's handle
    clock.advance(5)
    fq.change_visibility(m2.receipt_handle, 30)
    clock.advance(20)
    fq.delete(m2.receipt_handle)  # inside the extended window
    fq.delete(m2.receipt_handle)  # deleting again is fine
    assert fq.get_attributes()["ApproximateNumberOfMessages"] == "0"


def test_a_refused_batch_deletes_nothing(fq, clock):
    send(fq, "a", "A")
    send(fq, "b", "B")
    (a,) = fq.receive(1, visibility_timeout=5)
    (b,) = fq.receive(1, visibility_timeout=60)
    clock.advance(6)
    with pytest.raises(errors.InvalidParameterValue, match="expired"):
        fq.delete_batch([b.receipt_handle, a.receipt_handle])
    assert fq.get_attributes()["ApproximateNumberOfMessagesNotVisible"] == "1"  # b kept
    fq.delete(b.receipt_handle)


@pytest.mark.parametrize("bad", ["garbage", "", "a.b"])
def test_forged_fifo_handles_are_invalid(fq, bad):
    send(fq, "m")
    (m,) = fq.receive()
    with pytest.raises(errors.ReceiptHandleIsInvalid):
        fq.delete(bad)
    head, _, _ = m.receipt_handle.partition(".")
    with pytest.raises(errors.ReceiptHandleIsInvalid):
        fq.delete(head + ".b3RoZXI")  # another group's key


# -- dead letters, retention, purge, restart ---------------------------------------------------


def test_fifo_dead_letter_queue_keeps_group_order(broker, clock):
    dlq = broker.create_queue("dead.fifo", {"FifoQueue": "true"})
    q = broker.create_queue(
        "work.fifo",
        {
            "FifoQueue": "true",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1}),
        },
    )
    with pytest.raises(errors.InvalidParameterValue, match="same type"):
        broker.create_queue(
            "std",
            {"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1})},
        )
    for i in range(3):
        send(q, f"m{i}")
    assert texts(q.receive(10, visibility_timeout=0)) == ["m0", "m1", "m2"]
    assert q.receive(10) == []  # all three exceeded maxReceiveCount: moved, in order
    dead = dlq.receive(10)
    assert texts(dead) == ["m0", "m1", "m2"]
    assert all(m.dead_letter_source_arn == q.arn and m.group_id == "g" for m in dead)


def test_fifo_retention_and_purge(broker, clock):
    q = broker.create_queue("r.fifo", {"FifoQueue": "true", "MessageRetentionPeriod": 60})
    send(q, "old")
    clock.advance(30)
    send(q, "young")
    clock.advance(31)
    assert texts(q.receive(10)) == ["young"]
    assert q.get_attributes()["ApproximateNumberOfMessagesNotVisible"] == "1"
    q.purge()
    assert q.get_attributes()["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert send(q, "young") != ""  # dedup id "young" is remembered after a purge: duplicate
    assert q.receive(10) == []


def test_fifo_state_survives_restart(data_dir, clock, impl):
    with millpond.open(data_dir, durability="fsync", clock=clock, core=impl) as b:
        q = b.create_queue("p.fifo", {"FifoQueue": "true"})
        ids = [send(q, f"m{i}") for i in range(4)]
        (m0,) = q.receive(1, visibility_timeout=100)
    with millpond.open(data_dir, durability="fsync", clock=clock, core=impl) as b:
        q = b.queue("p.fifo")
        assert q.receive(10) == []  # still locked by m0 in flight
        assert send(q, "m1") == ids[1]  # dedup survives
        q.delete(m0.receipt_handle)
        assert texts(q.receive(10)) == ["m1", "m2", "m3"]


def test_deleting_a_fifo_queue_clears_its_state(broker):
    q = broker.create_queue("x.fifo", {"FifoQueue": "true"})
    first = send(q, "m")
    broker.delete_queue("x.fifo")
    q2 = broker.create_queue("x.fifo", {"FifoQueue": "true"})
    assert send(q2, "m") != first  # a new queue: the old dedup ids are gone
    assert texts(q2.receive()) == ["m"]


def test_move_task_returns_fifo_dead_letters_in_group_order(broker, clock):
    import time

    dlq = broker.create_queue("dead.fifo", {"FifoQueue": "true"})
    q = broker.create_queue(
        "work.fifo",
        {
            "FifoQueue": "true",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1}),
        },
    )
    ids = set()
    for i in range(4):
        ids |= {send(q, f"a{i}", "A"), send(q, f"b{i}", "B")}
    while q.receive(10, visibility_timeout=0):
        pass
    assert dlq.get_attributes()["ApproximateNumberOfMessages"] == "8"
    broker.start_message_move_task(dlq.arn)
    deadline = time.monotonic() + 10
    while broker.list_message_move_tasks(dlq.arn)[0]["Status"] != "COMPLETED":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    got = q.receive(10)
    assert [m.text for m in got if m.group_id == "A"] == ["a0", "a1", "a2", "a3"]
    assert [m.text for m in got if m.group_id == "B"] == ["b0", "b1", "b2", "b3"]
    assert all(m.receive_count == 1 for m in got)
    # "A new messageID and enqueueTime are assigned to redriven messages" (SQS Developer Guide)
    assert len({m.message_id for m in got}) == 8 and not {m.message_id for m in got} & ids


def test_receive_request_attempt_id_returns_the_same_messages(fq, clock):
    for i in range(3):
        send(fq, f"m{i}")
    first = fq.receive(2, visibility_timeout=30, attempt_id="try-1")
    clock.advance(20)
    retry = fq.receive(2, visibility_timeout=30, attempt_id="try-1")
    assert [m.receipt_handle for m in retry] == [m.receipt_handle for m in first]
    assert [m.receive_count for m in retry] == [1, 1]  # not a new receive
    clock.advance(25)  # 45 s after the first receive, 25 s after the retry: still hidden
    assert fq.receive(10) == []
    fq.delete(retry[0].receipt_handle)
    # A message of the attempt was modified (deleted): no longer a retry, a fresh receive, and
    # m1 (still in flight) keeps its group locked.
    assert fq.receive(2, attempt_id="try-1") == []
    clock.advance(300)
    fresh = fq.receive(10, attempt_id="try-1")  # visibility over: a new receive
    assert [m.text for m in fresh] == ["m1", "m2"] and fresh[0].receive_count == 2
    with pytest.raises(errors.InvalidParameterValue, match="ReceiveRequestAttemptId"):
        fq.receive(attempt_id="has space")


# -- moves to and from FIFO dead-letter queues; batch size ------------------------------------


def test_fifo_dlq_message_survives_get_attributes_after_move(broker, clock):
    """FIFO: the enqueue timestamp resets when a message moves to the dead-letter queue, so a
    message dead-lettered a moment ago must not be expired by the DLQ's retention (AWS doc
    setting-up-dead-letter-queue-retention). (get_attributes() expires
    by the record's sent time, which must be the move's)."""
    dlq = broker.create_queue("dead.fifo", {"FifoQueue": "true", "MessageRetentionPeriod": "60"})
    q = broker.create_queue(
        "work.fifo",
        {
            "FifoQueue": "true",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1}),
        },
    )
    q.send("m0", group_id="g", deduplication_id="d0")
    assert [m.text for m in q.receive(10, visibility_timeout=0)] == ["m0"]
    clock.advance(120)  # older than the DLQ's retention, but not yet moved
    assert q.receive(10) == []  # moved to the DLQ now: its retention starts now
    assert dlq.get_attributes()["ApproximateNumberOfMessages"] == "1"
    assert [m.text for m in dlq.receive(10)] == ["m0"]


def test_fifo_redriven_message_survives_get_attributes(broker, clock):
    """A redrive (message move task) resets the retention period: redriven messages are new
    messages with a new enqueueTime (AWS doc sqs-configure-dead-letter-queue-redrive)."""
    dlq = broker.create_queue("dead.fifo", {"FifoQueue": "true"})
    q = broker.create_queue(
        "work.fifo",
        {
            "FifoQueue": "true",
            "MessageRetentionPeriod": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1}),
        },
    )
    q.send("m0", group_id="g", deduplication_id="d0")
    assert [m.text for m in q.receive(10, visibility_timeout=0)] == ["m0"]
    clock.advance(30)
    assert q.receive(10) == []  # moved to the DLQ
    clock.advance(70)  # 100 s after the send: older than the source's retention
    broker.start_message_move_task(dlq.arn)
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "COMPLETED")
    assert q.get_attributes()["ApproximateNumberOfMessages"] == "1"
    assert [m.text for m in q.receive(10)] == ["m0"]


def test_fifo_dlq_message_deduplication_id_is_the_original_message_id(broker, clock):
    """AWS doc (sqs-configure-dead-letter-queue-redrive): "When a message is moved from a FIFO
    queue to a FIFO DLQ, the original message's deduplication ID will be replaced with the
    original message's ID" -- the message id it keeps."""
    dlq = broker.create_queue("dead.fifo", {"FifoQueue": "true"})
    q = broker.create_queue(
        "work.fifo",
        {
            "FifoQueue": "true",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1}),
        },
    )
    message_id = q.send("m0", group_id="g", deduplication_id="d0")
    q.receive(10, visibility_timeout=0)
    assert q.receive(10) == []
    (dead,) = dlq.receive(10)
    assert dead.message_id == message_id
    assert dead.deduplication_id == message_id


def test_fifo_batch_of_exactly_1_mib_of_bodies_is_accepted(broker):
    """SendMessageBatch: the limit is on the sum of the messages' lengths (body + message
    attributes), 1,048,576 bytes. Group and
    deduplication ids do not count."""
    q = broker.create_queue("b.fifo", {"FifoQueue": "true"})
    body = "x" * 131_072  # 8 of them: exactly 1,048,576 bytes
    entries = [{"body": body, "group_id": "g", "deduplication_id": str(i)} for i in range(8)]
    assert len(q.send_batch(entries)) == 8


def test_a_delete_wakes_a_long_poll_waiting_for_the_group(broker):
    # Deleting a group's in-flight message makes its next one receivable at once: a long poll
    # waiting meanwhile returns it (it slept until the deleted message's visibility ended).
    q = broker.create_queue("wake.fifo", {"FifoQueue": "true"})
    q.send_batch(
        [
            {"body": "a1", "group_id": "g", "deduplication_id": "1"},
            {"body": "a2", "group_id": "g", "deduplication_id": "2"},
        ]
    )
    (first,) = q.receive(1, visibility_timeout=60)
    results: list[list[Any]] = []
    t = threading.Thread(target=lambda: results.append(q.receive(1, wait_seconds=20)))
    t.start()
    time.sleep(0.2)  # let it block first
    q.delete(first.receipt_handle)
    t.join(timeout=10)
    assert not t.is_alive(), "the long poll slept through the delete"
    assert [m.text for m in results[0]] == ["a2"]


def test_a_visibility_change_wakes_a_long_poll_waiting_for_the_group(tmp_path, impl):
    # A poll sleeps until the next visibility time it saw; shortening the held message's
    # visibility must wake it, as on standard queues (not only a change to 0). Real clock.
    with millpond.open(tmp_path / "real", durability="os", core=impl) as broker:
        q = broker.create_queue("wake.fifo", {"FifoQueue": "true"})
        q.send("a1", group_id="g", deduplication_id="1")
        (held,) = q.receive(1, visibility_timeout=30)
        results: list[list[Any]] = []
        t = threading.Thread(target=lambda: results.append(q.receive(1, wait_seconds=15)))
        t0 = time.monotonic()
        t.start()
        time.sleep(0.2)  # let it block first
        q.change_visibility(held.receipt_handle, 1)
        t.join(timeout=10)
        assert not t.is_alive(), "the long poll slept through the visibility change"
        assert texts(results[0]) == ["a1"]
        assert time.monotonic() - t0 < 5  # about 1 s, not the poll's 15


# -- retention of messages in flight ---------------------------------------------------------


def test_a_message_past_retention_in_flight_no_longer_holds_its_group(broker, clock):
    """SQS deletes a message once its retention period is over, in flight or not: the next
    message of its group becomes receivable then, not when the visibility timeout ends."""
    q = broker.create_queue("r.fifo", {"FifoQueue": "true", "MessageRetentionPeriod": "60"})
    send(q, "m0")
    clock.advance(30)
    send(q, "m1")
    (m0,) = q.receive(1, visibility_timeout=600)
    assert m0.text == "m0"
    assert q.receive(10) == []  # m0 in flight holds the group
    clock.advance(31)  # m0 is past its retention; its visibility timeout runs 540 s more
    assert texts(q.receive(10, visibility_timeout=600)) == ["m1"]
    counts = q.get_attributes()
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "1"  # m1; m0 is gone
    assert counts["ApproximateNumberOfMessages"] == "0"
    q.delete(m0.receipt_handle)  # gone already: deleting it again is not an error
    clock.advance(30)  # m1 is past its retention too
    assert q.receive(10) == []
    assert q.get_attributes()["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_an_expired_message_is_not_delivered_again_by_a_receive_retry(broker, clock):
    # ReceiveRequestAttemptId: a retry returns the same messages, but never one past retention
    q = broker.create_queue("r.fifo", {"FifoQueue": "true", "MessageRetentionPeriod": "60"})
    send(q, "m0")
    clock.advance(30)
    send(q, "m1")
    assert texts(q.receive(1, visibility_timeout=600, attempt_id="a")) == ["m0"]
    clock.advance(31)
    assert texts(q.receive(1, visibility_timeout=600, attempt_id="a")) == ["m1"]


@pytest.mark.parametrize("batch", [False, True])
def test_a_visibility_change_past_retention_frees_the_group_when_the_message_expires(
    broker, clock, batch
):
    q = broker.create_queue("r.fifo", {"FifoQueue": "true", "MessageRetentionPeriod": "60"})
    send(q, "m0")
    clock.advance(30)
    send(q, "m1")
    (m0,) = q.receive(1, visibility_timeout=10)
    if batch:
        assert q.change_visibility_entries([(m0.receipt_handle, 600)]) == [None]
    else:
        q.change_visibility(m0.receipt_handle, 600)
    clock.advance(31)
    assert texts(q.receive(10)) == ["m1"]
