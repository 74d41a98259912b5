"""The native clients under load: many threads share one sync client, many tasks (some of
them cancelled) share one asyncio client, and a history checker holds every acknowledged send
to be received exactly once.

A send's outcome is known when it returned (stored) or raised a daemon error (not stored); a
send cancelled or cut off by a broken connection may or may not have been stored, so it may
be received at most once.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import millpond
from millpond.errors import ConnectionLost
from millpond.native.aio import AsyncClient

from .daemon import Daemon, native_daemon_fixture  # noqa: F401 (fixture)

THREADS, CALLS = 16, 500
VISIBILITY_S = 3  # the asyncio test's queue: longer than a receive-to-delete takes


class History:
    """What the callers were told: sends acknowledged, sends of unknown outcome, bodies
    received (each delete acknowledged, so none comes back: the visibility timeout is long)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: set[bytes] = set()
        self.unknown: set[bytes] = set()
        self.received: collections.Counter[bytes] = collections.Counter()
        # a send's answer and the message received must agree: an answer handed to the wrong
        # caller shows as a body whose message id is another's
        self.sent_ids: dict[bytes, str] = {}
        self.received_ids: dict[bytes, str] = {}

    def sent(self, bodies: list[bytes], ids: list[str]) -> None:
        with self.lock:
            self.acked.update(bodies)
            self.sent_ids.update(zip(bodies, ids))

    def got(self, messages: list[Any]) -> None:
        with self.lock:
            self.received.update(m.body for m in messages)
            self.received_ids.update((m.body, m.message_id) for m in messages)

    def check(self, rest: list[bytes]) -> None:
        """``rest``: what a final drain found. Every acknowledged send received once; nothing
        received that was not sent; a send of unknown outcome at most once."""
        received = self.received + collections.Counter(rest)
        twice = {body: n for body, n in received.items() if n > 1}
        assert not twice, f"received more than once: {list(twice.items())[:5]}"
        missing = self.acked - set(received)
        assert not missing, f"{len(missing)} acknowledged sends lost: {sorted(missing)[:5]}"
        strangers = set(received) - self.acked - self.unknown
        assert not strangers, f"received, never sent: {sorted(strangers)[:5]}"
        mixed = [b for b, i in self.received_ids.items() if self.sent_ids.get(b, i) != i]
        assert not mixed, f"answered with another send's message id: {mixed[:5]}"


def _drain(queue: Any, history: History) -> list[bytes]:
    bodies: list[bytes] = []
    while batch := queue.receive(10):
        bodies.extend(m.body for m in batch)
        history.received_ids.update((m.body, m.message_id) for m in batch)
        queue.delete_batch([m.receipt_handle for m in batch])
    return bodies


def test_threads_share_one_client_and_every_acked_send_arrives_once(daemon: Daemon) -> None:
    client = millpond.connect(daemon.native_url)
    queue = client.create_queue("stress-threads", {"VisibilityTimeout": "600"})
    other = client.create_queue("stress-threads-other")
    history, failures = History(), []

    def work(worker: int) -> None:
        rng = random.Random(worker)
        try:
            for i in range(CALLS):
                choice = rng.random()
                if choice < 0.4:
                    body = b"%d-%d" % (worker, i)
                    history.sent([body], [queue.send(body)])
                elif choice < 0.5:
                    bodies = [b"%d-%d-%d" % (worker, i, n) for n in range(3)]
                    history.sent(bodies, queue.send_batch(bodies))
                elif choice < 0.85:
                    messages = queue.receive(
                        rng.randint(1, 10), wait_seconds=rng.choice([0, 0, 0, 1])
                    )
                    history.got(messages)
                    if messages and rng.random() < 0.5:
                        queue.delete_batch([m.receipt_handle for m in messages])
                    else:
                        for m in messages:
                            queue.delete(m.receipt_handle)
                elif choice < 0.95:
                    assert set(client.list_queues("stress-threads")) >= {queue.name, other.name}
                else:
                    attributes = other.get_attributes(["VisibilityTimeout"])
                    assert attributes == {"VisibilityTimeout": "30"}
        except BaseException as exc:  # noqa: B036 - reported below, with the worker's number
            failures.append((worker, exc))

    workers = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not any(w.is_alive() for w in workers), "a worker is stuck"
    assert not failures, failures[:3]
    history.check(_drain(queue, history))
    assert len(history.acked) > THREADS * CALLS // 3
    client.close()


def test_tasks_share_one_async_client_with_cancellations(daemon: Daemon) -> None:
    """Tasks whose calls are cancelled at random moments (sends among them): the client goes
    on serving the others, and every send that returned arrives once."""
    history = History()

    async def main() -> list[bytes]:
        client = await AsyncClient.open("127.0.0.1", daemon.native_port)
        attributes = {"VisibilityTimeout": str(VISIBILITY_S)}
        queue = await client.create_queue("stress-tasks", attributes)

        async def work(worker: int) -> None:
            rng = random.Random(worker)
            for i in range(60):
                body = b"%d-%d" % (worker, i)
                timeout = rng.choice([None, None, 0, 0.0005, 0.002])
                send = queue.send(body)
                try:
                    if timeout is None:
                        history.sent([body], [await send])
                    else:
                        history.unknown.add(body)
                        history.sent([body], [await asyncio.wait_for(send, timeout)])
                except asyncio.TimeoutError:
                    pass  # cancelled: stored or not, the caller cannot know
                receive = queue.receive(10, wait_seconds=rng.choice([0, 0, 0, 1]))
                try:
                    messages = await asyncio.wait_for(receive, rng.choice([5, 0.001]))
                except asyncio.TimeoutError:
                    continue  # a cancelled poll: its messages come back after their timeout
                history.got(messages)
                if messages:
                    await queue.delete_batch([m.receipt_handle for m in messages])

        await asyncio.gather(*(work(n) for n in range(64)))
        # A poll cancelled after the daemon took its messages hid them (its answer went
        # nowhere): they are received again once their visibility timeout ends. The daemon may
        # still be running cancelled polls (it started them after the client gave up on them,
        # a long one waits up to 1 s), so the drain goes on until every acknowledged send came
        # back, for at least one visibility timeout (a duplicate would show in that time).
        rest: list[bytes] = []
        start = time.monotonic()
        while time.monotonic() - start < 4 * VISIBILITY_S:
            done = history.acked <= set(history.received) | set(rest)
            if done and time.monotonic() - start > VISIBILITY_S + 0.5:
                break
            batch = await queue.receive(10, wait_seconds=1)
            rest.extend(m.body for m in batch)
            history.received_ids.update((m.body, m.message_id) for m in batch)
            if batch:
                await queue.delete_batch([m.receipt_handle for m in batch])
        await client.close()
        return rest

    rest = asyncio.run(main())
    assert len(history.acked) > 64 * 60 // 3
    history.check(rest)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_sends_in_flight_when_the_daemon_stops(tmp_path: Path, sig: int) -> None:
    """Threads sending through one client while the daemon is stopped (or killed): each send
    returned (then it is stored: fsync) or raised ConnectionLost (either way); none was told
    it succeeded when it was not stored."""
    daemon = Daemon(str(tmp_path / "data"), native=True, durability="fsync")
    client = millpond.connect(daemon.native_url)
    queue = client.create_queue("stopping")
    acked: set[bytes] = set()
    unexpected: list[BaseException] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        for i in range(100_000):
            body = b"%d-%d" % (worker, i)
            try:
                queue.send(body)
            except ConnectionLost:
                return  # stored or not: the caller cannot know
            except BaseException as exc:  # noqa: B036 - reported below
                unexpected.append(exc)
                return
            with lock:
                acked.add(body)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for w in workers:
        w.start()
    time.sleep(0.5)
    daemon.process.send_signal(sig)
    for w in workers:
        w.join(30)
    daemon.stop()
    client.close()
    assert not any(w.is_alive() for w in workers) and not unexpected, unexpected[:3]
    assert acked, "no send was answered before the signal: the test proved nothing"
    with millpond.open(os.path.join(daemon.data_dir, "us-east-1")) as broker:
        stored: set[bytes] = set()
        while batch := broker.queue("stopping").receive(10):
            stored |= {m.body for m in batch}
    assert acked <= stored, f"{len(acked - stored)} answered sends were not stored"
