"""Daemon benchmarks (issue 5, section 5): requests/s and p50/p99 latency over HTTP.

Cases: SendMessage (100 B), SendMessageBatch (10 x 100 B), ReceiveMessage+DeleteMessage (one
message, two requests), each with 1, 16 and 64 concurrent keep-alive connections, against three
servers started here on 127.0.0.1 ephemeral ports and stopped by PID:

    empty     uvicorn exactly as ``millpond serve`` runs it, with an ASGI app that answers every
              request with a fixed small JSON body: the floor of the HTTP stack
    millpond  ``millpond serve --durability fsync`` (durable: each send is fsynced before 200)
    moto      ``python -m moto.server`` (moto[server]), the usual SQS mock

The load comes from bench/loadgen.py (asyncio + uvloop, pre-built raw HTTP/1.1 requests, one
request in flight per connection), not boto3. Each case runs as REPEATS interleaved slices
(empty, millpond, moto, empty, millpond, ...), so that the millpond/empty ratio sees the same
machine weather; moto runs one slice.

What is recorded:
    extra_info  rps (HTTP requests/s), ops_per_s, msgs_per_s, p50_ms, p99_ms, server_cpu and
                loadgen_cpu (cores used while measuring: the load generator must stay well below
                the server), errors, and for millpond ``vs_empty`` = its rps / the empty
                handler's rps in the same slice.
    timings     the benchmark's samples are the per-operation latencies of the slice (not the
                time of one call), so ``--benchmark-columns=median`` shows the p50 latency of
                an operation, comparable within a group ("SendMessage c=64" ...).
At the end the pooled table (median rps over slices, p50/p99 over all samples, the ratio to the
empty handler) is printed and written to .benchmarks/server-report.md; the target of the issue
is millpond SendMessage at 64 connections >= 0.5x the empty handler's rate (a warning, not a
failure, when missed: these figures move with the machine's load).

Run:  pytest bench/test_bench_server.py --benchmark-columns=median      (full: ~6 minutes)
      MILLPOND_BENCH_QUICK=1 pytest bench/test_bench_server.py          (smoke: ~1 minute)
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import loadgen

CONNECTIONS = (1, 16, 64)
SERVERS = ("empty", "millpond", "moto")
REPEATS = 3
TARGET = 0.5  # millpond SendMessage at 64 connections vs the empty handler
# (seconds measured, seconds of warm-up) per slice, as (full, quick)
PLAN = {"full": (3.0, 0.5), "quick": (1.0, 0.2)}
MOTO_PLAN = {"full": (5.0, 0.0), "quick": (1.0, 0.0)}  # no warm-up: its calls take seconds
MOTO_QUICK_CONNECTIONS = (16,)  # moto answers 5-500 requests/s: keep the smoke run short
FILL_CAP = 300_000


def _quick(config: pytest.Config) -> bool:
    return bool(getattr(config, "millpond_bench_quick", False))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server" not in metafunc.fixturenames:
        return
    quick = _quick(metafunc.config)
    reps = 1 if quick else REPEATS
    params = []
    for op, conns, rep in itertools.product(loadgen.OPS, CONNECTIONS, range(reps)):
        for server in SERVERS:
            if server == "moto" and (rep > 0 or (quick and conns not in MOTO_QUICK_CONNECTIONS)):
                continue
            name = f"{op}-c{conns}-{server}" + (f"-r{rep}" if reps > 1 else "")
            params.append(pytest.param(op, conns, rep, server, id=name))
    metafunc.parametrize(("op", "conns", "rep", "server"), params)


# -- servers and results -------------------------------------------------------------------------


def _moto_missing() -> str | None:
    for module in ("moto", "flask", "flask_cors"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'moto[server]>=5,<6')"
    return None


class Fleet:
    """The servers of this module, started on first use and stopped by PID at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: dict[str, loadgen.ServerProcess] = {}

    def get(self, name: str) -> loadgen.ServerProcess:
        server = self.servers.get(name)
        if server is None or server.process.poll() is not None:
            if name == "moto" and (reason := _moto_missing()):
                pytest.skip(reason)
            workdir = self.workdir / name
            workdir.mkdir(exist_ok=True)
            server = self.servers[name] = loadgen.STARTERS[name](str(workdir))
            if name == "empty":  # really the empty app, not millpond behind a failed swap
                url = loadgen.create_queue(server.port, "probe")
                assert url.endswith(loadgen.EMPTY_MARKER), url
        return server

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


RESULTS: list[dict[str, Any]] = []


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("servers"))
    try:
        yield fleet
    finally:
        fleet.stop()
        if RESULTS:
            _report(request.config)


def _find(server: str, op: str, conns: int, rep: int | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in RESULTS
        if r["server"] == server
        and r["op"] == op
        and r["connections"] == conns
        and (rep is None or r["rep"] == rep)
    ]


def _fill_size(server: str, conns: int, seconds: float, warmup: float) -> int:
    """Messages to put on the queue before a ReceiveDelete slice: more than it can take.

    A receive+delete pair commits once, like a send, but a receive alone needs no fsync: the
    pairs can outpace the sends of the same connection count, so the fastest send rate
    measured on this server (any connection count) sets the size."""
    sends = [r["rps"] for r in RESULTS if r["server"] == server and r["op"] == "SendMessage"]
    rate = max(sends) if sends else (100.0 if server == "moto" else 10_000.0)
    return int(min(FILL_CAP, rate * (seconds + warmup) * 1.5 + 10 * conns + 200))


# -- the benchmark -------------------------------------------------------------------------------


def test_server(
    benchmark: Any, fleet: Fleet, op: str, conns: int, rep: int, server: str, quick: bool
) -> None:
    srv = fleet.get(server)
    seconds, warmup = (MOTO_PLAN if server == "moto" else PLAN)["quick" if quick else "full"]
    url = loadgen.create_queue(srv.port, f"bench-{op}-{conns}-{rep}".lower())
    depth = 0
    if op == "ReceiveDelete" and server != "empty":
        filled = loadgen.fill(srv.port, url, _fill_size(server, conns, seconds, warmup))
        assert filled.errors == 0, filled.first_error
        depth = loadgen.queue_depth(srv.port, url)

    def run() -> loadgen.Result:
        return loadgen.measure(srv.port, op, url, conns, seconds, warmup, probe=srv.cpu_seconds)

    benchmark.group = f"{op} c={conns}"
    result: loadgen.Result = benchmark.pedantic(run, rounds=1, iterations=1)
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
    if stats is not None and result.latencies:
        # The samples become the operations' latencies: median = p50 of one operation.
        stats.stats.data[:] = result.latencies

    info = {k: v for k, v in result.summary().items() if k != "first_error"}
    info.update(
        server=server, rep=rep, queue_depth_at_start=depth, load_average_1m=os.getloadavg()[0]
    )
    if server == "millpond":
        empty = _find("empty", op, conns, rep)
        if empty and empty[0]["rps"]:
            info["vs_empty"] = result.rps / empty[0]["rps"]
    benchmark.extra_info.update(
        {k: round(v, 4) if isinstance(v, float) else v for k, v in info.items()}
    )
    RESULTS.append({**info, "latencies": result.latencies})

    assert result.ops > 0, f"no operation completed: {result.first_error}"
    if server != "moto":  # moto answers some concurrent calls with 500s; that is its figure
        assert result.errors == 0, result.first_error
    if result.ran_dry:
        warnings.warn(
            f"{server} {op} c={conns}: the queue ran dry after {result.ops} ops "
            f"({depth} filled); the slice is shorter than planned",
            stacklevel=1,
        )
    if result.loadgen_cpu > 0.8 and result.loadgen_cpu > result.server_cpu:
        warnings.warn(
            f"{server} {op} c={conns}: the load generator used "
            f"{result.loadgen_cpu:.2f} cores vs the server's "
            f"{result.server_cpu:.2f}: it may be the bottleneck",
            stacklevel=1,
        )


# -- the pooled report ---------------------------------------------------------------------------


def _pooled(server: str, op: str, conns: int) -> dict[str, Any] | None:
    return loadgen.pool(
        _find(server, op, conns), ("rps", "msgs_per_s", "server_cpu", "loadgen_cpu")
    )


def _report(config: pytest.Config) -> None:
    lines = [
        "| case | conns | server | req/s | msgs/s | p50 ms | p99 ms | vs empty (req/s) "
        "| server cpu | loadgen cpu |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary: dict[str, Any] = {}
    for op, conns in itertools.product(loadgen.OPS, CONNECTIONS):
        empty = _pooled("empty", op, conns)
        for server in SERVERS:
            row = _pooled(server, op, conns)
            if row is None:
                continue
            ratio = row["rps"] / empty["rps"] if empty and empty["rps"] else float("nan")
            row["vs_empty"] = ratio
            summary[f"{op} c={conns} {server}"] = row
            lines.append(
                f"| {op} | {conns} | {server} | {row['rps']:,.0f} | {row['msgs_per_s']:,.0f} "
                f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {ratio:.2f}x "
                f"| {row['server_cpu']:.2f} | {row['loadgen_cpu']:.2f} |"
            )
    target = summary.get("SendMessage c=64 millpond", {}).get("vs_empty")
    verdict = (
        f"millpond SendMessage c=64 / empty handler = {target:.2f}x (target >= "
        f"{TARGET}x: {'met' if target >= TARGET else 'NOT met'})"
        if target is not None
        else "target not measured in this run"
    )
    text = "\n".join(
        [
            "",
            "millpond daemon vs the empty uvicorn handler and moto "
            "(durable fsync; rates are medians of slices, latencies pooled):",
            *lines,
            verdict,
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
        (out / "server-report.md").write_text(text)
        (out / "server-report.json").write_text(json.dumps(summary, indent=1))
    except OSError:
        pass
    if target is not None and target < TARGET and not _quick(config):
        warnings.warn(verdict, stacklevel=1)
