"""Concurrent SendMessage requests to one standard queue are stored together (send_batches.py).

Driven in this process through the daemon's ASGI app, so that many requests are read in one
event-loop iteration and share one commit, as under load.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from millpond import storage

from .test_server_fuzz import Harness


class ConcurrentHarness(Harness):
    """The daemon's app on a loop of this process, with requests that run at once."""

    async def call(
        self, action: str, params: dict[str, Any], late: bool = False
    ) -> tuple[int, dict[str, Any]]:
        status, body = await self.answer(
            json.dumps(params).encode(),
            {
                "Host": "localhost",
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"AmazonSQS.{action}",
            },
            late=late,
        )
        return status, json.loads(body)

    def run(self, *calls: tuple[str, dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
        """The calls, all started in the same loop iteration; their (status, answer)."""

        async def together() -> list[tuple[int, dict[str, Any]]]:
            return await asyncio.gather(*(self.call(action, params) for action, params in calls))

        return self.loop.run_until_complete(together())

    def create_queue(self, name: str) -> str:
        ((status, answer),) = self.run(("CreateQueue", {"QueueName": name}))
        assert status == 200, answer
        return str(answer["QueueUrl"])

    def receive_all(self, url: str) -> dict[str, str]:
        """Every message of the queue: MessageId -> Body."""
        found: dict[str, str] = {}
        while True:
            ((status, answer),) = self.run(
                ("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10})
            )
            assert status == 200, answer
            messages = answer.get("Messages", [])
            if not messages:
                return found
            for m in messages:
                assert m["MessageId"] not in found
                found[m["MessageId"]] = m["Body"]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[ConcurrentHarness]:
    d = ConcurrentHarness(str(tmp_path / "data"))
    yield d
    d.close()


def _sends(url: str, bodies: list[str]) -> list[tuple[str, dict[str, Any]]]:
    return [("SendMessage", {"QueueUrl": url, "MessageBody": body}) for body in bodies]


def _check_sent(
    harness: ConcurrentHarness, url: str, bodies: list[str], answers: list[Any]
) -> None:
    """Each send answered with the id its own message is received under, and its MD5."""
    sent = {}
    for body, (status, answer) in zip(bodies, answers, strict=True):
        assert status == 200, answer
        assert answer["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
        sent[answer["MessageId"]] = body
    assert harness.receive_all(url) == sent


def test_concurrent_sends_to_one_queue_are_stored_with_one_core_call(
    harness: ConcurrentHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = harness.create_queue("many")
    broker = harness.ctx.broker()
    calls = []
    core_send = broker._core.send

    def counted(*args: Any) -> Any:
        calls.append(len(args[4]))  # the bodies
        return core_send(*args)

    monkeypatch.setattr(broker._core, "send", counted)
    commits = broker._storage.commits
    bodies = [f"message {i}" for i in range(50)]
    answers = harness.run(*_sends(url, bodies))
    assert calls == [50]
    assert broker._storage.commits == commits + 1
    monkeypatch.undo()
    _check_sent(harness, url, bodies, answers)


def test_requests_whose_bodies_come_a_round_later_share_the_commit(
    harness: ConcurrentHarness,
) -> None:
    # The loop leads the commit one round of ready callbacks after the first write asks for
    # it: requests read in the same iteration whose tasks need one more step still make it.
    url = harness.create_queue("late")
    broker = harness.ctx.broker()
    commits = broker._storage.commits
    bodies = [f"message {i}" for i in range(20)]

    async def mixed() -> list[Any]:
        return await asyncio.gather(
            *(
                harness.call(action, params, late=i % 2 == 1)
                for i, (action, params) in enumerate(_sends(url, bodies))
            )
        )

    answers = harness.loop.run_until_complete(mixed())
    assert broker._storage.commits == commits + 1
    _check_sent(harness, url, bodies, answers)


def test_sends_to_two_queues_in_one_commit_each_go_to_their_own(harness: ConcurrentHarness) -> None:
    first, second = harness.create_queue("first"), harness.create_queue("second")
    a = [f"a{i}" for i in range(12)]
    b = [f"b{i}" for i in range(7)]
    calls = []  # interleaved: a0, b0, a1, b1, ... a7, a8, ...
    for i, body in enumerate(a):
        calls += _sends(first, [body]) + (_sends(second, [b[i]]) if i < len(b) else [])
    answers = dict(zip((params["MessageBody"] for _, params in calls), harness.run(*calls)))
    _check_sent(harness, first, a, [answers[body] for body in a])
    _check_sent(harness, second, b, [answers[body] for body in b])


def test_waves_of_sends_while_the_writer_thread_commits(
    harness: ConcurrentHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Commits "slower" than INLINE_COMMIT_MAX_S go to the writer thread: sends keep joining
    # on the loop while a batch is being stored there, and must land in the next batch.
    monkeypatch.setattr(storage, "INLINE_COMMIT_MAX_S", 0.0)
    url = harness.create_queue("waves")
    bodies = [f"wave {i}" for i in range(300)]

    async def waves() -> list[Any]:
        tasks = []
        for start in range(0, len(bodies), 10):
            tasks += [
                asyncio.ensure_future(harness.call(action, params))
                for action, params in _sends(url, bodies[start : start + 10])
            ]
            await asyncio.sleep(0)  # let the writer thread take what has joined so far
        return await asyncio.gather(*tasks)

    answers = harness.loop.run_until_complete(waves())
    _check_sent(harness, url, bodies, answers)


def test_sends_to_a_queue_deleted_behind_the_cache_all_fail_as_nonexistent(
    harness: ConcurrentHarness,
) -> None:
    url = harness.create_queue("gone")
    queue = harness.ctx.broker().queue("gone")
    # As another process would: the queue's rows go, this process's cached object stays.
    queue._storage.write(lambda txn, now_ms: queue._core.drop(txn, queue._tables, queue.queue_id))
    answers = harness.run(*_sends(url, [f"m{i}" for i in range(5)]))
    assert [status for status, _ in answers] == [400] * 5
    assert {answer["__type"] for _, answer in answers} == {"com.amazonaws.sqs#QueueDoesNotExist"}
