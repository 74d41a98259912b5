"""SNS FIFO topics: behaviour checked against AWS's recordings (LocalStack's AWS-validated
snapshots, tests/aws/services/sns/test_sns.snapshot.json)."""

from __future__ import annotations

import json

import pytest

from millpond.sns_envelope import InvalidParameter


def test_fifo_batch_checks_the_message_structure_before_the_group_id(broker):
    # AWS-recorded (test_publish_batch_exceptions "no-default-key-json"): a FIFO topic's
    # entry with MessageStructure json and no "default" key, and no MessageGroupId either.
    t = broker.create_topic("orders.fifo", {"FifoTopic": "true"})
    entry = {"Id": "1", "Message": json.dumps({"sqs": "test sqs"}), "MessageStructure": "json"}
    with pytest.raises(InvalidParameter) as info:
        t.publish_batch([entry])
    assert str(info.value) == (
        "Invalid parameter: Message Structure - No default entry in JSON message body"
    )
    with pytest.raises(InvalidParameter) as info:  # a valid message: the group id is missing
        t.publish_batch([{"Id": "1", "Message": "Test message without Group ID"}])
    assert str(info.value) == (
        "Invalid parameter: The MessageGroupId parameter is required for FIFO topics"
    )
