"""The daemon's loop leads its commits once the writes it may expect are in (server/context.py
LoopCommitter): writes that arrive over consecutive rounds of the loop share one commit, and a
commit waits for no more writes than there are connections to send them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from millpond.server import context
from millpond.server.http_protocol import DeadlineHttpProtocol

from .test_server_fuzz import Harness

HEADERS = {
    "Host": "localhost",
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "AmazonSQS.SendMessage",
}


@pytest.fixture
def daemon(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    # Generous bounds (a slow machine's loop rounds must not end a wait the test counts on):
    # a commit may wait 5 s, with commits of 1 ms (as an fsync's: worth waiting for, and
    # short enough for the loop to lead them, not the writer thread).
    monkeypatch.setattr(context, "LOOP_GATHER_COMMITS", 5000)
    monkeypatch.setattr(context, "LOOP_GATHER_MAX_S", 5.0)
    monkeypatch.setattr(context, "LOOP_GATHER_QUIET_S", 5.0)
    monkeypatch.setattr(DeadlineHttpProtocol, "server_connections", None)
    h = Harness(str(tmp_path / "data"))
    h.sqs_json("CreateQueue", {"QueueName": "q"})
    h.ctx.broker()._storage._commit_seconds = 0.001
    yield h
    h.close()


def _connections(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """As if the daemon had ``count`` HTTP connections open."""
    monkeypatch.setattr(
        DeadlineHttpProtocol, "server_connections", {object() for _ in range(count)}
    )


def _send(h: Harness, body: str) -> Any:
    request = json.dumps({"QueueUrl": "q", "MessageBody": body}).encode()
    return asyncio.ensure_future(h.answer(request, HEADERS))


def _commits_and_seconds(h: Harness, sends: int) -> tuple[int, float]:
    """Commits taken by ``sends`` SendMessages, each arriving one loop round after the last
    (as requests on many connections come in while the loop serves the ones before), and how
    long they took."""
    storage = h.ctx.broker()._storage

    async def staggered() -> list[tuple[int, bytes]]:
        answers = []
        for i in range(sends):
            answers.append(_send(h, f"m{i}"))
            await asyncio.sleep(0)
        return await asyncio.gather(*answers)

    before = storage.commits
    started = h.loop.time()
    answers = h.loop.run_until_complete(staggered())
    assert [status for status, _ in answers] == [200] * sends
    return storage.commits - before, h.loop.time() - started


def test_a_commit_waits_for_a_write_from_each_connection(
    daemon: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _connections(monkeypatch, 12)
    commits, seconds = _commits_and_seconds(daemon, 12)
    assert commits == 1
    assert seconds < 2.5  # not the 5 s wait: the twelfth write ended it


def test_without_the_wait_they_take_several(
    daemon: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same sends with the loop committing two rounds after the first write: the control
    that shows the test above can fail."""
    _connections(monkeypatch, 12)
    monkeypatch.setattr(context, "LOOP_GATHER_MAX_S", 0.0)
    assert _commits_and_seconds(daemon, 12)[0] > 1


def test_one_connection_commits_at_once(daemon: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its write is the only one to come: no wait (the bounds above are 5 s)."""
    _connections(monkeypatch, 1)
    assert _commits_and_seconds(daemon, 1)[1] < 2.5


def test_with_no_new_write_the_commit_waits_no_longer(
    daemon: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections that send nothing (idle in a pool, in a long poll): the commit runs once
    no write came for LOOP_GATHER_QUIET_S, not after the whole wait."""
    _connections(monkeypatch, 64)
    monkeypatch.setattr(context, "LOOP_GATHER_QUIET_S", 0.3)
    commits, seconds = _commits_and_seconds(daemon, 4)
    assert commits == 1
    assert 0.3 <= seconds < 2.5


def test_a_parked_long_poll_is_no_write_to_wait_for(
    daemon: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two connections, one in a long poll: a producer's send on the other commits at once
    (a Celery worker polls while its producers send), and the poll then gets the message."""
    _connections(monkeypatch, 2)
    monkeypatch.setattr(context, "LOOP_GATHER_QUIET_S", 1.0)  # what a wait would take
    daemon.ctx.stopping = False  # the harness ends long polls at once unless told otherwise
    poll = json.dumps({"QueueUrl": "q", "WaitTimeSeconds": 20}).encode()
    receive_headers = {**HEADERS, "X-Amz-Target": "AmazonSQS.ReceiveMessage"}

    async def send_while_polled() -> tuple[float, tuple[int, bytes]]:
        polling = asyncio.ensure_future(daemon.answer(poll, receive_headers))
        while daemon.ctx.notifier is None or daemon.ctx.notifier.parked == 0:
            await asyncio.sleep(0.001)
        started = daemon.loop.time()
        status, _ = await _send(daemon, "for the poll")
        assert status == 200
        return daemon.loop.time() - started, await polling

    seconds, (status, answer) = daemon.loop.run_until_complete(send_while_polled())
    assert seconds < 0.5  # no wait for a write from the polling connection
    assert status == 200
    assert [m["Body"] for m in json.loads(answer)["Messages"]] == ["for the poll"]
