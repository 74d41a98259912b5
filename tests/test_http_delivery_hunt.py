"""HTTP/S subscriptions and their delivery, checked against Amazon SNS's documented behaviour.

The outbox is driven directly (``broker._topics.http``) with a manual clock, so retry schedules
take no real time; the daemon's deliverer is driven with an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import millpond
from millpond.sns_envelope import InvalidParameter

HOOK = "https://example.com/hook"


def confirmed(
    broker: millpond.Broker, topic: millpond.Topic, url: str = HOOK, **kwargs: Any
) -> millpond.Subscription:
    """An HTTPS subscription of ``topic``, confirmed with the token of its confirmation."""
    sub = topic.subscribe(url, protocol="https", **kwargs)
    outbox = broker._topics.http
    (delivery,) = outbox.take()
    assert delivery.message_type == "SubscriptionConfirmation"
    outbox.delivered(delivery)
    topic.confirm_subscription(json.loads(delivery.body)["Token"])
    return sub


def test_a_failed_unsubscribe_confirmation_is_retried(broker, clock):
    # SNS retries an HTTP/S delivery that fails with a server error as the delivery policy
    # says (by default 3 retries, 20 s apart): an UnsubscribeConfirmation as much as a
    # SubscriptionConfirmation. It was dropped at the first failure instead (its subscription
    # is gone, which the outbox took for "unsubscribed meanwhile").
    topic = broker.create_topic("orders")
    sub = confirmed(broker, topic)
    sub.unsubscribe()
    outbox = broker._topics.http
    (goodbye,) = outbox.take()
    assert goodbye.message_type == "UnsubscribeConfirmation"
    outbox.failed(goodbye, reason="HTTP 503")
    assert outbox.next_due_ms() == clock.now_ms() + 20_000
    clock.advance(20)
    (again,) = outbox.take()
    assert again.message_type == "UnsubscribeConfirmation"
    assert (again.attempt, again.body) == (2, goodbye.body)
    for _ in range(2):  # the two retries left
        outbox.failed(again, reason="HTTP 503")
        clock.advance(20)
        (again,) = outbox.take()
    outbox.failed(again, reason="HTTP 503")  # 3 retries made: given up
    assert outbox.next_due_ms() is None
    assert sub.undelivered == 0  # not a message of the topic's: nothing counted lost


def test_a_min_delay_target_below_one_second_is_refused(broker):
    # SNS refuses it (AWS's answer, quoted in awsdocs/amazon-sns-developer-guide#5): "Invalid
    # parameter: Attributes Reason: DeliveryPolicy: healthyRetryPolicy.minDelayTarget must be
    # greater than or equal to 1". It was stored, and the retries made 1 s apart.
    topic = broker.create_topic("orders")
    zero = json.dumps({"healthyRetryPolicy": {"minDelayTarget": 0, "numRetries": 2}})
    reason = "DeliveryPolicy: healthyRetryPolicy.minDelayTarget must be greater than or equal to 1"
    with pytest.raises(InvalidParameter) as info:
        topic.subscribe(HOOK, protocol="https", attributes={"DeliveryPolicy": zero})
    assert str(info.value) == f"Invalid parameter: Attributes Reason: {reason}"
    assert topic.list_subscriptions() == []
    sub = confirmed(broker, topic)
    with pytest.raises(InvalidParameter) as info:
        sub.set_attributes({"DeliveryPolicy": zero})
    assert str(info.value) == f"Invalid parameter: {reason}"
    assert "DeliveryPolicy" not in sub.get_attributes()
    one = json.dumps({"healthyRetryPolicy": {"minDelayTarget": 1, "numRetries": 2}})
    sub.set_attributes({"DeliveryPolicy": one})  # the least SNS takes
    assert sub.get_attributes()["DeliveryPolicy"] == one
