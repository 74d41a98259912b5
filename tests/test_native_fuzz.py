"""The native protocol's daemon under hostile peers: random requests to every operation,
mangled frames, oversized and over-nested msgpack, bad hellos, half-closed, slow and silent
peers, thousands of connections.

Whatever a peer sends, the daemon answers with an error (a request's, or the connection's
before it closes) and goes on serving: the daemon's log must hold no traceback afterwards.
The fast runs take a few seconds with a fixed seed plus a random one (printed on failure);
``-m slow`` runs them longer (MILLPOND_FUZZ_SECONDS, default 60 per test).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest

import millpond
from millpond.native import frames
from millpond.native.aio import AsyncClient
from millpond.native.errors import CLASSES
from millpond.native.ops import OPERATIONS
from millpond.native.server import NativeServer

from .daemon import Daemon
from .test_native import Raw

KEY, SECRET = "AKIDFUZZ", "fuzz-secret"
SLOW_SECONDS = float(os.environ.get("MILLPOND_FUZZ_SECONDS", "60"))
# What a daemon's log may never show, whatever a peer sent.
LOG_ALARMS = ("Traceback", "Fatal error", "internal error", "exception was never retrieved")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("native-fuzz")
    config = root / "millpond.toml"
    config.write_text(f'[auth]\ncredentials = {{ {KEY} = "{SECRET}" }}\n')
    d = Daemon(str(root / "data"), native=True, config=str(config))
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(autouse=True)
def clean_log(daemon: Daemon) -> Iterator[None]:
    """Every test ends with the daemon alive, serving, and nothing alarming in its log."""
    yield
    assert daemon.process.poll() is None, daemon.log()
    with _client(daemon) as client:
        assert isinstance(client.list_queues(), list)
    log = daemon.log()
    assert not any(alarm in log for alarm in LOG_ALARMS), log[-5000:]


def _client(daemon: Daemon) -> Any:
    return millpond.connect(daemon.native_url, access_key_id=KEY, secret_access_key=SECRET)


# Each fuzz test runs short (about 1 s a seed), and long when selected with -m slow.
LENGTHS = [
    pytest.param(1.0, id="short"),
    pytest.param(SLOW_SECONDS, id="long", marks=pytest.mark.slow),
]


def _seeds(request: pytest.FixtureRequest, seconds: float) -> list[int]:
    """The seeds to fuzz with: a fixed one, then a random one (named on failure)."""
    if seconds > 1.0 and "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("a long fuzz run: select it with -m slow")
    return [1, random.randrange(1 << 30)]


class Peer(Raw):
    """A raw connection that speaks the protocol by hand (and can break it), with this
    daemon's credentials in its hello."""

    def __init__(self, port: int, hello: bool = True) -> None:
        super().__init__(port, hello=False)
        if hello:
            proof = frames.signature(SECRET, self.greeting["nonce"])
            options = {"version": frames.VERSION, "access_key_id": KEY, "signature": proof}
            answer = self.call(1, "hello", None, [], options)
            assert answer[:2] == [1, frames.OK], answer

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)


def _connection_error(peer: Peer) -> str:
    """The connection error the daemon sent before closing (its message)."""
    answer = peer.read()
    assert answer[0] == frames.CONNECTION and answer[1] == frames.ERROR, answer
    assert answer[2][0] == "ProtocolError", answer
    assert peer.closed()
    return str(answer[2][2])


def _check_answer(answer: Any, rids: set[int]) -> None:
    """A request's answer: its id, OK or an error of a class the client knows."""
    assert type(answer) is list and len(answer) == 3, answer
    rid, status, result = answer
    assert rid in rids, answer
    rids.discard(rid)
    assert status in (frames.OK, frames.ERROR), answer
    if status == frames.ERROR:
        name, code, message = result
        assert name in CLASSES, answer
        assert "internal error" not in message, answer


# -- random requests -------------------------------------------------------------------------------


class Values:
    """Random msgpack values, biased towards what the daemon's methods look for."""

    def __init__(self, rng: random.Random, names: list[str]) -> None:
        self.rng = rng
        arn = "arn:aws:sns:us-east-1:123456789012:"
        self.strings = [
            "", "x", "é", "\x00", "a" * 300, "-1", "10", "true", "String", "Number", "Binary",
            "sqs", "email", "All", "MessageAttributes", '{"a": ["b"]}', "{", arn + names[2],
            arn + names[2] + ":" + "0" * 36, "arn:aws:sqs:us-east-1:123456789012:" + names[0],
            "arn:aws:sqs:eu-west-1:000000000000:x", *names,
        ]  # fmt: skip
        self.keys = [
            "DelaySeconds", "VisibilityTimeout", "MessageRetentionPeriod", "RedrivePolicy",
            "RedriveAllowPolicy", "Policy", "FifoQueue", "ContentBasedDeduplication",
            "ReceiveMessageWaitTimeSeconds", "DataType", "StringValue", "BinaryValue", "Id",
            "MessageBody", "MessageGroupId", "MessageDeduplicationId", "FilterPolicy",
            "RawMessageDelivery", "Message", "Subject", "MessageAttributes", "Key", "Value", "a",
        ]  # fmt: skip
        self.ints = [0, 1, -1, 2, 10, 11, 900, 43_201, 2**31, 2**63 - 1, -(2**63), 2**64 - 1]

    def scalar(self) -> Any:
        rng = self.rng
        kind = rng.randrange(9)
        if kind == 0:
            return rng.choice([None, True, False])
        if kind == 1:
            return rng.choice(self.ints)
        if kind == 2:
            return rng.choice([0.5, -0.0, float("nan"), float("inf"), 1e300])
        if kind in (3, 4, 5):
            return rng.choice(self.strings)
        if kind == 6:
            return rng.choice([b"", b"\xff\xfe", b"x" * 1000, rng.randbytes(rng.randrange(40))])
        if kind == 7:  # extension types: millpond's codes and others, msgpack's timestamp
            if rng.random() < 0.2:
                return msgpack.Timestamp(rng.randrange(2**34))
            data = rng.choice([msgpack.packb([1, 2]), b"", rng.randbytes(8)])
            return msgpack.ExtType(rng.choice([0, 1, 2, 3, 4, 5, 127]), data)
        return rng.randrange(-5, 30)

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        kind = rng.randrange(10) if depth < 3 else 9
        if kind < 2:
            return [self.value(depth + 1) for _ in range(rng.randrange(5))]
        if kind < 4:
            return {rng.choice(self.keys): self.value(depth + 1) for _ in range(rng.randrange(4))}
        return self.scalar()


def _parameter_names() -> list[str]:
    """Every keyword the whitelisted methods take, and some no method may be given."""
    from millpond.broker import Broker
    from millpond.fifo_queue import FifoQueue
    from millpond.subscription import Subscription
    from millpond.topic import Topic

    names = {"self", "ctx", "queue", "session", "_now_ms", "__class__", "kwargs", "args"}
    for cls in (Broker, FifoQueue, Topic, Subscription):
        for _, member in inspect.getmembers(cls, inspect.isfunction):
            names.update(inspect.signature(member).parameters)
    return sorted(names)


def _requests(rng: random.Random, names: list[str]) -> Iterator[tuple[str, Any, list, dict]]:
    values = Values(rng, names)
    ops = sorted(OPERATIONS) + ["hello", "no_such", "queue._write", "__init__"]
    keywords = _parameter_names()
    while True:
        op = rng.choice(ops)
        target = rng.choice(names) if rng.random() < 0.8 else values.value()
        args = [values.value() for _ in range(rng.choice([0, 1, 1, 1, 2, 3, 7]))]
        kwargs = {rng.choice(keywords): values.value() for _ in range(rng.choice([0, 0, 1, 2]))}
        if op == "queue.receive":  # validated like any argument, but no test waits 20 s
            kwargs["wait_seconds"] = rng.choice([0, -1, 21, "1", None, 0.5])
        yield op, target, args, kwargs


def _setup_names(daemon: Daemon, tag: str) -> list[str]:
    """[queue, FIFO queue, topic, subscription ARN, message's receipt handle]."""
    with _client(daemon) as client:
        queue = client.create_queue(f"fz{tag}")
        fifo = client.create_queue(f"fz{tag}.fifo", {"FifoQueue": "true"})
        topic = client.create_topic(f"fz{tag}t")
        subscription = topic.subscribe(queue)
        queue.send(b"m")
        (message,) = queue.receive(1)
        return [queue.name, fifo.name, topic.name, subscription.arn, message.receipt_handle]


def _fuzz_requests(daemon: Daemon, seed: int, seconds: float) -> int:
    """Pipelined random requests on one connection; every one answered, none fatal."""
    rng = random.Random(seed)
    names = _setup_names(daemon, str(seed))
    requests = _requests(rng, names)
    peer, rid, sent = Peer(daemon.native_port), 1, 0  # type: ignore[arg-type]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rids = set()
        for _ in range(64):
            op, target, args, kwargs = next(requests)
            rid += 1
            rids.add(rid)
            peer.send(rid, op, target, args, kwargs)
        while rids:
            _check_answer(peer.read(), rids)
        sent += 64
    peer.close()
    return sent


@pytest.mark.parametrize("seconds", LENGTHS)
def test_random_requests_to_every_operation(
    daemon: Daemon, request: pytest.FixtureRequest, seconds: float
) -> None:
    for seed in _seeds(request, seconds):
        try:
            assert _fuzz_requests(daemon, seed, seconds) > 0
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {exc}") from None


# Methods that would end the differential run's own objects, or start background work.
# (backup: the embedded broker's alone, and it writes where its argument says)
_NOT_CALLED = {"delete_queue", "delete_topic", "delete", "purge", "close", "arn", "backup"}


def _objects(broker: Any) -> dict[str, Any]:
    return {
        "broker": broker,
        "queue": broker.queue("dq"),
        "fifo": broker.queue("dq.fifo"),
        "topic": broker.topic("dt"),
    }


@pytest.mark.parametrize("seconds", LENGTHS)
def test_random_calls_answer_as_the_embedded_broker(
    daemon: Daemon,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    seconds: float,
) -> None:
    """The same random calls on an embedded broker and through the client: both succeed with
    the same kind of result, or both raise the same class."""
    for seed in _seeds(request, seconds):
        rng = random.Random(seed)
        # a region of its own on the shared daemon (fresh as the embedded broker's directory)
        region = "eu-" + "".join(random.choices("abcdefghijklmnopqrstuvwxyz", k=12)) + "-1"
        embedded = millpond.open(
            str(tmp_path_factory.mktemp("embedded")), durability="os", region=region
        )
        remote = millpond.connect(
            daemon.native_url, access_key_id=KEY, secret_access_key=SECRET, region=region
        )
        for broker in (embedded, remote):
            broker.create_queue("dq")
            broker.create_queue("dq.fifo", {"FifoQueue": "true"})
            broker.create_topic("dt")
        values = Values(rng, ["dq", "dq.fifo", "dt", "x", embedded.arn("sns", "dt")])
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            kind = rng.choice(["broker", "queue", "fifo", "topic"])
            mine, theirs = _objects(embedded)[kind], _objects(remote)[kind]
            name = rng.choice([m for m in dir(mine) if callable(getattr(mine, m)) and m[0] != "_"])
            if name in _NOT_CALLED:
                continue
            parameters = inspect.signature(getattr(mine, name)).parameters.values()
            keywords = [p.name for p in parameters if p.kind == p.KEYWORD_ONLY]
            args = [values.value() for _ in range(rng.choice([0, 1, 1, 2, 3]))]
            kwargs = {rng.choice(keywords): values.value() for _ in range(2)} if keywords else {}
            if name == "receive":
                kwargs["wait_seconds"] = 0
            outcomes = []
            for target in (mine, theirs):
                try:
                    result = getattr(target, name)(*args, **kwargs)
                    outcomes.append(type(result).__name__.replace("Remote", ""))
                except Exception as exc:
                    outcomes.append(type(exc).__name__)
            call = f"seed {seed}: {kind}.{name}(*{args!r:.200}, **{kwargs!r:.200})"
            assert outcomes[0] == outcomes[1], f"{call}: {outcomes}"
        remote.close()
        embedded.close()


def _mangled(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(len(data))
        kind = rng.randrange(3)
        if kind == 0:
            data[at] = rng.randrange(256)
        elif kind == 1:
            del data[at : at + rng.randrange(1, 4)]
        else:
            data[at:at] = rng.randbytes(rng.randrange(1, 4))
    if rng.random() < 0.7:  # a consistent length, so the payload itself is what is wrong
        data[:4] = struct.pack(">I", len(data) - 4)
    return bytes(data)


@pytest.mark.parametrize("seconds", LENGTHS)
def test_mangled_frames(daemon: Daemon, request: pytest.FixtureRequest, seconds: float) -> None:
    """Flipped, dropped and inserted bytes: an answer, or a connection error and a close."""
    for seed in _seeds(request, seconds):
        rng = random.Random(seed)
        names = _setup_names(daemon, f"m{seed}")
        requests = _requests(rng, names)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            peer = Peer(daemon.native_port)  # type: ignore[arg-type]
            op, target, args, kwargs = next(requests)
            if op == "queue.receive":
                continue  # a mangled wait_seconds could make a long poll of it
            good = frames.frame(msgpack.packb([7, op, target, args, kwargs], use_bin_type=True))
            peer.send_raw(_mangled(rng, good))
            peer.sock.shutdown(socket.SHUT_WR)  # then the daemon answers and closes
            answers = []
            try:
                while True:
                    answers.append(peer.read())
            except ConnectionError:
                pass
            # nothing (the length now claims more than follows), answers (a shorter length
            # cuts one frame in two), a connection error last
            for at, answer in enumerate(answers):
                assert type(answer) is list and len(answer) == 3, (seed, answer)
                assert type(answer[0]) is int, (seed, answer)  # the id may be mangled too
                assert answer[0] != frames.CONNECTION or at == len(answers) - 1, (seed, answers)
                if answer[1] == frames.ERROR:
                    assert answer[2][0] in CLASSES, (seed, answer)
            peer.close()


# -- the hello ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", LENGTHS)
def test_random_hellos(daemon: Daemon, request: pytest.FixtureRequest, seconds: float) -> None:
    """Random hello options, some with the right proof: answered, and closed when refused."""
    for seed in _seeds(request, seconds):
        rng = random.Random(seed)
        values = Values(rng, ["us-east-1", "eu-west-1", KEY, SECRET])
        keys = ["version", "region", "access_key_id", "signature", "x"]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            peer = Peer(daemon.native_port, hello=False)  # type: ignore[arg-type]
            options = {rng.choice(keys): values.value() for _ in range(rng.randrange(6))}
            if rng.random() < 0.5:
                options.update(version=frames.VERSION, access_key_id=KEY)
                options["signature"] = frames.signature(SECRET, peer.greeting["nonce"])
            answer = peer.call(1, "hello", rng.choice([None, "x"]), [], options)
            assert answer[0] == 1 and answer[1] in (frames.OK, frames.ERROR), (seed, answer)
            if answer[1] == frames.ERROR:
                assert answer[2][0] in CLASSES and "internal" not in answer[2][2], (seed, answer)
                assert peer.closed()
            peer.close()


def test_a_signature_that_is_not_ascii_is_denied(daemon: Daemon) -> None:
    """hmac.compare_digest raises TypeError for a str with non-ASCII characters: the daemon
    logged a fatal error and dropped the connection without an answer."""
    peer = Peer(daemon.native_port, hello=False)  # type: ignore[arg-type]
    hello = {"version": frames.VERSION, "access_key_id": KEY, "signature": "é" * 64}
    answer = peer.call(1, "hello", None, [], hello)
    assert answer[:2] == [1, frames.ERROR] and answer[2][0] == "AccessDenied", answer
    assert peer.closed()


@pytest.mark.parametrize(
    "options",
    [
        {"version": "1"},
        {"version": 1, "access_key_id": KEY},
        {"version": 1, "access_key_id": KEY, "signature": b"\xff" * 64},
        {"version": 1, "access_key_id": KEY, "signature": 5},
        {"version": 1, "access_key_id": ["x"], "signature": "00"},
        {"version": 1, "access_key_id": KEY, "signature": "0" * 30_000},
        {"version": 1, "access_key_id": "\x00", "signature": "0" * 64},
        {"version": 1, "access_key_id": KEY, "signature": None, "region": "us-east-1"},
    ],
)
def test_wrong_hellos_are_denied(daemon: Daemon, options: dict[str, Any]) -> None:
    peer = Peer(daemon.native_port, hello=False)  # type: ignore[arg-type]
    answer = peer.call(1, "hello", None, [], options)
    assert answer[:2] == [1, frames.ERROR], answer
    assert answer[2][0] in ("AccessDenied", "ProtocolError"), answer
    assert peer.closed()


def test_a_hello_for_a_region_is_checked_after_the_credentials(daemon: Daemon) -> None:
    # a region's name is a directory's: one past the file system's limit was an internal error
    for region in (5, "../etc", "x" * 1000, {"a": 1}, "aa-" + "b" * 300 + "-1"):
        peer = Peer(daemon.native_port, hello=False)  # type: ignore[arg-type]
        proof = frames.signature(SECRET, peer.greeting["nonce"])
        options = {"version": 1, "access_key_id": KEY, "signature": proof, "region": region}
        answer = peer.call(1, "hello", None, [], options)
        assert answer[:2] == [1, frames.ERROR], answer
        assert answer[2][0] == "InvalidParameterValue", answer
        assert peer.closed()


def test_each_connection_has_its_own_nonce(daemon: Daemon) -> None:
    nonces = set()
    for _ in range(20):
        peer = Peer(daemon.native_port, hello=False)  # type: ignore[arg-type]
        nonces.add(peer.greeting["nonce"])
        peer.close()
    assert len(nonces) == 20 and all(len(n) == 16 for n in nonces)


def test_before_the_hello_a_frame_is_small(daemon: Daemon) -> None:
    """A peer that has not said who it is may not make the daemon buffer (and unpack) 16 MiB."""
    peer = Peer(daemon.native_port, hello=False)  # type: ignore[arg-type]
    peer.send_raw(struct.pack(">I", frames.MAX_HELLO_FRAME + 1) + b"\x90" * 1000)
    assert "over the limit of 65536 bytes" in _connection_error(peer)
    # after the hello, the full limit
    peer = Peer(daemon.native_port)  # type: ignore[arg-type]
    body = b"x" * (frames.MAX_HELLO_FRAME * 2)
    assert peer.call(2, "create_queue", None, ["fz-big"], {})[1] == frames.OK
    assert peer.call(3, "queue.send", "fz-big", [body], {})[:2] == [3, frames.OK]
    peer.close()


def test_requests_before_or_instead_of_the_hello(daemon: Daemon) -> None:
    for request in (
        [1, "list_queues", None, [], {}],
        [1, "queue.send", "x", [b"x"], {}],
        [1, "hello", None, [], []],
        [1, "hello"],
    ):
        peer = Peer(daemon.native_port, hello=False)  # type: ignore[arg-type]
        answer = peer.call(*request)
        assert answer[1] == frames.ERROR and answer[2][0] == "ProtocolError", answer
        assert peer.closed()


# -- shapes msgpack allows -------------------------------------------------------------------------


def test_a_request_of_too_many_elements_is_refused(daemon: Daemon) -> None:
    """16 MiB of empty maps would unpack to 16 million dicts (~1 GiB, seconds of the loop)."""
    peer = Peer(daemon.native_port)  # type: ignore[arg-type]
    count = frames.MAX_REQUEST_ITEMS + 1
    args = b"\xdd" + struct.pack(">I", count) + b"\x80" * count  # an array of empty maps
    payload = b"\x95\x02" + msgpack.packb("queue.send") + b"\xa1x" + args + b"\x80"
    peer.send_raw(frames.frame(payload))
    assert f"exceeds max_array_len({frames.MAX_REQUEST_ITEMS})" in _connection_error(peer)
    # nested: many small containers, none over the limit alone
    peer = Peer(daemon.native_port)  # type: ignore[arg-type]
    inner = b"\xdc" + struct.pack(">H", 1000) + b"\x80" * 1000
    args = b"\xdc" + struct.pack(">H", 200) + inner * 200
    payload = b"\x95\x02" + msgpack.packb("queue.send") + b"\xa1x" + args + b"\x80"
    peer.send_raw(frames.frame(payload))
    assert f"more than {frames.MAX_REQUEST_ITEMS}" in _connection_error(peer)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("deep", b"\x91" * 2000 + b"\xc0"),  # past msgpack's own depth limit
        ("map-keys-not-str", b"\x81\x01\x02"),
        ("map-key-a-list", b"\x81\x91\x01\x02"),
        ("invalid-utf8", b"\xa2\xff\xfe"),
        ("truncated-bin", b"\xc5\xff\xff\x00"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_msgpack_a_request_cannot_be_made_of(daemon: Daemon, name: str, args: bytes) -> None:
    peer = Peer(daemon.native_port)  # type: ignore[arg-type]
    payload = b"\x95\x02" + msgpack.packb("queue.send") + b"\xa1x\x91" + args + b"\x80"
    peer.send_raw(frames.frame(payload))
    assert "not a msgpack request" in _connection_error(peer)


def test_deep_values_within_msgpack_limits_are_refused_by_the_method(daemon: Daemon) -> None:
    peer = Peer(daemon.native_port)  # type: ignore[arg-type]
    assert peer.call(2, "create_queue", None, ["fz-deep"], {})[1] == frames.OK
    # msgpack unpacks up to 1024 levels, and packs 511 (hence the value is made by hand)
    deep = msgpack.ExtType(0, b"")  # a stand-in, replaced in the packed bytes
    marker = msgpack.packb(deep)
    for rid, (op, args, kwargs) in enumerate(
        [
            ("queue.send", [b"x"], {"attributes": deep}),
            ("queue.set_attributes", [deep], {}),
            ("queue.tag", [deep], {}),
            ("queue.send_batch", [[deep]], {}),
            ("create_queue", ["fz-deep2", deep], {}),
            ("create_topic", ["fz-deep", None, deep], {}),
        ],
        start=3,
    ):
        packed = msgpack.packb([rid, op, "fz-deep", args, kwargs], use_bin_type=True)
        peer.send_raw(frames.frame(packed.replace(marker, b"\x81\xa1a\x91" * 490 + b"\xa1x")))
        answer = peer.read()
        assert answer[:2] == [rid, frames.ERROR], answer
        assert answer[2][0] in CLASSES and "internal" not in answer[2][2], answer
    peer.close()


def test_keywords_cannot_reach_parameters_of_the_daemon(daemon: Daemon) -> None:
    """Only the embedded methods' public parameters: not the handler's own (ctx, queue)."""
    peer = Peer(daemon.native_port)  # type: ignore[arg-type]
    assert peer.call(2, "create_queue", None, ["fz-kw"], {})[1] == frames.OK
    for rid, (op, kwargs) in enumerate(
        [
            ("queue.send", {"ctx": None}),
            ("queue.send", {"queue": "fz-other"}),
            ("queue.receive", {"ctx": None}),
            ("queue.delete", {"queue": None}),
            ("queue.purge", {"self": None}),
            ("queue.send", {"_now_ms": 0}),
        ],
        start=3,
    ):
        answer = peer.call(rid, op, "fz-kw", [b"x"] if op.endswith("send") else [], kwargs)
        assert answer[:2] == [rid, frames.ERROR], answer
        assert answer[2][0] == "InvalidParameterValue", answer
    assert peer.call(9, "queue.get_attributes", "fz-kw", [["ApproximateNumberOfMessages"]], {})[
        2
    ] == {"ApproximateNumberOfMessages": "0"}
    peer.close()


def test_the_whitelisted_methods_take_no_private_parameters() -> None:
    """A request's keywords go to the embedded method as they are: none of those methods (nor
    the loop's own verbs, past their context and queue) may take a parameter that is not
    public, or a peer could set it."""
    from millpond.broker import Broker
    from millpond.fifo_queue import FifoQueue
    from millpond.native import ops
    from millpond.subscription import Subscription
    from millpond.topic import Topic

    methods = [getattr(Broker, name) for name in ops._BROKER]
    methods += [getattr(FifoQueue, name) for name in ops._QUEUE]
    methods += [getattr(Topic, name) for name in ops._TOPIC]
    methods += [getattr(Subscription, name) for name in ops._SUBSCRIPTION]
    methods += [ops._send, ops._receive, ops._delete]
    for method in methods:
        names = list(inspect.signature(method).parameters)
        names = names[2:] if method in (ops._send, ops._receive, ops._delete) else names[1:]
        private = [name for name in names if name.startswith("_")]
        assert not private, f"{method.__qualname__} takes {private}"


# -- peers that behave oddly -----------------------------------------------------------------------


def test_a_half_closed_peer_gets_its_answers(daemon: Daemon) -> None:
    """A peer that sends its requests and then shuts down its side (as ``nc -N`` does)
    hears every answer before the daemon closes: its sends were stored, so it is told."""
    peer = Peer(daemon.native_port)  # type: ignore[arg-type]
    assert peer.call(2, "create_queue", None, ["fz-half"], {})[1] == frames.OK
    data = b"".join(
        frames.frame(msgpack.packb([rid, "queue.send", "fz-half", [b"m"], {}]))
        for rid in range(10, 410)  # more than MAX_IN_FLIGHT: some wait in the buffer
    )
    peer.send_raw(data + struct.pack(">I", 10) + b"\x95")  # and the start of a frame
    peer.sock.shutdown(socket.SHUT_WR)
    answers = set()
    try:
        while True:
            answer = peer.read()
            assert answer[1] == frames.OK, answer
            answers.add(answer[0])
    except ConnectionError:
        pass
    assert answers == set(range(10, 410))
    with _client(daemon) as client:
        count = client.queue("fz-half").get_attributes(["ApproximateNumberOfMessages"])
        assert count == {"ApproximateNumberOfMessages": "400"}


def test_a_connection_error_comes_after_the_answers_of_running_requests(
    daemon: Daemon,
) -> None:
    """The connection error (id 0) is the last frame: a client that reads it fails the calls
    still waiting, so a request the daemon ran (a send: stored) must be answered before it."""
    peer = Peer(daemon.native_port)  # type: ignore[arg-type]
    assert peer.call(2, "create_queue", None, ["fz-last"], {})[1] == frames.OK
    peer.send(3, "queue.receive", "fz-last", [1], {"wait_seconds": 1})  # runs for a second
    peer.send(4, "queue.send", "fz-last2", [b"x"], {})
    peer.send_raw(struct.pack(">I", frames.MAX_FRAME + 1))  # then a frame over the limit
    first, second = peer.read(), peer.read()
    assert [first[:2], second[:2]] == [[4, frames.ERROR], [3, frames.OK]]
    assert "over the limit" in _connection_error(peer)


def test_a_slow_peer_holds_up_no_one(daemon: Daemon) -> None:
    """A request dribbled in a byte at a time: other connections are served meanwhile."""
    slow = Peer(daemon.native_port)  # type: ignore[arg-type]
    request = frames.frame(msgpack.packb([2, "list_topics", None, [], {}]))
    with _client(daemon) as client:
        for byte in request[:-1]:
            slow.send_raw(bytes([byte]))
            started = time.monotonic()
            client.list_topics()
            assert time.monotonic() - started < 1
    slow.send_raw(request[-1:])
    assert slow.read()[:2] == [2, frames.OK]
    slow.close()


@pytest.mark.parametrize("count", [1000, pytest.param(5000, marks=pytest.mark.slow)])
def test_thousands_of_connections(
    daemon: Daemon, request: pytest.FixtureRequest, count: int
) -> None:
    """Connections greeted and dropped, idle or mid-hello: each costs a socket, no more."""
    if count > 1000 and "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("select it with -m slow")
    import resource

    # this process opens them, and the daemon takes up to half of its own (the same limit)
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2 * count + 100:
        pytest.skip(f"{count} connections need more file descriptors than this process may open")
    socks, retried = [], 0
    try:
        for i in range(count):
            started = time.monotonic()
            sock = socket.create_connection(("127.0.0.1", daemon.native_port), timeout=10)
            # a SYN past the listen backlog (asyncio's default is 100) is dropped by the
            # kernel, and the client retries a second later
            retried += time.monotonic() - started > 0.9
            if i % 3 == 0:
                sock.sendall(struct.pack(">I", 100) + b"\x95")  # a hello begun, never ended
            socks.append(sock)
        # none for a thousand (the daemon's backlog); past it, a few (the loop may be busy)
        assert retried <= (0 if count <= 1000 else count // 100), retried
        with _client(daemon) as client:
            started = time.monotonic()
            client.list_topics()
            assert time.monotonic() - started < 2
    finally:
        for sock in socks:
            sock.close()


# -- the hello timeout, on a listener of its own (no daemon needed before the hello) ---------------


def test_a_peer_that_never_says_hello_is_closed() -> None:
    async def main() -> tuple[Any, bytes]:
        ctx = SimpleNamespace(credentials={})
        server = NativeServer(ctx, hello_timeout=0.2)  # type: ignore[arg-type]
        port = await server.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        greeting = await reader.readexactly(struct.unpack(">I", await reader.readexactly(4))[0])
        assert msgpack.unpackb(greeting)["millpond"] == frames.VERSION
        rest = await asyncio.wait_for(reader.read(), 5)  # until the daemon closes
        writer.close()
        await server.stop(timeout=1)
        return msgpack.unpackb(rest[4:], raw=False), rest

    answer, _ = asyncio.run(main())
    assert answer[0] == frames.CONNECTION and answer[2][0] == "ProtocolError"
    assert "no hello within 0.2 s" in answer[2][2]


def test_a_peer_that_takes_no_answers_is_closed(tmp_path: Path) -> None:
    """A peer that stopped reading holds up to MAX_IN_FLIGHT answers in the daemon: after
    write_stall_timeout without taking any, it is closed and they are let go."""
    from millpond.server.context import Context

    ctx = Context(str(tmp_path / "data"), durability="os", workers=4)
    ctx.broker("us-east-1").create_queue("big").send(b"y" * 200_000)

    async def main() -> tuple[int, float]:
        ctx.bind_loop(asyncio.get_running_loop())
        server = NativeServer(ctx, write_stall_timeout=0.5)
        port = await server.listen("127.0.0.1", 0)
        server.ready()
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        hello = [1, "hello", None, [], {"version": frames.VERSION}]
        request = [0, "queue.receive", "big", [1], {"visibility_timeout": 0}]
        data = frames.frame(msgpack.packb(hello))
        for rid in range(2, 102):  # 100 answers of 200 KB: past the write buffer's limit
            request[0] = rid
            data += frames.frame(msgpack.packb(request))
        await loop.sock_sendall(sock, data)  # and then never read
        started = time.monotonic()
        while not any(c._write_paused for c in server.connections):
            assert time.monotonic() - started < 10, "the answers never filled the buffer"
            await asyncio.sleep(0.05)
        paused = time.monotonic()
        while server.connections and time.monotonic() - paused < 10:
            await asyncio.sleep(0.05)
        left, waited = len(server.connections), time.monotonic() - paused
        sock.close()
        await server.stop(timeout=1)
        return left, waited

    try:
        left, waited = asyncio.run(main())
    finally:
        ctx.close()
    assert left == 0 and waited < 5, waited


def _keepalive(sock: Any) -> tuple[int, int]:
    idle = getattr(socket, "TCP_KEEPIDLE", None)
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, idle) if idle is not None else frames.KEEPALIVE_IDLE_S,
    )


def test_both_sides_find_a_vanished_peer_by_keepalive(daemon: Daemon) -> None:
    """A peer gone without a FIN or RST (powered off, unplugged) left calls waiting for ever
    and the daemon holding the connection: TCP keepalive finds it."""
    want = (1, frames.KEEPALIVE_IDLE_S)
    with _client(daemon) as client:
        assert client._connection is not None
        assert _keepalive(client._connection.sock) == want
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # unacknowledged data gives up as well
            option = client._connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
            assert option == frames.USER_TIMEOUT_MS

    async def main() -> tuple[Any, Any]:
        aio = await AsyncClient.open(
            "127.0.0.1", daemon.native_port, access_key_id=KEY, secret_access_key=SECRET
        )
        assert aio._connection is not None and aio._connection.transport is not None
        mine = _keepalive(aio._connection.transport.get_extra_info("socket"))
        await aio.close()
        server = NativeServer(SimpleNamespace(credentials={}))  # type: ignore[arg-type]
        port = await server.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readexactly(4)
        (connection,) = server.connections
        assert connection.transport is not None
        theirs = _keepalive(connection.transport.get_extra_info("socket"))
        writer.close()
        await server.stop(timeout=1)
        return mine, theirs

    assert asyncio.run(main()) == (want, want)


def test_connections_past_the_limit_are_refused_at_once() -> None:
    """Past max_connections (half the process's file descriptors by default) a connection is
    told why and closed, so the daemon never runs out of descriptors for its HTTP port."""

    async def main() -> tuple[list[Any], Any]:
        server = NativeServer(SimpleNamespace(credentials={}), max_connections=3)  # type: ignore[arg-type]
        port = await server.listen("127.0.0.1", 0)
        server.ready()
        greetings, streams = [], []
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            size = struct.unpack(">I", await reader.readexactly(4))[0]
            greetings.append(msgpack.unpackb(await reader.readexactly(size), raw=False))
            streams.append((reader, writer))
        closed = await asyncio.wait_for(streams[3][0].read(), 5)  # the daemon closes it
        for _, writer in streams:
            writer.close()
        await server.stop(timeout=1)
        return greetings, closed

    greetings, closed = asyncio.run(main())
    assert [g["millpond"] for g in greetings[:3]] == [frames.VERSION] * 3
    assert greetings[3][0] == frames.CONNECTION and "too many connections" in greetings[3][2][2]
    assert closed == b""
