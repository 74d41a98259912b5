"""The native protocol, hunted: behaviour a user of the native clients would notice where they
differ from the embedded broker or from SQS (see test_native.py for the protocol's basics)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

import millpond
from millpond import errors
from millpond.native import frames
from millpond.native.aio import AsyncClient
from millpond.native.client import Client, _Connection
from millpond.native.server import MAX_IN_FLIGHT

from .daemon import Daemon, native_daemon_fixture  # noqa: F401 (fixture)
from .interrupts import Interrupt, interrupted_after
from .test_native import Raw

_names = itertools.count()


@pytest.fixture
def name() -> str:
    return f"h{os.getpid()}-{next(_names)}"


def _port(daemon: Daemon) -> int:
    assert daemon.native_port is not None
    return daemon.native_port


def _polling(queue: Any, wait_seconds: int) -> tuple[threading.Thread, list[Any]]:
    """A thread long-polling ``queue`` for one message; what the receive returned or raised
    lands in the list."""
    polls: list[Any] = []

    def poll() -> None:
        try:
            polls.append(queue.receive(1, wait_seconds=wait_seconds))
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            polls.append(exc)

    poller = threading.Thread(target=poll)
    poller.start()
    return poller, polls


def send_from_a_forked_child(client: Any, queue: Any, alarm_seconds: int) -> bytes:
    """Fork; the child sends "from the child" to ``queue`` and closes ``client``; what it
    said through a pipe (b"sent" once both returned; SIGALRM ends a child that hangs)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            signal.alarm(alarm_seconds)  # a call that hangs must not hang the test
            os.close(read_fd)
            queue.send("from the child")
            client.close()
            os.write(write_fd, b"sent")
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as answer:
        child_said = answer.read()
    os.waitpid(pid, 0)
    return child_said


def test_a_cancelled_async_long_poll_takes_no_later_message(daemon: Daemon, name: str) -> None:
    # asyncio.wait_for(queue.receive(wait_seconds=20), 1) and a task group's cancel are how
    # asyncio code stops waiting. The daemon's poll must stop with it: left running, it takes
    # the next message sent and hides it for the visibility timeout, answering nobody.
    async def scenario() -> None:
        async with await AsyncClient.open("127.0.0.1", _port(daemon)) as broker:
            queue = await broker.create_queue(name, {"VisibilityTimeout": "600"})
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(queue.receive(1, wait_seconds=20), 0.3)
            await queue.send(b"for the next receive")
            received = await queue.receive(1, wait_seconds=1)
            assert [m.body for m in received] == [b"for the next receive"]

    asyncio.run(scenario())


def test_cancel_on_the_wire(daemon: Daemon, name: str) -> None:
    raw = Raw(_port(daemon))
    assert raw.call(2, "create_queue", None, [name], {})[1] == frames.OK
    raw.send(3, "queue.receive", name, [1], {"wait_seconds": 20})
    assert raw.call(4, "cancel", None, [3], {}) == [4, frames.OK, None]
    # a cancel of nothing in flight, or of what is not a long poll, is answered all the same
    assert raw.call(5, "cancel", None, [99], {}) == [5, frames.OK, None]
    answer = raw.call(6, "cancel", None, ["3"], {})
    assert answer[:2] == [6, frames.ERROR] and answer[2][0] == "InvalidParameterValue"
    # the poll ended unanswered: the next answer is the next request's
    hidden = ["ApproximateNumberOfMessagesNotVisible"]
    answer = raw.call(7, "queue.get_attributes", name, [hidden], {})
    assert answer == [7, frames.OK, {"ApproximateNumberOfMessagesNotVisible": "0"}]
    raw.close()


def test_an_interrupted_long_poll_takes_no_later_message(daemon: Daemon, name: str) -> None:
    # Thread A reads the socket for everyone (its own long poll); the main thread's long poll
    # is interrupted (as by Ctrl-C caught in a loop). The daemon's poll must end with it, not
    # take the next message for nobody.
    with millpond.connect(daemon.native_url) as client:
        a = client.create_queue(name + "-a")
        b = client.create_queue(name + "-b", {"VisibilityTimeout": "600"})
        reader = threading.Thread(target=lambda: a.receive(1, wait_seconds=10))
        reader.start()
        time.sleep(0.2)

        with interrupted_after(0.3), pytest.raises(Interrupt):
            b.receive(1, wait_seconds=20)
        b.send(b"for the next receive")
        assert [m.body for m in b.receive(1, wait_seconds=1)] == [b"for the next receive"]
        a.send(b"wake the reader")
        reader.join(10)


def test_an_idle_client_carries_on_after_the_daemon_restarts(tmp_path: Path) -> None:
    # The daemon was restarted (a deploy) while the client had no call in flight: nothing was
    # lost, so the next call reconnects and is done, as the asyncio client's does, instead of
    # raising ConnectionLost ("may or may not have been done") for a request never sent.
    data = str(tmp_path / "data")
    daemon = Daemon(data, native=True)
    client = millpond.connect(daemon.native_url)
    queue = client.create_queue("q")
    daemon.stop()
    again = Daemon(data, native=True, port=daemon.port, native_port=daemon.native_port)
    try:
        queue.send(b"after the restart")
        assert [m.body for m in queue.receive(1)] == [b"after the restart"]
    finally:
        client.close()
        again.stop()


@pytest.mark.parametrize("max_frame", [32 * 1024 * 1024, 64 * 1024])
def test_a_request_is_held_to_the_daemons_limit_not_the_clients_answer_limit(
    daemon: Daemon, name: str, max_frame: int
) -> None:
    # Client(max_frame=) is the largest *answer* it takes. Requests are the daemon's to limit
    # (its greeting says how much): a request over it is refused alone, before it is sent,
    # rather than cutting the connection and every other call in flight on it; and one within
    # it is sent, whatever the client takes back.
    port = _port(daemon)
    with Client("127.0.0.1", port, max_frame=max_frame) as client:
        queue = client.create_queue(name, {"MaximumMessageSize": "1048576"})
        poller, polls = _polling(queue, wait_seconds=5)
        time.sleep(0.2)
        with pytest.raises(errors.InvalidParameterValue, match="over the limit of 16777216"):
            queue.send(b"x" * frames.MAX_FRAME)
        # within the daemon's limit: the daemon answers, as the embedded queue would
        with pytest.raises(errors.MessageTooLong):
            queue.send(b"x" * (1024 * 1024 + 1))
        queue.send(b"wake")
        poller.join(5)
        assert [m.body for m in polls[0]] == [b"wake"]


def test_the_async_client_holds_requests_to_the_daemons_limit(daemon: Daemon, name: str) -> None:
    async def scenario() -> None:
        port = _port(daemon)
        async with await AsyncClient.open("127.0.0.1", port, max_frame=64 * 1024) as broker:
            queue = await broker.create_queue(name)
            assert await queue.send(b"x" * 100_000)  # over 64 KiB: the daemon takes it
            with pytest.raises(errors.InvalidParameterValue, match="over the limit of 16777216"):
                await queue.send(b"x" * frames.MAX_FRAME)
            assert await broker.list_queues(name) == [name]  # the connection goes on

    asyncio.run(scenario())


def test_the_readers_role_goes_to_a_call_whose_request_is_sent() -> None:
    # A Client's reader hands the socket on to a waiting call when its own answer comes. A call
    # still sending its request (a big one, while the daemon is not reading: it stops while
    # its answers are not taken) cannot read: handed the role, it left the answers of the
    # calls already sent unread, so the daemon never read again, and all waited for its 60 s
    # stall timeout. Here, by hand: the peer takes no request until the answered call is done.
    ours, daemon_side = socket.socketpair()
    connection = _Connection(ours, frames.MAX_FRAME, None)
    results: dict[str, Any] = {}

    def call(key: str, body: bytes) -> None:
        results[key] = connection.call("queue.send", "q", [body], {})

    reader = threading.Thread(target=call, args=("reader", b"r"))
    reader.start()  # request 1: sent, and its thread reads the socket
    _wait_for(lambda: connection._reader is not None)
    first_lock = connection._send_lock
    first_lock.acquire()  # the next call (request 2, big) waits to send...
    big = threading.Thread(target=call, args=("big", b"x" * (8 * 1024 * 1024)))
    big.start()
    _wait_for(lambda: len(connection._pending) == 2)
    connection._send_lock = threading.Lock()  # ...while request 3 goes before it
    small = threading.Thread(target=call, args=("small", b"s"))
    small.start()
    _read_requests(daemon_side, [1, 3])  # requests 1 and 3 are on the wire
    first_lock.release()  # request 2 now sends, and blocks: the peer reads nothing yet
    time.sleep(0.1)
    for rid in (1, 3):  # the peer answers requests 1 and 3
        daemon_side.sendall(frames.frame(msgpack.packb([rid, frames.OK, f"id{rid}"])))
    small.join(2)
    done = not small.is_alive()
    daemon_side.settimeout(5)
    taken = 0
    while taken < 8 * 1024 * 1024:  # now the peer reads request 2, and answers it
        taken += len(daemon_side.recv(1 << 20))
    daemon_side.sendall(frames.frame(msgpack.packb([2, frames.OK, "id2"])))
    for thread in (reader, big, small):
        thread.join(5)
    connection.fail(errors.ConnectionLost("done"))
    daemon_side.close()
    assert done, "the answer of a sent call waited for a call still sending"
    assert results == {"reader": "id1", "small": "id3", "big": "id2"}


def _read_requests(sock: socket.socket, rids: list[int]) -> None:
    """Read whole request frames from ``sock`` until those of ``rids`` came (no more)."""
    sock.settimeout(5)
    buffer = b""
    while rids:
        while len(buffer) < 4 or len(buffer) < 4 + int.from_bytes(buffer[:4], "big"):
            buffer += sock.recv(1)  # byte by byte: nothing of a later frame is taken
        length = int.from_bytes(buffer[:4], "big")
        rids.remove(msgpack.unpackb(buffer[4 : 4 + length])[0])
        buffer = b""


def _wait_for(condition: Any) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_poll_cancelled_before_it_ran_frees_its_place(daemon: Daemon, name: str) -> None:
    # A receive and its cancel read together (asyncio.wait_for(receive, 0.001) sends both at
    # once) cancel a task that has not started: it must still leave the connection's count of
    # requests running, or after MAX_IN_FLIGHT of them the connection serves nothing more
    # (and the daemon's SIGTERM waits 30 s for requests that are not running).
    raw = Raw(_port(daemon))
    assert raw.call(2, "create_queue", None, [name], {})[1] == frames.OK
    pairs = b""
    for rid in range(3, 3 + 2 * (MAX_IN_FLIGHT + 1), 2):
        pairs += frames.frame(
            msgpack.packb([rid, "queue.receive", name, [1], {"wait_seconds": 20}])
        )
        pairs += frames.cancel(rid + 1, rid)
    raw.sock.settimeout(2)
    raw.sock.sendall(pairs)
    for _ in range(MAX_IN_FLIGHT + 1):
        assert raw.read()[1:] == [frames.OK, None]  # the cancels' answers, and no poll's
    assert raw.call(1000, "list_queues", None, [name], {}) == [1000, frames.OK, [name]]
    raw.close()


def test_messages_of_a_poll_cancelled_as_they_came_are_given_back(
    daemon: Daemon, name: str
) -> None:
    # The daemon answered the poll, and the caller cancelled before the answer was read (an
    # asyncio.wait_for timing out as the message came: 8% of 400 messages with 20 consumers
    # polling under timeouts of 1-50 ms). Nobody takes those messages: they are given back,
    # as the daemon gives back those of a poll cancelled in time, not hidden for 600 s.
    async def scenario() -> None:
        async with await AsyncClient.open("127.0.0.1", _port(daemon)) as broker:
            queue = await broker.create_queue(name, {"VisibilityTimeout": "600"})
            await queue.send(b"taken as the poll was cancelled")
            poll = asyncio.ensure_future(queue.receive(1, wait_seconds=20))
            await asyncio.sleep(0)  # the request is written
            time.sleep(0.3)  # the loop stands still: the answer comes, and is not read yet
            poll.cancel()
            with pytest.raises(asyncio.CancelledError):
                await poll
            (again,) = await queue.receive(1, wait_seconds=2)
            assert again.body == b"taken as the poll was cancelled" and again.receive_count == 2

    asyncio.run(scenario())


def test_no_message_is_lost_to_polls_cancelled_as_sends_wake_them(
    daemon: Daemon, name: str
) -> None:
    # Consumers that stop waiting at random (asyncio.wait_for with short timeouts) while a
    # producer sends: every message is received or still there, none hidden for 600 s by a
    # poll nobody waits for. (A cancel read in the loop iteration a send woke the poll in is
    # swallowed by Python 3.11's asyncio.wait_for, and the poll went on to take a message.)
    rng = random.Random(7)

    async def scenario() -> None:
        async with await AsyncClient.open("127.0.0.1", _port(daemon)) as broker:
            queue = await broker.create_queue(name, {"VisibilityTimeout": "600"})
            received: list[Any] = []

            async def consumer() -> None:
                for _ in range(30):
                    timeout = rng.uniform(0.001, 0.03)
                    try:
                        received.extend(
                            await asyncio.wait_for(queue.receive(10, wait_seconds=20), timeout)
                        )
                    except asyncio.TimeoutError:
                        pass

            async def producer() -> None:
                for i in range(200):
                    await queue.send(f"m{i}")
                    await asyncio.sleep(0.002)

            await asyncio.gather(producer(), *(consumer() for _ in range(10)))
            while more := await queue.receive(10):
                received.extend(more)
            assert sorted(m.body for m in received) == sorted(f"m{i}".encode() for i in range(200))

    asyncio.run(scenario())


def test_an_async_client_closed_while_it_connects_stays_closed(daemon: Daemon) -> None:
    # close() during the (re)connect of a call: the connection made after it is not kept, as
    # the sync Client's close waits for its connect and then closes it.
    async def scenario() -> None:
        client = AsyncClient("127.0.0.1", _port(daemon))
        call = asyncio.ensure_future(client.list_queues())
        await asyncio.sleep(0)  # the call is connecting
        await client.close()
        with pytest.raises(errors.BrokerClosed):
            await call
        with pytest.raises(errors.BrokerClosed):
            await client.list_queues()

    asyncio.run(scenario())


def test_a_poll_answered_with_an_error_as_it_was_cancelled_raises_cancelled(
    daemon: Daemon, name: str
) -> None:
    # The error answer is read, then the caller is cancelled before it resumes: the caller
    # sees its cancellation (as asyncio promises), not the error of an answer it gave up.
    async def scenario() -> None:
        async with await AsyncClient.open("127.0.0.1", _port(daemon)) as broker:
            queue = await broker.create_queue(name)
            await broker.delete_queue(name)
            poll = asyncio.ensure_future(queue.receive(1, wait_seconds=20))
            await asyncio.sleep(0)  # the request is written
            time.sleep(0.3)  # its error answer waits in the socket
            loop = asyncio.get_running_loop()
            # next iteration: the answer is read (the future gets its error), then the cancel
            loop.call_soon(lambda: loop.call_soon(poll.cancel))
            with pytest.raises(asyncio.CancelledError):
                await poll

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_a_client_keeps_its_region_when_the_daemon_comes_back_with_another_default(
    tmp_path: Path, kind: str
) -> None:
    # A Client made without region= works in the region the daemon greeted it with. After a
    # reconnect it asked for the daemon's default again: a daemon restarted with another
    # --region made the same Client act on another region's queues, without a word.
    data = str(tmp_path / "data")
    daemon = Daemon(data, native=True, extra=["--region", "eu-west-1"])

    def restart() -> Daemon:
        daemon.stop()
        return Daemon(
            data,
            native=True,
            port=daemon.port,
            native_port=daemon.native_port,
            extra=["--region", "us-east-1"],
        )

    async def asynchronously() -> tuple[str, list[str], list[bytes]]:
        async with await AsyncClient.open("127.0.0.1", _port(daemon)) as broker:
            queue = await broker.create_queue("q")
            nonlocal again
            again = restart()
            with contextlib.suppress(errors.ConnectionLost):  # the call in flight as it went
                await queue.send(b"lost with the connection")
            await queue.send(b"still in eu-west-1")
            received = await queue.receive(10)
            return broker.region, await broker.list_queues(), [m.body for m in received]

    again: Daemon | None = None
    try:
        if kind == "asyncio":
            region, names, bodies = asyncio.run(asynchronously())
        else:
            with millpond.connect(daemon.native_url) as client:
                queue = client.create_queue("q")
                again = restart()
                queue.send(b"still in eu-west-1")
                region, names = client.region, client.list_queues()
                bodies = [m.body for m in queue.receive(10)]
        assert (region, names) == ("eu-west-1", ["q"])
        assert b"still in eu-west-1" in bodies
    finally:
        (again or daemon).stop()


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_a_send_over_the_daemons_frame_limit_is_message_too_long(
    daemon: Daemon, name: str, kind: str
) -> None:
    # The embedded queue raises MessageTooLong for a body over its size limit, and code catches
    # it to store large payloads elsewhere (S3, say); a native send over the daemon's frame
    # limit raised a plain InvalidParameterValue instead, which that code missed.
    body = b"x" * frames.MAX_FRAME

    async def asynchronously() -> None:
        async with await AsyncClient.open("127.0.0.1", _port(daemon)) as broker:
            queue = await broker.create_queue(name)
            with pytest.raises(errors.MessageTooLong):
                await queue.send(body)
            with pytest.raises(errors.MessageTooLong):
                await queue.send_batch([body])

    if kind == "asyncio":
        asyncio.run(asynchronously())
        return
    with millpond.connect(daemon.native_url) as client:
        queue = client.create_queue(name)
        with pytest.raises(errors.MessageTooLong):
            queue.send(body)
        with pytest.raises(errors.MessageTooLong):
            queue.send_batch([body])
        assert client.list_queues(name) == [name]  # the connection goes on


_NOT_STR_KEYS = [
    ("set_attributes", lambda queue: queue.set_attributes({1: "x"})),
    ("tag", lambda queue: queue.tag({None: "x"})),
    ("send", lambda queue: queue.send(b"x", attributes={("a", "b"): {"DataType": "String"}})),
    ("send_batch", lambda queue: queue.send_batch([{"body": b"x", 2: 3}])),
]


@pytest.mark.parametrize(("method", "call"), _NOT_STR_KEYS, ids=[m for m, _ in _NOT_STR_KEYS])
def test_a_dict_key_that_is_not_text_is_refused_alone(
    daemon: Daemon, name: str, method: str, call: Any
) -> None:
    # The embedded methods refuse a dict with a key that is not a str (an InvalidInputError:
    # "Unknown Attribute 1.", say). The client sent it, and the daemon, which unpacks map keys
    # as text only, took the request for a protocol breach and closed the connection: the
    # caller got ProtocolError, and every other call in flight on the shared Client was cut.
    with millpond.connect(daemon.native_url) as client:
        queue = client.create_queue(name)
        poller, polls = _polling(queue, wait_seconds=5)
        time.sleep(0.2)
        with pytest.raises(errors.InvalidInputError, match="key"):
            call(queue)
        queue.send(b"wake")
        poller.join(5)
        assert [m.body for m in polls[0]] == [b"wake"]
        assert queue.tags() == {}


def test_the_async_client_refuses_a_dict_key_that_is_not_text_alone(
    daemon: Daemon, name: str
) -> None:
    async def scenario() -> None:
        async with await AsyncClient.open("127.0.0.1", _port(daemon)) as broker:
            queue = await broker.create_queue(name)
            poll = asyncio.ensure_future(queue.receive(1, wait_seconds=5))
            await asyncio.sleep(0.2)
            with pytest.raises(errors.InvalidInputError, match="key"):
                await queue.set_attributes({1: "x"})
            await queue.send(b"wake")
            assert [m.body for m in await poll] == [b"wake"]

    asyncio.run(scenario())


def test_a_long_poll_cut_by_close_raises_broker_closed(daemon: Daemon, name: str) -> None:
    # A consumer thread stops on BrokerClosed when the broker is closed under its long poll
    # (the embedded broker raises it, as it does for any later call). The native client
    # raised ConnectionLost there, the network error a consumer retries on.
    client = millpond.connect(daemon.native_url)
    queue = client.create_queue(name)
    poller, polls = _polling(queue, wait_seconds=10)
    time.sleep(0.2)
    connection = client._connection  # as a call in another thread has it, about to send
    assert connection is not None
    client.close()
    poller.join(5)
    assert len(polls) == 1 and isinstance(polls[0], errors.BrokerClosed), polls
    with pytest.raises(errors.BrokerClosed):
        connection.call("list_queues", None, [], {})


def test_an_async_long_poll_cut_by_close_raises_broker_closed(daemon: Daemon, name: str) -> None:
    async def scenario() -> None:
        broker = await AsyncClient.open("127.0.0.1", _port(daemon))
        queue = await broker.create_queue(name)
        poll = asyncio.ensure_future(queue.receive(1, wait_seconds=10))
        await asyncio.sleep(0.2)
        await broker.close()
        with pytest.raises(errors.BrokerClosed):
            await asyncio.wait_for(poll, 5)

    asyncio.run(scenario())


def test_a_connection_past_the_daemons_limit_is_told_so() -> None:
    # Past its connection limit (half its file descriptors) the daemon answers a connection
    # with "too many connections" in place of its greeting. The clients took that for a port
    # that is no millpond daemon ("not a millpond native port of version 1"), and raised
    # ProtocolError, not the ConnectionLost of any other connection that cannot be made.
    from types import SimpleNamespace

    from millpond.native.server import NativeServer

    async def scenario() -> None:
        server = NativeServer(SimpleNamespace(credentials={}), max_connections=1)  # type: ignore[arg-type]
        port = await server.listen("127.0.0.1", 0)
        server.ready()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readexactly(4)  # greeted: the one place is taken
        with pytest.raises(errors.ConnectionLost, match="too many connections"):
            await AsyncClient.open("127.0.0.1", port)
        loop = asyncio.get_running_loop()
        with pytest.raises(errors.ConnectionLost, match="too many connections"):
            await loop.run_in_executor(None, lambda: Client("127.0.0.1", port))
        writer.close()
        await server.stop(timeout=1)

    asyncio.run(scenario())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_while_the_client_reconnects_can_use_it(daemon: Daemon, name: str) -> None:
    # A thread of the parent was reconnecting (a daemon restart) as the process forked (a
    # pre-fork server starting a worker): the child inherited the Client's lock held by a
    # thread it does not have, and its first call, which connects anew, waited for ever.
    with millpond.connect(daemon.native_url) as client:
        queue = client.create_queue(name)
        with client._lock:  # held as _reconnect holds it while it connects
            child_said = send_from_a_forked_child(client, queue, alarm_seconds=3)
        assert child_said == b"sent"
        assert [m.text for m in queue.receive(1)] == ["from the child"]
