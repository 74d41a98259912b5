"""GET /metrics: ApproximateAgeOfOldestMessage, the CloudWatch SQS metric users alert on first.

Reference: "Available CloudWatch metrics for Amazon SQS" (SQS Developer Guide,
sqs-available-cloudwatch-metrics.html): "The approximate age of the oldest non-deleted message
in the queue", in seconds; and "Setting-up dead-letter queue retention in Amazon SQS"
(setting-up-dead-letter-queue-retention.html): in a dead-letter queue the metric "indicates when
the message moved to the dead-letter queue, not when the message was originally sent".
Embedded brokers on a ManualClock, both cores.
"""

from __future__ import annotations

import json

import pytest

import millpond
from millpond.server.metrics import Metrics

parser = pytest.importorskip("prometheus_client.parser")  # a test dependency: parses the text

AGE = "millpond_sqs_approximate_age_of_oldest_message_seconds"


class _Context:
    """What Metrics.render reads of the daemon's Context: its brokers."""

    def __init__(self, broker: millpond.Broker) -> None:
        self._broker = broker

    def brokers(self) -> list[millpond.Broker]:
        return [self._broker]


def _age(broker: millpond.Broker, queue: str) -> float | None:
    """The gauge's value for ``queue``, from the text parsed by prometheus_client."""
    for family in parser.text_string_to_metric_families(Metrics().render(_Context(broker))):
        for sample in family.samples:
            if sample.name == AGE and sample.labels == {"region": "us-east-1", "queue": queue}:
                return sample.value
    return None


def test_an_empty_queue_reports_zero(broker: millpond.Broker) -> None:
    broker.create_queue("jobs")
    assert _age(broker, "jobs") == 0


def test_the_age_grows_with_the_clock_in_whole_seconds(
    broker: millpond.Broker, clock: millpond.ManualClock
) -> None:
    q = broker.create_queue("jobs")
    q.send("a")
    clock.advance(2.5)
    q.send("b")
    assert _age(broker, "jobs") == 2  # whole seconds, as CloudWatch reports them
    clock.advance(10)
    assert _age(broker, "jobs") == 12


def test_deleting_the_oldest_leaves_the_next_ones_age(
    broker: millpond.Broker, clock: millpond.ManualClock
) -> None:
    q = broker.create_queue("jobs")
    q.send("old")
    clock.advance(30)
    q.send("young")
    clock.advance(5)
    (m,) = q.receive(1)
    assert m.text == "old"
    assert _age(broker, "jobs") == 35
    q.delete(m.receipt_handle)
    assert _age(broker, "jobs") == 5
    (m,) = q.receive(1)
    q.delete(m.receipt_handle)
    assert _age(broker, "jobs") == 0


def test_in_flight_and_delayed_messages_count(
    broker: millpond.Broker, clock: millpond.ManualClock
) -> None:
    # "non-deleted": a message hidden by a receive or a delay is still in the queue
    q = broker.create_queue("jobs")
    q.send("in flight")
    assert len(q.receive(1, visibility_timeout=600)) == 1
    clock.advance(7)
    assert _age(broker, "jobs") == 7
    delayed = broker.create_queue("later")
    delayed.send("x", delay_seconds=900)
    clock.advance(4)
    assert _age(broker, "later") == 4


def test_messages_past_retention_do_not_count(
    broker: millpond.Broker, clock: millpond.ManualClock
) -> None:
    q = broker.create_queue("jobs", {"MessageRetentionPeriod": "60"})
    q.send("expires")
    clock.advance(50)
    q.send("stays")
    clock.advance(20)  # the first is 70 s old: past retention, whether or not swept yet
    assert _age(broker, "jobs") == 20


def test_fifo_queue(broker: millpond.Broker, clock: millpond.ManualClock) -> None:
    q = broker.create_queue("jobs.fifo", {"FifoQueue": "true"})
    assert _age(broker, "jobs.fifo") == 0
    q.send("a", group_id="g1", deduplication_id="1")
    clock.advance(3)
    q.send("b", group_id="g2", deduplication_id="2")
    clock.advance(4)
    assert _age(broker, "jobs.fifo") == 7
    (m,) = q.receive(1)
    assert m.text == "a"
    q.delete(m.receipt_handle)
    assert _age(broker, "jobs.fifo") == 4


def _redrive(target: millpond.Queue, max_count: int) -> dict[str, str]:
    policy = {"deadLetterTargetArn": target.arn, "maxReceiveCount": max_count}
    return {"RedrivePolicy": json.dumps(policy)}


def test_a_dead_letter_queue_counts_from_the_move(
    broker: millpond.Broker, clock: millpond.ManualClock
) -> None:
    dlq = broker.create_queue("dlq")
    q = broker.create_queue("work", _redrive(dlq, 1))
    q.send("poison")
    clock.advance(100)
    assert len(q.receive(1, visibility_timeout=0)) == 1
    assert q.receive(1) == []  # the second receive moved it to the dead-letter queue
    assert _age(broker, "work") == 0
    assert _age(broker, "dlq") == 0  # moved just now, though sent 100 s ago
    clock.advance(6)
    assert _age(broker, "dlq") == 6
    (dead,) = dlq.receive(1, visibility_timeout=30)  # received there: still counts from the move
    clock.advance(2)
    assert _age(broker, "dlq") == 8
    dlq.delete(dead.receipt_handle)
    assert _age(broker, "dlq") == 0


def test_a_fifo_dead_letter_queue_counts_from_the_move(
    broker: millpond.Broker, clock: millpond.ManualClock
) -> None:
    dlq = broker.create_queue("dlq.fifo", {"FifoQueue": "true"})
    q = broker.create_queue("work.fifo", {"FifoQueue": "true", **_redrive(dlq, 1)})
    q.send("poison", group_id="g", deduplication_id="1")
    clock.advance(100)
    assert len(q.receive(1, visibility_timeout=0)) == 1
    assert q.receive(1) == []
    clock.advance(6)
    assert _age(broker, "dlq.fifo") == 6


def test_the_metric_line_and_its_help(broker: millpond.Broker, clock: millpond.ManualClock) -> None:
    broker.create_queue("jobs-1").send("x")
    clock.advance(3)
    text = Metrics().render(_Context(broker))
    assert f"# TYPE {AGE} gauge\n" in text
    assert f"# HELP {AGE} " in text and "ApproximateAgeOfOldestMessage" in text
    assert f'{AGE}{{region="us-east-1",queue="jobs-1"}} 3\n' in text
