"""FIFO queues: order per message group, one group in flight at a time, de-duplication.

Sources: reference = /work/shared/reference/sqs-sns.md §1.6 FIFO; AWS
FIFO-queues-understanding-logic.html ("you can't receive additional messages with the same
message group ID ... until the messages currently received are deleted or become visible
again"), knowledge-center sqs-fifo-messages-not-returned ("Inflight messages block delivery of
available messages within the same message group"), FIFO-queues-exactly-once-processing.html.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from millpond.errors import InvalidParameterValue, MissingParameter
from tests.conformance._helpers import bodies, drain, receive_woken_by
from tests.conformance._limits import requires


def _fifo(broker: Any, name: str, **attributes: str) -> Any:
    return broker.create_queue(name + ".fifo", {"FifoQueue": "true", **attributes})


def _receive_in_order(q: Any, count: int) -> list[Any]:
    """Receive and delete one by one until ``count`` came (or 5 s passed): the FIFO way of
    consuming, where the next message of a group waits for the previous one's delete."""
    got: list[Any] = []
    for _ in range(count):
        batch = drain(q, 1)
        if not batch:
            break
        got.extend(batch)
        q.delete_batch([m.receipt_handle for m in batch])
    return got


def test_fifo_queue_attributes(broker: Any, name: str) -> None:
    """A FIFO queue: name ending .fifo, FifoQueue "true", ContentBasedDeduplication "false"
    unless set (AWS-recorded GetQueueAttributes All of a new FIFO queue, reference §1.3)."""
    q = _fifo(broker, name)
    attributes = q.get_attributes(["FifoQueue", "ContentBasedDeduplication"])
    assert attributes == {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    assert name + ".fifo" in broker.list_queues(name)


def test_order_within_a_group(broker: Any, name: str) -> None:
    """Messages of one group are received in the order they were sent."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    sent = [f"m{i}" for i in range(12)]
    for body in sent:
        q.send(body, group_id="g")
    got = _receive_in_order(q, 12)
    assert bodies(got) == sent
    assert {m.group_id for m in got} == {"g"}


def test_receive_takes_a_group_in_order(broker: Any, name: str) -> None:
    """One receive returns as many messages of a group as it can, in order (reference §1.6)."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    q.send_batch([{"body": f"m{i}", "group_id": "g"} for i in range(5)])
    got = q.receive(10, wait_seconds=2)
    assert bodies(got) == [f"m{i}" for i in range(len(got))]  # a prefix, in order
    assert len(got) >= 1


def test_one_receive_keeps_each_group_in_order(broker: Any, name: str) -> None:
    """A receive may return messages of several groups; each group's come in order (AWS
    knowledge-center sqs-fifo-messages-not-returned: "SQS returns as many messages with the
    same message group ID as possible. The ReceiveMessage API call can also return messages
    from other available message groups")."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    q.send_batch([{"body": f"{g}{i}", "group_id": g} for i in range(3) for g in "AB"])
    got = q.receive(10, wait_seconds=2)
    assert got
    for group in "AB":
        mine = bodies([m for m in got if m.group_id == group])
        assert mine == [f"{group}{i}" for i in range(len(mine))]


def test_group_blocked_while_in_flight(broker: Any, name: str) -> None:
    """While a message of a group is in flight, no later message of that group is returned;
    other groups keep flowing; once the in-flight one is deleted the next one comes."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    q.send("a1", group_id="A")
    q.send("a2", group_id="A")
    (a1,) = q.receive(1, wait_seconds=2)
    assert a1.body == b"a1"
    assert q.receive(10) == []  # a2 waits behind a1
    q.send("b1", group_id="B")
    assert bodies(drain(q, 1)) == ["b1"]
    assert q.receive(10) == []
    q.delete(a1.receipt_handle)
    assert bodies(drain(q, 1)) == ["a2"]


def test_group_unblocked_by_visibility_zero(broker: Any, name: str) -> None:
    """A group's in-flight message made visible again is received again first, before the
    group's later messages (order holds across retries)."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    q.send("first", group_id="g")
    q.send("second", group_id="g")
    (first,) = q.receive(1, wait_seconds=2)
    q.change_visibility(first.receipt_handle, 0)
    (again,) = q.receive(1, wait_seconds=2)
    assert (again.body, again.message_id, again.receive_count) == (
        b"first",
        first.message_id,
        2,
    )


def test_deduplication_by_id(broker: Any, name: str) -> None:
    """A message with a MessageDeduplicationId seen within 5 minutes is accepted but not
    delivered (AWS FIFO-queues-exactly-once-processing.html; reference §1.6)."""
    q = _fifo(broker, name)
    q.send("original", group_id="g", deduplication_id="d1")
    q.send("duplicate", group_id="g", deduplication_id="d1")
    q.send("other", group_id="g", deduplication_id="d2")
    got = _receive_in_order(q, 2)
    assert bodies(got) == ["original", "other"]
    assert got[0].deduplication_id == "d1"


@requires("sqs-fifo-dedup-after-delete")
def test_deduplication_remembered_after_delete(broker: Any, name: str) -> None:
    """SQS keeps tracking a deduplication id for its 5 minutes even after the message was
    received and deleted (AWS FIFO-queues-exactly-once-processing.html: "any messages sent
    with the same message deduplication ID are accepted successfully but aren't delivered
    during the 5-minute deduplication interval"; reference §1.6: elasticmq#354 and goaws
    forget it)."""
    q = _fifo(broker, name)
    q.send("original", group_id="g", deduplication_id="d1")
    assert bodies(_receive_in_order(q, 1)) == ["original"]  # received and deleted
    q.send("after delete", group_id="g", deduplication_id="d1")
    assert q.receive(10) == []


def test_content_based_deduplication(broker: Any, name: str) -> None:
    """With ContentBasedDeduplication the body's SHA-256 is the deduplication id: the same body
    twice is delivered once; another body is not a duplicate (AWS
    API_CreateQueue ContentBasedDeduplication)."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    q.send("same", group_id="g")
    q.send("same", group_id="g")
    q.send("different", group_id="g")
    assert bodies(_receive_in_order(q, 2)) == ["same", "different"]
    assert q.receive(10) == []


def test_explicit_id_overrides_content_deduplication(broker: Any, name: str) -> None:
    """An explicit MessageDeduplicationId takes precedence over the content hash: the same body
    with two ids is two messages (AWS API_SendMessage MessageDeduplicationId)."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    q.send("same", group_id="g", deduplication_id="one")
    q.send("same", group_id="g", deduplication_id="two")
    assert bodies(_receive_in_order(q, 2)) == ["same", "same"]


def test_send_batch_with_groups(broker: Any, name: str) -> None:
    """A FIFO batch is enqueued in order (reference §1.2 SendMessageBatch); each group keeps
    its own order and group id."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    entries = [{"body": f"{group}{i}", "group_id": group} for i in range(3) for group in "xy"]
    ids = q.send_batch(entries)
    assert len(set(ids)) == 6
    got = _receive_in_order(q, 6)
    assert sorted(bodies(got)) == sorted(e["body"] for e in entries)
    for group in "xy":
        mine = [m for m in got if m.group_id == group]
        assert bodies(mine) == [f"{group}{i}" for i in range(3)]


@requires("sqs-fifo-sequence-numbers")
def test_sequence_numbers_rise(broker: Any, name: str) -> None:
    """Every FIFO message gets a SequenceNumber that grows with each send (reference §1.4:
    "128-bit, non-consecutive, increasing per group")."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    for i in range(4):
        q.send(f"m{i}", group_id="g")
    got = _receive_in_order(q, 4)
    numbers = [int(m.sequence_number) for m in got]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4


@requires("sqs-fifo-sequence-numbers")
def test_send_batch_returns_sequence_numbers(broker: Any, name: str) -> None:
    """SendMessageBatch answers each FIFO entry with its SequenceNumber (AWS
    API_SendMessageBatch SendMessageBatchResultEntry.SequenceNumber), the one the message is
    received with."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    sent = q.send_batch_detailed([{"body": f"m{i}", "group_id": "g"} for i in range(3)])
    numbers = [int(number) for _, number in sent]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    got = _receive_in_order(q, 3)
    assert [(m.message_id, m.sequence_number) for m in got] == sent


def test_fifo_send_needs_group_id(broker: Any, name: str) -> None:
    """ "The request must contain the parameter MessageGroupId." (MissingParameter, reference
    §1.6 FIFO)."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    with pytest.raises(MissingParameter):
        q.send("no group")
    assert q.receive(10) == []


def test_fifo_send_needs_deduplication(broker: Any, name: str) -> None:
    """Without ContentBasedDeduplication a MessageDeduplicationId is required
    (InvalidParameterValue "The queue should either have ContentBasedDeduplication enabled or
    MessageDeduplicationId provided explicitly", reference §1.6 FIFO)."""
    q = _fifo(broker, name)
    with pytest.raises(InvalidParameterValue):
        q.send("no dedup id", group_id="g")
    assert q.receive(10) == []


def test_fifo_refuses_per_message_delay(broker: Any, name: str) -> None:
    """FIFO queues take only the queue's DelaySeconds: a per-message delay is refused
    (InvalidParameterValue, reference §1.6 Delay; AWS API_SendMessage DelaySeconds)."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    with pytest.raises(InvalidParameterValue):
        q.send("late", group_id="g", delay_seconds=5)
    assert q.receive(10) == []


def test_sending_to_a_blocked_group_does_not_unblock_it(broker: Any, name: str) -> None:
    """A new message for a group whose message is in flight waits too (reference §1.6:
    "sending new messages to a group does not unlock it", LocalStack#8724)."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    q.send("a1", group_id="A")
    (a1,) = drain(q, 1)
    q.send("a2", group_id="A")
    assert q.receive(10) == []
    q.delete(a1.receipt_handle)
    assert bodies(drain(q, 1)) == ["a2"]


@requires("sqs-fifo-long-poll-unblock")
def test_long_poll_woken_when_the_group_is_unblocked(broker: Any, name: str) -> None:
    """A long poll waiting behind an in-flight message returns as soon as that message is
    deleted and the group's next one is available (AWS sqs-short-and-long-polling.html)."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    q.send_batch([{"body": "a1", "group_id": "A"}, {"body": "a2", "group_id": "A"}])
    (a1,) = q.receive(1, wait_seconds=2)
    got = receive_woken_by(q, lambda: q.delete(a1.receipt_handle))
    assert bodies(got) == ["a2"]


@requires("sqs-fifo-deduplication-scope")
def test_deduplication_scope_message_group(broker: Any, name: str) -> None:
    """With DeduplicationScope messageGroup a deduplication id is unique per group: the same
    id in two groups is two messages, in one group one (AWS high-throughput-fifo.html; AWS
    API_SetQueueAttributes DeduplicationScope; reference §1.3)."""
    q = _fifo(
        broker, name, DeduplicationScope="messageGroup", FifoThroughputLimit="perMessageGroupId"
    )
    q.send("x1", group_id="x", deduplication_id="same")
    q.send("y1", group_id="y", deduplication_id="same")
    q.send("x2", group_id="x", deduplication_id="same")
    got = _receive_in_order(q, 2)
    assert sorted(bodies(got)) == ["x1", "y1"]
    assert q.receive(10) == []


@requires("sqs-fifo-receive-attempt-id")
def test_receive_request_attempt_id(broker: Any, name: str) -> None:
    """A receive retried with the same ReceiveRequestAttemptId returns the same messages and
    receipt handles (AWS API_ReceiveMessage ReceiveRequestAttemptId: "...returns the same
    messages and receipt handles"; reference §1.6)."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    q.send_batch([{"body": f"m{i}", "group_id": "g"} for i in range(3)])
    first = q.receive(10, wait_seconds=2, attempt_id="attempt-1")
    assert first
    again = q.receive(10, attempt_id="attempt-1")
    assert [(m.message_id, m.receipt_handle) for m in again] == [
        (m.message_id, m.receipt_handle) for m in first
    ]
    q.delete_batch([m.receipt_handle for m in again])


def test_purge_unblocks_a_group(broker: Any, name: str) -> None:
    """PurgeQueue deletes in-flight messages too (AWS API_PurgeQueue), so their group no
    longer waits: a message sent afterwards is received."""
    q = _fifo(broker, name, ContentBasedDeduplication="true")
    q.send("before", group_id="g")
    assert len(drain(q, 1)) == 1  # in flight, blocking g
    q.purge()
    q.send("after", group_id="g")
    assert bodies(drain(q, 1)) == ["after"]


def test_queue_delay_applies_to_fifo(broker: Any, name: str) -> None:
    """A FIFO queue's DelaySeconds delays its messages (AWS sqs-delay-queues.html: "For FIFO
    queues, the per-queue delay")."""
    q = _fifo(broker, name, ContentBasedDeduplication="true", DelaySeconds="900")
    q.send("later", group_id="g")
    assert q.receive(10) == []
    assert q.get_attributes(["ApproximateNumberOfMessagesDelayed"]) == {
        "ApproximateNumberOfMessagesDelayed": "1"
    }


def test_fifo_dead_letter_queue_unblocks_the_group(broker: Any, name: str) -> None:
    """A FIFO queue's dead-letter queue is a FIFO queue; a message past maxReceiveCount moves
    there (keeping its group) and the group's next message is delivered (AWS
    sqs-dead-letter-queues.html)."""
    dlq = _fifo(broker, name + "-dlq")
    q = _fifo(
        broker,
        name,
        ContentBasedDeduplication="true",
        RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1}),
    )
    q.send("poison", group_id="g")
    q.send("next", group_id="g")
    (first,) = q.receive(1, visibility_timeout=0, wait_seconds=2)
    assert first.body == b"poison"
    assert bodies(drain(q, 1)) == ["next"]
    (dead,) = drain(dlq, 1)
    assert (dead.message_id, dead.body, dead.group_id) == (first.message_id, b"poison", "g")
