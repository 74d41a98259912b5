"""Messages between millpond's Python shapes and the SQS/SNS wire shapes boto3 uses.

A received SQS message becomes a real :class:`millpond.Message` (its metadata packed as the
embedded broker packs it), so ``isinstance`` checks, ``attributes``, ``group_id``, the MD5
properties and the rest behave exactly as on the other backends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from millpond.errors import InvalidMessageContents
from millpond.message import Message, pack_metadata

# Every system attribute a Message exposes; asked for on each receive.
SYSTEM_ATTRIBUTES = ["All"]
MESSAGE_ATTRIBUTES = ["All"]


def system_attribute_parameters(sqs_client: Any) -> dict[str, list[str]]:
    """ReceiveMessage's parameters asking for every system attribute, in both spellings:
    AttributeNames (deprecated, which some endpoints still expect) and
    MessageSystemAttributeNames, when this botocore knows that one (added in 1.34.101; an
    older one refuses it as an unknown parameter)."""
    wanted = {"AttributeNames": SYSTEM_ATTRIBUTES}
    request = sqs_client.meta.service_model.operation_model("ReceiveMessage").input_shape
    if "MessageSystemAttributeNames" in request.members:
        wanted["MessageSystemAttributeNames"] = SYSTEM_ATTRIBUTES
    return wanted


def body_text(body: Any) -> Any:
    """The body as SQS carries it, text; bytes must be UTF-8.

    Anything else is passed on as given, for the caller's checks to refuse like the embedded
    broker refuses it. (SNS messages are text on every backend: sns_envelope.check_message.)
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            return bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMessageContents(
                "Amazon SQS carries the MessageBody as text: bytes must be UTF-8 (the embedded "
                "broker alone keeps arbitrary bytes)"
            ) from None
    return body


def wire_attributes(attributes: Any) -> Any:
    """Message attributes for boto3, whose shape the embedded API takes too; bytes-like binary
    values become bytes (botocore base64-encodes them). Not a mapping: passed on for botocore
    to refuse."""
    if not attributes:
        return None
    if not isinstance(attributes, Mapping):
        return attributes
    out: dict[str, Any] = {}
    for name, value in attributes.items():
        if isinstance(value, Mapping) and isinstance(
            value.get("BinaryValue"), (bytearray, memoryview)
        ):
            value = {**value, "BinaryValue": bytes(value["BinaryValue"])}
        out[name] = value
    return out


def received_attributes(raw: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """MessageAttributes of a received message in the embedded shape: DataType and one value
    (the query protocol adds empty StringListValues/BinaryListValues, which SQS never fills)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in sorted((raw or {}).items()):
        entry: dict[str, Any] = {"DataType": value["DataType"]}
        if "BinaryValue" in value:
            entry["BinaryValue"] = bytes(value["BinaryValue"])
        else:
            entry["StringValue"] = value.get("StringValue", "")
        out[name] = entry
    return out


def to_message(raw: Mapping[str, Any]) -> Message:
    """A ReceiveMessage entry (asked with every system and message attribute) as a Message."""
    system = raw.get("Attributes") or {}
    metadata = pack_metadata(
        received_attributes(raw.get("MessageAttributes")),
        system.get("MessageGroupId"),
        system.get("MessageDeduplicationId"),
        system.get("AWSTraceHeader"),
        system.get("SenderId"),
    )
    return Message(
        raw["Body"].encode("utf-8"),
        raw["MessageId"],
        raw["ReceiptHandle"],
        int(system.get("ApproximateReceiveCount", 1)),
        int(system.get("SentTimestamp", 0)),
        int(system.get("ApproximateFirstReceiveTimestamp", 0)),
        metadata,
        system.get("DeadLetterQueueSourceArn"),
        system.get("SequenceNumber"),
    )
