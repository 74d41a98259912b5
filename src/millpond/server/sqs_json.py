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


def parse(body: bytes) -> dict[str, Any]:
    """The request's parameters; an empty body means none."""
    if not body.strip():
        return {}
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AwsError(
            "SerializationException",
            "Start of structure or map found where not expected.",
            400,
            "SerializationException",
        ) from None
    if not isinstance(params, dict):
        raise AwsError(
            "SerializationException",
            "The request body must be a JSON object.",
            400,
            "SerializationException",
        )
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
