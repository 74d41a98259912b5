"""Dead-letter queues and redrive, against what Amazon SQS answers (bug hunt)."""

from __future__ import annotations

import json

import pytest

from millpond import errors


@pytest.mark.parametrize(
    "policy",
    [
        {},
        # member names of the wrong case: both mandatory members are missing
        {"MaxReceiveCount": "4", "DeadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq"},
    ],
)
def test_a_redrive_policy_missing_both_members_names_max_receive_count_first(broker, policy):
    # SQS checks maxReceiveCount before deadLetterTargetArn. Real AWS answers, as reported:
    # `Value {} for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain
    # mandatory attribute: maxReceiveCount.` (ansible-collections/community.aws#2321), and the
    # same reason for {"MaxReceiveCount":"4","DeadLetterTargetArn":"..."} (rubyonjets/jets#101).
    broker.create_queue("dlq")
    text = json.dumps(policy)
    with pytest.raises(errors.InvalidParameterValue) as refused:
        broker.create_queue("work", {"RedrivePolicy": text})
    assert str(refused.value) == (
        f"Value {text} for parameter RedrivePolicy is invalid. Reason: Redrive policy does not "
        "contain mandatory attribute: maxReceiveCount."
    )
