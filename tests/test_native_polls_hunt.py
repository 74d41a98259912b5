"""Long polls on the native protocol, hunted: many polls parked on one connection (the consumer
tasks of a service sharing one AsyncClient, the threads sharing one Client) must hold up no
other call on it, as the README and aio.py promise, and still keep what a connection may make
the daemon hold bounded."""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import threading
import time
from pathlib import Path

import msgpack
import pytest

import millpond
from millpond.native import frames
from millpond.native.aio import AsyncClient
from millpond.native.server import MAX_IN_FLIGHT, NativeServer
from millpond.server.context import Context
from millpond.server.sqs import long_poll

from .daemon import Daemon, native_daemon_fixture  # noqa: F401 (fixture)
from .test_native import Raw, _rss
from .test_native_hunt import _port

_names = itertools.count()


@pytest.fixture
def name() -> str:
    return f"p{os.getpid()}-{next(_names)}"


POLLS = MAX_IN_FLIGHT + 44  # more long polls than requests a connection runs at once


async def _cancel_all(polls: list[asyncio.Future[object]]) -> None:
    for poll in polls:
        poll.cancel()
    await asyncio.gather(*polls, return_exceptions=True)


def _polls(name: str, first_rid: int, count: int, **kwargs: object) -> bytes:
    options = {"wait_seconds": 3, **kwargs}
    return b"".join(
        frames.frame(msgpack.packb([rid, "queue.receive", name, [1], options]))
        for rid in range(first_rid, first_rid + count)
    )


def test_parked_long_polls_hold_up_no_other_call_of_their_connection(
    daemon: Daemon, name: str
) -> None:
    # A service with a few hundred consumer tasks on one AsyncClient: every other call on the
    # connection (a send to another queue) waited for a poll to end, up to 20 s.
    async def scenario() -> None:
        async with await AsyncClient.open("127.0.0.1", _port(daemon)) as broker:
            idle = await broker.create_queue(name)
            other = await broker.create_queue(name + "-other")
            polls = [asyncio.ensure_future(idle.receive(1, wait_seconds=3)) for _ in range(POLLS)]
            try:
                await asyncio.sleep(0.3)  # the polls are parked in the daemon
                started = time.monotonic()
                await asyncio.wait_for(other.send(b"not held up"), 2.5)
                assert time.monotonic() - started < 1
                assert not any(poll.done() for poll in polls)
            finally:
                await _cancel_all(polls)

    asyncio.run(scenario())


def test_threads_polling_on_a_shared_client_hold_up_no_other_call(
    daemon: Daemon, name: str
) -> None:
    # The same promise for the sync Client: a pool of worker threads long polling on it.
    client = millpond.connect(daemon.native_url)
    idle, other = client.create_queue(name), client.create_queue(name + "-other")
    ended: list[BaseException] = []

    def poll() -> None:
        try:
            idle.receive(1, wait_seconds=3)
        except BaseException as exc:  # BrokerClosed, by the close below
            ended.append(exc)

    threads = [threading.Thread(target=poll) for _ in range(POLLS)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # parked
        started = time.monotonic()
        other.send(b"not held up")
        assert time.monotonic() - started < 1
        assert not ended
    finally:
        client.close()  # the polls end with BrokerClosed
        for thread in threads:
            thread.join()


def test_a_cancel_ends_a_poll_behind_many_parked_ones(daemon: Daemon, name: str) -> None:
    # The cancel frame of the last poll sent is read and handled at once, not after the
    # others end: the poll takes no message sent after its caller gave up.
    raw = Raw(_port(daemon))
    assert raw.call(2, "create_queue", None, [name], {})[1] == frames.OK
    raw.sock.sendall(_polls(name, 10, POLLS))
    last = 10 + POLLS - 1
    raw.sock.settimeout(1.5)
    assert raw.call(5, "cancel", None, [last], {}) == [5, frames.OK, None]
    assert raw.call(6, "queue.send", name, [b"for a poll still waiting"], {})[:2] == [6, frames.OK]
    (answer,) = [raw.read()]
    assert answer[0] != last and answer[1] == frames.OK and len(answer[2]) == 1
    raw.close()


def test_parked_polls_take_no_messages_while_their_client_takes_no_answers(
    daemon: Daemon, name: str
) -> None:
    # Parked polls do not count as running requests, but they must not make the daemon hold
    # more answers for a client that reads none: woken by a message they could all take it
    # (a visibility timeout of 0 gives it to each in turn), ~200 KB an answer.
    raw = Raw(_port(daemon))
    assert raw.call(2, "create_queue", None, [name], {})[1] == frames.OK
    polls = 3 * MAX_IN_FLIGHT
    raw.sock.sendall(_polls(name, 10, polls, visibility_timeout=0))
    time.sleep(0.3)  # parked
    rss_before = _rss(daemon)
    writer = Raw(_port(daemon))
    assert writer.call(2, "queue.send", name, [b"y" * 200_000], {})[:2] == [2, frames.OK]
    time.sleep(0.7)  # the polls woke, and answered what the daemon lets them
    grown = _rss(daemon) - rss_before
    # about MAX_IN_FLIGHT answers (the polls that took a running place: ~60 MB), not one per
    # poll (~150 MB)
    assert grown < 2 * MAX_IN_FLIGHT * 200_000, grown
    # the client reads again: the polls held back look for messages and answer, each its own
    statuses = _statuses(raw, polls)
    assert sorted(statuses) == list(range(10, 10 + polls))
    assert set(statuses.values()) == {(frames.OK, 1)}
    raw.close()
    writer.close()


def test_a_connection_parks_at_most_max_parked_polls(tmp_path: Path) -> None:
    # Parked polls are cheap, not free: while max_parked of them wait, the connection is read
    # no further (here 4 of them, on a listener of the test's own).
    ctx = Context(str(tmp_path / "data"), durability="os", workers=2)
    ctx.broker("us-east-1").create_queue("idle")

    async def main() -> list[int]:
        ctx.bind_loop(asyncio.get_running_loop())
        server = NativeServer(ctx, max_parked=4)
        port = await server.listen("127.0.0.1", 0)
        server.ready()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        hello = [1, "hello", None, [], {"version": frames.VERSION}]
        writer.write(frames.frame(msgpack.packb(hello)))
        writer.write(_polls("idle", 10, 4, wait_seconds=1))
        await asyncio.sleep(0.2)  # parked
        writer.write(frames.frame(msgpack.packb([5, "list_queues", None, ["idle"], {}])))
        answered = []
        for _ in range(1 + 4 + 1):  # greeting, hello, the polls, list_queues
            (length,) = frames.HEADER.unpack(await reader.readexactly(4))
            answer = msgpack.unpackb(await reader.readexactly(length), raw=False)
            if type(answer) is list:  # not the greeting
                answered.append(answer[0])
        writer.close()
        await server.stop(timeout=1)
        return answered

    try:
        answered = asyncio.run(main())
    finally:
        ctx.close()
    assert answered[0] == 1 and answered[1] in range(10, 14)  # list_queues: once a poll ended


def _statuses(raw: Raw, count: int) -> dict[int, tuple[int, int]]:
    """The next ``count`` answers, without keeping them: request id -> (status, length)."""
    buffer, statuses = bytearray(raw.buffer), {}
    raw.sock.settimeout(5)
    while len(statuses) < count:
        if len(buffer) >= 4:
            (length,) = frames.HEADER.unpack_from(buffer)
            if len(buffer) >= 4 + length:
                rid, status, result = msgpack.unpackb(buffer[4 : 4 + length], raw=False)
                statuses[rid] = (status, len(result))
                del buffer[: 4 + length]  # a bytearray drops its head without copying the rest
                continue
        try:
            chunk = raw.sock.recv(1 << 20)
        except TimeoutError:
            raise AssertionError(f"{len(statuses)} answers of {count}") from None
        assert chunk, "closed"
        buffer += chunk
    return statuses


def test_many_clients_each_with_many_parked_polls(daemon: Daemon, name: str) -> None:
    # The daemon-wide side of the promise: several services (clients), each with more
    # consumers parked than a connection runs requests, and every client's other calls (a
    # send, a list) go through at once.
    async def scenario() -> None:
        clients = [await AsyncClient.open("127.0.0.1", _port(daemon)) for _ in range(3)]
        polls: list[asyncio.Future[object]] = []
        try:
            for number, client in enumerate(clients):
                idle = await client.create_queue(f"{name}-{number}")
                polls += [
                    asyncio.ensure_future(idle.receive(1, wait_seconds=3)) for _ in range(POLLS)
                ]
            await asyncio.sleep(0.5)  # parked
            await clients[0].create_queue(name + "-other")
            started = time.monotonic()
            for client in clients:
                other = await asyncio.wait_for(client.queue(name + "-other"), 2.5)
                await asyncio.wait_for(other.send(b"not held up"), 2.5)
            assert time.monotonic() - started < 1
            assert not any(poll.done() for poll in polls)
        finally:
            await _cancel_all(polls)
            for client in clients:
                await client.close()

    asyncio.run(scenario())


def test_parked_polls_of_one_queue_read_its_doorbell_once_per_check(tmp_path: Path) -> None:
    # The daemon's doorbell watcher reads the doorbells of parked long polls (for sends of
    # other processes) at every ring of any queue, up to every 10 ms under load. It read one
    # per poll: 4000 consumers parked on an idle queue cost ~2.6 ms of the GIL per check, and
    # halved the daemon's sends to other queues. Polls of one queue share one read.
    ctx = Context(str(tmp_path / "data"), durability="os", workers=2)
    broker = ctx.broker("us-east-1")
    idle, busy = broker.create_queue("idle"), broker.create_queue("busy")
    wakeups = broker._wakeups
    if not wakeups.cross_process:
        ctx.close()
        pytest.skip("no doorbell file here (not Linux, or no C extension)")
    reads: collections.Counter[int] = collections.Counter()
    read = wakeups.generation

    def counted(queue_id: int) -> int:
        reads[queue_id] += 1
        return read(queue_id)

    async def main() -> None:
        ctx.bind_loop(asyncio.get_running_loop())
        polls = [
            asyncio.ensure_future(long_poll(ctx, idle, 1, 30_000, 3, None)) for _ in range(500)
        ]
        await asyncio.sleep(0.2)  # parked
        wakeups.generation = counted  # type: ignore[method-assign]
        for _ in range(10):  # sends to another queue ring the doorbell file
            wakeups.notify(busy.queue_id)
            await asyncio.sleep(0.02)
        del wakeups.generation
        assert not any(poll.done() for poll in polls)
        for poll in polls:
            poll.cancel()
        await asyncio.gather(*polls, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        ctx.close()
    assert 0 < reads[idle.queue_id] <= 30, reads  # a read per check, not 500
