"""SQS message semantics where millpond differed from Amazon SQS, embedded and over the daemon.

Sources, cited per test: the Amazon SQS Developer Guide and API Reference, and LocalStack's
AWS-validated tests and recordings (localstack/localstack tests/aws/services/sqs/).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import millpond

from .daemon import Daemon


@pytest.fixture(scope="module")
def sqs(daemon: Daemon) -> Any:
    return daemon.client()


def texts(messages: list[millpond.Message]) -> list[str]:
    return sorted(m.text for m in messages)


def fifo(broker: millpond.Broker, name: str, delay_seconds: int) -> millpond.Queue:
    return broker.create_queue(
        name,
        {
            "FifoQueue": "true",
            "ContentBasedDeduplication": "true",
            "DelaySeconds": str(delay_seconds),
        },
    )


# -- a FIFO queue's DelaySeconds is retroactive ------------------------------------------------
# SQS Developer Guide, "Amazon SQS delay queues" (sqs-delay-queues.html): "For standard queues,
# the per-queue delay setting is not retroactive—changing the setting doesn't affect the delay of
# messages already in the queue. For FIFO queues, the per-queue delay setting is
# retroactive—changing the setting affects the delay of messages already in the queue."


def test_lowering_a_fifo_queue_delay_releases_the_messages_waiting_out_the_old_one(broker, clock):
    q = fifo(broker, "lower.fifo", 600)
    q.send("a", group_id="g")
    q.send("b", group_id="h")
    clock.advance(10)
    q.set_attributes({"DelaySeconds": "0"})
    assert q.get_attributes()["ApproximateNumberOfMessagesDelayed"] == "0"
    assert texts(q.receive(10)) == ["a", "b"]


def test_raising_a_fifo_queue_delay_holds_the_messages_still_waiting(broker, clock):
    q = fifo(broker, "raise.fifo", 60)
    q.send("a", group_id="g")
    clock.advance(30)
    q.set_attributes({"DelaySeconds": "120"})
    clock.advance(40)  # 70 s after the send: past the old delay, not the new one
    assert q.receive(10) == []
    assert q.get_attributes()["ApproximateNumberOfMessagesDelayed"] == "1"
    clock.advance(50)  # 120 s after the send
    assert texts(q.receive(10)) == ["a"]


def test_a_fifo_delay_change_keeps_group_order_and_leaves_received_messages_alone(broker, clock):
    q = fifo(broker, "order.fifo", 0)
    q.send("first", group_id="g")
    (first,) = q.receive(1, visibility_timeout=30)
    q.set_attributes({"DelaySeconds": "300"})
    q.send("second", group_id="g")
    q.set_attributes({"DelaySeconds": "0"})
    assert q.receive(10) == []  # "first" is still in flight and holds its group
    q.delete(first.receipt_handle)
    assert texts(q.receive(10)) == ["second"]


def test_a_standard_queue_delay_change_leaves_the_waiting_messages_as_they_were(broker, clock):
    q = broker.create_queue("standard", {"DelaySeconds": "600"})
    q.send("a")
    q.set_attributes({"DelaySeconds": "0"})
    assert q.receive(10) == []
    clock.advance(600)
    assert texts(q.receive(10)) == ["a"]


def test_lowering_a_fifo_queue_delay_wakes_a_long_poll(tmp_path, impl):
    # A long poll sleeps until the next visibility time it saw (here the old delay's end).
    with millpond.open(tmp_path / "real", durability="os", core=impl) as broker:
        q = fifo(broker, "wake.fifo", 900)
        q.send("a", group_id="g")
        results: list[list[Any]] = []
        t = threading.Thread(target=lambda: results.append(q.receive(1, wait_seconds=15)))
        t0 = time.monotonic()
        t.start()
        time.sleep(0.2)  # let it block first
        q.set_attributes({"DelaySeconds": "0"})
        t.join(timeout=10)
        assert not t.is_alive(), "the long poll slept through the delay change"
        assert texts(results[0]) == ["a"]
        assert time.monotonic() - t0 < 5


def test_set_queue_attributes_delay_seconds_releases_a_fifo_long_poll_over_the_wire(sqs):
    url = sqs.create_queue(
        QueueName="wire-delay.fifo",
        Attributes={
            "FifoQueue": "true",
            "ContentBasedDeduplication": "true",
            "DelaySeconds": "900",
        },
    )["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="a", MessageGroupId="g")
    results: list[dict[str, Any]] = []
    t = threading.Thread(
        target=lambda: results.append(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=15))
    )
    t0 = time.monotonic()
    t.start()
    time.sleep(0.3)  # let it block first
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "0"})
    t.join(timeout=10)
    assert not t.is_alive(), "the long poll slept through the delay change"
    assert [m["Body"] for m in results[0]["Messages"]] == ["a"]
    assert time.monotonic() - t0 < 5
