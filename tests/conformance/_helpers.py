"""Small helpers the conformance tests share (public API only, real time).

Receives go through :func:`drain`, which keeps receiving until it has what it expects or a
deadline passes: Amazon SQS's short poll may answer with fewer messages than are available
("fewer messages might be returned"), and SNS to SQS delivery may lag, so a test that wants N
messages asks for them with a wait instead of trusting one receive.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections.abc import Mapping
from typing import Any


def drain(
    queue: Any, count: int, *, wait: float = 5.0, visibility_timeout: int | None = None
) -> list[Any]:
    """Receive until ``count`` messages arrived or ``wait`` seconds passed; returns them all.

    The messages stay in flight (not deleted); more than ``count`` can come back when more
    are there, so a test that expects exactly N can ask for N and then check no more came.
    """
    deadline = time.monotonic() + wait
    got: list[Any] = []
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        kwargs: dict[str, Any] = {"wait_seconds": max(1, min(int(left), 20))}
        if visibility_timeout is not None:
            kwargs["visibility_timeout"] = visibility_timeout
        got.extend(queue.receive(min(10, count - len(got)), **kwargs))
    return got


def bodies(messages: list[Any]) -> list[str]:
    return [m.body.decode() for m in messages]


def string(value: str, data_type: str = "String") -> dict[str, Any]:
    return {"DataType": data_type, "StringValue": value}


def number(value: str, data_type: str = "Number") -> dict[str, Any]:
    return {"DataType": data_type, "StringValue": value}


def binary(value: bytes, data_type: str = "Binary") -> dict[str, Any]:
    return {"DataType": data_type, "BinaryValue": value}


def md5_of_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> str:
    """MD5OfMessageAttributes as Amazon SQS computes it, written out here independently of
    millpond (reference sqs-sns.md §1.5, reproduced against AWS-recorded digests): names
    sorted; for each, length-prefixed name and full data type, a transport byte (1 String and
    Number, 2 Binary) and the length-prefixed value."""
    out = b""
    for name in sorted(attributes):
        attribute = attributes[name]
        data_type = attribute["DataType"]
        out += struct.pack(">I", len(name.encode())) + name.encode()
        out += struct.pack(">I", len(data_type.encode())) + data_type.encode()
        if data_type.startswith("Binary"):
            value = bytes(attribute["BinaryValue"])
            out += b"\x02"
        else:
            value = attribute["StringValue"].encode()
            out += b"\x01"
        out += struct.pack(">I", len(value)) + value
    return hashlib.md5(out).hexdigest()


def receive_woken_by(queue: Any, action: Any, *, wait_seconds: int | None = 15) -> list[Any]:
    """Long-poll ``queue`` while another thread runs ``action()`` after 0.5 s; returns what the
    poll got, checking it returned soon after the action instead of at the end of the wait.

    ``wait_seconds=None`` leaves the wait to the queue's ReceiveMessageWaitTimeSeconds.
    """

    def later() -> None:
        time.sleep(0.5)
        action()

    thread = threading.Thread(target=later)
    started = time.monotonic()
    thread.start()
    try:
        messages: list[Any] = queue.receive(10, wait_seconds=wait_seconds)
    finally:
        thread.join()
    elapsed = time.monotonic() - started
    assert messages, f"the long poll returned empty after {elapsed:.1f} s"
    assert 0.4 <= elapsed < 5, f"the long poll returned after {elapsed:.1f} s"
    return messages
