"""The daemon's /metrics against the CloudWatch SQS and SNS metrics they are named after.

Reference: "Available CloudWatch metrics for Amazon SQS" (SQS Developer Guide,
sqs-available-cloudwatch-metrics.html) and "Monitoring Amazon SNS topics using CloudWatch" (SNS
Developer Guide, sns-monitoring-using-cloudwatch.html). Most tests render the text of an
embedded broker (fast, a ManualClock); a few go through a daemon, whose receive path is its own.
"""

from __future__ import annotations

import http.client

import pytest

import millpond
from millpond.server.metrics import Metrics

from .daemon import Daemon

parser = pytest.importorskip("prometheus_client.parser")  # a test dependency: parses the text


class _Context:
    """What Metrics.render reads of the daemon's Context: its brokers."""

    def __init__(self, *brokers: millpond.Broker) -> None:
        self._brokers = list(brokers)

    def brokers(self) -> list[millpond.Broker]:
        return self._brokers


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text, parsed by prometheus_client (so it must parse)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(text: str, name: str, **labels: str) -> float | None:
    labels.setdefault("region", "us-east-1")
    return _samples(text).get((name, tuple(sorted(labels.items()))))


def _render(broker: millpond.Broker) -> str:
    return Metrics().render(_Context(broker))


def _daemon_metrics(daemon: Daemon) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


# -- SQS: receives ---------------------------------------------------------------------------

EMPTY_RECEIVES = "millpond_sqs_number_of_empty_receives_total"


def test_receives_that_return_nothing_are_counted(broker: millpond.Broker) -> None:
    # CloudWatch NumberOfEmptyReceives: "The number of ReceiveMessage API calls that did not
    # return a message." The metric users watch to see consumers polling an idle queue.
    q = broker.create_queue("jobs")
    assert q.receive(1, wait_seconds=0) == []
    assert q.receive(10, wait_seconds=0) == []
    q.send("x")
    assert len(q.receive(1, wait_seconds=0)) == 1  # returned a message: not empty
    assert _value(_render(broker), EMPTY_RECEIVES, queue="jobs") == 2


def test_empty_receives_through_the_daemon_are_counted(daemon: Daemon) -> None:
    # The daemon's ReceiveMessage (and the native protocol's receive) long-poll on the event
    # loop, not through Queue.receive: one empty call, however long it waited, counts once.
    sqs = daemon.client()
    url = sqs.create_queue(QueueName="empty-receives")["QueueUrl"]
    for _ in range(3):
        assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    assert "Messages" in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    assert _value(_daemon_metrics(daemon), EMPTY_RECEIVES, queue="empty-receives") == 3


# -- SQS: sends ------------------------------------------------------------------------------

SENT = "millpond_sqs_number_of_messages_sent_total"
DEDUPLICATED = "millpond_sqs_number_of_deduplicated_sent_messages_total"


def test_fifo_duplicates_are_counted_apart_from_the_messages_sent(broker: millpond.Broker) -> None:
    # CloudWatch NumberOfDeduplicatedSentMessages (FIFO only): "The number of sent messages
    # that were deduplicated and not added to the queue"; NumberOfMessagesSent counts the
    # messages added. A producer resending tells itself apart by the first.
    q = broker.create_queue("jobs.fifo", {"FifoQueue": "true"})
    q.send("a", group_id="g", deduplication_id="1")
    q.send("a", group_id="g", deduplication_id="1")  # a duplicate: accepted, not added
    q.send_batch(
        [
            {"body": "b", "group_id": "g", "deduplication_id": "2"},
            {"body": "a", "group_id": "g", "deduplication_id": "1"},
        ]
    )
    broker.create_queue("plain")
    text = _render(broker)
    assert _value(text, SENT, queue="jobs.fifo") == 2
    assert _value(text, DEDUPLICATED, queue="jobs.fifo") == 2
    assert _value(text, DEDUPLICATED, queue="plain") is None  # FIFO only, as on CloudWatch


def test_fifo_duplicates_from_a_fifo_topic_are_counted(broker: millpond.Broker) -> None:
    topic = broker.create_topic("events.fifo", {"FifoTopic": "true"})
    q = broker.create_queue("jobs.fifo", {"FifoQueue": "true"})
    topic.subscribe(q, raw_message_delivery=True)
    q.send("a", group_id="g", deduplication_id="1")
    topic.publish("a", group_id="g", deduplication_id="1")  # new to the topic, not the queue
    text = _render(broker)
    assert _value(text, SENT, queue="jobs.fifo") == 1
    assert _value(text, DEDUPLICATED, queue="jobs.fifo") == 1
