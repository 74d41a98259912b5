"""Multi-process stress test (issue 3, section 4).

Four processes (spawn context) share one data directory for a bounded time. Each runs a producer
thread (standard and FIFO sends, single and batched) and two consumer threads (one per queue)
that receive, delete, extend (heartbeat), release (change visibility to 0 or 1 s), abandon
messages and stall past a 1 s timeout before deleting late, so that messages come back and some
reach the dead-letter queues:

- ``work``: standard queue, RedrivePolicy maxReceiveCount 3 to ``work-dlq``;
- ``jobs.fifo``: FIFO queue, 12 groups (each owned by one producer, so the per-group send order
  is the producer's own), maxReceiveCount 3 to ``jobs-dlq.fifo``.

Every process appends what was ACKNOWLEDGED to its own JSON-lines files (one per thread, flushed
per call): sends (id, body, group, per-group number), receives (pid, id, body, receive count,
call start/end on ``time.monotonic()``, visibility timeout, handle), deletes and visibility
changes (with success or the error). After every child has exited, the parent drains all four
queues with a broker whose ManualClock runs an hour ahead (so every hidden message is visible
again and nothing times out during the drain), and checks:

(a) no acknowledged send is lost: each one was deleted (by a consumer or by the drain);
(b) no message was held by two consumers at once: the receive counts of a message are 1..n,
    each seen once, and receive k+1 did not return before receive k's hold had ended (its start
    plus its visibility timeout, or the start of an acknowledged change plus the new timeout);
    no delete or change was refused while its handle was certainly still valid;
(c) FIFO order per group: first deliveries follow send order; a batch lists a group's messages
    in send order; a message is never delivered while its predecessor is still in the queue
    (unless the predecessor comes before it in the same batch);
(d) DLQ accounting: a dead-lettered message was received exactly maxReceiveCount times in its
    source (its count continues in the DLQ), names its source, and is never also in the source;
    no source receive ever counts past maxReceiveCount;
(e) nothing deleted comes back: no receive starts after a delete of that message was
    acknowledged (deletes made while the handle was valid, the SQS promise).

Times are taken with ``time.monotonic()`` (CLOCK_MONOTONIC is system-wide on Linux, so the
processes' readings compare) and bracket each call, [t0, t1]. The broker's clock is the wall
clock; the checks allow ``TOLERANCE_S`` for its millisecond rounding and for slew between the two
clocks. Every hold used is >= 1 s, most are 30 s, so an overlap found is a real double delivery.

``test_stress`` runs ~5 s on the C core; ``test_stress_long`` (``-m slow``) runs both cores for
``MILLPOND_STRESS_SECONDS`` (default 60).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import threading
import time
import traceback
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

import millpond
from millpond import core as core_module
from millpond.errors import MillpondError

CTX = mp.get_context("spawn")  # fresh interpreters, as separate services would be

WORKERS = 4
SHORT_SECONDS = 5.0
LONG_SECONDS = float(os.environ.get("MILLPOND_STRESS_SECONDS", "60"))

STD, STD_DLQ = "work", "work-dlq"
FIFO, FIFO_DLQ = "jobs.fifo", "jobs-dlq.fifo"
DLQ_OF = {STD: STD_DLQ, FIFO: FIFO_DLQ}
SOURCE_OF = {dlq: source for source, dlq in DLQ_OF.items()}
MAX_RECEIVES = 3
GROUPS_PER_WORKER = 3

HOLD_VT = 30  # most receives: a redelivery inside 30 s would be a real bug
SHORT_VT = 1  # some receives let undeleted messages time out and come back
EXTEND_VT = 60  # heartbeat extension before a delete
TOLERANCE_S = 0.05
DRAIN_AHEAD_S = 3600  # the drain's clock: past every visibility timeout used

# Per producer, messages per second (paced, so that consumers keep up and the drain stays small).
STD_RATE = 150
FIFO_RATE = 60
POISON_RATE = 0.04  # bodies starting with "P": consumers never delete them -> DLQ
ABANDON_RATE = 0.06  # other messages left undeleted now and then
DELAYED_RATE = 0.05  # standard sends with DelaySeconds=1
SHORT_VT_RATE = 0.15
STALL_RATE = 0.05  # of short holds: the consumer stalls past its timeout, then deletes late
STALL_S = SHORT_VT + 0.3
EXTEND_RATE = 0.15


# -- the children --------------------------------------------------------------------------------


class _Log:
    """One JSON-lines file, appended and flushed after every call (one writer thread)."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "a", encoding="utf-8")  # closed by close(), after the threads

    def write(self, *records: dict[str, Any]) -> None:
        if records:
            self._file.write("".join(json.dumps(r) + "\n" for r in records))
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def _produce(broker: millpond.Broker, index: int, deadline: float, log: _Log) -> None:
    """Send to both queues at a paced rate; log each send once it is acknowledged."""
    rng = random.Random(f"produce-{index}")
    std, fifo = broker.queue(STD), broker.queue(FIFO)
    groups = [f"w{index}g{k}" for k in range(GROUPS_PER_WORKER)]
    next_n = dict.fromkeys(groups, 0)
    counter = 0
    started = time.monotonic()
    sent_std = sent_fifo = 0
    while time.monotonic() < deadline:
        # Standard queue: single sends and batches, some delayed.
        entries = []
        for _ in range(rng.choice((1, 1, 4, 10))):
            counter += 1
            kind = "P" if rng.random() < POISON_RATE else "M"
            delay = 1 if rng.random() < DELAYED_RATE else None
            entries.append({"body": f"{kind}:{index}:{counter}", "delay_seconds": delay})
        if len(entries) == 1:
            e = entries[0]
            ids = [std.send(e["body"], delay_seconds=e["delay_seconds"])]
        else:
            ids = std.send_batch(entries)
        log.write(
            *[
                {"k": "send", "q": STD, "id": i, "body": e["body"]}
                for i, e in zip(ids, entries, strict=True)
            ]
        )
        sent_std += len(entries)

        # FIFO queue: this producer's groups only, in its own order; unique dedup ids.
        fentries = []
        for _ in range(rng.choice((1, 3, 10))):
            g = rng.choice(groups)
            n = next_n[g]
            next_n[g] = n + 1
            kind = "P" if rng.random() < POISON_RATE else "M"
            body = f"{kind}:{g}:{n}"
            fentries.append({"body": body, "group_id": g, "deduplication_id": body, "n": n})
        if len(fentries) == 1:
            e = fentries[0]
            ids = [fifo.send(e["body"], group_id=e["group_id"], deduplication_id=e["body"])]
        else:
            sent = fifo.send_batch_detailed(
                [{k: e[k] for k in ("body", "group_id", "deduplication_id")} for e in fentries]
            )
            ids = [message_id for message_id, _ in sent]
        log.write(
            *[
                {
                    "k": "send",
                    "q": FIFO,
                    "id": i,
                    "body": e["body"],
                    "g": e["group_id"],
                    "n": e["n"],
                }
                for i, e in zip(ids, fentries, strict=True)
            ]
        )
        sent_fifo += len(fentries)

        elapsed = time.monotonic() - started
        ahead = max(sent_std / STD_RATE, sent_fifo / FIFO_RATE) - elapsed
        if ahead > 0:
            time.sleep(min(ahead, max(deadline - time.monotonic(), 0)))


def _call(
    log: _Log, kind: str, name: str, handles: list[str], ids: list[str], fn: Any, **extra: Any
) -> bool:
    """Run a delete or change-visibility call and log its outcome per handle."""
    t0 = time.monotonic()
    error = None
    try:
        fn()
    except MillpondError as exc:  # refused: logged, judged by the checker
        error = f"{type(exc).__name__}: {exc}"
    t1 = time.monotonic()
    log.write(
        *[
            {
                "k": kind,
                "q": name,
                "h": h,
                "id": i,
                "ok": error is None,
                "err": error,
                "t0": t0,
                "t1": t1,
                **extra,
            }
            for h, i in zip(handles, ids, strict=True)
        ]
    )
    return error is None


def _consume(broker: millpond.Broker, name: str, index: int, deadline: float, log: _Log) -> None:
    """Receive from one queue until the deadline; delete most, extend some, release or abandon
    poison and a few others, stall now and then. Worker 0 never uses short timeouts (nor
    stalls), worker 3 extends more."""
    rng = random.Random(f"consume-{name}-{index}")
    q = broker.queue(name)
    pid = os.getpid()
    short_rate = 0.0 if index == 0 else SHORT_VT_RATE
    extend_rate = EXTEND_RATE * (3 if index == 3 else 1)
    calls = 0
    while time.monotonic() < deadline:
        vt = SHORT_VT if rng.random() < short_rate else HOLD_VT
        t0 = time.monotonic()
        messages = q.receive(rng.randint(1, 10), visibility_timeout=vt, wait_seconds=1)
        t1 = time.monotonic()
        calls += 1
        call = f"{index}:{name}:{calls}"
        log.write(
            *[
                {
                    "k": "recv",
                    "q": name,
                    "pid": pid,
                    "call": call,
                    "pos": pos,
                    "id": m.message_id,
                    "body": m.text,
                    "g": m.group_id,
                    "seq": m.sequence_number,
                    "rc": m.receive_count,
                    "vt": vt,
                    "h": m.receipt_handle,
                    "t0": t0,
                    "t1": t1,
                    "src": m.dead_letter_source_arn,
                }
                for pos, m in enumerate(messages)
            ]
        )
        if messages and vt == SHORT_VT and rng.random() < STALL_RATE:
            # A stalled worker: its messages go back to the queue meanwhile; its deletes come
            # late (refused on FIFO queues, "still deletes" on standard ones, as SQS).
            time.sleep(STALL_S)
        keep = [m for m in messages if m.text[0] != "P" and rng.random() >= ABANDON_RATE]
        drop = [m for m in messages if m not in keep]
        if keep and vt == HOLD_VT and rng.random() < extend_rate:
            for m in keep:  # heartbeat: "still working on it"
                _call(
                    log,
                    "chg",
                    name,
                    [m.receipt_handle],
                    [m.message_id],
                    lambda m=m: q.change_visibility(m.receipt_handle, EXTEND_VT),
                    vt=EXTEND_VT,
                )
        if keep and rng.random() < 0.5:
            handles = [m.receipt_handle for m in keep]
            _call(
                log,
                "del",
                name,
                handles,
                [m.message_id for m in keep],
                lambda handles=handles: q.delete_batch(handles),
            )
        else:
            for m in keep:
                _call(
                    log,
                    "del",
                    name,
                    [m.receipt_handle],
                    [m.message_id],
                    lambda m=m: q.delete(m.receipt_handle),
                )
        if vt == HOLD_VT:  # short holds just run out; long ones are released (or backed off)
            for m in drop:
                release = rng.choice((0, 0, 1))
                _call(
                    log,
                    "chg",
                    name,
                    [m.receipt_handle],
                    [m.message_id],
                    lambda m=m, r=release: q.change_visibility(m.receipt_handle, r),
                    vt=release,
                )


def _worker(
    data_dir: str,
    impl: str,
    index: int,
    log_dir: str,
    ready: Any,
    go: Any,
    start: Any,
    seconds: float,
) -> None:
    """One child process: a producer and two consumers sharing one broker until the deadline."""
    errors: list[str] = []
    logs: list[_Log] = []
    with millpond.open(data_dir, durability="os", core=impl) as broker:
        ready.release()
        if not go.wait(120):
            raise RuntimeError("the parent never said go")
        deadline = start.value + seconds

        def run(fn: Any, role: str, *args: Any) -> threading.Thread:
            log = _Log(Path(log_dir) / f"{index}-{role}.jsonl")
            logs.append(log)

            def body() -> None:
                try:
                    fn(broker, *args, log)
                except BaseException:  # reported through the error file and the exit code
                    errors.append(f"worker {index} {role}:\n{traceback.format_exc()}")

            thread = threading.Thread(target=body, name=role)
            thread.start()
            return thread

        threads = [
            run(_produce, "produce", index, deadline),
            run(_consume, "consume-std", STD, index, deadline),
            run(_consume, "consume-fifo", FIFO, index, deadline),
        ]
        for thread in threads:
            thread.join()
    for log in logs:
        log.close()
    if errors:
        (Path(log_dir) / f"{index}-errors.txt").write_text("\n".join(errors))
        raise SystemExit(1)


# -- the parent ----------------------------------------------------------------------------------


def _redrive(dlq: millpond.Queue) -> dict[str, str]:
    policy = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": MAX_RECEIVES}
    return {"RedrivePolicy": json.dumps(policy)}


def _create_queues(data_dir: str, impl: str) -> dict[str, str]:
    """Create the four queues; returns their ARNs by name."""
    with millpond.open(data_dir, durability="os", core=impl) as b:
        dlq = b.create_queue(STD_DLQ)
        fdlq = b.create_queue(FIFO_DLQ, {"FifoQueue": "true"})
        b.create_queue(STD, _redrive(dlq))
        b.create_queue(FIFO, {"FifoQueue": "true", **_redrive(fdlq)})
        return {name: b.queue(name).arn for name in (STD, STD_DLQ, FIFO, FIFO_DLQ)}


def _run_children(data_dir: str, impl: str, log_dir: Path, seconds: float) -> None:
    ready, go, start = CTX.Semaphore(0), CTX.Event(), CTX.Value("d", 0.0)
    children = [
        CTX.Process(
            target=_worker,
            args=(data_dir, impl, i, str(log_dir), ready, go, start, seconds),
            name=f"stress-{i}",
        )
        for i in range(WORKERS)
    ]
    for child in children:
        child.start()
    try:
        for _ in children:
            assert ready.acquire(timeout=120), "a child did not open the broker"
        start.value = time.monotonic() + 0.2
        go.set()
        for child in children:
            child.join(seconds + 120)
    finally:
        for child in children:
            if child.is_alive():  # only our own children, by handle
                child.kill()
                child.join(10)
    problems = [f"{c.name} exit code {c.exitcode}" for c in children if c.exitcode != 0]
    problems += [p.read_text() for p in sorted(log_dir.glob("*-errors.txt"))]
    assert not problems, "\n".join(problems)


def _drain(data_dir: str, impl: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Receive and delete everything left, sources first (their receives move messages over the
    limit to the DLQs), as logical time ``now + DRAIN_AHEAD_S``; returns (log records, problems)."""
    clock = millpond.ManualClock(time.time_ns() // 1_000_000 + DRAIN_AHEAD_S * 1000)
    tick = time.monotonic() + DRAIN_AHEAD_S  # logical monotonic time, one step per call
    records: list[dict[str, Any]] = []
    problems = []
    with millpond.open(data_dir, durability="os", core=impl, clock=clock) as b:
        for name in (STD, FIFO, STD_DLQ, FIFO_DLQ):
            q = b.queue(name)
            calls = 0
            while True:
                messages = q.receive(10, visibility_timeout=HOLD_VT, wait_seconds=0)
                tick += 1e-3
                if not messages:
                    break
                calls += 1
                for pos, m in enumerate(messages):
                    records.append(
                        {
                            "k": "recv",
                            "q": name,
                            "pid": 0,
                            "call": f"drain:{name}:{calls}",
                            "pos": pos,
                            "id": m.message_id,
                            "body": m.text,
                            "g": m.group_id,
                            "seq": m.sequence_number,
                            "rc": m.receive_count,
                            "vt": HOLD_VT,
                            "h": m.receipt_handle,
                            "t0": tick,
                            "t1": tick,
                            "drain": True,
                            "src": m.dead_letter_source_arn,
                        }
                    )
                q.delete_batch([m.receipt_handle for m in messages])
                tick += 1e-3
                records += [
                    {
                        "k": "del",
                        "q": name,
                        "h": m.receipt_handle,
                        "id": m.message_id,
                        "ok": True,
                        "t0": tick,
                        "t1": tick,
                    }
                    for m in messages
                ]
            left = {k: v for k, v in q.get_attributes().items() if k.startswith("ApproximateNum")}
            if any(v != "0" for v in left.values()):
                problems.append(f"drain: {name} still holds messages no receive returns: {left}")
    return records, problems


def _read_logs(log_dir: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(log_dir.glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            records += [json.loads(line) for line in f]
    return records


# -- the checker ---------------------------------------------------------------------------------


def check(records: list[dict[str, Any]], arns: dict[str, str]) -> tuple[list[str], Counter[str]]:
    """All checks (a)-(e) over the merged logs; returns (violations, activity counters)."""
    sends = {r["id"]: r for r in records if r["k"] == "send"}
    receives = [r for r in records if r["k"] == "recv"]
    deletes = [r for r in records if r["k"] == "del"]
    changes = [r for r in records if r["k"] == "chg"]
    by_handle = {r["h"]: r for r in receives}
    receives_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in receives:
        receives_of[r["id"]].append(r)
    changes_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in changes:
        if c["ok"]:
            changes_of[c["h"]].append(c)
    acked_deletes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in deletes:
        if d["ok"]:
            acked_deletes[d["id"]].append(d)
    v: list[str] = []

    def hold_end(r: dict[str, Any]) -> float:
        """Earliest moment receive ``r``'s hold may have ended (monotonic seconds)."""
        chg = changes_of.get(r["h"])
        if chg:
            last = max(chg, key=lambda c: c["t0"])
            return float(last["t0"] + last["vt"])
        return float(r["t0"] + r["vt"])

    def timely(d: dict[str, Any]) -> bool:
        """The call returned while its handle was certainly still valid."""
        return bool(d["t1"] < hold_end(by_handle[d["h"]]) - TOLERANCE_S)

    # Integrity: every receive is of an acknowledged send, with its body, in its queue family.
    for r in receives:
        s = sends.get(r["id"])
        if s is None:
            v.append(f"phantom: received {r['id']} ({r['body']}) that no acknowledged send made")
        elif r["body"] != s["body"] or r["q"] not in (s["q"], DLQ_OF[s["q"]]):
            v.append(
                f"integrity: {r['id']} sent as {s['body']} to {s['q']}, received as "
                f"{r['body']} from {r['q']}"
            )
        elif s["q"] == FIFO and r["g"] != s["g"]:
            v.append(f"integrity: {r['id']} sent to group {s['g']}, received in {r['g']}")

    # (a) no acknowledged send is lost.
    for message_id, s in sends.items():
        if not acked_deletes.get(message_id):
            v.append(
                f"(a) lost: {message_id} ({s['body']}, {s['q']}) was never deleted nor "
                "found by the drain"
            )

    # (b) one holder at a time.
    for message_id, rs in receives_of.items():
        rs.sort(key=lambda r: r["rc"])
        counts = [r["rc"] for r in rs]
        if counts != list(range(1, len(rs) + 1)):
            v.append(f"(b) {message_id}: receive counts {counts}, expected 1..{len(rs)} each once")
            continue
        for a, b in pairwise(rs):
            if b["t1"] < hold_end(a) - TOLERANCE_S:
                v.append(
                    f"(b) {message_id} ({a['body']}): receive #{b['rc']} by pid {b['pid']} "
                    f"returned at {b['t1']:.3f}, while receive #{a['rc']} by pid {a['pid']} held "
                    f"it until {hold_end(a):.3f} (vt {a['vt']} s from {a['t0']:.3f})"
                )
    for call in deletes + changes:
        if call["ok"] or not timely(call):
            continue
        if any(d["t0"] < call["t1"] for d in acked_deletes.get(call["id"], ())):
            continue  # deleted meanwhile through another handle (standard queues allow it)
        v.append(
            f"(b) {call['k']} of {call['id']} refused while its handle was valid: {call['err']}"
        )

    # (c) FIFO order per group.
    fifo_sends: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in sends.values():
        if s["q"] == FIFO:
            fifo_sends[s["g"]].append(s)
    source_receives = {mid: [r for r in rs if r["q"] == FIFO] for mid, rs in receives_of.items()}
    for g, members in fifo_sends.items():
        members.sort(key=lambda s: s["n"])
        firsts = [
            next((r for r in source_receives.get(s["id"], ()) if r["rc"] == 1), None)
            for s in members
        ]
        seqs = [f["seq"] for f in firsts if f is not None]
        if seqs != sorted(seqs):
            v.append(f"(c) group {g}: sequence numbers not in send order")
        for (si, fi), (sj, fj) in pairwise(zip(members, firsts, strict=True)):
            if fi is None or fj is None:
                continue  # reported by (a)
            same_call = fi["call"] == fj["call"]
            if (same_call and fi["pos"] > fj["pos"]) or (not same_call and fi["t0"] > fj["t1"]):
                v.append(f"(c) group {g}: {sj['body']} first delivered before {si['body']}")
        for prev, s in pairwise(members):
            for r in source_receives.get(s["id"], ()):
                # While prev is still in the queue, s may only come after it in the same batch.
                if any(
                    p["call"] == r["call"] and p["pos"] < r["pos"]
                    for p in source_receives.get(prev["id"], ())
                ):
                    continue
                later = [p for p in source_receives.get(prev["id"], ()) if p["t0"] > r["t1"]]
                # A delete made with a valid handle proves prev was still there; a late one may
                # have found it gone already ("already deleted" is a success too).
                later += [
                    d
                    for d in acked_deletes.get(prev["id"], ())
                    if d["q"] == FIFO and d["t0"] > r["t1"] and timely(d)
                ]
                if later:
                    v.append(
                        f"(c) group {g}: {s['body']} delivered (receive #{r['rc']}, pid "
                        f"{r['pid']}) while {prev['body']} was still in the queue"
                    )

    # (d) DLQ accounting.
    for r in receives:
        if r["q"] in DLQ_OF and r["rc"] > MAX_RECEIVES:
            v.append(f"(d) {r['id']} received {r['rc']} times from {r['q']} (limit {MAX_RECEIVES})")
        if r["q"] in SOURCE_OF:
            source = SOURCE_OF[r["q"]]
            in_source = [x for x in receives_of[r["id"]] if x["q"] == source]
            if len(in_source) != MAX_RECEIVES or r["rc"] != MAX_RECEIVES + 1:
                v.append(
                    f"(d) {r['id']} in {r['q']} after {len(in_source)} source receives "
                    f"(receive count {r['rc']})"
                )
            if r["src"] != arns[source]:
                v.append(f"(d) {r['id']} in {r['q']} names source {r['src']}")
            if any(x.get("drain") for x in in_source):
                v.append(f"(d) {r['id']} found both in {r['q']} and in {source}")

    # (e) nothing comes back after an acknowledged (timely) delete.
    for message_id, ds in acked_deletes.items():
        sure = [d for d in ds if timely(d)]
        if not sure:
            continue
        first = min(d["t1"] for d in sure)
        for r in receives_of.get(message_id, ()):
            if r["t0"] > first:
                where = "the drain" if r.get("drain") else f"pid {r['pid']}"
                v.append(
                    f"(e) {message_id} ({r['body']}) deleted at {first:.3f}, received "
                    f"again by {where} from {r['q']} at {r['t0']:.3f}"
                )

    activity = Counter(
        sends=len(sends),
        receives=sum(not r.get("drain") for r in receives),
        redeliveries=sum(r["rc"] > 1 for r in receives if not r.get("drain")),
        deletes=sum(d["ok"] for d in deletes),
        refused=sum(not c["ok"] for c in deletes + changes),
        changes=len(changes),
        drained=sum(bool(r.get("drain")) for r in receives),
        dead_std=sum(r["q"] == STD_DLQ for r in receives),
        dead_fifo=sum(r["q"] == FIFO_DLQ for r in receives),
    )
    return v, activity


def _stress(tmp_path: Path, impl: str, seconds: float) -> None:
    data_dir, log_dir = str(tmp_path / "data"), tmp_path / "logs"
    log_dir.mkdir()
    arns = _create_queues(data_dir, impl)
    _run_children(data_dir, impl, log_dir, seconds)
    drained, problems = _drain(data_dir, impl)
    violations, activity = check(_read_logs(log_dir) + drained, arns)
    print(f"stress {impl} {seconds:g}s: {dict(activity)}")
    violations = problems + violations
    assert not violations, f"{len(violations)} violations:\n" + "\n".join(violations[:30])
    # The run must have exercised what it checks.
    for what in ("sends", "redeliveries", "changes", "dead_std", "dead_fifo"):
        assert activity[what] > 0, f"the run produced no {what}: {dict(activity)}"


def _has_c() -> bool:
    try:
        core_module.load("c")
    except ImportError:
        return False
    return True


def test_stress(tmp_path: Path) -> None:
    """~5 s, 4 processes, C core (the py core when the extension is not built)."""
    _stress(tmp_path, "c" if _has_c() else "py", SHORT_SECONDS)


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["c", "py"])
def test_stress_long(tmp_path: Path, impl: str, request: pytest.FixtureRequest) -> None:
    """MILLPOND_STRESS_SECONDS (default 60) per core; runs only when selected with -m slow."""
    if "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("long stress run: select it with -m slow")
    if impl == "c" and not _has_c():
        pytest.skip("C extension not built")
    _stress(tmp_path, impl, LONG_SECONDS)


# -- the checker catches what it should (no processes: hand-made logs) ---------------------------

_ARNS = {name: f"arn:aws:sqs:us-east-1:123456789012:{name}" for name in DLQ_OF | SOURCE_OF}


def _send(mid: str, q: str = STD, g: str | None = None, n: int = 0) -> dict[str, Any]:
    return {"k": "send", "q": q, "id": mid, "body": f"M:{mid}", "g": g, "n": n}


def _recv(
    mid: str,
    rc: int,
    t: float,
    q: str = STD,
    vt: int = HOLD_VT,
    call: str | None = None,
    pos: int = 0,
    g: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "k": "recv",
        "q": q,
        "pid": 1,
        "call": call or f"c{mid}{rc}",
        "pos": pos,
        "id": mid,
        "body": f"M:{mid}",
        "g": g,
        "seq": f"{rc:020d}",
        "rc": rc,
        "vt": vt,
        "h": f"h{mid}{rc}",
        "t0": t,
        "t1": t + 0.01,
        "src": None,
        **extra,
    }


def _delete(mid: str, rc: int, t: float, q: str = STD) -> dict[str, Any]:
    return {"k": "del", "q": q, "h": f"h{mid}{rc}", "id": mid, "ok": True, "t0": t, "t1": t + 0.01}


def _release(mid: str, rc: int, t: float) -> dict[str, Any]:
    return {
        "k": "chg",
        "q": STD,
        "h": f"h{mid}{rc}",
        "id": mid,
        "ok": True,
        "t0": t,
        "t1": t + 0.01,
        "vt": 0,
    }


def _clean_log() -> list[dict[str, Any]]:
    """A standard message released once then deleted, and two FIFO messages in order."""
    return [
        _send("a"),
        _recv("a", 1, 0.0),
        _release("a", 1, 0.1),
        _recv("a", 2, 0.2),
        _delete("a", 2, 0.3),
        _send("f0", FIFO, "g", 0),
        _send("f1", FIFO, "g", 1),
        _recv("f0", 1, 1.0, FIFO, call="x", pos=0, g="g"),
        _recv("f1", 1, 1.0, FIFO, call="x", pos=1, g="g"),
        _delete("f0", 1, 1.1, FIFO),
        _delete("f1", 1, 1.1, FIFO),
    ]


@pytest.mark.parametrize(
    "mutate, letter",
    [
        (lambda log: [r for r in log if r["k"] != "del" or r["id"] != "a"], "(a)"),
        (lambda log: [r for r in log if r["k"] != "chg"], "(b)"),  # re-received while held
        (lambda log: log + [_recv("a", 2, 5.0)], "(b)"),  # the same delivery twice
        (
            lambda log: [r | {"pos": 1 - r["pos"]} if r.get("call") == "x" else r for r in log],
            "(c)",
        ),
        (
            lambda log: (
                [r for r in log if r.get("id") != "f0" or r["k"] == "send"]
                + [_recv("f0", 1, 2.0, FIFO, g="g"), _delete("f0", 1, 2.1, FIFO)]
            ),
            "(c)",
        ),
        (
            lambda log: (
                log
                + [
                    _recv("b", 1, 0.0, STD_DLQ, src=_ARNS[STD]),
                    _send("b"),
                    _recv("b", 1, 0.0),
                    _delete("b", 1, 0.1, STD_DLQ),
                ]
            ),
            "(d)",
        ),
        (lambda log: log + [_recv("a", 3, 9.0)], "(e)"),
        (lambda log: log + [_recv("zz", 1, 0.0)], "phantom"),
    ],
)
def test_checker_flags_each_kind_of_violation(mutate: Any, letter: str) -> None:
    assert check(_clean_log(), _ARNS)[0] == []
    violations = check(mutate(_clean_log()), _ARNS)[0]
    assert any(letter in text for text in violations), violations
