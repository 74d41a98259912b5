"""An HTTP load generator for SQS-speaking servers, and the servers it is measured against.

The client side is plain asyncio (uvloop when installed): N persistent HTTP/1.1 keep-alive
connections, one request in flight on each (no pipelining, as SDKs do), requests pre-built as
bytes (AWS JSON 1.0 bodies, ``X-Amz-Target``, a syntactically valid but unchecked SigV4
``Authorization`` header so the server sees a real client's header set), responses framed by
Content-Length in ``data_received``. Per-operation latency is taken around each operation with
``time.perf_counter``. No boto3 on the hot path: boto3 costs ~1 ms of client CPU per call, more
than the servers measured here.

Operations (what one measured "op" is):
    SendMessage       one SendMessage of a 100-byte body                       (1 request)
    SendMessageBatch  one SendMessageBatch of 10 x 100-byte bodies             (1 request)
    ReceiveDelete     ReceiveMessage (1 message) then DeleteMessage of it      (2 requests)

Servers (started and stopped by PID by :class:`ServerProcess`):
    millpond  ``millpond serve --durability fsync``
    empty     the same uvicorn set-up as ``millpond.server.serve()`` (its own code path, with
              millpond's ASGI app swapped for :class:`EmptyApp`, which answers every request
              with a fixed small JSON body): the floor of the HTTP stack
    moto      ``python -m moto.server`` (moto[server]), the usual SQS mock

Command line:
    python bench/loadgen.py serve-empty --port P      run the empty-handler server
    python bench/loadgen.py run --server millpond --op SendMessage --connections 64 --seconds 5
                                                       start a server, measure, print JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

try:
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _dumps: Callable[[Any], bytes] = orjson.dumps
except ImportError:  # pragma: no cover - orjson is a millpond dependency
    _loads = json.loads

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()


OPS = ("SendMessage", "SendMessageBatch", "ReceiveDelete")
REQUESTS_PER_OP = {"SendMessage": 1, "SendMessageBatch": 1, "ReceiveDelete": 2}
MESSAGES_PER_OP = {"SendMessage": 1, "SendMessageBatch": 10, "ReceiveDelete": 1}
BODY = "x" * 100  # 100-byte bodies, as in the reference performance table
AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/sqs/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64
)


def request_bytes(host: str, target: str, payload: Any) -> bytes:
    """One complete HTTP/1.1 POST of the AWS JSON 1.0 protocol."""
    body = payload if isinstance(payload, bytes) else _dumps(payload)
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-amz-json-1.0\r\n"
        f"X-Amz-Target: AmazonSQS.{target}\r\n"
        "X-Amz-Date: 20260101T000000Z\r\n"
        "x-amzn-query-mode: true\r\n"
        f"Authorization: {AUTHORIZATION}\r\n"
        "User-Agent: millpond-loadgen\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


# -- the client ----------------------------------------------------------------------------------


class HttpError(Exception):
    """A response other than 200."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


class _Protocol(asyncio.Protocol):
    """Frames responses by Content-Length; one waiter at a time (no pipelining)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            waiter.set_exception(RuntimeError(f"no content-length in {head!r}"))
            return
        stop = head.find(b"\r", at + 17)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(buffer) < total:
            return
        status = int(head[9:12])
        body = bytes(buffer[end + 4 : total])
        del buffer[:total]
        close = b"\r\nconnection: close" in head or head.startswith(b"http/1.0")
        waiter.set_result((status, body, close))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))


class Connection:
    """One persistent connection; reconnects when the server closes it (moto does, always)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.protocol: _Protocol | None = None
        self.connects = 0

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
        self.connects += 1
        self.protocol = protocol
        return protocol

    async def request(self, data: bytes) -> bytes:
        protocol = self.protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        waiter = asyncio.get_running_loop().create_future()
        protocol.waiter = waiter
        assert protocol.transport is not None
        protocol.transport.write(data)
        status, body, close = await waiter
        protocol.waiter = None
        if close:
            protocol.transport.close()
            self.protocol = None
        if status != 200:
            raise HttpError(status, body)
        return body

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None


class Empty(Exception):
    """ReceiveMessage returned no message: the queue ran dry."""


def make_op(op: str, host: str, queue_url: str) -> Callable[[Connection], Awaitable[None]]:
    """The coroutine function doing one measured operation on a connection."""
    if op == "SendMessage":
        data = request_bytes(host, "SendMessage", {"QueueUrl": queue_url, "MessageBody": BODY})

        async def send(conn: Connection) -> None:
            await conn.request(data)

        return send
    if op == "SendMessageBatch":
        data = request_bytes(
            host,
            "SendMessageBatch",
            {
                "QueueUrl": queue_url,
                "Entries": [{"Id": f"m{i}", "MessageBody": BODY} for i in range(10)],
            },
        )

        async def send_batch(conn: Connection) -> None:
            body = await conn.request(data)
            if b'"Failed":[{' in body or b'"Failed": [{' in body:
                raise HttpError(200, body)

        return send_batch
    if op == "ReceiveDelete":
        receive = request_bytes(
            host,
            "ReceiveMessage",
            {"QueueUrl": queue_url, "MaxNumberOfMessages": 1, "WaitTimeSeconds": 0},
        )
        delete_head = (
            f"POST / HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/x-amz-json-1.0\r\n"
            "X-Amz-Target: AmazonSQS.DeleteMessage\r\n"
            "X-Amz-Date: 20260101T000000Z\r\n"
            "x-amzn-query-mode: true\r\n"
            f"Authorization: {AUTHORIZATION}\r\n"
            "User-Agent: millpond-loadgen\r\n"
            "Content-Length: "
        ).encode("latin-1")
        url_json = _dumps(queue_url)

        async def receive_delete(conn: Connection) -> None:
            messages = _loads(await conn.request(receive)).get("Messages")
            if not messages:
                raise Empty()
            body = (
                b'{"QueueUrl":'
                + url_json
                + b',"ReceiptHandle":'
                + _dumps(messages[0]["ReceiptHandle"])
                + b"}"
            )
            await conn.request(delete_head + str(len(body)).encode() + b"\r\n\r\n" + body)

        return receive_delete
    raise ValueError(f"unknown op {op!r}")


@dataclass
class Result:
    """One measured run. rps counts HTTP requests; ops and latencies count operations."""

    op: str
    connections: int
    ops: int
    seconds: float
    rps: float
    ops_per_s: float
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int
    connects: int
    ran_dry: bool
    loadgen_cpu: float  # cores used by this process while measuring
    server_cpu: float  # cores used by the server while measuring (nan without a probe)
    latencies: list[float] = field(default_factory=list, repr=False)
    first_error: str = ""

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        del out["latencies"]
        return out


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted data."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def pool(runs: list[dict[str, Any]], medians: tuple[str, ...]) -> dict[str, Any] | None:
    """Slices of one case pooled: the median of each ``medians`` field, p50/p99 (ms) over every
    latency of every slice, and the slice count; None without slices."""
    if not runs:
        return None
    latencies = sorted(x for r in runs for x in r["latencies"])
    pooled: dict[str, Any] = {name: statistics.median(r[name] for r in runs) for name in medians}
    pooled["p50_ms"] = percentile(latencies, 0.50) * 1000
    pooled["p99_ms"] = percentile(latencies, 0.99) * 1000
    pooled["slices"] = len(runs)
    return pooled


async def _run(
    host: str,
    port: int,
    op: Callable[[Connection], Awaitable[None]],
    op_name: str,
    connections: int,
    seconds: float,
    warmup: float,
    max_ops: int | None,
    probe: Callable[[], float] | None,
) -> Result:
    conns = [Connection(host, port) for _ in range(connections)]
    state = {
        "stop": False,
        "budget": max_ops if max_ops is not None else -1,
        "dry": False,
        "errors": 0,
        "first_error": "",
    }

    async def worker(conn: Connection, deadline: float, record: list[float] | None) -> float:
        clock = time.perf_counter
        last = clock()
        while not state["stop"]:
            started = clock()
            if started >= deadline:
                break
            if state["budget"] == 0:
                break
            if state["budget"] > 0:
                state["budget"] -= 1
            try:
                await op(conn)
            except Empty:
                state["dry"] = True
                state["stop"] = True
                break
            except (HttpError, ConnectionError, OSError, RuntimeError, KeyError) as exc:
                state["errors"] += 1
                if not state["first_error"]:
                    state["first_error"] = repr(exc)
                if state["errors"] > 100:
                    state["stop"] = True
                conn.close()
                continue
            last = clock()
            if record is not None:
                record.append(last - started)
        return last

    try:
        if warmup > 0:
            deadline = time.perf_counter() + warmup
            await asyncio.gather(*(worker(c, deadline, None) for c in conns))
            state["errors"], state["first_error"] = 0, ""
        if state["dry"]:
            raise RuntimeError("the queue ran dry during the warm-up")
        records: list[list[float]] = [[] for _ in conns]
        connects = sum(c.connects for c in conns)
        server_cpu = probe() if probe else float("nan")
        cpu = time.process_time()
        start = time.perf_counter()
        ends = await asyncio.gather(
            *(worker(c, start + seconds, r) for c, r in zip(conns, records))
        )
        elapsed = max(max(ends) - start, 1e-9)
        cpu = (time.process_time() - cpu) / elapsed
        server_cpu = ((probe() - server_cpu) / elapsed) if probe else float("nan")
    finally:
        for c in conns:
            c.close()
    latencies = sorted(x for r in records for x in r)
    n = len(latencies)
    return Result(
        op=op_name,
        connections=connections,
        ops=n,
        seconds=elapsed,
        rps=n * REQUESTS_PER_OP.get(op_name, 1) / elapsed,
        ops_per_s=n / elapsed,
        msgs_per_s=n * MESSAGES_PER_OP.get(op_name, 1) / elapsed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        mean_ms=(sum(latencies) / n * 1000) if n else float("nan"),
        max_ms=(latencies[-1] * 1000) if n else float("nan"),
        errors=int(state["errors"]),
        connects=sum(c.connects for c in conns) - connects,
        ran_dry=bool(state["dry"]),
        loadgen_cpu=cpu,
        server_cpu=server_cpu,
        latencies=latencies,
        first_error=str(state["first_error"]),
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


def run_sync(coro: Awaitable[Any]) -> Any:
    loop = _new_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def measure(
    port: int,
    op: str,
    queue_url: str,
    connections: int,
    seconds: float,
    warmup: float = 1.0,
    max_ops: int | None = None,
    host: str = "127.0.0.1",
    probe: Callable[[], float] | None = None,
) -> Result:
    """Run ``op`` on ``connections`` connections for ``seconds`` (after ``warmup``), at most
    ``max_ops`` operations in all; ``probe()`` (e.g. the server's CPU seconds) is read when the
    measured part starts and ends."""
    function = make_op(op, f"{host}:{port}", queue_url)
    result = run_sync(_run(host, port, function, op, connections, seconds, warmup, max_ops, probe))
    return result  # type: ignore[no-any-return]


def call(port: int, target: str, payload: Any, host: str = "127.0.0.1") -> Any:
    """One request; the decoded JSON response."""

    async def once() -> Any:
        conn = Connection(host, port)
        try:
            return _loads(await conn.request(request_bytes(f"{host}:{port}", target, payload)))
        finally:
            conn.close()

    return run_sync(once())


def create_queue(port: int, name: str, host: str = "127.0.0.1") -> str:
    return call(port, "CreateQueue", {"QueueName": name}, host)["QueueUrl"]  # type: ignore[no-any-return]


def fill(
    port: int, queue_url: str, messages: int, connections: int = 16, host: str = "127.0.0.1"
) -> Result:
    """Put ``messages`` (rounded up to tens) 100-byte messages on a queue with batches of 10."""
    return measure(
        port,
        "SendMessageBatch",
        queue_url,
        connections,
        seconds=3600.0,
        warmup=0,
        max_ops=-(-messages // 10),
        host=host,
    )


def queue_depth(port: int, queue_url: str, host: str = "127.0.0.1") -> int:
    attributes = call(
        port,
        "GetQueueAttributes",
        {"QueueUrl": queue_url, "AttributeNames": ["ApproximateNumberOfMessages"]},
        host,
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


# -- the servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A server subprocess on 127.0.0.1:``port``, ready once it answers HTTP; stopped by PID."""

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        log_path: str,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> None:
        self.name, self.port, self.log_path = name, port, log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(
                        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                    )
                    if s.recv(16).startswith(b"HTTP/1."):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-5000:]

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process (all its threads) so far."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 30) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def start_millpond(workdir: str, durability: str = "fsync") -> ServerProcess:
    port = free_port()
    return ServerProcess(
        "millpond",
        [
            sys.executable,
            "-m",
            "millpond.cli",
            "serve",
            "--data",
            os.path.join(workdir, "data"),
            "--port",
            str(port),
            "--durability",
            durability,
        ],
        port,
        os.path.join(workdir, "millpond.log"),
    )


def start_empty(workdir: str) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        "empty",
        [
            sys.executable,
            os.path.abspath(__file__),
            "serve-empty",
            "--port",
            str(port),
            "--data",
            os.path.join(workdir, "empty-data"),
        ],
        port,
        os.path.join(workdir, "empty.log"),
    )


def start_moto(workdir: str) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        "moto",
        [
            sys.executable,
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        port,
        os.path.join(workdir, "moto.log"),
    )


STARTERS = {"millpond": start_millpond, "empty": start_empty, "moto": start_moto}


# -- the empty handler ---------------------------------------------------------------------------

EMPTY_MARKER = "empty-handler"


class EmptyApp:
    """ASGI app answering every request with a fixed small JSON body (per X-Amz-Target, so the
    receive+delete op can run against it too). It reads the request body, as any handler must."""

    def __init__(self) -> None:
        send = {
            "MD5OfMessageBody": "2b2d2a3b0b3cbc1d1a9a7a4a2d2b8a3c",
            "MessageId": "5fea7756-0ea4-451a-a703-a558b933e274",
        }
        self.responses = {
            b"AmazonSQS.CreateQueue": _dumps({"QueueUrl": f"http://127.0.0.1/0/{EMPTY_MARKER}"}),
            b"AmazonSQS.ReceiveMessage": _dumps(
                {
                    "Messages": [
                        {
                            "MessageId": send["MessageId"],
                            "ReceiptHandle": "AQEB" + "h" * 120,
                            "MD5OfBody": send["MD5OfMessageBody"],
                            "Body": BODY,
                        }
                    ]
                }
            ),
            b"AmazonSQS.DeleteMessage": b"{}",
            b"AmazonSQS.GetQueueAttributes": _dumps(
                {"Attributes": {"ApproximateNumberOfMessages": "0"}}
            ),
        }
        self.default = _dumps(send)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        target = b""
        for key, value in scope["headers"]:
            if key == b"x-amz-target":
                target = value
                break
        body = self.responses.get(target, self.default)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/x-amz-json-1.0"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def serve_empty(port: int, data_dir: str) -> None:
    """Run millpond's own ``serve()`` (so every uvicorn option is the daemon's) with its ASGI
    app replaced by :class:`EmptyApp`."""
    import millpond.server
    import millpond.server.app

    millpond.server.app.App = lambda ctx, *a, **k: EmptyApp()  # type: ignore[misc,assignment]
    millpond.server.serve(data_dir, host="127.0.0.1", port=port)


# -- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    empty = sub.add_parser("serve-empty", help="uvicorn as millpond serves, with an empty app")
    empty.add_argument("--port", type=int, required=True)
    empty.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "loadgen-empty"))
    run = sub.add_parser("run", help="start a server, measure one op, print JSON, stop it")
    run.add_argument("--server", choices=sorted(STARTERS), default="millpond")
    run.add_argument("--op", choices=OPS, default="SendMessage")
    run.add_argument("--connections", type=int, default=16)
    run.add_argument("--seconds", type=float, default=5.0)
    run.add_argument("--warmup", type=float, default=1.0)
    run.add_argument("--fill", type=int, default=50_000, help="messages for ReceiveDelete")
    args = parser.parse_args(argv)
    if args.command == "serve-empty":
        serve_empty(args.port, args.data)
        return 0
    with tempfile.TemporaryDirectory() as workdir:
        server = STARTERS[args.server](workdir)
        try:
            url = create_queue(server.port, "loadgen")
            if args.op == "ReceiveDelete" and args.server != "empty":
                fill(server.port, url, args.fill)
            result = measure(
                server.port,
                args.op,
                url,
                args.connections,
                args.seconds,
                args.warmup,
                probe=server.cpu_seconds,
            )
            print(json.dumps(result.summary(), indent=1))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
