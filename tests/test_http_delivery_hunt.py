"""HTTP/S subscriptions and their delivery, checked against Amazon SNS's documented behaviour.

The outbox is driven directly (``broker._topics.http``) with a manual clock, so retry schedules
take no real time; the daemon's deliverer is driven with an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

import millpond
from millpond.sns_envelope import InvalidParameter

from .test_server_sns import NO_RETRY, Endpoint, confirmation, make_topic

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


def test_throttle_policy_spaces_the_deliveries_of_a_subscription(broker, clock):
    # "throttlePolicy": {"maxReceivesPerSecond": N}: "The maximum number of deliveries per
    # second, per subscription" (SNS's HTTP/S delivery policy); the topic's
    # defaultThrottlePolicy when the subscription has none. All due ones were taken at once.
    topic = broker.create_topic("orders")
    policy = json.dumps({"throttlePolicy": {"maxReceivesPerSecond": 2}})
    slow = confirmed(broker, topic, attributes={"DeliveryPolicy": policy})
    confirmed(broker, topic, HOOK + "/fast")  # not throttled
    outbox = broker._topics.http

    def take() -> list[str]:
        taken = outbox.take()
        for delivery in taken:
            outbox.delivered(delivery)
        return sorted("slow" if d.subscription_arn == slow.arn else "fast" for d in taken)

    for i in range(5):
        topic.publish(f"m{i}")
    assert take() == ["fast"] * 5 + ["slow"]
    assert outbox.next_due_ms() == clock.now_ms() + 500
    for _ in range(4):  # then one every 500 ms
        clock.advance(0.499)
        assert take() == []
        clock.advance(0.001)
        assert take() == ["slow"]
    assert outbox.next_due_ms() is None
    # the topic's default throttle, for a subscription without one of its own
    http = {"defaultThrottlePolicy": {"maxReceivesPerSecond": 1}}
    topic.set_attributes({"DeliveryPolicy": json.dumps({"http": http})})
    clock.advance(1)
    topic.publish("a")
    topic.publish("b")
    assert take() == ["fast", "slow"]
    clock.advance(0.5)
    assert take() == ["slow"]
    clock.advance(0.5)
    assert take() == ["fast"]


# -- through the daemon ---------------------------------------------------------------------------


@pytest.fixture(scope="module", name="sns")
def sns_client_fixture(daemon: Any) -> Any:
    """An SNS client of the daemon that does not retry (other test files import it too)."""
    return daemon.client("sns", config=NO_RETRY)


@pytest.fixture(name="endpoint")
def http_endpoint_fixture() -> Iterator[Endpoint]:
    """A local HTTP endpoint that records what SNS posts to it."""
    e = Endpoint()
    yield e
    e.close()


def test_the_daemon_keeps_to_a_throttle_policy_without_waiting_for_its_poll(sns, endpoint):
    # 10 deliveries a second: POSTs 100 ms apart, neither all at once nor one per poll of the
    # outbox (every 0.5 s) as the deliverer looked at it between wake-ups.
    topic = make_topic(sns)
    policy = json.dumps({"throttlePolicy": {"maxReceivesPerSecond": 10}})
    sns.subscribe(
        TopicArn=topic,
        Protocol="http",
        Endpoint=endpoint.url + "/throttled",
        Attributes={"DeliveryPolicy": policy},
    )
    sns.confirm_subscription(TopicArn=topic, Token=confirmation(endpoint, "/throttled")["Token"])
    sns.publish_batch(
        TopicArn=topic,
        PublishBatchRequestEntries=[{"Id": str(i), "Message": f"m{i}"} for i in range(6)],
    )
    arrived = []
    for _ in range(6):
        endpoint.next()
        arrived.append(time.monotonic())
    gaps = [later - earlier for earlier, later in zip(arrived, arrived[1:])]
    assert sum(gaps) >= 0.45  # 5 gaps of 100 ms
    # not each at the next poll of the outbox (0.5 s apart); the median, so that one stall
    # of a loaded machine does not fail the test
    assert sorted(gaps)[len(gaps) // 2] < 0.3
