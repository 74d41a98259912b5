"""The daemon's /metrics against the CloudWatch SQS and SNS metrics they are named after.

Reference: "Available CloudWatch metrics for Amazon SQS" (SQS Developer Guide,
sqs-available-cloudwatch-metrics.html) and "Monitoring Amazon SNS topics using CloudWatch" (SNS
Developer Guide, sns-monitoring-using-cloudwatch.html). Most tests render the text of an
embedded broker (fast, a ManualClock); a few go through a daemon, whose receive path is its own.
"""

from __future__ import annotations

import http.client
import json

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


# -- SNS: topics -------------------------------------------------------------------------------

PUBLISHED = "millpond_sns_number_of_messages_published_total"
DELIVERED = "millpond_sns_number_of_notifications_delivered_total"
FILTERED_OUT = "millpond_sns_number_of_notifications_filtered_out_total"
FAILED = "millpond_sns_number_of_notifications_failed_total"
REDRIVEN = "millpond_sns_number_of_notifications_redriven_to_dlq_total"


def _kind(value: str) -> dict[str, dict[str, str]]:
    return {"kind": {"DataType": "String", "StringValue": value}}


def test_topics_count_published_delivered_and_filtered_out(broker: millpond.Broker) -> None:
    # CloudWatch (AWS/SNS, per TopicName): NumberOfMessagesPublished, NumberOfNotifications-
    # Delivered, NumberOfNotificationsFilteredOut ("messages that were rejected by subscription
    # filter policies"). /metrics had no topic series at all.
    topic = broker.create_topic("events")
    everything = broker.create_queue("everything")
    orders = broker.create_queue("orders")
    topic.subscribe(everything)
    topic.subscribe(orders, filter_policy={"kind": ["order"]}, raw_message_delivery=True)
    topic.publish("paid", attributes=_kind("order"))  # both subscriptions
    topic.publish("hello", attributes=_kind("greeting"))  # filtered out for "orders"
    topic.publish_batch(
        [
            {"Id": "a", "Message": "a", "MessageAttributes": _kind("order")},
            {"Id": "b", "Message": "b"},
        ]
    )
    text = _render(broker)
    assert _value(text, PUBLISHED, topic="events") == 4
    assert _value(text, DELIVERED, topic="events") == 6  # 4 to "everything", 2 to "orders"
    assert _value(text, FILTERED_OUT, topic="events") == 2
    assert _value(text, FAILED, topic="events") == 0
    assert _value(text, SENT, queue="orders") == 2  # the queues' side agrees


PUBLISH_SIZE = "millpond_sns_publish_size_bytes"


def test_topics_sum_the_size_of_what_was_published(broker: millpond.Broker) -> None:
    # CloudWatch PublishSize (bytes, statistics Average, Sum, SampleCount...): the size of
    # the messages published, as SNS counts it toward its limit (message and attributes).
    topic = broker.create_topic("events")
    topic.publish("12345")
    topic.publish("1234567890")
    text = _render(broker)
    assert _value(text, PUBLISH_SIZE + "_count", topic="events") == 2
    assert _value(text, PUBLISH_SIZE + "_sum", topic="events") == 15


def test_deliveries_a_queue_cannot_take_count_as_failed(broker: millpond.Broker) -> None:
    # NumberOfNotificationsFailed: "the metric increments by 1 when Amazon SNS stops attempting
    # message deliveries"; NumberOfNotificationsRedrivenToDlq: those moved to the
    # subscription's dead-letter queue.
    topic = broker.create_topic("events")
    small = broker.create_queue("small", {"MaximumMessageSize": "1024"})
    dlq = broker.create_queue("small-dlq")
    lost = broker.create_queue("lost", {"MaximumMessageSize": "1024"})
    topic.subscribe(small, raw_message_delivery=True).set_attributes(
        {"RedrivePolicy": f'{{"deadLetterTargetArn": "{dlq.arn}"}}'}
    )
    topic.subscribe(lost, raw_message_delivery=True)
    topic.publish("x" * 2000)  # too big for both queues
    topic.publish("fits")
    text = _render(broker)
    assert _value(text, PUBLISHED, topic="events") == 2
    assert _value(text, DELIVERED, topic="events") == 2
    assert _value(text, FAILED, topic="events") == 2
    assert _value(text, REDRIVEN, topic="events") == 1


def test_http_deliveries_are_counted_when_the_outbox_settles_them(
    broker: millpond.Broker,
) -> None:
    # An HTTP/S notification is delivered when the endpoint answers 2xx, and failed once
    # SNS stops retrying, not when it is queued at publish.
    topic = broker.create_topic("events")
    sub = topic.subscribe("https://example.com/hook", protocol="https")
    outbox = broker._topics.http
    (confirmation,) = outbox.take()
    outbox.delivered(confirmation)  # a SubscriptionConfirmation: no notification
    topic.confirm_subscription(json.loads(confirmation.body)["Token"])
    sub.set_attributes({"DeliveryPolicy": json.dumps({"healthyRetryPolicy": {"numRetries": 0}})})
    topic.publish("one")
    topic.publish("two")
    assert _value(_render(broker), DELIVERED, topic="events") == 0  # queued, not delivered
    first, second = outbox.take()
    outbox.delivered(first)
    outbox.failed(second, reason="HTTP 500")  # no retries left: given up
    text = _render(broker)
    assert _value(text, PUBLISHED, topic="events") == 2
    assert _value(text, DELIVERED, topic="events") == 1
    assert _value(text, FAILED, topic="events") == 1


# -- SQS: deletes ------------------------------------------------------------------------------

DELETED = "millpond_sqs_number_of_messages_deleted_total"


@pytest.mark.parametrize("name", ["jobs", "jobs.fifo"])
def test_a_repeated_delete_counts_as_on_cloudwatch(broker: millpond.Broker, name: str) -> None:
    # NumberOfMessagesDeleted: "Amazon SQS emits the NumberOfMessagesDeleted metric for every
    # successful deletion operation that uses a valid receipt handle, including duplicate
    # deletions." The daemon's DeleteMessage(Batch) goes through delete_entries: a FIFO
    # queue's left out the repeated delete its standard twin counted.
    fifo = name.endswith(".fifo")
    q = broker.create_queue(name, {"FifoQueue": "true"} if fifo else None)
    q.send("x", **({"group_id": "g", "deduplication_id": "1"} if fifo else {}))
    (message,) = q.receive(1)
    assert q.delete_entries([message.receipt_handle]) == [None]
    assert q.delete_entries([message.receipt_handle]) == [None]  # succeeds again
    assert _value(_render(broker), DELETED, queue=name) == 2


def test_a_daemon_shows_its_topics(daemon: Daemon) -> None:
    sns = daemon.client("sns")
    sqs = daemon.client()
    topic_arn = sns.create_topic(Name="daemon-events")["TopicArn"]
    url = sqs.create_queue(QueueName="daemon-orders")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn["Attributes"]["QueueArn"],
        Attributes={"FilterPolicy": '{"kind": ["order"]}'},
    )
    sns.publish(TopicArn=topic_arn, Message="paid", MessageAttributes=_kind("order"))
    sns.publish(TopicArn=topic_arn, Message="hello")
    text = _daemon_metrics(daemon)
    assert _value(text, PUBLISHED, topic="daemon-events") == 2
    assert _value(text, DELIVERED, topic="daemon-events") == 1
    assert _value(text, FILTERED_OUT, topic="daemon-events") == 1


def test_request_latencies_are_a_cumulative_histogram() -> None:
    # One request under the first bucket, one in the middle, one over the last: each bucket
    # counts the requests at or under its bound, +Inf and _count all of them.
    metrics = Metrics()
    for seconds in (0.0001, 0.3, 100.0):
        metrics.observe_request("sqs", "SendMessage", seconds)
    samples = _samples(metrics.render(_Context()))
    name = "millpond_request_duration_seconds"
    labels = (("action", "SendMessage"), ("service", "sqs"))

    def bucket(bound: str) -> float:
        return samples[(f"{name}_bucket", tuple(sorted((*labels, ("le", bound)))))]

    assert [bucket(b) for b in ("0.0005", "0.25", "0.5", "25.0", "+Inf")] == [1, 1, 2, 2, 3]
    assert samples[(f"{name}_count", labels)] == 3
    assert samples[(f"{name}_sum", labels)] == pytest.approx(100.3001)
