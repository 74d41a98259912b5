"""The native protocol (millpond.native): the wire format as a raw socket sees it, the client's
methods and errors, long polls across connections and protocols, shutdown and durability.

Most tests share one daemon (module fixture, queues named per test); the ones that stop,
kill or configure a daemon start their own.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

import millpond
from millpond import errors
from millpond.broker import Broker
from millpond.fifo_queue import FifoQueue
from millpond.native import errors as native_errors
from millpond.native import frames
from millpond.native.aio import AsyncClient
from millpond.native.aio_proxies import (
    AsyncRemoteFifoQueue,
    AsyncRemoteQueue,
    AsyncRemoteSubscription,
    AsyncRemoteTopic,
)
from millpond.native.client import Client
from millpond.native.frames import signature
from millpond.native.proxies import RemoteFifoQueue, RemoteQueue, RemoteSubscription, RemoteTopic
from millpond.native.server import MAX_IN_FLIGHT
from millpond.queue import Queue
from millpond.subscription import Subscription
from millpond.topic import Topic

from .daemon import SERVE, Daemon, free_port, native_daemon_fixture  # noqa: F401 (fixture)
from .interrupts import Interrupt, interrupted_after

_names = itertools.count()


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    c = millpond.connect(daemon.native_url)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def name() -> str:
    return f"n{os.getpid()}-{next(_names)}"


class Raw:
    """A bare socket speaking the protocol by hand."""

    def __init__(self, port: int, hello: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.greeting = self.read()
        if hello:
            assert self.call(1, "hello", None, [], {"version": frames.VERSION})[1] == frames.OK

    def send(self, *request: Any) -> None:
        self.sock.sendall(frames.frame(msgpack.packb(list(request))))

    def read(self) -> Any:
        while True:
            if len(self.buffer) >= 4:
                (length,) = struct.unpack(">I", self.buffer[:4])
                if len(self.buffer) >= 4 + length:
                    payload, self.buffer = self.buffer[4 : 4 + length], self.buffer[4 + length :]
                    return msgpack.unpackb(payload, raw=False, strict_map_key=False)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk

    def call(self, *request: Any) -> Any:
        self.send(*request)
        return self.read()

    def closed(self) -> bool:
        """Whether the daemon closed the connection (after whatever it still had to say)."""
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


def _error_name(answer: Any) -> str:
    assert answer[1] == frames.ERROR, answer
    return answer[2][0]  # type: ignore[no-any-return]


# -- the wire --------------------------------------------------------------------------------------


def test_greeting_hello_and_frames_split_or_joined(daemon: Daemon, name: str) -> None:
    raw = Raw(daemon.native_port, hello=False)  # type: ignore[arg-type]
    assert raw.greeting["millpond"] == frames.VERSION
    assert len(raw.greeting["nonce"]) == 16 and raw.greeting["auth"] is False
    rid, status, info = raw.call(1, "hello", None, [], {"version": frames.VERSION})
    assert (rid, status) == (1, frames.OK)
    assert info["region"] == "us-east-1" and info["account_id"] == "123456789012"
    created = raw.call(2, "create_queue", None, [name], {})[2]
    assert isinstance(created, msgpack.ExtType) and created.code == frames.QUEUE
    # two requests in one write (they run at once: either may finish first), then one request
    # a byte at a time
    two = frames.frame(msgpack.packb([3, "list_queues", None, [name], {}]))
    two += frames.frame(msgpack.packb([5, "queue.send", name, [b"y"], {}]))
    raw.sock.sendall(two)
    answers = {a[0]: a for a in (raw.read(), raw.read())}
    assert answers[3][2] == [name] and answers[5][1] == frames.OK
    for byte in frames.frame(msgpack.packb([4, "queue.send", name, [b"x"], {}])):
        raw.sock.send(bytes([byte]))
    assert raw.read()[:2] == [4, frames.OK]
    raw.close()


def test_unknown_operation_is_refused_and_the_connection_goes_on(daemon: Daemon) -> None:
    raw = Raw(daemon.native_port)  # type: ignore[arg-type]
    for op in ("no_such_op", "__class__", "queue._write", "close", "queue.__init__"):
        answer = raw.call(7, op, "x", [], {})
        assert answer[0] == 7 and _error_name(answer) == "ProtocolError", op
        assert "unknown operation" in answer[2][2]
    assert raw.call(8, "list_topics", None, [], {})[:2] == [8, frames.OK]
    raw.close()


def test_oversized_frame_is_refused_and_the_connection_closed(daemon: Daemon) -> None:
    raw = Raw(daemon.native_port)  # type: ignore[arg-type]
    raw.sock.sendall(struct.pack(">I", frames.MAX_FRAME + 1) + b"\x00" * 100)
    answer = raw.read()
    assert answer[0] == frames.CONNECTION and _error_name(answer) == "ProtocolError"
    assert f"{frames.MAX_FRAME + 1} bytes is over the limit" in answer[2][2]
    assert raw.closed()


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", b"\x92\x01", msgpack.packb({"not": "a list"}), msgpack.packb([0, "x", None, [], {}])],
    ids=["not-msgpack", "truncated", "a-map", "request-id-0"],
)
def test_malformed_request_closes_the_connection(daemon: Daemon, payload: bytes) -> None:
    raw = Raw(daemon.native_port)  # type: ignore[arg-type]
    raw.sock.sendall(frames.frame(payload))
    answer = raw.read()
    assert answer[0] == frames.CONNECTION and _error_name(answer) == "ProtocolError"
    assert raw.closed()


def test_first_request_must_be_hello_of_this_version(daemon: Daemon) -> None:
    raw = Raw(daemon.native_port, hello=False)  # type: ignore[arg-type]
    assert _error_name(raw.call(1, "list_queues", None, [], {})) == "ProtocolError"
    assert raw.closed()
    # requests right behind the hello, in the same write, wait for it
    raw = Raw(daemon.native_port, hello=False)  # type: ignore[arg-type]
    hello = frames.frame(msgpack.packb([1, "hello", None, [], {"version": frames.VERSION}]))
    raw.sock.sendall(hello + frames.frame(msgpack.packb([2, "list_topics", None, [], {}])))
    assert [raw.read()[:2], raw.read()[:2]] == [[1, frames.OK], [2, frames.OK]]
    raw.close()
    raw = Raw(daemon.native_port, hello=False)  # type: ignore[arg-type]
    answer = raw.call(1, "hello", None, [], {"version": 99})
    assert _error_name(answer) == "ProtocolError" and "version 99" in answer[2][2]
    assert raw.closed()


def test_pipelined_requests_are_answered_out_of_order(daemon: Daemon, name: str) -> None:
    client = millpond.connect(daemon.native_url)
    client.create_queue(name)
    client.create_queue(name + "b")
    raw = Raw(daemon.native_port)  # type: ignore[arg-type]
    raw.send(10, "queue.receive", name, [1], {"wait_seconds": 10})  # waits: the queue is empty
    raw.send(11, "queue.send", name + "b", [b"other"], {})
    first = raw.read()
    assert first[:2] == [11, frames.OK]  # the later request, answered while the poll waits
    raw.send(12, "queue.send", name, [b"wake"], {})
    answers = {a[0]: a for a in (raw.read(), raw.read())}
    assert set(answers) == {10, 12}
    (message,) = answers[10][2]
    assert message.code == frames.MESSAGE and msgpack.unpackb(message.data)[0] == b"wake"
    raw.close()
    client.close()


def test_a_client_that_never_reads_is_paused_not_buffered(daemon: Daemon, name: str) -> None:
    client = millpond.connect(daemon.native_url)
    queue = client.create_queue(name)
    queue.send(b"y" * 200_000)  # every answer below carries it: ~200 KB
    rss_before = _rss(daemon)
    raw = Raw(daemon.native_port)  # type: ignore[arg-type]
    raw.sock.settimeout(3)
    request = frames.frame(
        msgpack.packb([5, "queue.receive", name, [1], {"visibility_timeout": 0}])
    )
    chunk = b"".join(
        frames.frame(msgpack.packb([rid, "queue.receive", name, [1], {"visibility_timeout": 0}]))
        for rid in range(100, 1100)
    )
    sent, paused = 0, False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            raw.sock.sendall(chunk)
        except TimeoutError:
            paused = True  # the daemon stopped reading this connection
            break
        sent += 1000
    assert paused, f"the daemon read {sent} requests without pausing"
    assert request  # the requests did ask for answers (~200 KB each): sent * 200 KB unbuffered
    # other connections are served meanwhile
    started = time.monotonic()
    assert client.list_queues(name) == [name]
    assert time.monotonic() - started < 2
    grown = _rss(daemon) - rss_before
    # bounded by MAX_IN_FLIGHT answers plus the write buffer's high-water mark, not by `sent`
    assert grown < (MAX_IN_FLIGHT + 40) * 200_000, (grown, sent)
    raw.close()
    client.close()


def _rss(daemon: Daemon) -> int:
    with open(f"/proc/{daemon.process.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_disconnect_during_a_long_poll_gives_the_message_back(daemon: Daemon, name: str) -> None:
    client = millpond.connect(daemon.native_url)
    queue = client.create_queue(name, {"VisibilityTimeout": "600"})
    raw = Raw(daemon.native_port)  # type: ignore[arg-type]
    raw.send(2, "queue.receive", name, [1], {"wait_seconds": 20})
    time.sleep(0.3)  # the poll is waiting in the daemon
    raw.close()
    time.sleep(0.3)  # and has seen its client go
    queue.send(b"for whoever is still there")
    started = time.monotonic()
    (message,) = queue.receive(1, wait_seconds=5)
    # not taken (and hidden for 600 s) by the poll of the client that left
    assert message.receive_count == 1 and time.monotonic() - started < 3
    client.close()


# -- the client ------------------------------------------------------------------------------------

# What only the embedded broker has: Broker.backup copies the data directory of this machine
# (for a daemon's, run `millpond backup` on its host).
EMBEDDED_ONLY = ("from_record", "backup")

PAIRS = [
    (Broker, Client),
    (Queue, RemoteQueue),
    (FifoQueue, RemoteFifoQueue),
    (Topic, RemoteTopic),
    (Subscription, RemoteSubscription),
]


@pytest.mark.parametrize(("embedded", "remote"), PAIRS, ids=[p[1].__name__ for p in PAIRS])
def test_the_client_has_every_public_method_with_the_same_signature(
    embedded: type, remote: type
) -> None:
    for attr, member in inspect.getmembers(embedded):
        if attr.startswith("_") or attr in EMBEDDED_ONLY:
            continue
        assert hasattr(remote, attr), f"{remote.__name__} lacks {attr}"
        if isinstance(member, property) or not callable(member):
            continue
        want = list(inspect.signature(member).parameters.values())
        got = list(inspect.signature(getattr(remote, attr)).parameters.values())
        shape = [(p.name, p.kind, p.default) for p in want]
        assert [(p.name, p.kind, p.default) for p in got] == shape, f"{remote.__name__}.{attr}"


def test_every_queue_method(client: Client, name: str) -> None:
    queue = client.create_queue(name, {"VisibilityTimeout": "30"}, {"team": "a"})
    assert client.queue(name) == queue and client.list_queues(name) == [name]
    assert queue.arn == client.arn("sqs", name)
    ids = queue.send_batch([b"a", "b", {"body": b"c", "attributes": _attr("v")}])
    assert len(set(ids)) == 3
    messages = []
    while len(messages) < 3:
        messages += queue.receive(10, wait_seconds=1)
    by_body = {m.body: m for m in messages}
    assert set(by_body) == {b"a", b"b", b"c"}
    assert by_body[b"c"].attributes == _attr("v") and by_body[b"c"].md5_of_message_attributes
    assert all(isinstance(m, millpond.Message) and m.receive_count == 1 for m in messages)
    assert all(m.sent_timestamp <= m.first_receive_timestamp for m in messages)
    queue.change_visibility(by_body[b"a"].receipt_handle, 0)
    results = queue.change_visibility_entries([(by_body[b"b"].receipt_handle, 0), ("bad", 1)])
    assert results[0] is None and isinstance(results[1], errors.ReceiptHandleIsInvalid)
    assert queue.delete_entries([by_body[b"c"].receipt_handle, "bad"])[0] is None
    again = []
    while len(again) < 2:
        again += queue.receive(10, wait_seconds=1)
    assert sorted(m.body for m in again) == [b"a", b"b"] and again[0].receive_count == 2
    queue.delete_batch([m.receipt_handle for m in again])
    assert queue.get_attributes(["ApproximateNumberOfMessages"]) == {
        "ApproximateNumberOfMessages": "0"
    }
    queue.set_attributes({"DelaySeconds": "1"})
    assert queue.get_attributes(iter(["DelaySeconds"])) == {"DelaySeconds": "1"}
    queue.tag({"env": "test"})
    queue.untag(k for k in ["team"])
    assert queue.tags() == {"env": "test"}
    queue.send(b"d", delay_seconds=0)
    queue.purge()
    with pytest.raises(errors.PurgeQueueInProgress):
        queue.purge()
    client.delete_queue(name)
    with pytest.raises(errors.QueueDoesNotExist):
        queue.send(b"gone")


def _attr(value: str) -> dict[str, Any]:
    return {"k": {"DataType": "String", "StringValue": value}}


def test_fifo_queue_methods(client: Client, name: str) -> None:
    queue = client.create_queue(name + ".fifo", {"FifoQueue": "true"})
    assert isinstance(queue, RemoteFifoQueue)
    first = queue.send(b"1", group_id="g", deduplication_id="d1")
    assert queue.send(b"1 again", group_id="g", deduplication_id="d1") == first
    detailed = queue.send_batch_detailed(
        [{"body": b"2", "group_id": "g", "deduplication_id": "d2"}]
    )
    assert isinstance(detailed[0], tuple) and len(detailed[0][1]) == 20
    (m,) = queue.receive(1, wait_seconds=1, attempt_id="try-1")
    assert (m.body, m.group_id, m.deduplication_id) == (b"1", "g", "d1") and m.sequence_number
    (same,) = queue.receive(1, attempt_id="try-1")  # a retried attempt: the same message
    assert same.message_id == m.message_id
    queue.delete(same.receipt_handle)
    with pytest.raises(errors.MissingParameter):
        queue.send(b"no group")


def test_topics_and_subscriptions(client: Client, name: str) -> None:
    topic = client.create_topic(name, {"DisplayName": "d"}, {"k": "v"})
    queue = client.create_queue(name)
    assert client.topic(name) == topic and client.topic(topic.arn) == topic
    assert name in client.list_topics() and topic.fifo is False
    sub = topic.subscribe(queue, {"kind": ["a"]}, raw_message_delivery=True)
    assert client.subscription(sub.arn) == sub and topic.subscription(sub.arn) == sub
    assert sub in client.list_subscriptions() and topic.list_subscriptions() == [sub]
    assert (sub.topic_arn, sub.queue_name, sub.protocol) == (topic.arn, name, "sqs")
    assert sub.get_attributes()["RawMessageDelivery"] == "true" and sub.undelivered == 0
    topic.publish("skipped", attributes={"kind": {"DataType": "String", "StringValue": "b"}})
    result = topic.publish_message("kept", subject="s", attributes=_kind("a"))
    batch = topic.publish_batch(
        [{"Id": "1", "Message": "kept too", "MessageAttributes": _kind("a")}]
    )
    assert batch[0]["Id"] == "1" and result["MessageId"]
    got = []
    while len(got) < 2:
        got += queue.receive(10, wait_seconds=1)
    assert sorted(m.body for m in got) == [b"kept", b"kept too"]
    sub.set_attributes({"FilterPolicy": ""})
    topic.set_attributes({"DisplayName": "e"})
    topic.add_permission("p", ["123456789012"], ["Publish"])
    assert '"p"' in topic.get_attributes()["Policy"]
    topic.remove_permission("p")
    topic.tag({"x": "y"})
    topic.untag(["k"])
    assert topic.tags() == {"x": "y"}
    sub.unsubscribe()
    sub.unsubscribe()  # twice: succeeds, as embedded
    with pytest.raises(errors.TopicNotFound):
        sub.get_attributes()
    topic.delete()
    topic.delete()
    with pytest.raises(errors.TopicNotFound):
        topic.publish("gone")


def _kind(value: str) -> dict[str, Any]:
    return {"kind": {"DataType": "String", "StringValue": value}}


def test_message_move_tasks(client: Client, name: str) -> None:
    dlq = client.create_queue(name + "-dlq")
    policy = f'{{"maxReceiveCount": 1, "deadLetterTargetArn": "{dlq.arn}"}}'
    source = client.create_queue(name, {"RedrivePolicy": policy, "VisibilityTimeout": "0"})
    assert client.list_dead_letter_source_queues(dlq.name) == [name]
    source.send(b"m")
    assert source.receive(1, wait_seconds=1)
    assert source.receive(1) == []  # the second receive moved it
    handle = client.start_message_move_task(dlq.arn)
    tasks = client.list_message_move_tasks(dlq.arn)
    assert tasks and tasks[0]["SourceArn"] == dlq.arn  # TaskHandle only while it runs (SQS)
    deadline = time.monotonic() + 10
    while client.list_message_move_tasks(dlq.arn)[0]["Status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [m.body for m in source.receive(1, wait_seconds=2)] == [b"m"]
    with pytest.raises(errors.InvalidParameterValue, match="Only active tasks"):
        client.cancel_message_move_task(handle)  # done already: as embedded


def test_errors_are_the_embedded_classes(client: Client, name: str) -> None:
    client.create_queue(name)
    with pytest.raises(errors.QueueAlreadyExists):
        client.create_queue(name, {"VisibilityTimeout": "5"})
    with pytest.raises(errors.QueueDoesNotExist) as raised:
        client.queue(name + "-none")
    assert raised.value.code == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(errors.ReceiptHandleIsInvalid):
        client.queue(name).delete("not a handle")
    with pytest.raises(errors.InvalidParameterValue):
        client.queue(name).receive(11)
    with pytest.raises(errors.MessageTooLong):
        client.queue(name).send(b"x" * 1_048_577)
    from millpond.sns_envelope import InvalidParameter

    with pytest.raises(InvalidParameter):
        client.create_topic("bad name!")
    with pytest.raises(errors.InvalidParameterValue):  # what msgpack cannot carry
        client.queue(name).send(object())  # type: ignore[arg-type]


def test_error_names_are_mapped_through_the_whitelist_only() -> None:
    assert type(native_errors.decode(["QueueDoesNotExist", "c", "m"])) is errors.QueueDoesNotExist
    for name in ("SystemExit", "KeyboardInterrupt", "Popen", "object", "type"):
        exc = native_errors.decode([name, "SomeCode", "text"])
        assert type(exc) is errors.MillpondError and exc.code == "SomeCode"
    assert isinstance(native_errors.decode("garbage"), native_errors.ProtocolError)


def test_threads_share_one_client(client: Client, name: str) -> None:
    queue = client.create_queue(name)
    sent: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        ids = [queue.send(f"{threading.get_ident()}-{i}") for i in range(100)]
        with lock:
            sent.extend(ids)

    poller = threading.Thread(target=lambda: client.queue(name + "-x").receive(1, wait_seconds=2))
    client.create_queue(name + "-x")
    poller.start()  # a long poll in flight does not hold the others up
    workers = [threading.Thread(target=work) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    poller.join()
    assert len(set(sent)) == 800
    assert queue.get_attributes(["ApproximateNumberOfMessages"])["ApproximateNumberOfMessages"] == (
        "800"
    )


def test_a_caller_interrupted_while_waiting_does_not_stall_the_client(
    client: Client, name: str
) -> None:
    # Thread A reads the socket (its long poll); the main thread waits for its own answer and
    # is interrupted (as by Ctrl-C). The reader's role must not be handed to the call that
    # nobody waits for any more.
    a, b = client.create_queue(name + "-a"), client.create_queue(name + "-b")
    reader = threading.Thread(target=lambda: a.receive(1, wait_seconds=2))
    reader.start()
    time.sleep(0.3)

    with interrupted_after(0.3), pytest.raises(Interrupt):
        b.receive(1, wait_seconds=4)
    reader.join(10)
    later: list[Any] = []
    after = threading.Thread(target=lambda: later.append(client.list_queues(name)))
    after.start()
    after.join(10)
    assert later == [[name + "-a", name + "-b"]], "the client stalled"


class _HalfSender:
    """A socket whose next sendall writes half the frame, then is interrupted."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.armed = True

    def sendall(self, data: bytes) -> None:
        if self.armed:
            self.armed = False
            self._sock.sendall(data[: len(data) // 2])
            raise Interrupt()
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_a_caller_interrupted_while_sending_does_not_break_the_client(
    client: Client, name: str
) -> None:
    # Half a request is on the wire when the caller is interrupted: no later frame can follow
    # it on that connection, and the interrupted call must not be left waiting for an answer
    # (the reader's role would be handed to it, and nobody would read).
    a, b = client.create_queue(name + "-a"), client.create_queue(name + "-b")
    poll: list[Any] = []

    def wait() -> None:
        try:
            poll.append(a.receive(1, wait_seconds=2))
        except errors.ConnectionLost as exc:
            poll.append(exc)

    reader = threading.Thread(target=wait)
    reader.start()
    time.sleep(0.3)
    connection = client._connection
    assert connection is not None
    connection.sock = _HalfSender(connection.sock)  # type: ignore[assignment]
    with pytest.raises(Interrupt):
        b.send(b"interrupted")
    reader.join(10)
    assert poll and isinstance(poll[0], errors.ConnectionLost)  # the connection went
    later: list[Any] = []
    after = threading.Thread(target=lambda: later.append(b.send(b"after")))
    after.start()
    after.join(10)
    assert len(later) == 1, "the client stalled"
    assert [m.body for m in b.receive(10)] == [b"after"]


def test_closed_client_raises_and_context_manager(daemon: Daemon) -> None:
    with millpond.connect(daemon.native_url) as c:
        assert isinstance(c.list_queues(), list)
    with pytest.raises(errors.BrokerClosed):
        c.list_queues()


def test_region_in_the_hello(daemon: Daemon, name: str) -> None:
    with millpond.connect(daemon.native_url, region="eu-west-1") as c:
        queue = c.create_queue(name)
        assert queue.arn.startswith("arn:aws:sqs:eu-west-1:")
    with millpond.connect(daemon.native_url) as c:
        assert name not in c.list_queues(name)
    with pytest.raises(errors.InvalidParameterValue):
        millpond.connect(daemon.native_url, region="../etc")


# -- the asyncio client ---------------------------------------------------------------------------

ASYNC_PAIRS = [
    (Client, AsyncClient),
    (RemoteQueue, AsyncRemoteQueue),
    (RemoteFifoQueue, AsyncRemoteFifoQueue),
    (RemoteTopic, AsyncRemoteTopic),
    (RemoteSubscription, AsyncRemoteSubscription),
]


@pytest.mark.parametrize(("sync", "aio"), ASYNC_PAIRS, ids=[p[1].__name__ for p in ASYNC_PAIRS])
def test_the_async_client_has_the_same_methods_as_coroutines(sync: type, aio: type) -> None:
    for attr, member in inspect.getmembers(sync):
        if attr.startswith("_") or isinstance(member, property) or not callable(member):
            continue
        assert hasattr(aio, attr), f"{aio.__name__} lacks {attr}"
        if attr == "arn":
            continue  # computed locally: not a call
        assert inspect.iscoroutinefunction(getattr(aio, attr)), f"{aio.__name__}.{attr}"
        want = [(p.name, p.kind, p.default) for p in inspect.signature(member).parameters.values()]
        got = inspect.signature(getattr(aio, attr)).parameters.values()
        assert [(p.name, p.kind, p.default) for p in got] == want, f"{aio.__name__}.{attr}"


def test_async_client(daemon: Daemon, name: str) -> None:
    async def scenario() -> None:
        port = daemon.native_port
        assert port is not None
        async with await AsyncClient.open("127.0.0.1", port) as broker:
            queue = await broker.create_queue(name)
            assert isinstance(queue, AsyncRemoteQueue) and queue.arn == broker.arn("sqs", name)
            # a long poll and the send that wakes it, pipelined on the one connection
            poll = asyncio.ensure_future(queue.receive(1, wait_seconds=10))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            ids = await asyncio.gather(*(queue.send(f"m{i}") for i in range(50)))
            (first,) = await poll
            assert time.monotonic() - started < 5 and first.message_id in ids
            assert isinstance(first, millpond.Message) and first.body.startswith(b"m")
            await queue.delete(first.receipt_handle)
            with pytest.raises(errors.QueueDoesNotExist):
                await broker.queue(name + "-none")
            with pytest.raises(errors.ReceiptHandleIsInvalid):
                await queue.delete("bad")
            topic = await broker.create_topic(name)
            sub = await topic.subscribe(queue, raw_message_delivery=True)
            assert await sub.undelivered == 0 and (await broker.subscription(sub.arn)) == sub
            assert await topic.publish("published")
            attributes = await queue.get_attributes(["ApproximateNumberOfMessages"])
            assert attributes == {"ApproximateNumberOfMessages": "50"}
            # a cancelled call leaves the connection usable
            waiting = asyncio.ensure_future(
                (await broker.create_queue(name + "-idle")).receive(1, wait_seconds=10)
            )
            await asyncio.sleep(0.1)
            waiting.cancel()
            assert await broker.list_queues(name + "-idle") == [name + "-idle"]
        with pytest.raises(errors.BrokerClosed):
            await broker.list_queues()

    asyncio.run(scenario())


def test_async_client_connect_errors(daemon: Daemon) -> None:
    async def scenario() -> None:
        with pytest.raises(errors.ConnectionLost):
            await AsyncClient.open("127.0.0.1", free_port(), connect_timeout=2)
        port = daemon.native_port
        assert port is not None
        with pytest.raises(errors.InvalidParameterValue):
            await AsyncClient.open("127.0.0.1", port, region="nowhere")

    asyncio.run(scenario())


# -- long polls across connections and protocols ---------------------------------------------------


@pytest.mark.parametrize("sender", ["native", "http"])
def test_long_poll_woken_by_a_send_elsewhere(daemon: Daemon, name: str, sender: str) -> None:
    client = millpond.connect(daemon.native_url)
    queue = client.create_queue(name)
    got: list[Any] = []
    poll = threading.Thread(target=lambda: got.extend(queue.receive(1, wait_seconds=15)))
    started = time.monotonic()
    poll.start()
    time.sleep(0.5)
    if sender == "native":
        with millpond.connect(daemon.native_url) as other:
            other.queue(name).send(b"wake up")
    else:
        sqs = daemon.client()
        sqs.send_message(
            QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"], MessageBody="wake up"
        )
    poll.join(15)
    assert [m.body for m in got] == [b"wake up"]
    assert time.monotonic() - started < 5  # woken, not timed out
    client.close()


# -- own daemons: shutdown, durability, auth, config -----------------------------------------------


def test_sigterm_answers_requests_in_flight(tmp_path: Path) -> None:
    daemon = Daemon(str(tmp_path / "data"), native=True, durability="fsync")
    client = millpond.connect(daemon.native_url)
    client.create_queue("q")
    client.create_queue("idle")
    raw = Raw(daemon.native_port)  # type: ignore[arg-type]
    raw.send(2, "queue.receive", "idle", [1], {"wait_seconds": 20})  # only shutdown ends it
    time.sleep(0.3)
    burst = b"".join(
        frames.frame(msgpack.packb([rid, "queue.send", "q", [b"m%d" % rid], {}]))
        for rid in range(10, 2010)
    )
    raw.sock.sendall(burst)
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)  # sends still being read and committed
    answers = {}
    try:
        while True:
            answer = raw.read()
            answers[answer[0]] = answer
    except ConnectionError:
        pass  # closed once the requests it had read were answered
    assert daemon.stop() == 0
    assert answers[2][:2] == [2, frames.OK] and answers[2][2] == []  # the poll, answered empty
    assert time.monotonic() - started < 15  # at once, not after its 20 s wait
    assert all(a[1] == frames.OK for a in answers.values())  # no request failed half-way
    acknowledged = {b"m%d" % rid for rid in answers if rid >= 10}
    assert acknowledged, "no send was read before the signal: the test proved nothing"
    client.close()
    with millpond.open(os.path.join(daemon.data_dir, "us-east-1")) as broker:
        stored: set[bytes] = set()
        while batch := broker.queue("q").receive(10):
            stored |= {m.body for m in batch}
    assert acknowledged <= stored  # every answered send was stored (fsync: before its answer)


def test_an_acknowledged_send_survives_sigkill(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    daemon = Daemon(data, native=True, durability="fsync")
    with millpond.connect(daemon.native_url) as client:
        queue = client.create_queue("durable")
        message_id = queue.send(b"acknowledged")
        daemon.process.send_signal(signal.SIGKILL)  # right after the ack: no clean shutdown
    daemon.stop()
    again = Daemon(data, native=True, durability="fsync")
    try:
        with millpond.connect(again.native_url) as client:
            (m,) = client.queue("durable").receive(1, wait_seconds=1)
            assert (m.body, m.message_id) == (b"acknowledged", message_id)
    finally:
        again.stop()


def test_the_client_reconnects_after_the_daemon_restarts(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    daemon = Daemon(data, native=True)
    client = millpond.connect(daemon.native_url)
    queue = client.create_queue("q")
    poll: list[BaseException] = []

    def wait() -> None:
        try:
            queue.receive(1, wait_seconds=20)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            poll.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    daemon.process.send_signal(signal.SIGKILL)
    waiter.join(10)
    assert not waiter.is_alive() and isinstance(poll[0], errors.ConnectionLost)
    daemon.stop()
    again = Daemon(data, native=True, port=daemon.port, native_port=daemon.native_port)
    try:
        queue.send(b"after")  # a new connection: the broken one failed its call in flight
        assert [m.body for m in queue.receive(1, wait_seconds=2)] == [b"after"]
    finally:
        client.close()
        again.stop()


def test_credentials_are_checked_in_the_hello(tmp_path: Path) -> None:
    config = tmp_path / "millpond.toml"
    config.write_text('[auth]\ncredentials = { AKIDNATIVE = "s3cret" }\n')
    daemon = Daemon(str(tmp_path / "data"), native=True, config=str(config))
    try:
        for options in ({}, {"access_key_id": "AKIDNATIVE", "secret_access_key": "wrong"}):
            with pytest.raises(native_errors.AccessDenied):
                millpond.connect(daemon.native_url, **options)
        raw = Raw(daemon.native_port, hello=False)  # type: ignore[arg-type]
        assert raw.greeting["auth"] is True
        proof = signature("s3cret", b"another nonce")  # a replayed proof of another connection
        hello = {"version": 1, "access_key_id": "AKIDNATIVE", "signature": proof}
        assert _error_name(raw.call(1, "hello", None, [], hello)) == "AccessDenied"
        with millpond.connect(
            daemon.native_url, access_key_id="AKIDNATIVE", secret_access_key="s3cret"
        ) as client:
            assert client.list_queues() == []
    finally:
        daemon.stop()


def test_native_port_from_the_config_and_a_taken_port(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "millpond.toml"
    config.write_text(f"[server]\nnative_port = {port}\n")
    daemon = Daemon(str(tmp_path / "data"), config=str(config))
    try:
        with millpond.connect(f"millpond://127.0.0.1:{port}") as client:
            assert client.list_queues() == []
        assert f"native protocol on millpond://127.0.0.1:{port}" in daemon.log()
        # the same port again: the second daemon cannot serve it and says so
        import subprocess

        out = subprocess.run(
            SERVE
            + ["--data", str(tmp_path / "d2"), "--port", str(free_port())]
            + ["--native-port", str(port)],
            capture_output=True,
            timeout=30,
        )
        assert out.returncode not in (0, None)
        assert b"millpond serving" not in out.stdout and str(port).encode() in out.stderr
    finally:
        daemon.stop()
    config.write_text('[server]\nnative_port = "x"\n')
    out = subprocess.run(
        SERVE + ["--config", str(config), "--data", str(tmp_path / "d3")],
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 1 and b"native_port must be a number" in out.stderr


def test_native_port_is_off_unless_asked(tmp_path: Path) -> None:
    daemon = Daemon(str(tmp_path / "data"))
    try:
        assert "native protocol" not in daemon.log()
        with pytest.raises(errors.ConnectionLost):
            Client("127.0.0.1", 9325 if _free(9325) else free_port(), connect_timeout=1)
    finally:
        daemon.stop()


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
