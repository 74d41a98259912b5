"""Prometheus text for GET /metrics, named after the CloudWatch SQS and SNS metrics.

Queue depths are read from storage at scrape time; request latency is a histogram per service
and action (``service="sqs"|"sns"``: AddPermission and RemovePermission exist in both APIs).
No prometheus-client dependency: the exposition format is a few lines of text.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import Any

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
)
DEPTHS = (
    (
        "ApproximateNumberOfMessages",
        "millpond_sqs_approximate_number_of_messages_visible",
        "Messages available for retrieval (CloudWatch ApproximateNumberOfMessagesVisible).",
    ),
    (
        "ApproximateNumberOfMessagesNotVisible",
        "millpond_sqs_approximate_number_of_messages_not_visible",
        "Messages in flight (CloudWatch ApproximateNumberOfMessagesNotVisible).",
    ),
    (
        "ApproximateNumberOfMessagesDelayed",
        "millpond_sqs_approximate_number_of_messages_delayed",
        "Messages delayed and not yet available (CloudWatch ApproximateNumberOfMessagesDelayed).",
    ),
)
AGE = "millpond_sqs_approximate_age_of_oldest_message_seconds"
AGE_HELP = (
    "Whole seconds since the oldest message still in the queue (visible, in flight or delayed) "
    "was sent; in a dead-letter queue, since it was moved there. 0 for an empty queue "
    "(CloudWatch ApproximateAgeOfOldestMessage, without its exclusion of standard-queue "
    "messages received 3 or more times)."
)
COUNTERS = (
    (
        "sent",
        "millpond_sqs_number_of_messages_sent_total",
        "Messages added to a queue (CloudWatch NumberOfMessagesSent).",
    ),
    (
        "received",
        "millpond_sqs_number_of_messages_received_total",
        "Messages returned by receives (CloudWatch NumberOfMessagesReceived).",
    ),
    (
        "deleted",
        "millpond_sqs_number_of_messages_deleted_total",
        "Messages deleted (CloudWatch NumberOfMessagesDeleted).",
    ),
    (
        "empty_receives",
        "millpond_sqs_number_of_empty_receives_total",
        "Receive calls that returned no message (CloudWatch NumberOfEmptyReceives).",
    ),
    (
        "deduplicated",
        "millpond_sqs_number_of_deduplicated_sent_messages_total",
        "FIFO queues: messages sent as duplicates, not added "
        "(CloudWatch NumberOfDeduplicatedSentMessages).",
    ),
)
FIFO_ONLY = frozenset({"deduplicated"})  # as on CloudWatch: no series for standard queues
TOPIC_COUNTERS = (
    (
        "published",
        "millpond_sns_number_of_messages_published_total",
        "Messages published to a topic (CloudWatch NumberOfMessagesPublished).",
    ),
    (
        "delivered",
        "millpond_sns_number_of_notifications_delivered_total",
        "Messages delivered to subscriptions (CloudWatch NumberOfNotificationsDelivered).",
    ),
    (
        "filtered_out",
        "millpond_sns_number_of_notifications_filtered_out_total",
        "Messages a subscription's filter policy rejected "
        "(CloudWatch NumberOfNotificationsFilteredOut).",
    ),
    (
        "failed",
        "millpond_sns_number_of_notifications_failed_total",
        "Deliveries given up on (CloudWatch NumberOfNotificationsFailed).",
    ),
    (
        "redriven_to_dlq",
        "millpond_sns_number_of_notifications_redriven_to_dlq_total",
        "Failed deliveries moved to the subscription's dead-letter queue "
        "(CloudWatch NumberOfNotificationsRedrivenToDlq).",
    ),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Request latencies; message counters come from each broker's queues."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (service, action) -> the count of each bucket, of those over the last one, and the
        # sum of the seconds (the count of all is the sum of the counts, made at render)
        self._latency: dict[tuple[str, str], list[float]] = {}

    def observe_request(self, service: str, action: str, seconds: float) -> None:
        """Count one request; per bucket here, cumulative at render (one bisect per request)."""
        row = self._latency.get((service, action))
        if row is None:
            with self._lock:
                row = self._latency.setdefault((service, action), [0.0] * (len(BUCKETS) + 2))
        # Runs on the event loop thread only: no lock needed for the counts.
        row[bisect_left(BUCKETS, seconds)] += 1  # len(BUCKETS): over the last bucket
        row[-1] += seconds

    def render(self, ctx: Any) -> str:
        lines: list[str] = []
        queues = []
        topics = []
        for broker in ctx.brokers():
            for name in broker.list_topics():
                try:
                    topics.append((broker.region, broker.topic(name)))
                except LookupError:
                    continue  # deleted meanwhile
            for name in broker.list_queues():
                try:
                    queue = broker.queue(name)
                    attrs, age_s = queue._attributes_and_age(with_age=True)  # one write
                    attrs[AGE] = str(age_s)
                    queues.append((broker.region, queue, attrs))
                except LookupError:
                    continue
        for attribute, metric, help_text in (*DEPTHS, (AGE, AGE, AGE_HELP)):
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
            for region, queue, attrs in queues:
                lines.append(
                    f'{metric}{{region="{region}",queue="{_escape(queue.name)}"}} '
                    f"{attrs[attribute]}"
                )
        for key, metric, help_text in COUNTERS:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
            for region, queue, _ in queues:
                if key in FIFO_ONLY and not queue.name.endswith(".fifo"):
                    continue
                lines.append(
                    f'{metric}{{region="{region}",queue="{_escape(queue.name)}"}} '
                    f"{queue.counters.get(key, 0)}"
                )
        for key, metric, help_text in TOPIC_COUNTERS:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
            for region, topic in topics:
                lines.append(
                    f'{metric}{{region="{region}",topic="{_escape(topic.name)}"}} '
                    f"{topic.counters[key]}"
                )
        name = "millpond_sns_publish_size_bytes"
        lines += [
            f"# HELP {name} Size of the messages published: message and attributes, as SNS "
            "counts them toward its limit (CloudWatch PublishSize).",
            f"# TYPE {name} summary",
        ]
        for region, topic in topics:
            label = f'region="{region}",topic="{_escape(topic.name)}"'
            lines.append(f"{name}_sum{{{label}}} {topic.counters['published_bytes']}")
            lines.append(f"{name}_count{{{label}}} {topic.counters['published']}")
        name = "millpond_request_duration_seconds"
        lines += [
            f"# HELP {name} Time to answer an API request, by service and action.",
            f"# TYPE {name} histogram",
        ]
        with self._lock:
            rows = {key: list(row) for key, row in self._latency.items()}
        for (service, action), row in sorted(rows.items()):
            label = f'service="{service}",action="{_escape(action.replace("AmazonSQS.", ""))}"'
            cumulative = 0.0
            for bound, count in zip(BUCKETS, row):
                cumulative += count
                lines.append(f'{name}_bucket{{{label},le="{bound}"}} {int(cumulative)}')
            total = int(cumulative + row[-2])  # and those over the last bucket
            lines.append(f'{name}_bucket{{{label},le="+Inf"}} {total}')
            lines.append(f"{name}_sum{{{label}}} {row[-1]}")
            lines.append(f"{name}_count{{{label}}} {total}")
        return "\n".join(lines) + "\n"
