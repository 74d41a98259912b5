"""The native protocol beside SQS JSON over HTTP: SendMessage (100 B) to one durable daemon.

One ``millpond serve --durability fsync --native-port N`` serves both protocols in the same run
(each send is fsynced before it is answered), and the cases take turns on it (REPEATS
interleaved slices each), so that their ratios see the same machine weather:

    native-client c=1     millpond.connect("millpond://..."): one thread, one send at a time
    native-client c=16    one Client shared by 16 threads (pipelined on its one connection)
    native-pipelined c=64 64 requests in flight on one connection (pre-built frames, asyncio):
                          the protocol's own rate, without the Python client's cost
    http-json c=1 / c=64  AWS JSON 1.0 SendMessage from bench/loadgen.py (asyncio, pre-built
                          HTTP/1.1 requests, one request in flight per keep-alive connection)

Recorded per slice (extra_info): msgs_per_s, p50_ms, p99_ms, server_cpu, client_cpu. At the end
the pooled table (median rate of the slices, latencies pooled, the daemon's CPU per send) is
printed with the ratios native / HTTP at the same concurrency, and written to
.benchmarks/native-report.md. Durable sends at 64 in flight are bound by the disk's fsync rate
on both protocols; the daemon's CPU per send is what the protocol itself costs.

Run:  pytest bench/test_bench_native.py --benchmark-columns=median         (full: ~1 minute)
      MILLPOND_BENCH_QUICK=1 pytest bench/test_bench_native.py --benchmark-disable  (smoke)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

import loadgen
import millpond
from millpond.native import frames

BODY = b"x" * 100
CASES = (
    ("native-client", 1),
    ("native-client", 16),
    ("native-pipelined", 64),
    ("http-json", 1),
    ("http-json", 64),
)
# the ratios reported: (native case, HTTP case it is set beside)
RATIOS = (
    (("native-client", 1), ("http-json", 1)),
    (("native-client", 16), ("http-json", 64)),
    (("native-pipelined", 64), ("http-json", 64)),
)
REPEATS = 3
PLAN = {"full": (3.0, 0.5), "quick": (0.5, 0.1)}  # (seconds measured, seconds of warm-up)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    reps = 1 if getattr(metafunc.config, "millpond_bench_quick", False) else REPEATS
    params = [
        pytest.param(case, conns, rep, id=f"{case}-c{conns}-r{rep}")
        for rep in range(reps)
        for case, conns in CASES
    ]
    metafunc.parametrize(("case", "conns", "rep"), params)


class Daemon(loadgen.ServerProcess):
    """``millpond serve`` with both ports, durable."""

    def __init__(self, workdir: str) -> None:
        port, self.native_port = loadgen.free_port(), loadgen.free_port()
        command = [sys.executable, "-m", "millpond.cli", "serve", "--data"]
        command += [os.path.join(workdir, "data"), "--port", str(port), "--durability", "fsync"]
        command += ["--native-port", str(self.native_port)]
        super().__init__("millpond", command, port, os.path.join(workdir, "millpond.log"))


RESULTS: list[dict[str, Any]] = []


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Daemon]:
    server = Daemon(str(tmp_path_factory.mktemp("native-bench")))
    try:
        yield server
    finally:
        server.stop()
        if RESULTS:
            _report(request.config)


# -- the load ----------------------------------------------------------------------------------


def _client_sends(
    port: int, queue: str, threads: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """Sends through one millpond Client shared by ``threads`` threads."""
    client = millpond.connect(f"millpond://127.0.0.1:{port}")
    q = client.queue(queue)
    records: list[list[float]] = [[] for _ in range(threads)]
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds

    def work(record: list[float]) -> None:
        clock = time.perf_counter
        while True:
            started = clock()
            if started >= stop_at:
                return
            q.send(BODY)
            if started >= start_at:
                record.append(clock() - started)

    workers = [threading.Thread(target=work, args=(r,)) for r in records]
    cpu = time.process_time()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    cpu_used = time.process_time() - cpu
    client.close()
    return _result(records, seconds, cpu_used / (seconds + warmup))


def _pipelined_sends(
    port: int, queue: str, window: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """``window`` send requests in flight on one connection; each answer sends the next."""

    async def run() -> dict[str, Any]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        buffer = b""

        async def read() -> Any:
            nonlocal buffer
            while True:
                if len(buffer) >= 4:
                    (length,) = frames.HEADER.unpack_from(buffer)
                    if len(buffer) >= 4 + length:
                        payload, buffer = buffer[4 : 4 + length], buffer[4 + length :]
                        return msgpack.unpackb(payload, raw=False)
                chunk = await reader.read(1 << 16)
                if not chunk:
                    raise ConnectionError("closed")
                buffer += chunk

        await read()  # the greeting
        writer.write(
            frames.frame(msgpack.packb([1, "hello", None, [], {"version": frames.VERSION}]))
        )
        assert (await read())[1] == frames.OK
        tail = msgpack.packb(["queue.send", queue, [BODY], {}])

        def request(rid: int) -> bytes:  # [rid, op, target, args, kwargs]: patch the id in
            payload = b"\x95" + msgpack.packb(rid) + tail[1:]
            return frames.frame(payload)

        sent_at: dict[int, float] = {}
        record: list[float] = []
        next_id = 2
        clock = time.perf_counter
        start_at = clock() + warmup
        stop_at = start_at + seconds
        for _ in range(window):
            sent_at[next_id] = clock()
            writer.write(request(next_id))
            next_id += 1
        cpu = time.process_time()
        errors = 0
        while sent_at:
            rid, status, _ = await read()
            now = clock()
            started = sent_at.pop(rid)
            errors += status != frames.OK
            if started >= start_at and now <= stop_at:
                record.append(now - started)
            if now < stop_at:
                sent_at[next_id] = now
                writer.write(request(next_id))
                next_id += 1
        cpu_used = time.process_time() - cpu
        writer.close()
        assert errors == 0, f"{errors} sends failed"
        return _result([record], seconds, cpu_used / (seconds + warmup))

    return loadgen.run_sync(run())  # type: ignore[no-any-return]


def _result(records: list[list[float]], seconds: float, client_cpu: float) -> dict[str, Any]:
    latencies = sorted(x for r in records for x in r)
    return {
        "msgs_per_s": len(latencies) / seconds,
        "p50_ms": loadgen.percentile(latencies, 0.50) * 1000,
        "p99_ms": loadgen.percentile(latencies, 0.99) * 1000,
        "client_cpu": client_cpu,
        "latencies": latencies,
    }


# -- the benchmark -------------------------------------------------------------------------------


def test_native(
    benchmark: Any, daemon: Daemon, case: str, conns: int, rep: int, quick: bool
) -> None:
    seconds, warmup = PLAN["quick" if quick else "full"]
    name = f"bench-{case}-{conns}-{rep}"
    url = loadgen.create_queue(daemon.port, name)

    def run() -> dict[str, Any]:
        cpu = daemon.cpu_seconds()
        if case == "native-client":
            result = _client_sends(daemon.native_port, name, conns, seconds, warmup)
        elif case == "native-pipelined":
            result = _pipelined_sends(daemon.native_port, name, conns, seconds, warmup)
        else:
            measured = loadgen.measure(daemon.port, "SendMessage", url, conns, seconds, warmup)
            assert measured.errors == 0, measured.first_error
            result = {
                "msgs_per_s": measured.msgs_per_s,
                "p50_ms": measured.p50_ms,
                "p99_ms": measured.p99_ms,
                "client_cpu": measured.loadgen_cpu,
                "latencies": measured.latencies,
            }
        result["server_cpu"] = (daemon.cpu_seconds() - cpu) / (seconds + warmup)
        return result

    benchmark.group = f"SendMessage {case} c={conns}"
    result: dict[str, Any] = benchmark.pedantic(run, rounds=1, iterations=1)
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
    if stats is not None and result["latencies"]:
        stats.stats.data[:] = result["latencies"]  # median = p50 of one send
    info = {k: v for k, v in result.items() if k != "latencies"}
    benchmark.extra_info.update({k: round(v, 4) for k, v in info.items()})
    RESULTS.append({"case": case, "conns": conns, **result})
    assert result["latencies"], "no send completed"
    depth = loadgen.queue_depth(daemon.port, url)
    assert depth >= len(result["latencies"]), (depth, len(result["latencies"]))  # all stored


# -- the pooled report ---------------------------------------------------------------------------


def _pooled(case: str, conns: int) -> dict[str, Any] | None:
    runs = [r for r in RESULTS if r["case"] == case and r["conns"] == conns]
    return loadgen.pool(runs, ("msgs_per_s", "server_cpu", "client_cpu"))


def _report(config: pytest.Config) -> None:
    lines = [
        "| case | in flight | sends/s | p50 ms | p99 ms | server cpu | server µs/send "
        "| client cpu | slices |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary: dict[str, Any] = {}
    for case, conns in CASES:
        row = _pooled(case, conns)
        if row is None:
            continue
        # the daemon's CPU per send: what the protocol costs, whatever the disk's fsync rate
        row["server_us_per_send"] = row["server_cpu"] / max(row["msgs_per_s"], 1e-9) * 1e6
        summary[f"{case} c={conns}"] = row
        lines.append(
            f"| {case} | {conns} | {row['msgs_per_s']:,.0f} | {row['p50_ms']:.2f} "
            f"| {row['p99_ms']:.2f} | {row['server_cpu']:.2f} | {row['server_us_per_send']:.0f} "
            f"| {row['client_cpu']:.2f} | {row['slices']} |"
        )
    ratios = []
    for native, http in RATIOS:
        a, b = summary.get(f"{native[0]} c={native[1]}"), summary.get(f"{http[0]} c={http[1]}")
        if a and b and b["msgs_per_s"]:
            ratio = a["msgs_per_s"] / b["msgs_per_s"]
            summary[f"ratio {native[0]} c={native[1]} / {http[0]} c={http[1]}"] = ratio
            cpu = b["server_us_per_send"] / max(a["server_us_per_send"], 1e-9)
            ratios.append(
                f"{native[0]} c={native[1]} / {http[0]} c={http[1]} = {ratio:.2f}x sends/s, "
                f"{cpu:.1f}x less daemon CPU per send"
            )
    text = "\n".join(
        [
            "",
            "SendMessage (100 B, durable fsync): native protocol vs SQS JSON over HTTP, "
            "one daemon:",
            *lines,
            *ratios,
            "",
        ]
    )
    reporter = config.pluginmanager.getplugin("terminalreporter")
    capture = config.pluginmanager.getplugin("capturemanager")
    if reporter is not None:  # printed past the output capture of the fixture's teardown
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            for line in text.splitlines():
                reporter.write_line(line)
    out = Path(str(config.rootpath)) / ".benchmarks"
    try:
        out.mkdir(exist_ok=True)
        (out / "native-report.md").write_text(text)
        (out / "native-report.json").write_text(json.dumps(summary, indent=1))
    except OSError:
        pass
