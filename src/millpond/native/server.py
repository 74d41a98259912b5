"""The daemon's native-protocol listener: started by ``millpond serve --native-port``.

It runs in the daemon's process and event loop, over the same :class:`Context` (brokers,
thread pool, group commit, long-poll wake-ups) as the HTTP API: no storage logic of its own.

Per connection: requests are read as they come and each runs as its own task, so many are in
flight at once and each is answered (by its request id, in whatever order they finish) once its
write has committed. Buffers are bounded: reading stops while MAX_IN_FLIGHT requests are
running, or while the answers not yet taken by the client pass the transport's high-water mark
(a client that never reads is paused, not buffered for, and closed after
WRITE_STALL_TIMEOUT_S). A long poll parked (waiting for a message) is not running: it holds no
answer yet, and must not hold up the other calls of its connection (nor the cancel that would
end it). Up to MAX_PARKED of them wait besides the running requests; woken, a poll takes a
running place back before it looks for messages, so MAX_IN_FLIGHT still bounds the answers a
connection makes at once. A frame over ``max_frame`` (``frames.MAX_HELLO_FRAME`` before the
hello) or a request over ``frames.MAX_REQUEST_ITEMS`` elements is refused with a connection
error and the connection is closed, as is one with no hello within HELLO_TIMEOUT_S.

Whatever a peer sends gets an answer or a connection error (the last frame, after the answers
of the requests still running): never an exception out of a protocol callback.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hmac
import logging
import os
import ssl
from collections.abc import AsyncIterator
from typing import Any, cast

import msgpack

from millpond.errors import InvalidParameterValue, MillpondError
from millpond.fifo_queue import FifoQueue
from millpond.message import Message
from millpond.native import errors, frames
from millpond.native.errors import AccessDenied, ProtocolError
from millpond.native.ops import OPERATIONS, Session
from millpond.queue import Queue
from millpond.server.context import Context, valid_region
from millpond.subscription import Subscription
from millpond.topic import Topic

log = logging.getLogger("millpond.server")

# Requests running per connection before the next ones wait (and reading pauses). With the
# write high-water mark this bounds what a connection holds: MAX_IN_FLIGHT answers at most.
MAX_IN_FLIGHT = 256
# Long polls parked per connection before reading pauses, besides those: a parked poll holds
# its task and waiter (~3.5 KB), no answer (a service's consumer tasks sharing one AsyncClient
# park a poll each), so a connection holds at most ~15 MB of them.
MAX_PARKED = 4096
WRITE_HIGH_WATER = 4 * 1024 * 1024  # answers buffered for a slow reader before reading pauses
# A peer that has not sent its hello by then is closed: it holds a socket and a buffer while
# it is nobody (a client sends the hello as soon as it reads the greeting).
HELLO_TIMEOUT_S = 10.0
# A peer whose answers have filled the write buffer and that takes none for this long is
# closed: it would otherwise hold MAX_IN_FLIGHT answers (up to 16 MiB each) for ever.
WRITE_STALL_TIMEOUT_S = 60.0
# Connections the kernel queues before the loop accepts them (asyncio's default is 100): a
# burst past it has its SYNs dropped, and each such client waits a second to retry.
LISTEN_BACKLOG = 1024


def _encode(value: Any) -> msgpack.ExtType:
    """msgpack's ``default``: millpond's objects as extension types (see frames)."""
    if isinstance(value, Message):
        return frames.pack_ext(
            frames.MESSAGE,
            [
                value.body,
                value.message_id,
                value.receipt_handle,
                value.receive_count,
                value.sent_timestamp,
                value.first_receive_timestamp,
                value._metadata_blob,
                value.dead_letter_source_arn,
                value.sequence_number,
            ],
        )
    if isinstance(value, Queue):
        return frames.pack_ext(frames.QUEUE, [value.name, value.arn, isinstance(value, FifoQueue)])
    if isinstance(value, Topic):
        return frames.pack_ext(frames.TOPIC, [value.name, value.arn, value.fifo])
    if isinstance(value, Subscription):
        return frames.pack_ext(
            frames.SUBSCRIPTION,
            [
                value.arn,
                value.topic_name,
                value.queue_name,
                value.endpoint,
                value.protocol,
                value.pending,
                value.owner,
            ],
        )
    if isinstance(value, MillpondError):
        return frames.pack_ext(frames.ERROR_VALUE, errors.encode(value))
    raise TypeError(f"cannot send a {type(value).__name__}")


def _error_of(exc: BaseException, op: str) -> MillpondError:
    """What the client is told for ``exc`` (as the HTTP API: never a bare traceback)."""
    if isinstance(exc, MillpondError):
        return exc
    if isinstance(exc, (TypeError, AttributeError, ValueError, KeyError)):
        # arguments of the wrong shape or number reached the method
        return InvalidParameterValue(f"Invalid arguments for {op}: {exc}")
    log.error("internal error in native %s", op, exc_info=exc)
    return MillpondError("We encountered an internal error. Please try again.")


class Connection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: NativeServer) -> None:
        self.server = server
        self.ctx = server.ctx
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.session: Session | None = None  # set by hello
        self.nonce = os.urandom(16)
        self.tasks: dict[int, asyncio.Task[None]] = {}
        # long polls waiting for a message, or woken and waiting for a running place: not
        # running (see parked)
        self._parked: set[asyncio.Task[Any]] = set()
        self._woken: collections.deque[tuple[asyncio.Task[Any], asyncio.Future[None]]]
        self._woken = collections.deque()
        self.closing = False
        self.eof = False  # the peer half-closed: answer what it sent, then close
        self._last_words: ProtocolError | None = None  # a connection error, sent at the close
        self._write_paused = False
        self._reading_paused = False
        self._packer = msgpack.Packer(default=_encode, use_bin_type=True)
        self._hello_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None

    # -- transport events -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            frames.tune(sock)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if len(self.server.connections) >= self.server.max_connections:
            # said in place of the greeting; the socket goes back at once
            self.fail(f"too many connections (the daemon's limit is {self.server.max_connections})")
            return
        self.server.connections.add(self)
        greeting = {
            "millpond": frames.VERSION,
            "nonce": self.nonce,
            "auth": bool(self.ctx.credentials),
            "max_frame": self.server.max_frame,
        }
        transport.write(frames.frame(self._packer.pack(greeting)))
        if self.server.stopping:
            self.drain_and_close()
        else:
            loop = asyncio.get_running_loop()
            self._hello_timer = loop.call_later(self.server.hello_timeout, self._hello_late)

    def _hello_late(self) -> None:
        if self.session is None and not self.tasks and not self.closing:  # no hello running
            self.fail(f"no hello within {self.server.hello_timeout:g} s")

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        for timer in (self._hello_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._end_long_polls()

    def _end_long_polls(self) -> None:
        # A long poll of a client that left ends now (sqs.long_poll gives its messages back);
        # other requests finish: their writes stand whether or not anyone hears the answer.
        for task in list(self.tasks.values()):
            if getattr(task, "long_poll", False):
                task.cancel()

    def eof_received(self) -> bool:
        """The peer sent its last request (a half-close, as ``shutdown(SHUT_WR)``): the
        requests it sent are still run and answered, then the connection closes. Its long
        polls end unanswered, as on a close: a peer that closed its socket sends the same EOF,
        and a poll must not hide messages from everyone else for a reader that is gone."""
        self.eof = True
        self._end_long_polls()
        self._parse()
        return True  # keep the transport open for the answers

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        loop = asyncio.get_running_loop()
        self._stall_timer = loop.call_later(self.server.write_stall_timeout, self._stalled)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        self._parse()

    def _stalled(self) -> None:
        """The peer took no answer for write_stall_timeout: what it holds (up to MAX_IN_FLIGHT
        answers) is let go. millpond's clients read whenever a call waits, so only a peer that
        stopped reading (or a dead network) gets here."""
        log.warning(
            "native protocol: closing a connection that took no answers for %g s",
            self.server.write_stall_timeout,
        )
        if self.transport is not None:
            self.transport.abort()  # close() would wait to send what the peer does not take

    def _update_reading(self) -> None:
        if self.transport is None or self.transport.is_closing() or self.closing:
            return
        pause = self._busy() or self.server.stopping
        if pause and not self._reading_paused:
            self.transport.pause_reading()
        elif not pause and self._reading_paused:
            self.transport.resume_reading()
        self._reading_paused = pause

    # -- requests ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.buffer += data
        self._parse()

    def _parse(self) -> None:
        """Start the requests buffered, while fewer than MAX_IN_FLIGHT run and the client takes
        its answers; the rest wait in the buffer (and reading pauses, so the buffer stays
        small) until requests finish. Long polls woken meanwhile run first."""
        self._run_woken_polls()
        if self.closing:
            return
        buffer, header = self.buffer, frames.HEADER
        limit = self.server.max_frame if self.session else frames.MAX_HELLO_FRAME
        at, size = 0, len(buffer)
        while size - at >= 4 and not self._busy():
            (length,) = header.unpack_from(buffer, at)
            if length > limit:
                self.fail(frames.too_long(length, limit))
                return
            end = at + 4 + length
            if end > size:
                break
            self._request(bytes(buffer[at + 4 : end]))
            at = end
            if self.closing:
                return
        if at:
            del buffer[:at]
        if self.eof and not self.tasks:  # every request the peer sent is answered
            self.drain_and_close()
            return
        self._update_reading()

    def _busy(self) -> bool:
        # Requests sent right behind the hello wait for it: they need its session.
        return (
            self._write_paused
            or self._running() >= MAX_IN_FLIGHT
            or len(self._parked) >= self.server.max_parked
            or (self.session is None and bool(self.tasks))
        )

    def _running(self) -> int:
        return len(self.tasks) - len(self._parked)

    def _may_run(self) -> bool:
        # A closing connection answers what it runs: nothing waits on it any more.
        return self.closing or (not self._write_paused and self._running() < MAX_IN_FLIGHT)

    # -- parked long polls ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def parked(self) -> AsyncIterator[None]:
        """Where a long poll of this connection waits for a message (see long_poll). It is
        no running request meanwhile, so that the connection reads on: polls hold up no other
        call, nor the cancel that ends one. Woken, it waits for a running place before it
        looks for messages, and so for a client that takes its answers: parked polls never
        make more answers than MAX_IN_FLIGHT running requests would."""
        task = asyncio.current_task()
        assert task is not None
        self._parked.add(task)
        self._parse()  # its running place is free
        try:
            yield
            if self._woken or not self._may_run():
                place = asyncio.get_running_loop().create_future()
                self._woken.append((task, place))
                await place  # given by _run_woken_polls, in the order they woke
        finally:
            self._parked.discard(task)

    def _run_woken_polls(self) -> None:
        while self._woken and self._may_run():
            task, place = self._woken.popleft()
            if not place.done():  # (done: cancelled, the client left)
                self._parked.discard(task)  # running from now: counted before it resumes
                place.set_result(None)

    def _request(self, payload: bytes) -> None:
        try:
            request = frames.unpack_request(payload)
        except Exception as exc:  # msgpack's errors share no base class
            self.fail(f"a frame that is not a msgpack request: {exc}")
            return
        if (
            type(request) is not list
            or len(request) != 5
            or type(request[0]) is not int
            or request[0] <= 0
            or type(request[1]) is not str
            or type(request[3]) is not list
            or type(request[4]) is not dict
        ):
            self.fail("a request that is not [id, operation, target, args, kwargs]")
            return
        rid, op, target, args, kwargs = request
        if rid in self.tasks:
            self.fail(f"request id {rid} is already in flight")
            return
        if self.session is None:
            if op != "hello":
                self.fail("the first request must be hello")
                return
            self._hello(rid, kwargs)
            return
        if op == frames.CANCEL:
            self._cancel(rid, args)
            return
        handler = OPERATIONS.get(op)
        if handler is None:
            self._answer_error(rid, ProtocolError(f"unknown operation {op[:100]!r}"))
            return
        if op == "queue.receive" and self.eof:
            return  # unanswered, as the polls running at the EOF (see eof_received)
        task = asyncio.ensure_future(self._run(rid, op, handler, target, args, kwargs))
        if op == "queue.receive":
            task.long_poll = True  # type: ignore[attr-defined]
        task.add_done_callback(functools.partial(self._never_ran, rid))
        self.tasks[rid] = task
        self.server.running += 1

    def _cancel(self, rid: int, args: list[Any]) -> None:
        """End the long poll of request ``args[0]``: its caller stopped waiting (an asyncio
        cancel), and a poll left running would take the next message and hide it for the
        visibility timeout, answering nobody (sqs.long_poll gives back what it was taking).
        Other requests run on: their writes stand whether or not anyone hears the answer."""
        if len(args) != 1 or type(args[0]) is not int:
            self._answer_error(rid, InvalidParameterValue("cancel takes one request id"))
            return
        task = self.tasks.get(args[0])
        if task is not None and getattr(task, "long_poll", False):
            task.cancel()
        self._answer(rid, None, frames.CANCEL)

    def _hello(self, rid: int, options: dict[str, Any]) -> None:
        """The first request: protocol version, region, credentials (when the daemon has any)."""
        ctx = self.ctx
        version = options.get("version")
        if version != frames.VERSION:
            self._answer_error(
                rid,
                ProtocolError(f"protocol version {version!r}: this daemon speaks {frames.VERSION}"),
            )
            self.drain_and_close()
            return
        if ctx.credentials:
            key, proof = options.get("access_key_id"), options.get("signature")
            secret = ctx.credentials.get(key) if isinstance(key, str) else None
            # compare_digest refuses str with non-ASCII characters: compare the UTF-8 bytes
            if (
                secret is None
                or not isinstance(proof, str)
                or not hmac.compare_digest(
                    proof.encode(),
                    frames.signature(secret, self.nonce).encode(),
                )
            ):
                self._answer_error(rid, AccessDenied("unknown access key id or wrong secret"))
                self.drain_and_close()
                return
        region = options.get("region") or ctx.region
        if not valid_region(region):
            why = f"{region!r:.100} is not a region name"
            self._answer_error(rid, InvalidParameterValue(why))
            self.drain_and_close()
            return
        self.tasks[rid] = asyncio.ensure_future(self._open(rid, region))
        self.server.running += 1

    async def _open(self, rid: int, region: str) -> None:
        try:
            await self.server.wait_ready()
            broker = await self.ctx.call(self.ctx.broker, region)  # opening a region blocks
            self.session = Session(self.ctx, broker, self.parked)
            if self._hello_timer is not None:
                self._hello_timer.cancel()
            self._answer(
                rid,
                {
                    "region": broker.region,
                    "account_id": broker.account_id,
                    "durability": broker.durability,
                    "implementation": broker.implementation,
                    "max_frame": self.server.max_frame,
                },
            )
        except Exception as exc:
            self._answer_error(rid, _error_of(exc, "hello"))
            self.drain_and_close()
        finally:
            self._done(rid)

    async def _run(
        self, rid: int, op: str, handler: Any, target: Any, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        try:
            assert self.session is not None
            result = await handler(self.session, target, args, kwargs)
        except asyncio.CancelledError:
            return  # the client left during its long poll: no one to answer
        except Exception as exc:
            self._answer_error(rid, _error_of(exc, op))
        else:
            self._answer(rid, result, op)
        finally:
            self._done(rid)

    def _never_ran(self, rid: int, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step ends without running _run's finally (a
        cancel, or the client's leaving, read together with its request): its place among the
        requests running is freed here, or it would be held for ever (MAX_IN_FLIGHT of them
        stop the connection; the daemon's stop waits for them)."""
        if self.tasks.get(rid) is task:
            self._done(rid)

    def _done(self, rid: int) -> None:
        self.tasks.pop(rid, None)
        if self.closing:
            if not self.tasks:
                self._close()
        else:
            self._parse()  # requests held back while MAX_IN_FLIGHT ran, or a close after EOF
        self.server.running -= 1
        if not self.server.running:
            self.server.idle()

    # -- answers ----------------------------------------------------------------------------------

    def _send(self, answer: list[Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frames.frame(self._packer.pack(answer)))

    def _answer(self, rid: int, result: Any, op: str = "hello") -> None:
        try:
            self._send([rid, frames.OK, result])
        except Exception as exc:  # a result msgpack cannot carry: a bug, said as one
            self._answer_error(rid, _error_of(exc, op))

    def _answer_error(self, rid: int, exc: MillpondError) -> None:
        self._send([rid, frames.ERROR, errors.encode(exc)])

    def fail(self, why: str) -> None:
        """A connection error: the running requests are answered, then why (request id 0) is
        the last frame before the close. A client fails its calls still waiting when it reads
        that error, so every request the daemon ran must be answered before it."""
        if self._last_words is None:
            self._last_words = ProtocolError(why)
        self.drain_and_close()

    def drain_and_close(self) -> None:
        """Read no more requests; close once the running ones are answered."""
        self.closing = True
        self._run_woken_polls()
        if self.transport is None:
            return
        if not self.tasks:
            self._close()
        elif not self._reading_paused:
            self.transport.pause_reading()
            self._reading_paused = True

    def _close(self) -> None:
        if self._last_words is not None:
            self._answer_error(frames.CONNECTION, self._last_words)
            self._last_words = None
        if self.transport is not None:
            self.transport.close()  # sends what is buffered first


def _connection_limit() -> int:
    """Half the file descriptors the process may open: past it, a connection is refused at
    once, so that the HTTP port and the data files still get theirs (an accept that fails for
    want of one only logs errors, and takes the HTTP API down with it)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 4096
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 4096 if soft == resource.RLIM_INFINITY else max(16, soft // 2)


class NativeServer:
    """The listener and its connections."""

    def __init__(
        self,
        ctx: Context,
        max_frame: int = frames.MAX_FRAME,
        hello_timeout: float = HELLO_TIMEOUT_S,
        write_stall_timeout: float = WRITE_STALL_TIMEOUT_S,
        max_connections: int | None = None,
        max_parked: int = MAX_PARKED,
    ) -> None:
        self.ctx = ctx
        self.max_parked = max_parked  # long polls parked per connection (see Connection.parked)
        self.max_frame = max_frame
        self.max_connections = max_connections or _connection_limit()
        self.hello_timeout = hello_timeout
        self.write_stall_timeout = write_stall_timeout
        self.connections: set[Connection] = set()
        self.stopping = False
        self.running = 0  # requests running, on every connection (closed ones included)
        self._server: asyncio.AbstractServer | None = None
        self._idle: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None

    async def listen(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        """Bind and accept connections (over TLS with ``tls``); returns the port bound.
        Hellos are answered once :meth:`ready` is called (the context has its loop then)."""
        loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._server = await loop.create_server(
            lambda: Connection(self),
            host=host or None,
            port=port,
            backlog=LISTEN_BACKLOG,
            ssl=tls,
        )
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    def ready(self) -> None:
        """The daemon has started (Context.bind_loop done): serve."""
        assert self._ready is not None
        self._ready.set()

    async def wait_ready(self) -> None:
        if self._ready is not None and not self._ready.is_set():
            await self._ready.wait()

    def idle(self) -> None:
        if self._idle is not None:
            self._idle.set()

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting; answer every request already read (long polls end at once, see
        Context.begin_shutdown), then close the connections."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        self._idle = asyncio.Event()
        for connection in list(self.connections):
            connection.drain_and_close()
        if not self.running:
            self._idle.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            log.error("native protocol: requests still running after %s s at shutdown", timeout)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
