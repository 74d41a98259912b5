"""FIFO queues against Amazon SQS's documented behaviour: cases found by a bug hunt."""

from __future__ import annotations

import json

import millpond


def fifo_with_dead_letters(broker: millpond.Broker) -> tuple[millpond.Queue, millpond.Queue]:
    """(work.fifo, dead.fifo): a FIFO queue whose messages move on their second receive."""
    dlq = broker.create_queue("dead.fifo", {"FifoQueue": "true"})
    redrive = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1}
    attributes = {"FifoQueue": "true", "RedrivePolicy": json.dumps(redrive)}
    q = broker.create_queue("work.fifo", attributes)
    return q, dlq


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
