"""Message attributes, system attributes and their MD5s, where millpond differed from AWS.

Sources, cited per test: the SNS and SQS developer guides (awsdocs/amazon-sns-developer-guide
doc_source/sns-message-attributes.md, awsdocs/amazon-sqs-developer-guide
doc_source/sqs-message-metadata.md) and LocalStack's AWS-validated tests and their recordings.
"""

from __future__ import annotations

from typing import Any

import pytest

import millpond
from millpond.sns_envelope import ParameterValueInvalid


def queue_arn(queue: millpond.Queue) -> str:
    return queue.get_attributes(["QueueArn"])["QueueArn"]


@pytest.mark.parametrize(
    "data_type",
    ["String.\x01", "Number.\uffff", "Binary.\x00", "String.\ud800"],
    ids=["control", "uffff", "nul", "lone-surrogate"],
)
def test_sns_type_label_holds_only_body_characters(broker: millpond.Broker, data_type: str) -> None:
    """SNS: "Type - ... The data type has the same restrictions on the content as the message
    body" (SNS developer guide, sns-message-attributes.md). millpond checked only the value:
    such a publish was taken and every raw SQS subscription lost the message (SQS refuses the
    type), and a lone surrogate raised a bare UnicodeEncodeError while building the envelope."""
    topic = broker.create_topic("labels")
    raw = broker.create_queue("raw")
    topic.subscribe(queue_arn(raw), attributes={"RawMessageDelivery": "true"})
    value: dict[str, Any] = (
        {"DataType": data_type, "BinaryValue": b"x"}
        if data_type.startswith("Binary")
        else {"DataType": data_type, "StringValue": "1"}
    )
    with pytest.raises(ParameterValueInvalid, match="'a' has a type with a character"):
        topic.publish("m", attributes={"a": value})
    # a label in the body's character set is still any text (AWS-recorded: LocalStack's
    # test_message_attributes_prefixes publishes "String.  prefixed.")
    topic.publish("m", attributes={"a": {"DataType": "String.  prefixed.", "StringValue": "1"}})
    (message,) = raw.receive()
    assert message.attributes == {"a": {"DataType": "String.  prefixed.", "StringValue": "1"}}
