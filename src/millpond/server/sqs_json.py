"""SQS over AWS JSON 1.0: ``X-Amz-Target: AmazonSQS.<Action>`` and a JSON body.

Errors carry ``__type`` and the ``x-amzn-query-error`` header that current SDKs read to raise
their typed exceptions (``QueueDoesNotExist``...).
"""

from __future__ import annotations

from typing import Any

import orjson

from millpond.server.protocol import AwsError

CONTENT_TYPE = b"application/x-amz-json-1.0"
TARGET_PREFIX = "AmazonSQS."


# Members the SQS model types as Integer, List or Map: over JSON a value of another JSON type is
# refused as AWS refuses it (a string would otherwise be taken character by character, "10"
# read as 10). The query codec hands every value over as text and has its own rules.
_INTEGERS = frozenset(
    {
        "DelaySeconds",
        "MaxNumberOfMessages",
        "VisibilityTimeout",
        "WaitTimeSeconds",
        "MaxResults",
        "MaxNumberOfMessagesPerSecond",
    }
)
_LISTS = frozenset(
    {
        "AttributeNames",
        "MessageAttributeNames",
        "MessageSystemAttributeNames",
        "TagKeys",
        "AWSAccountIds",
        "Actions",
        "Entries",
    }
)
_MAPS = frozenset({"Attributes", "Tags", "tags", "MessageAttributes", "MessageSystemAttributes"})
# String members: a list or object there is refused too (the handlers would take its repr).
_STRINGS = frozenset(
    {
        "QueueUrl",
        "QueueName",
        "QueueNamePrefix",
        "QueueOwnerAWSAccountId",
        "NextToken",
        "MessageBody",
        "MessageGroupId",
        "MessageDeduplicationId",
        "ReceiveRequestAttemptId",
        "ReceiptHandle",
        "Id",
        "Label",
        "SourceArn",
        "DestinationArn",
        "TaskHandle",
    }
)


def _serialization(message: str) -> AwsError:
    return AwsError("SerializationException", message, 400, "SerializationException")


# Each typed member's expected JSON type (str: any scalar, but no list or object), so that a
# member is looked up once: a request's members are checked on every call.
_MEMBER_TYPES: dict[str, type] = {
    **dict.fromkeys(_INTEGERS, int),
    **dict.fromkeys(_LISTS, list),
    **dict.fromkeys(_MAPS, dict),
    **dict.fromkeys(_STRINGS, str),
}


# The members a string is wrong for, and the JSON types no string member takes: a request with
# none of the first and no value of the second (a SendMessage of a body: its URL and body) has
# nothing to refuse, which two C-level set checks tell (the loop below costs ~80 opcodes).
_NOT_TEXT = frozenset(_INTEGERS | _LISTS | _MAPS)
_CONTAINERS = frozenset((list, dict))


def _check_member_types(params: dict[str, Any]) -> None:
    if _NOT_TEXT.isdisjoint(params) and _CONTAINERS.isdisjoint(map(type, params.values())):
        return
    for name, value in params.items():
        expected = _MEMBER_TYPES.get(name)
        if expected is None or value is None:
            continue
        kind = type(value)
        if expected is str:
            if kind is list or kind is dict:
                raise _serialization(f"Unexpected value type for {name}")
        elif kind is not expected:
            if expected is int:
                raise _serialization(
                    f"{kind.__name__.upper()}_VALUE can not be converted to an Integer"
                )
            raise _serialization(f"Unexpected value type for {name}")
        # The lists but Entries hold strings: a list or object inside would reach the handlers
        # (and fail there with a Python error, not AWS's).
        elif expected is list and name != "Entries" and any(type(v) is not str for v in value):
            raise _serialization(f"Unexpected value type for a member of {name}")
    for entry in params.get("Entries") or ():
        if type(entry) is dict:
            _check_member_types(entry)


def parse(body: bytes) -> dict[str, Any]:
    """The request's parameters; an empty body means none."""
    if not body or body.isspace():
        return {}
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _serialization("Start of structure or map found where not expected.") from None
    if not isinstance(params, dict):
        raise _serialization("The request body must be a JSON object.")
    _check_member_types(params)
    return params


def response(result: dict[str, Any]) -> bytes:
    return orjson.dumps(result)


def error(exc: AwsError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    fault = "Sender" if exc.sender_fault else "Receiver"
    body = orjson.dumps({"__type": f"com.amazonaws.sqs#{exc.json_type}", "message": exc.message})
    headers = [
        (b"content-type", CONTENT_TYPE),
        (b"x-amzn-query-error", f"{exc.code};{fault}".encode()),
    ]
    return exc.status, headers, body
