"""Model-based test: random sequences of queue operations against an in-memory model of SQS.

A hypothesis ``RuleBasedStateMachine`` drives one broker (three queues) and a small model of the
SQS semantics millpond promises, and compares them after every step:

- ``std``: a standard queue whose RedrivePolicy sends a message to ``dlq`` on the receive that
  would make its receive count pass 2 (maxReceiveCount 2);
- ``dlq``: a standard queue, the dead-letter queue (also sent to directly);
- ``jobs.fifo``: a FIFO queue (queue-scoped de-duplication, DelaySeconds 3).

Rules: sends and batch sends (with delays; FIFO with a few group ids and de-duplication ids,
repeated to hit the 5-minute window), receives (1-10 messages, visibility 0-60 s or the
queue's), deletes and batch deletes and visibility changes with any handle seen so far (stale,
expired and deleted ones included), handles used on the wrong queue, clock advances (0-400 s) and
restarts (close, then reopen the same directory with the same ManualClock).

Invariants after every step: the Approximate* counts of each queue equal the model's split of
its live messages (visible / in flight / delayed), and the stored log holds exactly the live
messages, each in the one queue the model has it in (never lost, never in two queues).

Runs on both cores. ``MILLPOND_MODEL_EXAMPLES`` (examples per core) and ``MILLPOND_MODEL_STEPS``
(steps per example) make it run longer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
)

import millpond
from millpond import core, errors

START_MS = 1_700_000_000_000
MAX_RECEIVE_COUNT = 2
DEDUP_WINDOW_MS = 300_000
MAX_HIDDEN_MS = 43_200_000
FIFO_DELAY_MS = 3_000
DEFAULT_VISIBILITY_MS = 30_000

STD, DLQ, FIFO = "std", "dlq", "jobs.fifo"
QUEUES = (STD, DLQ, FIFO)
STANDARD_QUEUES = (STD, DLQ)

EXAMPLES = int(os.environ.get("MILLPOND_MODEL_EXAMPLES", "100"))
STEPS = int(os.environ.get("MILLPOND_MODEL_STEPS", "50"))

SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _has_c_core() -> bool:
    try:
        core.load("c")
    except ImportError:
        if os.environ.get("MILLPOND_REQUIRE_C"):
            raise
        return False
    return True


HAS_C = _has_c_core()

# -- the model -----------------------------------------------------------------------------------


@dataclass
class Msg:
    """What the model knows of one message (acknowledged by a send, not a duplicate)."""

    mid: str
    body: str
    queue: str
    seq: int  # per-queue arrival order: ties of visible_at go by it
    visible_at: int
    count: int = 0
    last_receive: int = 0
    group: str | None = None
    source: str | None = None  # the queue it was dead-lettered from
    deleted: bool = False


@dataclass(frozen=True)
class Handle:
    """A receipt handle a receive returned, with what the model needs to judge its use."""

    queue: str
    receipt: str
    mid: str
    count: int  # the receive count of that delivery

    def __repr__(self) -> str:  # short, for hypothesis's printed steps
        return f"Handle({self.queue!r}, {self.mid[-4:]!r}, count={self.count})"


GROUPS = st.sampled_from(["A", "B", "C"])
DEDUP_IDS = st.one_of(st.none(), st.sampled_from(["d0", "d1", "d2", "d3"]))  # None: a fresh id
DELAYS = st.one_of(st.none(), st.sampled_from([0, 1, 5, 30, 120]))
VISIBILITY = st.one_of(st.none(), st.just(0), st.integers(0, 60))  # 0: visible again at once


class QueueModel(RuleBasedStateMachine):
    """Subclasses set CORE ("c" or "py")."""

    CORE = "py"
    handles = Bundle("handles")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="millpond-model-")
        self.clock = millpond.ManualClock(now_ms=START_MS)
        self.broker: millpond.Broker | None = None
        self._open()
        dlq = self.broker.create_queue(DLQ)  # type: ignore[union-attr]
        policy = f'{{"deadLetterTargetArn": "{dlq.arn}", "maxReceiveCount": {MAX_RECEIVE_COUNT}}}'
        self.broker.create_queue(STD, {"RedrivePolicy": policy})  # type: ignore[union-attr]
        self.broker.create_queue(  # type: ignore[union-attr]
            FIFO, {"FifoQueue": "true", "DelaySeconds": str(FIFO_DELAY_MS // 1000)}
        )
        self.msgs: dict[str, Msg] = {}
        self.next_seq = dict.fromkeys(QUEUES, 1)
        self.dedup: dict[str, tuple[int, str]] = {}  # dedup id -> (expires_ms, message id)
        self.counter = 0

    def _open(self) -> None:
        self.broker = millpond.open(self.dir, durability="os", clock=self.clock, core=self.CORE)
        assert self.broker.implementation == self.CORE

    def teardown(self) -> None:
        try:
            if self.broker is not None:
                self.broker.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self.clock.now_ms()

    def q(self, name: str) -> millpond.Queue:
        assert self.broker is not None
        return self.broker.queue(name)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def live(self, queue: str) -> list[Msg]:
        """Live messages of a queue in millpond's delivery order: (visible_at, seq)."""
        found = [m for m in self.msgs.values() if m.queue == queue and not m.deleted]
        return sorted(found, key=lambda m: (m.visible_at, m.seq))

    def add(self, mid: str, body: str, queue: str, visible_at: int, group: str | None) -> None:
        assert mid not in self.msgs, f"message id {mid} given twice"
        seq = self.next_seq[queue]
        self.next_seq[queue] += 1
        self.msgs[mid] = Msg(mid, body, queue, seq, visible_at, group=group)

    def fifo_duplicate_of(self, dedup: str) -> str | None:
        """The original's id if a FIFO send with ``dedup`` is a duplicate (queue scope, 5 min)."""
        seen = self.dedup.get(dedup)
        if seen is not None and seen[0] > self.now:
            return seen[1]
        return None

    # -- sends -----------------------------------------------------------------------------------

    @rule(queue=st.sampled_from(STANDARD_QUEUES), delay=DELAYS)
    def send_standard(self, queue: str, delay: int | None) -> None:
        body = self.fresh("s")
        mid = self.q(queue).send(body, delay_seconds=delay)
        self.add(mid, body, queue, self.now + (delay or 0) * 1000, None)

    @rule(queue=st.sampled_from(STANDARD_QUEUES), delays=st.lists(DELAYS, min_size=1, max_size=10))
    def send_batch_standard(self, queue: str, delays: list[int | None]) -> None:
        entries = [{"body": self.fresh("s"), "delay_seconds": d} for d in delays]
        mids = self.q(queue).send_batch(entries)
        assert len(mids) == len(entries)
        for mid, entry, delay in zip(mids, entries, delays):
            self.add(mid, entry["body"], queue, self.now + (delay or 0) * 1000, None)

    def _fifo_entry(self, group: str, dedup: str | None) -> dict[str, str]:
        return {
            "body": self.fresh("f"),
            "group_id": group,
            "deduplication_id": dedup if dedup is not None else self.fresh("u"),
        }

    def _record_fifo(self, mid: str, entry: dict[str, str]) -> None:
        original = self.fifo_duplicate_of(entry["deduplication_id"])
        if original is not None:
            event("fifo: duplicate send")
            assert mid == original, "a duplicate within 5 minutes must return the original id"
            return
        self.add(mid, entry["body"], FIFO, self.now + FIFO_DELAY_MS, entry["group_id"])
        self.dedup[entry["deduplication_id"]] = (self.now + DEDUP_WINDOW_MS, mid)

    @rule(group=GROUPS, dedup=DEDUP_IDS)
    def send_fifo(self, group: str, dedup: str | None) -> None:
        entry = self._fifo_entry(group, dedup)
        mid = self.q(FIFO).send(
            entry["body"], group_id=entry["group_id"], deduplication_id=entry["deduplication_id"]
        )
        self._record_fifo(mid, entry)

    @rule(entries=st.lists(st.tuples(GROUPS, DEDUP_IDS), min_size=1, max_size=10))
    def send_batch_fifo(self, entries: list[tuple[str, str | None]]) -> None:
        batch = [self._fifo_entry(group, dedup) for group, dedup in entries]
        mids = self.q(FIFO).send_batch(batch)
        assert len(mids) == len(batch)
        for mid, entry in zip(mids, batch):  # in order: a later entry may repeat an earlier one
            self._record_fifo(mid, entry)

    # -- receive ---------------------------------------------------------------------------------

    def expect_standard_receive(self, queue: str, max_messages: int) -> tuple[list[Msg], list[Msg]]:
        """(delivered, dead-lettered) of a receive, in millpond's order."""
        hits: list[Msg] = []
        over: list[Msg] = []
        for m in self.live(queue):
            if m.visible_at > self.now:
                break
            if queue == STD and m.count >= MAX_RECEIVE_COUNT:
                over.append(m)  # this receive would pass maxReceiveCount: to the DLQ
                continue
            hits.append(m)
            if len(hits) >= max_messages:
                break
        return hits, over

    def expect_fifo_receive(self, max_messages: int) -> list[Msg]:
        """Groups in order of their head's (visible_at, seq); members from the head on while
        visible (nothing after an in-flight or delayed member), as many of a group as fit."""
        groups: dict[str, list[Msg]] = {}
        for m in sorted(self.live(FIFO), key=lambda m: m.seq):
            groups.setdefault(m.group or "", []).append(m)
        ready = [g for g in groups.values() if g[0].visible_at <= self.now]
        ready.sort(key=lambda g: (g[0].visible_at, g[0].seq))
        out: list[Msg] = []
        for members in ready:
            for m in members:
                if len(out) >= max_messages or m.visible_at > self.now:
                    break
                out.append(m)
        return out

    # One rule per queue, so that receives are a good share of the steps.
    @rule(target=handles, max_messages=st.integers(1, 10), visibility=VISIBILITY)
    def receive_standard(self, max_messages: int, visibility: int | None) -> object:
        return self._receive(STD, max_messages, visibility)

    @rule(target=handles, max_messages=st.integers(1, 10), visibility=VISIBILITY)
    def receive_dead_letters(self, max_messages: int, visibility: int | None) -> object:
        return self._receive(DLQ, max_messages, visibility)

    @rule(target=handles, max_messages=st.integers(1, 10), visibility=VISIBILITY)
    def receive_fifo(self, max_messages: int, visibility: int | None) -> object:
        return self._receive(FIFO, max_messages, visibility)

    def _receive(self, queue: str, max_messages: int, visibility: int | None) -> object:
        if queue == FIFO:
            hits, over = self.expect_fifo_receive(max_messages), []
        else:
            hits, over = self.expect_standard_receive(queue, max_messages)
        receivable = {m.mid for m in self.live(queue) if m.visible_at <= self.now}
        got = self.q(queue).receive(max_messages, visibility_timeout=visibility, wait_seconds=0)
        got_ids = [m.message_id for m in got]
        assert set(got_ids) <= receivable, "delivered a message that is not receivable"
        assert len(got_ids) == len(set(got_ids)), "one message delivered twice in a receive"
        assert len(got_ids) == len(hits), (got_ids, [m.mid for m in hits])
        assert got_ids == [m.mid for m in hits], "not millpond's delivery order"
        if queue == FIFO:
            self._check_fifo_order(got_ids)

        visibility_ms = DEFAULT_VISIBILITY_MS if visibility is None else visibility * 1000
        arn = self.q(STD).arn
        out = []
        for message, m in zip(got, hits):
            m.count += 1
            m.visible_at = self.now + visibility_ms
            m.last_receive = self.now
            assert message.body == m.body.encode()
            assert message.receive_count == m.count
            assert message.group_id == m.group
            assert message.dead_letter_source_arn == (arn if m.source else None)
            out.append(Handle(queue, message.receipt_handle, m.mid, m.count))
        if over:
            event("std: dead-lettered on receive")
        if queue == DLQ and any(m.source for m in hits):
            event("dlq: received a dead-lettered message")
        for m in over:  # moved to the DLQ at the end of it, visible at once, count kept
            m.queue, m.source, m.visible_at = DLQ, STD, self.now
            m.seq = self.next_seq[DLQ]
            self.next_seq[DLQ] += 1
        return multiple(*out)

    def _check_fifo_order(self, got_ids: list[str]) -> None:
        """SQS FIFO: within a group, in send order and nothing past an in-flight message."""
        by_group: dict[str, list[Msg]] = {}
        for mid in got_ids:
            m = self.msgs[mid]
            by_group.setdefault(m.group or "", []).append(m)
        for group, delivered in by_group.items():
            members = sorted(
                (m for m in self.live(FIFO) if m.group == group), key=lambda m: m.seq
            )
            # The delivered ones are a run of the group's members starting at its oldest.
            assert [m.mid for m in members[: len(delivered)]] == [m.mid for m in delivered]

    # -- delete ----------------------------------------------------------------------------------

    def _judge_delete(self, h: Handle, pending: set[str]) -> str:
        """"delete", "noop" or "expired" for one handle (``pending``: deleted earlier in the
        same batch)."""
        m = self.msgs[h.mid]
        if m.deleted or h.mid in pending or m.queue != h.queue:
            return "noop"  # gone (or dead-lettered away): deleting again succeeds
        if h.queue == FIFO and (m.count != h.count or m.visible_at <= self.now):
            return "expired"
        return "delete"  # standard queues: a stale handle deletes too

    @rule(h=handles)
    def delete(self, h: Handle) -> None:
        verdict = self._judge_delete(h, set())
        m = self.msgs[h.mid]
        stale = m.count != h.count or m.visible_at <= self.now
        event(f"delete: {h.queue} {verdict}{' (stale handle)' if stale and verdict != 'expired' else ''}")
        if verdict == "expired":
            with pytest.raises(errors.InvalidParameterValue, match="receipt handle has expired"):
                self.q(h.queue).delete(h.receipt)
            return
        self.q(h.queue).delete(h.receipt)
        if verdict == "delete":
            self.msgs[h.mid].deleted = True

    @rule(first=handles, more=st.lists(handles, max_size=4))
    def delete_batch(self, first: Handle, more: list[Handle]) -> None:
        queue = first.queue
        hs = [first] + [h for h in more if h.queue == queue]
        pending: set[str] = set()
        expired = False
        for h in hs:
            verdict = self._judge_delete(h, pending)
            if verdict == "delete":
                pending.add(h.mid)
            expired = expired or verdict == "expired"
        event(f"delete_batch: {queue} {'expired' if expired else 'ok'}")
        if expired:  # FIFO: one expired handle refuses the whole batch
            with pytest.raises(errors.InvalidParameterValue, match="receipt handle has expired"):
                self.q(queue).delete_batch([h.receipt for h in hs])
            return
        self.q(queue).delete_batch([h.receipt for h in hs])
        for mid in pending:
            self.msgs[mid].deleted = True

    @rule(h=handles, other=st.sampled_from(QUEUES))
    def handle_of_another_queue(self, h: Handle, other: str) -> None:
        if other == h.queue:
            return
        with pytest.raises(errors.ReceiptHandleIsInvalid):
            self.q(other).delete(h.receipt)
        with pytest.raises(errors.ReceiptHandleIsInvalid):
            self.q(other).change_visibility(h.receipt, 10)

    # -- change visibility -----------------------------------------------------------------------

    @rule(h=handles, timeout=st.integers(0, 120))
    def change_visibility(self, h: Handle, timeout: int) -> None:
        m = self.msgs[h.mid]
        queue = self.q(h.queue)
        if m.deleted or m.queue != h.queue or m.count != h.count:
            # Gone, dead-lettered away, or a newer receive holds it: the handle is stale.
            event(f"change_visibility: {h.queue} stale or gone")
            with pytest.raises(errors.InvalidParameterValue, match="ReceiptHandle is invalid"):
                queue.change_visibility(h.receipt, timeout)
        elif m.visible_at <= self.now:
            event(f"change_visibility: {h.queue} not in flight")
            with pytest.raises(errors.MessageNotInflight):
                queue.change_visibility(h.receipt, timeout)
        elif self.now + timeout * 1000 - m.last_receive > MAX_HIDDEN_MS:
            with pytest.raises(errors.InvalidParameterValue, match="beyond the limit"):
                queue.change_visibility(h.receipt, timeout)
        else:
            event(f"change_visibility: {h.queue} ok")
            queue.change_visibility(h.receipt, timeout)
            m.visible_at = self.now + timeout * 1000

    # -- time and restarts -----------------------------------------------------------------------

    # Small steps too: past FIFO delays while handles are still valid; large ones: past the
    # visibility timeouts and the 5-minute de-duplication window.
    @rule(seconds=st.one_of(st.integers(0, 10), st.integers(0, 400)))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def restart(self) -> None:
        assert self.broker is not None
        self.broker.close()
        self.broker = None
        self._open()

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def counts_match(self) -> None:
        for name in QUEUES:
            attrs = self.q(name).get_attributes()
            got = (
                int(attrs["ApproximateNumberOfMessages"]),
                int(attrs["ApproximateNumberOfMessagesNotVisible"]),
                int(attrs["ApproximateNumberOfMessagesDelayed"]),
            )
            live = self.live(name)
            visible = sum(m.visible_at <= self.now for m in live)
            in_flight = sum(m.visible_at > self.now and m.count > 0 for m in live)
            delayed = sum(m.visible_at > self.now and m.count == 0 for m in live)
            assert got == (visible, in_flight, delayed), (name, got, (visible, in_flight, delayed))

    @invariant()
    def every_live_message_is_stored_in_exactly_one_queue(self) -> None:
        stored = self._stored_message_ids()
        for name in QUEUES:
            expected = sorted(m.mid for m in self.live(name))
            assert sorted(stored.get(name, [])) == expected, name
        unknown = set(stored) - set(QUEUES)
        assert not unknown, f"records in unknown queues {unknown}"

    def _stored_message_ids(self) -> dict[str, list[str]]:
        """Message ids in the ``log`` table by queue name (its layout: queue id u32 | seq u64
        -> record; see README "Storage"). Read-only."""
        broker = self.broker
        assert broker is not None
        names = {self.q(name).queue_id: name for name in QUEUES}
        decode = broker._core.decode_record
        tables = broker._storage.tables

        def scan(txn: object) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            with txn.cursor(db=tables.log) as cur:  # type: ignore[attr-defined]
                for key, value in cur:
                    queue_id = int.from_bytes(key[:4], "big")
                    decoded = decode(value)
                    assert decoded is not None, f"corrupt record {key!r}"
                    out.setdefault(names.get(queue_id, str(queue_id)), []).append(decoded[1])
            return out

        return broker._storage.read(scan)  # type: ignore[no-any-return]


class _ModelC(QueueModel):
    CORE = "c"


class _ModelPy(QueueModel):
    CORE = "py"


TestModelC = unittest.skipUnless(HAS_C, "the C core is not built")(_ModelC.TestCase)
TestModelC.settings = SETTINGS
TestModelPy = _ModelPy.TestCase
TestModelPy.settings = SETTINGS
