"""The daemon's loop leads its commits once writes stop coming in (server/context.py
LoopCommitter): writes that arrive over consecutive rounds of the loop share one commit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from millpond.server import context

from .test_server_fuzz import Harness

HEADERS = {
    "Host": "localhost",
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "AmazonSQS.SendMessage",
}


@pytest.fixture
def daemon(tmp_path: Any) -> Iterator[Harness]:
    h = Harness(str(tmp_path / "data"))
    h.sqs_json("CreateQueue", {"QueueName": "q"})
    yield h
    h.close()


def _commits_for_staggered_sends(h: Harness, sends: int) -> int:
    """Commits taken by ``sends`` SendMessages, each arriving one loop round after the last
    (as requests on many connections come in while the loop serves the ones before)."""
    storage = h.ctx.broker()._storage
    storage._commit_seconds = 0.001  # commits as slow as an fsync's: worth waiting for

    async def staggered() -> list[tuple[int, bytes]]:
        answers = []
        for i in range(sends):
            body = json.dumps({"QueueUrl": "q", "MessageBody": f"m{i}"}).encode()
            answers.append(asyncio.ensure_future(h.answer(body, HEADERS)))
            await asyncio.sleep(0)
        return await asyncio.gather(*answers)

    before = storage.commits
    answers = h.loop.run_until_complete(staggered())
    assert [status for status, _ in answers] == [200] * sends
    return storage.commits - before


def test_writes_arriving_round_after_round_share_one_commit(daemon: Harness) -> None:
    assert _commits_for_staggered_sends(daemon, 12) == 1


def test_without_the_wait_they_take_several(
    daemon: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same sends with the loop committing two rounds after the first write: the control
    that shows the test above can fail."""
    monkeypatch.setattr(context, "LOOP_GATHER_MAX_S", 0.0)
    assert _commits_for_staggered_sends(daemon, 12) > 1


def test_a_lone_write_is_not_held_back(daemon: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing else coming: the commit runs in the second round, not after the wait."""
    monkeypatch.setattr(context, "LOOP_GATHER_MAX_S", 5.0)
    storage = daemon.ctx.broker()._storage
    storage._commit_seconds = 10.0  # a wait for others would show as a 5 s answer

    async def one() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        body = json.dumps({"QueueUrl": "q", "MessageBody": "alone"}).encode()
        status, _ = await daemon.answer(body, HEADERS)
        assert status == 200
        return loop.time() - started

    assert daemon.loop.run_until_complete(one()) < 1.0
