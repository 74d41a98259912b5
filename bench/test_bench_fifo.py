"""FIFO queue and dead-letter benchmarks (issue 3, section 5), each beside raw py-lmdb models.

Cases, for "fsync" and "os":

- ``fifo send_10`` (send_batch of 10), ``fifo send_1`` (send) and ``fifo receive_delete_10``
  (receive 10 + delete_batch) with the messages spread over 1, 10 or 1000 message groups;
- ``dlq receive_10``: a receive of 10 that first moves 10 messages to the dead-letter queue
  ("move"), against a plain receive of 10 ("plain"), on a standard and on a FIFO queue.

Beside millpond's c core and py twin, every group has:

- ``raw``: bench/baseline.py's RawQueue, the floor of a plain queue (groups mean nothing to it);
- ``raw-fifo`` (FIFO cases): ``RawFifo`` below, the least LMDB work a FIFO queue needs: the
  same log, plus a per-group member index, one visibility entry per group head and a
  de-duplication entry per message;
- ``raw`` in the dlq cases: ``RawDeadLetters`` below, RawQueue plus the LMDB work of a move
  (delete from the source's log and index, append to the dead-letter queue's log and index).

Every timed call is one API call (one write transaction); ``extra_info["msgs_per_s"]`` is
messages per second at the median call (for dlq: messages delivered, 10 per call; the move is
the difference between "move" and "plain"). A full run splits each case into 3 slices run
interleaved with the other impls of its group (ids ``-r0``..``-r2``, ``extra_info["rep"]``):
pool their round times (``--benchmark-save-data``) before comparing. ``MILLPOND_BENCH_QUICK=1``
(or ``--bench-quick``) runs one slice with ~15x fewer rounds.
"""

from __future__ import annotations

import itertools
import json
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import baseline
import millpond
from baseline import RawQueue
from millpond import core as core_module


def _cores() -> list[str]:
    try:
        core_module.load("c")
    except ImportError:  # extension not built: the py twin still runs beside raw
        return ["py"]
    return ["c", "py"]


CORES = _cores()
DURABILITIES = ("fsync", "os")
GROUPS = (1, 10, 1000)
BODY = bytes(range(100))  # 100-byte bodies, as the queue benchmarks

# Timed rounds (fsync, os) of a full run, summed over its slices; one round = one call. The py
# twin runs a third; quick runs a fifteenth (at least 3). A durable commit costs ~1-5 ms here.
ROUNDS = {
    "send_1": (300, 3000),
    "send_10": (200, 1500),
    "receive_delete_10": (150, 1000),
    "receive_10": (150, 1000),
}
PY_DIVISOR = 3
QUICK_DIVISOR = 15
MARGIN = 50  # extra calls' worth of messages (e.g. --benchmark-cprofile re-runs)
# The shared VM's disk drifts by 10x within minutes, so a full run splits every case into
# REPEATS slices run interleaved (c, raw-fifo, raw, py, c, ...); pool the slices' round times
# (``extra_info["rep"]``) before taking a median. Quick runs: one slice.
REPEATS = 3


def _repeats(config: pytest.Config) -> int:
    return 1 if getattr(config, "millpond_bench_quick", False) else REPEATS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """durability x groups (or kind) x slice x impl (x variant): the impls of a group alternate."""
    if "rep" not in metafunc.fixturenames:
        return
    reps = _repeats(metafunc.config)

    def rid(text: str, rep: int) -> str:
        return f"{text}-r{rep}" if reps > 1 else text

    params = []
    if "variant" in metafunc.fixturenames:  # test_dlq_receive_10
        impls = [i for i in ("c", "raw", "py") if i in CORES or i == "raw"]
        for d, k, rep, i, v in itertools.product(
            DURABILITIES, ("standard", "fifo"), range(reps), impls, ("plain", "move")
        ):
            params.append(pytest.param(d, k, rep, i, v, id=rid(f"{i}-{v}-{k}-{d}", rep)))
        metafunc.parametrize(("durability", "kind", "rep", "impl", "variant"), params)
        return
    impls = [i for i in ("c", "raw-fifo", "raw", "py") if i in CORES or i.startswith("raw")]
    for d, g, rep, i in itertools.product(DURABILITIES, GROUPS, range(reps), impls):
        params.append(pytest.param(d, g, rep, i, id=rid(f"{i}-{d}-{g}groups", rep)))
    metafunc.parametrize(("durability", "groups", "rep", "impl"), params)


def _plan(quick: bool, case: str, durability: str, impl: str) -> tuple[int, int]:
    """(rounds, warmup rounds) of one slice of a case."""
    rounds = ROUNDS[case][durability == "os"]
    if impl == "py":
        rounds //= PY_DIVISOR
    rounds //= QUICK_DIVISOR if quick else REPEATS
    rounds = max(3, rounds)
    return rounds, min(max(1, rounds // 10), 20)


def _run(
    benchmark: Any,
    target: Callable[[], Any],
    plan: tuple[int, int],
    *,
    setup: Callable[[], Any] | None = None,
    group: str,
    msgs_per_call: int,
    **info: Any,
) -> None:
    """Time ``target`` (``setup`` runs untimed before each round); record msgs/s."""
    rounds, warmup = plan
    benchmark.group = group
    benchmark.extra_info.update(msgs_per_call=msgs_per_call, **info)
    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
    if stats is not None:
        median = stats.stats.median
        benchmark.extra_info["msgs_per_s"] = msgs_per_call / median
        benchmark.extra_info["us_per_msg"] = median * 1e6 / msgs_per_call


# -- raw models ----------------------------------------------------------------------------------

_U64 = struct.Struct(">Q")
_MEMBER_STATE = struct.Struct(">QI")  # visible_at_ms | receive count
_VIS_KEY = struct.Struct(">QQ")  # visible_at_ms | seq


def _group_key(group: int) -> bytes:
    raw = str(group).encode()
    return bytes((len(raw),)) + raw  # length-prefixed: one group's keys never interleave


class RawFifo:
    """The least LMDB work of a FIFO queue (one write transaction per call, like RawQueue).

    - ``log``: seq -> body (append); ``dedup``: dedup id -> seq (no expiry sweep);
    - ``member``: g | seq -> visible_at | count, the group's members in order;
    - ``vis``: visible_at | seq -> g, one entry per non-empty group, keyed by its head.

    send = dedup get + put, log put, member put, and per group of the call one cursor look-up of
    its head (+ a vis put when the group was empty). receive = walk the vis heads; per group
    re-put members from the head while visible (+ log get), then re-key the head. delete = member
    and log deletes, then re-key each touched group's head.
    """

    def __init__(self, path: str, durability: str) -> None:
        self.env = baseline._open(path, durability, max_dbs=4)
        self.log = self.env.open_db(b"log")
        self.member = self.env.open_db(b"member")
        self.vis = self.env.open_db(b"vis")
        self.dedup = self.env.open_db(b"dedup")
        self._seq = 1

    def close(self) -> None:
        self.env.close()

    def send_many(self, entries: list[tuple[bytes, bytes, bytes]]) -> None:
        """entries: (group key, dedup id, body)."""
        now = time.time_ns() // 1_000_000
        with self.env.begin(write=True) as txn:
            seq = self._seq
            new_state = _MEMBER_STATE.pack(now, 0)
            touched = set()
            for g, dedup_id, body in entries:
                if txn.get(dedup_id, db=self.dedup) is not None:
                    continue
                txn.put(dedup_id, _U64.pack(seq), db=self.dedup)
                txn.put(_U64.pack(seq), body, append=True, db=self.log)
                txn.put(g + _U64.pack(seq), new_state, db=self.member)
                if g not in touched:
                    touched.add(g)
                    with txn.cursor(db=self.member) as cur:
                        cur.set_range(g)
                        if cur.key() == g + _U64.pack(seq):  # first member: the group's head
                            txn.put(_VIS_KEY.pack(now, seq), g, db=self.vis)
                seq += 1
            self._seq = seq

    def receive(self, max_messages: int) -> list[tuple[bytes, int, bytes]]:
        """Handles (g, seq, head vis key after the receive)."""
        now = time.time_ns() // 1_000_000
        later = now + baseline.VISIBILITY_MS
        handles: list[tuple[bytes, int, bytes]] = []
        with self.env.begin(write=True) as txn:
            heads = []
            with txn.cursor(db=self.vis) as cur:
                if cur.first():
                    for key, g in cur:
                        if _VIS_KEY.unpack(key)[0] > now or len(heads) >= max_messages:
                            break
                        heads.append((key, g))
            for head, g in heads:
                taken = []
                with txn.cursor(db=self.member) as cur:
                    cur.set_range(g)
                    for key, state in cur:
                        if key[: len(g)] != g or len(key) != len(g) + 8:
                            break
                        visible_at, count = _MEMBER_STATE.unpack(state)
                        if visible_at > now or len(handles) + len(taken) >= max_messages:
                            break
                        taken.append((key, count))
                head_seq = _VIS_KEY.unpack(head)[1]
                new_head = _VIS_KEY.pack(later, head_seq)
                for key, count in taken:
                    txn.put(key, _MEMBER_STATE.pack(later, count + 1), db=self.member)
                    seq = _U64.unpack_from(key, len(g))[0]
                    txn.get(_U64.pack(seq), db=self.log)
                    handles.append((g, seq, new_head))
                txn.delete(head, db=self.vis)
                txn.put(new_head, g, db=self.vis)
                if len(handles) >= max_messages:
                    break
        return handles

    def delete(self, handles: list[tuple[bytes, int, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            heads = {}
            for g, seq, head in handles:
                txn.delete(g + _U64.pack(seq), db=self.member)
                txn.delete(_U64.pack(seq), db=self.log)
                heads[g] = head
            for g, head in heads.items():
                txn.delete(head, db=self.vis)
                with txn.cursor(db=self.member) as cur:
                    if cur.set_range(g) and cur.key()[: len(g)] == g:
                        key, state = cur.item()
                        visible_at = _MEMBER_STATE.unpack(state)[0]
                        txn.put(
                            _VIS_KEY.pack(visible_at, _U64.unpack_from(key, len(g))[0]),
                            g,
                            db=self.vis,
                        )

    def prefill(self, count: int, groups: int, chunk: int = 5000) -> None:
        """``count`` visible messages, round-robin over ``groups`` groups (big transactions)."""
        for start in range(0, count, chunk):
            self.send_many(
                [
                    (_group_key(i % groups), b"prefill-%d" % i, BODY)
                    for i in range(start, min(start + chunk, count))
                ]
            )

    def visible(self) -> int:
        with self.env.begin() as txn:
            return int(txn.stat(self.log)["entries"])


_COUNT = struct.Struct(">I")


class RawDeadLetters(RawQueue):
    """RawQueue plus a dead-letter queue (``dlog``/``dvis``) in the same environment.

    ``receive_moving(n)``: one write transaction that walks the visible entries like
    RawQueue.receive, but moves every entry already received (count >= 1, maxReceiveCount 1)
    to the dead-letter queue: vis delete + log get + log delete + dlog put + dvis put.
    """

    def __init__(self, path: str, durability: str) -> None:
        self.env = baseline._open(path, durability, max_dbs=4)
        self.log = self.env.open_db(b"log")
        self.vis = self.env.open_db(b"vis")
        self.dlog = self.env.open_db(b"dlog")
        self.dvis = self.env.open_db(b"dvis")
        self._seq = 1
        self._dead_seq = 1

    def stage(self, bad: int, good: int) -> None:
        """Store ``bad`` visible messages received once already, then ``good`` fresh ones."""
        now = time.time_ns() // 1_000_000
        with self.env.begin(write=True) as txn:
            for n in range(bad + good):
                seq = self._seq + n
                txn.put(_U64.pack(seq), BODY, append=True, db=self.log)
                txn.put(_VIS_KEY.pack(now, seq), _COUNT.pack(1 if n < bad else 0), db=self.vis)
            self._seq += bad + good

    def receive_moving(self, max_messages: int) -> list[tuple[bytes, bytes]]:
        now = time.time_ns() // 1_000_000
        later = now + baseline.VISIBILITY_MS
        handles = []
        with self.env.begin(write=True) as txn:
            cur = txn.cursor(db=self.vis)
            if cur.first():
                while len(handles) < max_messages:
                    key, state = cur.item()
                    if not key:
                        break
                    visible_at, seq = _VIS_KEY.unpack(key)
                    if visible_at > now:
                        break
                    cur.delete()  # steps to the next entry
                    lkey = _U64.pack(seq)
                    if _COUNT.unpack(state)[0] >= 1:  # over maxReceiveCount: move it
                        record = txn.get(lkey, db=self.log)
                        txn.delete(lkey, db=self.log)
                        dead_seq = self._dead_seq
                        self._dead_seq += 1
                        txn.put(_U64.pack(dead_seq), record, append=True, db=self.dlog)
                        txn.put(_VIS_KEY.pack(now, dead_seq), state, db=self.dvis)
                        continue
                    new_key = _VIS_KEY.pack(later, seq)
                    txn.put(new_key, state, db=self.vis)
                    txn.get(lkey, db=self.log)
                    handles.append((new_key, lkey))
        return handles

    def dead(self) -> int:
        with self.env.begin() as txn:
            return int(txn.stat(self.dlog)["entries"])


# -- millpond stores -----------------------------------------------------------------------------


class _Fifo:
    """A broker with one FIFO queue (explicit dedup ids; SystemClock, as a user would open it)."""

    def __init__(self, path: Path, core: str, durability: str) -> None:
        self.broker = millpond.open(path, durability=durability, core=core)
        assert self.broker.implementation == core
        self.queue = self.broker.create_queue("bench.fifo", {"FifoQueue": "true"})
        self._ids = itertools.count()

    def entries(self, n: int, groups: int) -> list[dict[str, Any]]:
        """``n`` entries with fresh dedup ids, round-robin over ``groups`` groups."""
        out = []
        for _ in range(n):
            i = next(self._ids)
            out.append({"body": BODY, "group_id": f"g{i % groups}", "deduplication_id": str(i)})
        return out

    def prefill(self, count: int, groups: int, chunk: int = 1000) -> None:
        # Setup only: past send_batch's limit of 10, straight into one transaction per chunk.
        q = self.queue
        for start in range(0, count, chunk):
            entries = self.entries(min(chunk, count - start), groups)
            q._send_fifo(
                [
                    q._prepare_fifo(e["body"], None, None, e["group_id"], e["deduplication_id"])
                    for e in entries
                ]
            )

    def visible(self) -> int:
        attrs = self.queue.get_attributes(["ApproximateNumberOfMessages"])
        return int(attrs["ApproximateNumberOfMessages"])

    def close(self) -> None:
        self.broker.close()


@pytest.fixture
def fifo_store(tmp_path: Path, impl: str, durability: str) -> Iterator[Any]:
    s: Any
    if impl == "raw":
        s = RawQueue(str(tmp_path / "raw"), durability)
    elif impl == "raw-fifo":
        s = RawFifo(str(tmp_path / "raw-fifo"), durability)
    else:
        s = _Fifo(tmp_path / "data", impl, durability)
    yield s
    s.close()


# -- FIFO send -----------------------------------------------------------------------------------


def _send_target(store: Any, impl: str, n: int, groups: int) -> Callable[[], Any]:
    """One call sending ``n`` messages, over ``groups`` groups round-robin."""
    if impl == "raw":
        bodies = [BODY] * n
        return (lambda: store.send_one(BODY)) if n == 1 else (lambda: store.send_many(bodies))
    if impl == "raw-fifo":
        ids = itertools.count()

        def raw_fifo() -> None:
            store.send_many(
                [(_group_key(i % groups), b"%d" % i, BODY) for i in itertools.islice(ids, n)]
            )

        return raw_fifo
    q = store.queue
    if n == 1:

        def send_one() -> None:
            (e,) = store.entries(1, groups)
            q.send(e["body"], group_id=e["group_id"], deduplication_id=e["deduplication_id"])

        return send_one
    return lambda: q.send_batch(store.entries(n, groups))


@pytest.mark.parametrize("n", [10, 1])
def test_fifo_send(
    benchmark: Any,
    quick: bool,
    fifo_store: Any,
    impl: str,
    durability: str,
    groups: int,
    rep: int,
    n: int,
) -> None:
    """send_batch of 10 (entries over ``groups`` groups; 10 and 1000: 10 groups per call), or
    one send per call, each to the next group round-robin."""
    _run(
        benchmark,
        _send_target(fifo_store, impl, n, groups),
        _plan(quick, f"send_{n}", durability, impl),
        group=f"fifo send_{n} {durability} {groups}groups",
        msgs_per_call=n,
        case=f"fifo_send_{n}",
        rep=rep,
        impl=impl,
        durability=durability,
        groups=groups,
    )


# -- FIFO receive + delete -----------------------------------------------------------------------


def test_fifo_receive_delete_10(
    benchmark: Any,
    quick: bool,
    fifo_store: Any,
    impl: str,
    durability: str,
    groups: int,
    rep: int,
) -> None:
    """receive 10 + delete_batch (two write transactions) from a queue prefilled round-robin
    over ``groups`` groups: one group gives all 10; 1000 groups give a few each, so the call
    walks several group heads."""
    plan = _plan(quick, "receive_delete_10", durability, impl)
    # Enough that no call finds fewer than 10, and every group present.
    count = max((sum(plan) + MARGIN) * 10, 2 * groups)
    if impl == "raw":
        fifo_store.prefill(count, BODY)
        receive, delete = fifo_store.receive, fifo_store.delete

        def target() -> None:
            delete(receive(10))
    elif impl == "raw-fifo":
        fifo_store.prefill(count, groups)
        receive, delete = fifo_store.receive, fifo_store.delete

        def target() -> None:
            handles = receive(10)
            assert len(handles) == 10
            delete(handles)
    else:
        fifo_store.prefill(count, groups)
        q = fifo_store.queue

        def target() -> None:
            messages = q.receive(10)
            assert len(messages) == 10
            q.delete_batch([m.receipt_handle for m in messages])

    _run(
        benchmark,
        target,
        plan,
        group=f"fifo receive_delete_10 {durability} {groups}groups",
        msgs_per_call=10,
        case="fifo_receive_delete_10",
        rep=rep,
        impl=impl,
        durability=durability,
        groups=groups,
    )
    left = fifo_store.stored()[0] if impl == "raw" else fifo_store.visible()
    assert left >= 10, "the queue ran dry: a call received fewer than 10 messages"


# -- dead-letter move cost -----------------------------------------------------------------------


class _DeadLetters:
    """A source queue with maxReceiveCount 1 to a dead-letter queue, on a ManualClock that
    never moves: a receive with visibility_timeout=0 makes messages "received once and visible
    again", and delivered messages stay in flight for good, out of later receives' way."""

    def __init__(self, path: Path, core: str, durability: str, kind: str) -> None:
        self.broker = millpond.open(
            path, durability=durability, core=core, clock=millpond.ManualClock()
        )
        fifo = kind == "fifo"
        attrs = {"FifoQueue": "true"} if fifo else {}
        suffix = ".fifo" if fifo else ""
        self.dlq = self.broker.create_queue("dead" + suffix, attrs)
        policy = {"deadLetterTargetArn": self.dlq.arn, "maxReceiveCount": 1}
        self.queue = self.broker.create_queue(
            "work" + suffix, {**attrs, "RedrivePolicy": json.dumps(policy)}
        )
        self.fifo = fifo
        self._ids = itertools.count()

    def send(self, n: int, group: str) -> None:
        if self.fifo:
            self.queue.send_batch(
                [
                    {"body": BODY, "group_id": group, "deduplication_id": str(next(self._ids))}
                    for _ in range(n)
                ]
            )
        else:
            self.queue.send_batch([BODY] * n)

    def stage(self, bad: int, good: int, round_no: int) -> None:
        """``bad`` messages at the head, received once (so the next receive moves them), then
        ``good`` fresh ones (a FIFO group of their own: earlier rounds' groups are in flight)."""
        if bad:
            self.send(bad, "bad")
            assert len(self.queue.receive(bad, visibility_timeout=0)) == bad
        self.send(good, f"good{round_no}")

    def dead(self) -> int:
        return int(self.dlq.get_attributes()["ApproximateNumberOfMessages"])

    def close(self) -> None:
        self.broker.close()


def test_dlq_receive_10(
    benchmark: Any,
    quick: bool,
    tmp_path: Path,
    durability: str,
    kind: str,
    impl: str,
    variant: str,
    rep: int,
) -> None:
    """A receive of 10 that first moves 10 messages to the DLQ ("move") vs a plain receive of
    10 ("plain"); each round's messages are staged untimed. raw = RawDeadLetters (for both kinds:
    the floor of a move is the same)."""
    bad = 10 if variant == "move" else 0
    plan = _plan(quick, "receive_10", durability, impl)
    rounds_run = [0]
    got: list[int] = []
    s: Any
    if impl == "raw":
        s = RawDeadLetters(str(tmp_path / "raw"), durability)

        def setup() -> None:
            s.stage(bad, 10)

        def target() -> None:
            got.append(len(s.receive_moving(10)))
    else:
        s = _DeadLetters(tmp_path / "data", impl, durability, kind)
        q = s.queue

        def setup() -> None:
            rounds_run[0] += 1
            s.stage(bad, 10, rounds_run[0])

        def target() -> None:
            got.append(len(q.receive(10)))

    try:
        _run(
            benchmark,
            target,
            plan,
            setup=setup,
            group=f"dlq receive_10 {kind} {durability}",
            msgs_per_call=10,
            case="dlq_receive_10",
            rep=rep,
            impl=impl,
            durability=durability,
            kind=kind,
            variant=variant,
            moved_per_call=bad,
        )
        assert got and all(n == 10 for n in got), f"receives returned {set(got)}, not 10"
        assert s.dead() == bad * len(got), "each call should have moved exactly `bad` messages"
    finally:
        s.close()
