"""The plain SendMessage path (server/plain_send.py) answers exactly as the general path does.

Each case runs in two fresh daemons (in-process apps): one as shipped, one with the plain path
switched off, so every request takes the general path (App._sqs_json -> sqs.send_message).
Their answers (status, body with the message ids masked) and what each queue then holds must
be the same; and the plain path must have been taken where the request is plain, or the
comparison would compare the general path with itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from millpond.server import plain_send

from .test_server_fuzz import Harness

URL = "http://localhost/123456789012/"
OTHER_ACCOUNT_URL = "http://localhost/210987654321/plain"
MESSAGE_ID = re.compile(rb'"MessageId":"[0-9a-f-]{36}"')

# (name, request members or raw JSON text, extra headers, taken by the plain path?)
CASES: list[tuple[str, Any, dict[str, str], bool]] = [
    ("plain", {"QueueUrl": URL + "plain", "MessageBody": "hello"}, {}, True),
    ("bare queue name", {"QueueUrl": "plain", "MessageBody": "by name"}, {}, True),
    ("unicode body", {"QueueUrl": URL + "plain", "MessageBody": "é \U0001f600 \t\n"}, {}, True),
    ("queue's own delay", {"QueueUrl": URL + "delayed", "MessageBody": "later"}, {}, True),
    ("unknown queue", {"QueueUrl": URL + "nope", "MessageBody": "x"}, {}, False),
    ("another account", {"QueueUrl": OTHER_ACCOUNT_URL, "MessageBody": "x"}, {}, False),
    ("not a queue path", {"QueueUrl": URL + "plain/extra", "MessageBody": "x"}, {}, False),
    ("empty url", {"QueueUrl": "", "MessageBody": "x"}, {}, False),
    ("empty body", {"QueueUrl": URL + "plain", "MessageBody": ""}, {}, False),
    ("body not text", {"QueueUrl": URL + "plain", "MessageBody": 12}, {}, False),
    ("url not text", {"QueueUrl": ["plain"], "MessageBody": "x"}, {}, False),
    ("character SQS refuses", {"QueueUrl": URL + "plain", "MessageBody": "a\x00b"}, {}, False),
    ("body too long", {"QueueUrl": URL + "small", "MessageBody": "x" * 1025}, {}, False),
    ("fifo queue", {"QueueUrl": URL + "plain.fifo", "MessageBody": "x"}, {}, False),
    ("with a delay", {"QueueUrl": URL + "plain", "MessageBody": "x", "DelaySeconds": 0}, {}, False),
    (
        "null member",
        {"QueueUrl": URL + "plain", "MessageBody": "x", "MessageGroupId": None},
        {},
        False,
    ),
    ("missing body", {"QueueUrl": URL + "plain"}, {}, False),
    ("not json", '{"QueueUrl": ', {}, False),
    ("a list", '["plain", "x"]', {}, False),
    ("lone surrogate", '{"QueueUrl": "plain", "MessageBody": "\\ud800"}', {}, False),
    (
        "trace header",
        {"QueueUrl": URL + "plain", "MessageBody": "traced"},
        {"X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"},
        False,
    ),
]


class Spy:
    """plain_send.start, counting the requests it took (or None: switched off)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.taken = 0
        self._start = plain_send.start

    def __call__(self, *args: Any) -> Any:
        if not self.enabled:
            return None
        sending = self._start(*args)
        self.taken += sending is not None
        return sending


def _daemon(tmp_path: Any, name: str) -> Harness:
    h = Harness(str(tmp_path / name))
    h.sqs_json("CreateQueue", {"QueueName": "plain"})
    h.sqs_json("CreateQueue", {"QueueName": "delayed", "Attributes": {"DelaySeconds": "900"}})
    h.sqs_json("CreateQueue", {"QueueName": "small", "Attributes": {"MaximumMessageSize": "1024"}})
    h.sqs_json("CreateQueue", {"QueueName": "plain.fifo", "Attributes": {"FifoQueue": "true"}})
    return h


def _send(h: Harness, members: Any, headers: dict[str, str]) -> tuple[int, bytes]:
    body = members if isinstance(members, str) else json.dumps(members)
    all_headers = {
        "Host": "localhost",
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "AmazonSQS.SendMessage",
        **headers,
    }
    status, answer = h.request(body.encode(), all_headers)
    return status, MESSAGE_ID.sub(b'"MessageId":"<id>"', answer)


def _held(h: Harness) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Each queue's visible messages (body and the attributes a user sees), in order."""
    held = {}
    for name in ("plain", "delayed", "small"):
        status, answer = h.sqs_json(
            "ReceiveMessage",
            {
                "QueueUrl": URL + name,
                "MaxNumberOfMessages": 10,
                "MessageSystemAttributeNames": ["AWSTraceHeader", "SenderId"],
            },
        )
        assert status == 200
        held[name] = [
            (m["Body"], m.get("Attributes", {})) for m in json.loads(answer).get("Messages", [])
        ]
    return held


@pytest.fixture
def daemons(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Harness, Harness, Spy]]:
    spy = Spy(enabled=True)
    monkeypatch.setattr(plain_send, "start", spy)
    plain, general = _daemon(tmp_path, "plain"), _daemon(tmp_path, "general")
    try:
        yield plain, general, spy
    finally:
        plain.close()
        general.close()


@pytest.mark.parametrize(
    ("members", "headers", "taken"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_plain_send_answers_as_the_general_path(
    daemons: tuple[Harness, Harness, Spy], members: Any, headers: dict[str, str], taken: bool
) -> None:
    plain, general, spy = daemons
    spy.enabled = True
    by_plain = _send(plain, members, headers)
    assert spy.taken == int(taken)
    spy.enabled = False
    by_general = _send(general, members, headers)
    assert by_plain == by_general
    assert _held(plain) == _held(general)


def test_plain_sends_share_commits_and_keep_their_order(
    daemons: tuple[Harness, Harness, Spy],
) -> None:
    """Concurrent plain sends: each answered with its own message's MD5, stored in order."""
    plain, _, spy = daemons
    headers = {
        "Host": "localhost",
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "AmazonSQS.SendMessage",
    }
    bodies = [f"message {i}" for i in range(10)]

    async def send_all() -> list[tuple[int, bytes]]:
        return await asyncio.gather(
            *(
                plain.answer(
                    json.dumps({"QueueUrl": URL + "plain", "MessageBody": b}).encode(), headers
                )
                for b in bodies
            )
        )

    commits = plain.ctx.broker()._storage.commits
    answers = plain.loop.run_until_complete(send_all())
    assert spy.taken == len(bodies)
    assert plain.ctx.broker()._storage.commits - commits < len(bodies)
    for body, (status, answer) in zip(bodies, answers):
        assert status == 200
        assert json.loads(answer)["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    assert [b for b, _ in _held(plain)["plain"]] == bodies


def test_a_plain_send_to_a_queue_another_process_deleted_before_its_commit(
    daemons: tuple[Harness, Harness, Spy],
) -> None:
    """Another process deletes the queue between the send's hand-off and its commit: the
    commit refuses it, and the client gets QueueDoesNotExist as the general path answers it."""
    plain, _, spy = daemons
    headers = {
        "Host": "localhost",
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "AmazonSQS.SendMessage",
    }
    request = json.dumps({"QueueUrl": URL + "plain", "MessageBody": "x"}).encode()
    path = plain.ctx.broker()._storage.path
    delete = f"import millpond; millpond.open({path!r}).delete_queue('plain')"

    async def send_while_deleted() -> tuple[int, bytes]:
        sending = asyncio.ensure_future(plain.answer(request, headers))
        await asyncio.sleep(0)  # the send waits in the queue's batch for the next commit
        assert spy.taken == 1
        # on the loop's thread: its commit cannot run before the other process is done
        subprocess.run([sys.executable, "-c", delete], check=True, timeout=60)
        return await sending

    status, answer = plain.loop.run_until_complete(send_while_deleted())
    assert status == 400
    assert json.loads(answer) == {
        "__type": "com.amazonaws.sqs#QueueDoesNotExist",
        "message": "The specified queue does not exist.",
    }
