"""Queue benchmarks (issue "Queue core", section 6): millpond's c core and py twin beside the raw
py-lmdb model (bench/baseline.py), each case in one pytest-benchmark group with its baseline.

Run:  pytest bench/test_bench_queue.py                   (full: about 3 minutes on 2 cores)
      pytest bench/test_bench_queue.py --bench-quick     (smoke, < 60 s; or MILLPOND_BENCH_QUICK=1)
      python bench/report.py                             (full run, then the Markdown table)

Cases, each for durability "fsync" and "os" and bodies of 100 B and 1 KiB: send 1 / 10 / 100 per
call, receive+delete 1 / 10, the full cycle (send, receive, delete 1), and durable single sends
from 8 threads vs 1 thread; test_send_1 also times "raw-commit", one durable LMDB commit of one
put, the floor of a durable single send. Every timed call is one API call of the case with one
write transaction per call, as in the raw model. Each case runs as REPEATS interleaved slices
(ids ``-r0`` ...); ``extra_info["msgs_per_s"]`` is messages per second at a slice's median call,
and bench/report.py pools the slices.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import millpond
from baseline import RawCommit, RawQueue
from millpond import core as core_module

# -- the matrix ----------------------------------------------------------------------------------


def _cores() -> list[str]:
    try:
        core_module.load("c")
    except ImportError:  # the extension is not built: the py twin still runs beside raw
        return ["py"]
    return ["c", "py"]


CORES = _cores()
# c and raw run back to back so that the c/raw ratio sees the same disk weather.
IMPLS = [name for name in ("c", "raw", "py") if name in CORES or name == "raw"]
DURABILITIES = ("fsync", "os")
SIZES = (100, 1024)
THREADS = (1, 8)
# The disk of a shared 2-core VM drifts by 2x within minutes. Each case therefore runs as
# REPEATS interleaved slices (c, raw, py, c, raw, py, ...) of ROUNDS/REPEATS rounds each, and
# bench/report.py pools the slices' round times before taking the median. Quick runs: 1 slice.
REPEATS = 5

# Timed rounds of the full run as (fsync, os), summed over the slices; one round = one call. A
# durable commit costs 0.15-2 ms here, an "os" commit ~7 us: many rounds keep the medians steady.
# The py twin runs a third of them (its pure-Python CRC32C makes 1 KiB calls 10-50x slower; it
# is the reference, its figures need less precision). Quick runs take 1/15 of them.
ROUNDS = {
    "send_1": (4000, 15000),
    "send_10": (2000, 6000),
    "send_100": (800, 2000),
    "receive_delete_1": (2000, 8000),
    "receive_delete_10": (1000, 4000),
    "cycle": (1500, 6000),
}
PY_DIVISOR = 3
THREAD_ROUNDS = 40  # fsync only
THREAD_MESSAGES = 400  # per round: 8 threads x 50, or 1 thread x 400
QUICK_DIVISOR = 15
RECEIVE_MARGIN = 200  # extra calls' worth of messages (e.g. --benchmark-cprofile re-runs)


def _repeats(config: pytest.Config) -> int:
    return 1 if getattr(config, "millpond_bench_quick", False) else REPEATS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """impl x durability x size (or x threads) x slice, ordered so the impls of one group
    alternate; test_send_1 also gets "raw-commit" (fsync only), the one-commit floor."""
    if "rep" not in metafunc.fixturenames:
        return
    reps = _repeats(metafunc.config)

    def rid(text: str, rep: int) -> str:
        return f"{text}-r{rep}" if reps > 1 else text

    params = []
    if "threads" in metafunc.fixturenames:
        for size, rep, impl, threads in itertools.product(SIZES, range(reps), IMPLS, THREADS):
            name = rid(f"{impl}-{threads}threads-{size}B", rep)
            params.append(pytest.param(impl, threads, size, rep, id=name))
        metafunc.parametrize(("impl", "threads", "size", "rep"), params)
        return
    floor = metafunc.function.__name__ == "test_send_1"
    for durability, size, rep in itertools.product(DURABILITIES, SIZES, range(reps)):
        impls = list(IMPLS)
        if floor and durability == "fsync":
            impls.insert(impls.index("raw") + 1, "raw-commit")
        for impl in impls:
            name = rid(f"{impl}-{durability}-{size}B", rep)
            params.append(pytest.param(impl, durability, size, rep, id=name))
    metafunc.parametrize(("impl", "durability", "size", "rep"), params)


def _plan(quick: bool, rounds: int, impl: str) -> tuple[int, int]:
    """(rounds, warmup_rounds) of one slice of a case that takes ``rounds`` in a full run."""
    if impl == "py":
        rounds //= PY_DIVISOR
    if quick:
        rounds = max(3, rounds // QUICK_DIVISOR)
    else:
        rounds = max(3, rounds // REPEATS)
    return rounds, min(max(1, rounds // 10), 50)


def _rounds(case: str, durability: str) -> int:
    return ROUNDS[case][durability == "os"]


def _body(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + b"m" * (size % 256)


def _run(
    benchmark: Any,
    target: Callable[[], Any],
    plan: tuple[int, int],
    *,
    rep: int,
    case: str,
    impl: str,
    durability: str,
    size: int,
    msgs_per_call: int,
    threads: int = 1,
) -> None:
    """Time ``target`` and record messages/s at the median in extra_info."""
    rounds, warmup = plan
    benchmark.group = f"{case} {durability} {size}B"
    benchmark.extra_info.update(
        case=case,
        impl=impl,
        durability=durability,
        body_size=size,
        msgs_per_call=msgs_per_call,
        threads=threads,
        rep=rep,
    )
    benchmark.pedantic(target, rounds=rounds, warmup_rounds=warmup, iterations=1)
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
    if stats is not None:
        median = stats.stats.median
        benchmark.extra_info["msgs_per_s"] = msgs_per_call / median
        benchmark.extra_info["us_per_msg"] = median * 1e6 / msgs_per_call


# -- stores --------------------------------------------------------------------------------------


class _Millpond:
    """A broker with one queue, opened as a user would (SystemClock, default attributes)."""

    def __init__(self, path: Path, core: str, durability: str) -> None:
        self.broker = millpond.open(path, durability=durability, core=core)
        assert self.broker.implementation == core
        self.queue = self.broker.create_queue("bench")

    def prefill(self, count: int, body: bytes, chunk: int = 5000) -> None:
        q = self.queue
        while count > 0:
            n = min(chunk, count)
            q._send_many(*q._prepare_many([body] * n))
            count -= n

    def visible(self) -> int:
        return int(
            self.queue.get_attributes(["ApproximateNumberOfMessages"])[
                "ApproximateNumberOfMessages"
            ]
        )

    def close(self) -> None:
        self.broker.close()


@pytest.fixture
def store(tmp_path: Path, impl: str, durability: str) -> Iterator[Any]:
    """A fresh data directory per benchmark: a millpond queue, or the raw model."""
    s: Any
    if impl == "raw":
        s = RawQueue(str(tmp_path / "raw"), durability)
    elif impl == "raw-commit":
        s = RawCommit(str(tmp_path / "floor"), durability)
    else:
        s = _Millpond(tmp_path / "data", impl, durability)
    yield s
    s.close()


# -- send ---------------------------------------------------------------------------------------


def test_send_1(
    benchmark: Any, quick: bool, store: Any, impl: str, durability: str, size: int, rep: int
) -> None:
    """One send per call; "raw-commit" is the floor: one durable LMDB commit of one put
    (sync=True, metasync=True), run next to raw and c so the single-send target
    (c <= 1.2x raw-commit) reads off one group under the same disk weather."""
    body = _body(size)
    if impl == "raw":
        target = functools.partial(store.send_one, body)
    elif impl == "raw-commit":
        target = functools.partial(store.commit_one, body)
    else:
        target = functools.partial(store.queue.send, body)
    plan = _plan(quick, _rounds("send_1", durability), impl)
    _run(
        benchmark,
        target,
        plan,
        rep=rep,
        case="send_1",
        impl=impl,
        durability=durability,
        size=size,
        msgs_per_call=1,
    )


def test_send_10(
    benchmark: Any, quick: bool, store: Any, impl: str, durability: str, size: int, rep: int
) -> None:
    bodies = [_body(size)] * 10
    target = (
        functools.partial(store.send_many, bodies)
        if impl == "raw"
        else functools.partial(store.queue.send_batch, bodies)
    )
    plan = _plan(quick, _rounds("send_10", durability), impl)
    _run(
        benchmark,
        target,
        plan,
        rep=rep,
        case="send_10",
        impl=impl,
        durability=durability,
        size=size,
        msgs_per_call=10,
    )


def test_send_100(
    benchmark: Any, quick: bool, store: Any, impl: str, durability: str, size: int, rep: int
) -> None:
    bodies = [_body(size)] * 100
    if impl == "raw":
        target = functools.partial(store.send_many, bodies)
    else:
        q = store.queue

        # The embedded API caps send_batch at 10 entries (the SQS limit), so "batched send (100)"
        # calls what send_batch runs after its limit checks: _prepare_many (validation, encoding)
        # then _send_many (ONE write transaction, one commit for all 100). Both are timed.
        def target() -> None:
            q._send_many(*q._prepare_many(bodies))

    plan = _plan(quick, _rounds("send_100", durability), impl)
    _run(
        benchmark,
        target,
        plan,
        rep=rep,
        case="send_100",
        impl=impl,
        durability=durability,
        size=size,
        msgs_per_call=100,
    )


# -- receive + delete -----------------------------------------------------------------------------


def _receive_delete(
    benchmark: Any,
    quick: bool,
    store: Any,
    impl: str,
    durability: str,
    size: int,
    rep: int,
    n: int,
) -> None:
    case = f"receive_delete_{n}"
    plan = _plan(quick, _rounds(case, durability), impl)
    # Enough visible messages that no call ever finds fewer than n (checked below).
    store.prefill((sum(plan) + RECEIVE_MARGIN) * n, _body(size))
    if impl == "raw":
        receive, delete = store.receive, store.delete

        def target() -> None:  # two write transactions, as the broker's two calls
            delete(receive(n))
    else:
        q = store.queue

        def target() -> None:
            q.delete_batch([m.receipt_handle for m in q.receive(n)])

    _run(
        benchmark,
        target,
        plan,
        rep=rep,
        case=case,
        impl=impl,
        durability=durability,
        size=size,
        msgs_per_call=n,
    )
    left = store.stored()[0] if impl == "raw" else store.visible()
    assert left >= n, "the queue ran dry: a call received fewer than n messages"


def test_receive_delete_1(
    benchmark: Any, quick: bool, store: Any, impl: str, durability: str, size: int, rep: int
) -> None:
    _receive_delete(benchmark, quick, store, impl, durability, size, rep, 1)


def test_receive_delete_10(
    benchmark: Any, quick: bool, store: Any, impl: str, durability: str, size: int, rep: int
) -> None:
    _receive_delete(benchmark, quick, store, impl, durability, size, rep, 10)


# -- full cycle ------------------------------------------------------------------------------------


def test_cycle(
    benchmark: Any, quick: bool, store: Any, impl: str, durability: str, size: int, rep: int
) -> None:
    """send 1, receive 1, delete 1 on an empty queue: three write transactions."""
    body = _body(size)
    if impl == "raw":
        send, receive, delete = store.send_one, store.receive, store.delete

        def target() -> None:
            send(body)
            delete(receive(1))
    else:
        q = store.queue

        def target() -> None:
            q.send(body)
            q.delete(q.receive(1)[0].receipt_handle)

    plan = _plan(quick, _rounds("cycle", durability), impl)
    _run(
        benchmark,
        target,
        plan,
        rep=rep,
        case="cycle",
        impl=impl,
        durability=durability,
        size=size,
        msgs_per_call=1,
    )
    left = store.stored() if impl == "raw" else store.visible()
    assert left in ((0, 0), 0), f"every cycle should leave the queue empty, found {left}"


# -- 8 threads vs 1 thread, durable single sends --------------------------------------------------


class _Senders:
    """``threads`` persistent threads; each round every one sends ``per_thread`` messages alone.

    Persistent so that a round times the sends, not thread start-up; two barriers start and
    end a round.
    """

    def __init__(
        self, send: Callable[[bytes], Any], body: bytes, threads: int, per_thread: int
    ) -> None:
        self._send, self._body, self._per_thread = send, body, per_thread
        self._start = threading.Barrier(threads + 1)
        self._done = threading.Barrier(threads + 1)
        self._stop = False
        self.rounds = 0  # rounds run (warm-up included)
        self.errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        send, body = self._send, self._body
        while True:
            self._start.wait()
            if self._stop:
                return
            try:
                for _ in range(self._per_thread):
                    send(body)
            except BaseException as exc:  # reported by the test after the run
                self.errors.append(exc)
            self._done.wait()

    def round(self) -> None:
        self._start.wait()
        self._done.wait()
        self.rounds += 1

    def close(self) -> None:
        self._stop = True
        self._start.wait()
        for t in self._threads:
            t.join()


def test_threads(
    benchmark: Any, quick: bool, tmp_path: Path, impl: str, threads: int, size: int, rep: int
) -> None:
    """Single durable ("fsync") sends from 1 or 8 threads: group commit shares one fsync."""
    durability = "fsync"
    s: Any = (
        RawQueue(str(tmp_path / "raw"), durability)
        if impl == "raw"
        else _Millpond(tmp_path / "data", impl, durability)
    )
    send = s.send_one if impl == "raw" else s.queue.send
    senders = _Senders(send, _body(size), threads, THREAD_MESSAGES // threads)
    commits = 0 if impl == "raw" else s.broker._storage.commits
    try:
        rounds = max(3, THREAD_ROUNDS // QUICK_DIVISOR) if quick else THREAD_ROUNDS // REPEATS
        _run(
            benchmark,
            senders.round,
            (rounds, 1),
            rep=rep,
            case="threads",
            impl=impl,
            durability=durability,
            size=size,
            msgs_per_call=THREAD_MESSAGES,
            threads=threads,
        )
        if impl != "raw" and senders.rounds:
            # How well group commit shares a commit: 1.0 = no sharing, 8.0 = all threads.
            commits = s.broker._storage.commits - commits
            benchmark.extra_info["msgs_per_commit"] = senders.rounds * THREAD_MESSAGES / commits
    finally:
        senders.close()
        s.close()
    assert not senders.errors, senders.errors[:3]
