"""HTTP/S subscriptions on the daemon and their attributes, against Amazon SNS's recorded answers.

Embedded tests drive the outbox (``broker._topics.http``) with a manual clock; daemon tests use
an HTTP server on 127.0.0.1 as the endpoint.
"""

from __future__ import annotations

import json

import pytest

from millpond.sns_envelope import InvalidParameter

HOOK = "https://example.com/hook"


def test_a_redrive_policy_with_an_unknown_member_is_refused(broker):
    # SNS's RedrivePolicy has deadLetterTargetArn only; the SQS queue's maxReceiveCount copied
    # into it is refused (AWS's answers, quoted in cloudposse/terraform-aws-sns-topic#48 and
    # ministryofjustice/cloud-platform-environments#11520): "Invalid parameter: Attributes
    # Reason: RedrivePolicy: invalid JSON. Attribute maxReceiveCount is unknown." It was stored,
    # so a policy AWS refuses passed every test run against millpond.
    topic = broker.create_topic("orders")
    dlq = broker.create_queue("orders-dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 5})
    reason = "RedrivePolicy: invalid JSON. Attribute maxReceiveCount is unknown."
    with pytest.raises(InvalidParameter) as info:
        topic.subscribe(HOOK, protocol="https", attributes={"RedrivePolicy": policy})
    assert str(info.value) == f"Invalid parameter: Attributes Reason: {reason}"
    assert topic.list_subscriptions() == []
    sub = topic.subscribe(broker.create_queue("orders-q"))
    with pytest.raises(InvalidParameter) as info:
        sub.set_attributes({"RedrivePolicy": policy})
    assert str(info.value) == f"Invalid parameter: {reason}"
    assert "RedrivePolicy" not in sub.get_attributes()
    sub.set_attributes({"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn})})
