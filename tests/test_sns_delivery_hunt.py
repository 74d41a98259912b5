"""SNS to SQS delivery: behaviour checked against Amazon SNS (its API reference and the
AWS-recorded answers in LocalStack's snapshot tests, tests/aws/services/sns/)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

from millpond.sns_envelope import InvalidParameter

NO_DEDUPLICATION = (
    "Invalid parameter: The topic should either have ContentBasedDeduplication enabled or "
    "MessageDeduplicationId provided explicitly"
)

SET_CONTENT_DEDUPLICATION = textwrap.dedent(
    """
    import sys
    import millpond

    with millpond.open(sys.argv[1], durability="os", core=sys.argv[2]) as broker:
        broker.topic("orders.fifo").set_attributes({"ContentBasedDeduplication": sys.argv[3]})
    """
)


def set_content_deduplication_elsewhere(data_dir: str, impl: str, value: str) -> None:
    """ContentBasedDeduplication changed by another process sharing the data directory."""
    done = subprocess.run(
        [sys.executable, "-c", SET_CONTENT_DEDUPLICATION, data_dir, impl, value],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()


def drain(queue: Any) -> list[Any]:
    got = []
    while batch := queue.receive(10):
        for message in batch:
            got.append(message)
            queue.delete(message.receipt_handle)
    return got


def test_content_deduplication_changed_by_another_process_applies_at_the_next_publish(
    broker, data_dir, impl
):
    # SNS checks a FIFO publish without MessageDeduplicationId against the topic's
    # ContentBasedDeduplication as it is when the message is published (the error text is
    # AWS's, recorded in test_validations_for_fifo "no-dedup-policy"). millpond validated it
    # against this process's cached copy of the topic, so a change made by another process
    # was never seen: turned on, every publish without an id kept failing; turned off,
    # publishes without an id were still taken.
    q = broker.create_queue("jobs.fifo", {"FifoQueue": "true"})
    t = broker.create_topic("orders.fifo", {"FifoTopic": "true"})
    t.subscribe(q, raw_message_delivery=True)
    t.publish("warm the cache", group_id="g", deduplication_id="d0")
    set_content_deduplication_elsewhere(data_dir, impl, "true")
    t.publish("by content", group_id="g")
    set_content_deduplication_elsewhere(data_dir, impl, "false")
    with pytest.raises(InvalidParameter) as info:
        t.publish("no id, no content deduplication", group_id="g")
    assert str(info.value) == NO_DEDUPLICATION
    with pytest.raises(InvalidParameter) as info:
        t.publish_batch([{"Id": "1", "Message": "the same in a batch", "MessageGroupId": "g"}])
    assert str(info.value) == NO_DEDUPLICATION
    assert [m.body for m in drain(q)] == [b"warm the cache", b"by content"]
