"""FIFO queues against Amazon SQS's documented behaviour: cases found by a bug hunt."""

from __future__ import annotations

import json
from typing import Any

import pytest

import millpond
from millpond import errors

from .storage_probe import meta_keys


def redrive(dlq: millpond.Queue, **attributes: Any) -> dict[str, Any]:
    """Attributes of a queue whose messages move to ``dlq`` on their second receive."""
    policy = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1}
    return {**attributes, "RedrivePolicy": json.dumps(policy)}


def fifo_with_dead_letters(broker: millpond.Broker) -> tuple[millpond.Queue, millpond.Queue]:
    """(work.fifo, dead.fifo): a FIFO queue whose messages move on their second receive."""
    dlq = broker.create_queue("dead.fifo", {"FifoQueue": "true"})
    return broker.create_queue("work.fifo", redrive(dlq, FifoQueue="true")), dlq


def test_a_message_moved_to_a_fifo_dead_letter_queue_keeps_its_sender_id(broker):
    # A dead-lettered message is the same message: only its MessageDeduplicationId is replaced
    # (by its message id, SQS Developer Guide sqs-configure-dead-letter-queue-redrive). Its
    # SenderId (kept for messages sent through the daemon with a verified key) stays.
    q, dlq = fifo_with_dead_letters(broker)
    prepared = q._prepare_fifo("m", None, None, "g", "d", "Root=1-abc", "AKIDALICE")
    q._send_fifo([prepared])
    (m,) = q.receive(1, visibility_timeout=0)
    assert m.sender_id == "AKIDALICE"
    assert q.receive(1) == []  # moved
    (dead,) = dlq.receive(1)
    assert dead.deduplication_id == dead.message_id
    assert dead.trace_header == "Root=1-abc"
    assert dead.sender_id == "AKIDALICE"


def test_a_move_task_refuses_a_destination_of_the_other_queue_type(broker):
    # "you can also configure any other queue as the redrive destination if both queues are the
    # same type. For example, if the dead-letter queue is a FIFO queue, the redrive destination
    # queue must be a FIFO queue as well" (SQS Developer Guide,
    # sqs-configure-dead-letter-queue-redrive). A standard message moved into a FIFO queue has no
    # group (it was counted there and never received); a FIFO message into a standard queue
    # left group bookkeeping behind.
    q, dlq = fifo_with_dead_letters(broker)
    q.send("m", group_id="g", deduplication_id="d")
    q.receive(1, visibility_timeout=0)
    assert q.receive(1) == []  # moved to dead.fifo
    standard = broker.create_queue("standard")
    with pytest.raises(errors.InvalidParameterValue, match="same type"):
        broker.start_message_move_task(dlq.arn, standard.arn)
    standard_dlq = broker.create_queue("standard-dead")
    source = broker.create_queue("standard-work", redrive(standard_dlq))
    source.send("x")
    source.receive(1, visibility_timeout=0)
    assert source.receive(1) == []  # moved to standard-dead
    with pytest.raises(errors.InvalidParameterValue, match="same type"):
        broker.start_message_move_task(standard_dlq.arn, q.arn)
    assert broker.list_message_move_tasks(dlq.arn) == []
    assert dlq.get_attributes()["ApproximateNumberOfMessages"] == "1"
    assert standard_dlq.get_attributes()["ApproximateNumberOfMessages"] == "1"


def _attempt_keys(broker: millpond.Broker) -> int:
    """How many meta keys the broker keeps for ReceiveRequestAttemptIds (any queue)."""
    return meta_keys(broker, b"attempt")


def test_receive_request_attempt_ids_are_forgotten_after_five_minutes(broker, clock):
    # "You can use ReceiveRequestAttemptId only for 5 minutes after a ReceiveMessage action."
    # Clients that send a fresh id with every FIFO receive (millpond's own AWS client, the Java
    # messaging library) must not grow the store by one key per receive forever.
    q = broker.create_queue("jobs.fifo", {"FifoQueue": "true"})
    for i in range(20):
        q.send(f"m{i}", group_id=f"g{i}", deduplication_id=str(i))
        (m,) = q.receive(1, attempt_id=f"try-{i}")
        assert q.receive(1, attempt_id=f"try-{i}")[0].receipt_handle == m.receipt_handle
        q.delete(m.receipt_handle)
        assert q.receive(1, attempt_id=f"empty-{i}") == []
    clock.advance(300)
    q.send("last", group_id="g", deduplication_id="last")
    (last,) = q.receive(1, attempt_id="try-last")
    assert _attempt_keys(broker) <= 2  # try-last (and an index entry for it), no more
    assert q.receive(1, attempt_id="try-last")[0].receipt_handle == last.receipt_handle
    broker.delete_queue("jobs.fifo")
    assert _attempt_keys(broker) == 0


def test_fifo_deletes_count_toward_number_of_messages_deleted(broker):
    # The daemon's metrics (CloudWatch NumberOfMessagesDeleted) read Queue.counters; a FIFO
    # queue's delete_batch (delete, and the native protocol's delete_batch) counted nothing.
    q = broker.create_queue("jobs.fifo", {"FifoQueue": "true"})
    for i in range(3):
        q.send(f"m{i}", group_id="g", deduplication_id=str(i))
    m0, m1, m2 = q.receive(3)
    q.delete(m0.receipt_handle)
    q.delete_batch([m1.receipt_handle, m2.receipt_handle])
    assert q.counters == {"sent": 3, "received": 3, "deleted": 3}
