"""Real clients against `millpond serve`: what a client library sees in realistic workflows.

The daemon here also serves the native protocol, whose producers (like the embedded API) send
bytes, while SQS consumers (boto3 over AWS JSON or the query protocol, the AWS SDK for
JavaScript, kombu...) read text and check it against MD5OfBody.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest

import millpond

from .daemon import Daemon, native_daemon_fixture  # noqa: F401 (fixture)
from .test_server_sqs import make_client, query_model_dir

__all__ = ["query_model_dir"]  # a fixture, imported for the query-protocol boto3 client


def _receive_all(sqs: Any, url: str, count: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while len(messages) < count:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        assert got.get("Messages"), f"only {len(messages)} of {count} received"
        messages += got["Messages"]
    return messages


@pytest.mark.parametrize("protocol", ["json", "query"])
def test_a_body_sent_as_bytes_reaches_sqs_clients_with_its_md5(
    daemon: Daemon, query_model_dir: str, protocol: str
) -> None:
    """A body the native protocol (or the embedded API) stored as bytes goes out as text the
    wire can carry, with the MD5 of that text: the JS, Java and Go SDKs check MD5OfBody and
    refused the whole receive ("Invalid MD5 checksum on messages"), since it was the MD5 of
    bytes that are not UTF-8; over the query protocol a character XML 1.0 cannot carry made the
    whole response unparseable (botocore: ResponseParserError, "invalid XML received")."""
    name = f"bytes-{uuid.uuid4().hex[:8]}"
    # JSON carries any character (escaped); XML 1.0 cannot carry C0 controls but tab/LF/CR
    controls = "nul \x00 esc \x1b" if protocol == "json" else "nul \ufffd esc \ufffd"
    sent = {
        b"\xff\xfe not UTF-8": "\ufffd\ufffd not UTF-8",
        b"nul \x00 esc \x1b": controls,
        "caf\u00e9 \U0001f600".encode(): "caf\u00e9 \U0001f600",  # UTF-8: as sent
    }
    with millpond.connect(daemon.native_url) as producer:
        queue = producer.create_queue(name)
        for body in sent:
            queue.send(body)
    sqs = make_client(daemon.port, protocol, query_model_dir)
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    messages = _receive_all(sqs, url, len(sent))
    assert sorted(m["Body"] for m in messages) == sorted(sent.values())
    for m in messages:
        assert m["MD5OfBody"] == hashlib.md5(m["Body"].encode()).hexdigest(), m["Body"]
