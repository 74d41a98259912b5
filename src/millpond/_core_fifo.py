"""FIFO queues in storage: message groups in order, group heads, de-duplication.

Pure Python on both cores: the per-message byte work (records, ids, CRC) comes from the core
module passed in, so FIFO queues store the same records as standard ones. The group bookkeeping
is a handful of B-tree operations per message; move it to Cython when a benchmark says so.

Layouts (integers big-endian; ``g`` = u8 length | group id bytes):

- ``log``      queue_id u32 | seq u64                  -> record (as standard queues)
- ``fifo``     queue_id u32 | g | seq u64              -> member state (see _STATE)
- ``vis``      queue_id u32 | ready_at_ms u64 | seq u64 -> g: one entry per non-empty group,
               keyed by its head (oldest member): ready_at is the head's visible_at
- ``dedup``    queue_id u32 | scope key                -> expires_ms u64 | seq u64
- ``dedupexp`` queue_id u32 | expires_ms u64 | scope key -> b"" (expiry order, for sweeping)
- ``counters``   as standard queues, read and written as (next_seq, count) through
               _load_qstate/_store_qstate

Order and locking follow from the head: a group is receivable when its head is visible, and a
receive takes members from the head onwards while they are visible, so no message is delivered
while an earlier one of its group is in flight, and messages before an in-flight one may be
(SQS's partial-batch rule). Invariant: for every non-empty group, ``vis`` holds the key
(queue_id, head.visible_at, head.seq).

A member that passes its retention period while in flight is gone (SQS deletes it), so it must
not hold its group until its visibility timeout ends: a receive that hides a member past its
expiry also puts an *alarm*, a second ``vis`` entry (queue_id, expires_ms, seq) -> g, which
brings the group up for a receive then. Whatever reads a group's head from ``vis`` treats an
alarm as the head key: draining the group removes the alarm and puts the real head key back.
An alarm left behind by a member deleted meanwhile costs one look at its group, once.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgpack

from millpond._core_py import (
    _LOG_KEY,
    _U32,
    _U64,
    _VIS_KEY,
    _delete_prefix,
    _load_qstate,
    _store_qstate,
)

# The statuses, re-exported for fifo callers:
from millpond._core_py import GONE as GONE
from millpond._core_py import NOT_IN_FLIGHT as NOT_IN_FLIGHT
from millpond._core_py import OK as OK
from millpond._core_py import STALE as STALE
from millpond._core_py import TOO_LONG as TOO_LONG
from millpond.message import pack_metadata, unpack_metadata

if TYPE_CHECKING:
    from millpond.core import Core

# The shared layouts and statuses are the executable spec's (_core_py); only FIFO's own here.
# visible_at_ms | sent_ms | first_receive_ms | last_receive_ms | receive_count | source queue id
_STATE = struct.Struct(">QQQQII")
_DEDUP = struct.Struct(">QQ")

HEAD_SCAN = 16  # group heads read per cursor pass in receive


def group_key(group_id: str) -> bytes:
    raw = group_id.encode("utf-8")
    return bytes((len(raw),)) + raw


def _member_key(queue_id: int, g: bytes, seq: int) -> bytes:
    return _U32.pack(queue_id) + g + _U64.pack(seq)


def _first_member(txn: Any, t: Any, queue_id: int, g: bytes) -> tuple[bytes, bytes] | None:
    prefix = _U32.pack(queue_id) + g
    with txn.cursor(db=t.fifo) as cur:
        if cur.set_range(prefix):
            key = cur.key()
            if key[: len(prefix)] == prefix and len(key) == len(prefix) + 8:
                return key, cur.value()
    return None


def _reset_head(txn: Any, t: Any, queue_id: int, g: bytes, old_key: bytes | None) -> None:
    """Re-key the group's vis entry to its current head (or remove it when empty)."""
    first = _first_member(txn, t, queue_id, g)
    new_key = None
    if first is not None:
        seq = _U64.unpack_from(first[0], len(first[0]) - 8)[0]
        new_key = _VIS_KEY.pack(queue_id, _STATE.unpack(first[1])[0], seq)
    if new_key == old_key:
        return
    if old_key is not None:
        txn.delete(old_key, db=t.vis)
    if new_key is not None:
        txn.put(new_key, g, db=t.vis)


def _alarm(
    txn: Any,
    t: Any,
    queue_id: int,
    g: bytes,
    seq: int,
    sent_ms: int,
    visible_at: int,
    retention_ms: int,
) -> None:
    """Bring group ``g`` up when member ``seq``, hidden until ``visible_at``, expires before
    then (see the module docstring); ``retention_ms`` 0: the queue's retention is not known."""
    expires_ms = sent_ms + retention_ms
    if retention_ms and expires_ms < visible_at:
        txn.put(_VIS_KEY.pack(queue_id, expires_ms, seq), g, db=t.vis)


def _head_key(txn: Any, t: Any, queue_id: int, g: bytes) -> bytes | None:
    first = _first_member(txn, t, queue_id, g)
    if first is None:
        return None
    seq = _U64.unpack_from(first[0], len(first[0]) - 8)[0]
    return _VIS_KEY.pack(queue_id, _STATE.unpack(first[1])[0], seq)


# -- send --------------------------------------------------------------------------------------


def _sweep_dedup(txn: Any, t: Any, queue_id: int, now_ms: int) -> None:
    """Forget de-duplication ids whose 5-minute window has passed."""
    prefix = _U32.pack(queue_id)
    with txn.cursor(db=t.dedupexp) as cur:
        if not cur.set_range(prefix):
            return
        while True:
            key = cur.key()
            if key[:4] != prefix or _U64.unpack_from(key, 4)[0] > now_ms:
                return
            txn.delete(prefix + key[12:], db=t.dedup)
            if not cur.delete():
                return


def send(
    core: Core,
    txn: Any,
    t: Any,
    queue_id: int,
    now_ms: int,
    entries: list[Any],
    env_id: int,
    dedup_window_ms: int,
) -> list[tuple[int, bool]]:
    """Append messages to their groups; returns (seq, duplicate) per entry.

    entries: (body, attrs_blob, group_key, dedup_key or None, delay_ms). A duplicate (its
    dedup key seen within the window) stores nothing and returns the original's seq.
    """
    next_seq, count = _load_qstate(txn, t, queue_id)
    _sweep_dedup(txn, t, queue_id, now_ms)
    prefix = _U32.pack(queue_id)
    results: list[tuple[int, bool]] = []
    known_nonempty: set[bytes] = set()
    for body, blob, g, dedup_key, delay_ms in entries:
        seq = next_seq
        if dedup_key is not None:
            seen = txn.get(prefix + dedup_key, db=t.dedup)
            if seen is not None:
                expires, original = _DEDUP.unpack(seen)
                if expires > now_ms:
                    results.append((original, True))
                    continue
                txn.delete(prefix + _U64.pack(expires) + dedup_key, db=t.dedupexp)
            expires = now_ms + dedup_window_ms
            txn.put(prefix + dedup_key, _DEDUP.pack(expires, seq), db=t.dedup)
            txn.put(prefix + _U64.pack(expires) + dedup_key, b"", db=t.dedupexp)
        next_seq += 1
        count += 1
        txn.put(
            _LOG_KEY.pack(queue_id, seq),
            core.encode_record(now_ms, env_id, queue_id, seq, blob, body),
            db=t.log,
        )
        visible_at = now_ms + delay_ms
        txn.put(
            _member_key(queue_id, g, seq), _STATE.pack(visible_at, now_ms, 0, 0, 0, 0), db=t.fifo
        )
        if g not in known_nonempty:
            first = _first_member(txn, t, queue_id, g)
            if first is not None and _U64.unpack_from(first[0], len(first[0]) - 8)[0] == seq:
                txn.put(_VIS_KEY.pack(queue_id, visible_at, seq), g, db=t.vis)
            known_nonempty.add(g)
        results.append((seq, False))
    _store_qstate(txn, t, queue_id, next_seq, count)
    return results


# -- receive -----------------------------------------------------------------------------------


def receive(
    core: Core,
    txn: Any,
    t: Any,
    queue_id: int,
    now_ms: int,
    max_messages: int,
    visibility_ms: int,
    retention_cutoff_ms: int,
    max_receive_count: int,
    dead_letter_queue_id: int,
) -> tuple[list[Any], int, list[int], int, int]:
    """Deliver up to ``max_messages`` in group order, as many of one group as possible first.

    Returns (received, dead_lettered, corrupt, expired, next_visible_at_ms); received entries are
    (seq, visible_at_ms, count, sent_ms, first_ms, attrs, body, message_id, source_queue_id, g).
    Members received ``max_receive_count`` times move to ``dead_letter_queue_id`` (a FIFO queue,
    same group) when that is non-zero. Raises LookupError if the queue does not exist (as the
    standard receive: a long poll on a deleted queue ends instead of finding it empty).
    """
    if not core.exists(txn, t, queue_id):
        raise LookupError(queue_id)
    received: list[Any] = []
    corrupt: list[int] = []
    counters = {"expired": 0, "dead": 0}
    done: set[bytes] = set()
    next_visible = 0
    start = _VIS_KEY.pack(queue_id, 0, 0)
    while len(received) < max_messages:
        heads = []
        with txn.cursor(db=t.vis) as cur:
            if cur.set_range(start):
                for key, g in cur:
                    qid, ready_at, _ = _VIS_KEY.unpack(key)
                    if qid != queue_id:
                        break
                    if ready_at > now_ms:
                        next_visible = ready_at
                        break
                    if g not in done:
                        heads.append((key, g))
                        if len(heads) >= HEAD_SCAN:
                            break
        if not heads:
            break
        for key, g in heads:
            done.add(g)
            _drain_group(
                core,
                txn,
                t,
                queue_id,
                g,
                key,
                now_ms,
                max_messages,
                visibility_ms,
                retention_cutoff_ms,
                max_receive_count,
                dead_letter_queue_id,
                received,
                corrupt,
                counters,
            )
            if len(received) >= max_messages:
                break
        start = heads[-1][0] + b"\x00"  # the next key after the last head read
    if received:
        next_visible = 0
    return received, counters["dead"], corrupt, counters["expired"], next_visible


def _drain_group(
    core: Core,
    txn: Any,
    t: Any,
    queue_id: int,
    g: bytes,
    head_key: bytes,
    now_ms: int,
    max_messages: int,
    visibility_ms: int,
    retention_cutoff_ms: int,
    max_receive_count: int,
    dead_letter_queue_id: int,
    received: list[Any],
    corrupt: list[int],
    counters: dict[str, int],
) -> None:
    prefix = _U32.pack(queue_id) + g
    members = []  # read first, write after: the cursor never sees its own changes
    wanted = max_messages - len(received)
    with txn.cursor(db=t.fifo) as cur:
        if cur.set_range(prefix):
            for key, value in cur:
                if key[: len(prefix)] != prefix or len(key) != len(prefix) + 8:
                    break
                state = _STATE.unpack(value)
                if state[0] > now_ms and state[1] >= retention_cutoff_ms:
                    break  # in flight or delayed: nothing after it may go out
                members.append((key, state))  # visible, or past retention: gone either way
                deliverable = state[1] >= retention_cutoff_ms and not (
                    dead_letter_queue_id and state[4] >= max_receive_count
                )
                if deliverable:
                    wanted -= 1
                    if wanted == 0:
                        break
    new_visible_at = now_ms + visibility_ms
    stored_delta = 0
    for key, (_, sent_ms, first_ms, last_ms, count, source) in members:
        seq = _U64.unpack_from(key, len(key) - 8)[0]
        lkey = _LOG_KEY.pack(queue_id, seq)
        if sent_ms < retention_cutoff_ms:
            txn.delete(key, db=t.fifo)
            if txn.delete(lkey, db=t.log):
                stored_delta -= 1
                counters["expired"] += 1
            continue
        record = txn.get(lkey, db=t.log)
        if record is None:  # trimmed by expire(): gone
            txn.delete(key, db=t.fifo)
            continue
        if dead_letter_queue_id and count >= max_receive_count:
            txn.delete(key, db=t.fifo)
            txn.delete(lkey, db=t.log)
            stored_delta -= 1
            state = (now_ms, now_ms, first_ms, last_ms, count, queue_id)
            _append(core, txn, t, dead_letter_queue_id, now_ms, record, g, state, True)
            counters["dead"] += 1
            continue
        decoded = core.decode_record(record)
        if decoded is None:
            corrupt.append(seq)
            txn.delete(key, db=t.fifo)  # never served; the record stays for inspection
            continue
        count += 1
        first_ms = first_ms or now_ms
        txn.put(
            key, _STATE.pack(new_visible_at, sent_ms, first_ms, now_ms, count, source), db=t.fifo
        )
        _alarm(txn, t, queue_id, g, seq, sent_ms, new_visible_at, now_ms - retention_cutoff_ms)
        _, message_id, attrs, body = decoded
        received.append(
            (seq, new_visible_at, count, sent_ms, first_ms, attrs, body, message_id, source, g)
        )
    if stored_delta:
        next_seq, stored = _load_qstate(txn, t, queue_id)
        _store_qstate(txn, t, queue_id, next_seq, stored + stored_delta)
    _reset_head(txn, t, queue_id, g, head_key)


_RECORD_ID = struct.Struct(">IIQ")  # env_id | queue_id | seq: a record's message id
_RECORD_ID_AT = 24


def _moved_record(
    core: Core,
    record: bytes,
    now_ms: int,
    dead_letter: bool = False,
    new_id: tuple[int, int] | None = None,
) -> bytes:
    """A FIFO message's record as it moves to another queue: SQS restarts its enqueue time
    (the retention period counts from the move), and on a move to a dead-letter queue its
    MessageDeduplicationId becomes its message id. The message id stays, unless ``new_id``
    (queue_id, seq) names its new one (a redrive). A record that fails its check moves as it
    is (it is reported when a receive meets it)."""
    if new_id is not None:
        return core.renew_record(record, now_ms, *new_id)
    decoded = core.decode_record(record)
    if decoded is None:
        return record
    _, message_id, attrs, body = decoded
    if dead_letter:
        metadata = unpack_metadata(attrs)
        attrs = pack_metadata(
            metadata.get("a"), metadata.get("g"), message_id, metadata.get("t"), metadata.get("s")
        )
    env_id, first_queue_id, seq = _RECORD_ID.unpack_from(record, _RECORD_ID_AT)
    flags = core.record_flags(record)
    return core.encode_record(now_ms, env_id, first_queue_id, seq, attrs, body, flags)


def _append(
    core: Core,
    txn: Any,
    t: Any,
    queue_id: int,
    now_ms: int,
    record: bytes,
    g: bytes,
    state: tuple[int, ...],
    dead_letter: bool,
) -> int:
    """Move a message's record to the end of group ``g`` of queue ``queue_id`` (to a
    dead-letter queue, or a redrive); returns its seq there.

    A dead-lettered message keeps its message id (AWS-validated: LocalStack's
    test_dead_letter_queue_with_fifo_and_content_based_deduplication); a redriven one gets a
    new one: "A new messageID and enqueueTime are assigned to redriven messages" (SQS
    Developer Guide, sqs-configure-dead-letter-queue-redrive)."""
    next_seq, count = _load_qstate(txn, t, queue_id)
    new_id = None if dead_letter else (queue_id, next_seq)
    record = _moved_record(core, record, now_ms, dead_letter, new_id)
    txn.put(_LOG_KEY.pack(queue_id, next_seq), record, db=t.log)
    txn.put(_member_key(queue_id, g, next_seq), _STATE.pack(*state), db=t.fifo)
    _store_qstate(txn, t, queue_id, next_seq + 1, count + 1)
    first = _first_member(txn, t, queue_id, g)
    if first is not None and _U64.unpack_from(first[0], len(first[0]) - 8)[0] == next_seq:
        txn.put(_VIS_KEY.pack(queue_id, state[0], next_seq), g, db=t.vis)
    return next_seq


# -- delete / change visibility ----------------------------------------------------------------


def delete(txn: Any, t: Any, queue_id: int, now_ms: int, entries: list[Any]) -> list[int]:
    """Delete by decoded handles (seq, receive_count, g); FIFO rules for old handles.

    OK: deleted. STALE: the handle expired (visibility ran out or a newer receive holds the
    message): nothing deleted. GONE: already deleted.
    """
    statuses = []
    removed = 0
    for seq, count, g in entries:
        key = _member_key(queue_id, g, seq)
        raw = txn.get(key, db=t.fifo)
        if raw is None:
            statuses.append(GONE)
            continue
        state = _STATE.unpack(raw)
        if state[4] != count or state[0] <= now_ms:
            statuses.append(STALE)
            continue
        head = _head_key(txn, t, queue_id, g)
        txn.delete(key, db=t.fifo)
        if txn.delete(_LOG_KEY.pack(queue_id, seq), db=t.log):
            removed += 1
        if head is not None and _VIS_KEY.unpack(head)[2] == seq:
            _reset_head(txn, t, queue_id, g, head)
        statuses.append(OK)
    if removed:
        next_seq, stored = _load_qstate(txn, t, queue_id)
        _store_qstate(txn, t, queue_id, next_seq, stored - removed)
    return statuses


def change_visibility(
    txn: Any,
    t: Any,
    queue_id: int,
    now_ms: int,
    entries: list[Any],
    max_hidden_ms: int,
    retention_ms: int = 0,
) -> list[int]:
    """Re-time deliveries named by (seq, receive_count, g, visibility_ms); ``retention_ms``
    (the queue's MessageRetentionPeriod) frees the group when one of them expires first."""
    statuses = []
    for seq, count, g, visibility_ms in entries:
        key = _member_key(queue_id, g, seq)
        raw = txn.get(key, db=t.fifo)
        if raw is None:
            statuses.append(GONE)
            continue
        visible_at, sent_ms, first_ms, last_ms, raw_count, source = _STATE.unpack(raw)
        if raw_count != count:
            statuses.append(STALE)
        elif visible_at <= now_ms:
            statuses.append(NOT_IN_FLIGHT)
        elif now_ms + visibility_ms - last_ms > max_hidden_ms:
            statuses.append(TOO_LONG)
        else:
            head = _head_key(txn, t, queue_id, g)
            txn.put(
                key,
                _STATE.pack(now_ms + visibility_ms, sent_ms, first_ms, last_ms, count, source),
                db=t.fifo,
            )
            if head is not None and _VIS_KEY.unpack(head)[2] == seq:
                _reset_head(txn, t, queue_id, g, head)
            _alarm(txn, t, queue_id, g, seq, sent_ms, now_ms + visibility_ms, retention_ms)
            statuses.append(OK)
    return statuses


# -- whole queue -------------------------------------------------------------------------------


def counts(
    txn: Any, t: Any, queue_id: int, now_ms: int, retention_cutoff_ms: int
) -> tuple[int, int, int]:
    """(stored, in_flight, delayed), as the standard core's counts()."""
    _, stored = _load_qstate(txn, t, queue_id)
    in_flight = delayed = 0
    for _, (visible_at, sent_ms, _, _, count, _) in _members(txn, t, queue_id):
        if visible_at > now_ms and sent_ms >= retention_cutoff_ms:
            if count:
                in_flight += 1
            else:
                delayed += 1
    return stored, in_flight, delayed


def _members(txn: Any, t: Any, queue_id: int) -> Iterator[tuple[bytes, tuple[int, ...]]]:
    """(key, unpacked state) of every member of the queue, group by group in seq order. Read
    them all before writing any (the cursor walks the table being written)."""
    prefix = _U32.pack(queue_id)
    with txn.cursor(db=t.fifo) as cur:
        if cur.set_range(prefix):
            for key, value in cur:
                if key[:4] != prefix:
                    break
                yield key, _STATE.unpack(value)


def redelay(txn: Any, t: Any, queue_id: int, now_ms: int, delay_ms: int) -> int:
    """Give the members still waiting out their delay the queue's new one, counted from their
    send (SQS: a FIFO queue's DelaySeconds is retroactive); returns how many were re-timed.

    Members already visible or received keep their times. Re-timing never reorders a group
    (its members keep their seqs); a group whose head moved gets its vis entry re-keyed.
    """
    old_heads: dict[bytes, bytes] = {}  # group -> the vis key of its head before the change
    retimed: list[tuple[bytes, bytes, bytes]] = []  # (member key, new state, group)
    for key, (visible_at, sent_ms, first_ms, last_ms, count, source) in _members(txn, t, queue_id):
        g = key[4:-8]
        if g not in old_heads:  # members sort by seq: the first one is the head
            seq = _U64.unpack_from(key, len(key) - 8)[0]
            old_heads[g] = _VIS_KEY.pack(queue_id, visible_at, seq)
        if count == 0 and visible_at > now_ms:
            state = _STATE.pack(sent_ms + delay_ms, sent_ms, first_ms, last_ms, 0, source)
            retimed.append((key, state, g))
    for key, state, _ in retimed:
        txn.put(key, state, db=t.fifo)
    for g in {g for _, _, g in retimed}:
        _reset_head(txn, t, queue_id, g, old_heads[g])
    return len(retimed)


def realarm(txn: Any, t: Any, queue_id: int, now_ms: int, retention_ms: int) -> int:
    """After a change of MessageRetentionPeriod: alarm the members in flight that the new period
    lets expire before their visibility timeout ends, so that they do not hold their groups
    until then (the alarms put at their receive knew only the period of that time). Returns how
    many were alarmed. An alarm of the old period that is now too early costs a look, once."""
    in_flight = []  # (group, seq, sent_ms, visible_at): read first, write after
    for key, (visible_at, sent_ms, _, _, count, _) in _members(txn, t, queue_id):
        if count and visible_at > now_ms and sent_ms + retention_ms < visible_at:
            seq = _U64.unpack_from(key, len(key) - 8)[0]
            in_flight.append((key[4:-8], seq, sent_ms, visible_at))
    for g, seq, sent_ms, visible_at in in_flight:
        _alarm(txn, t, queue_id, g, seq, sent_ms, visible_at, retention_ms)
    return len(in_flight)


def purge(core: Core, txn: Any, t: Any, queue_id: int) -> int:
    """Remove every message; de-duplication ids are remembered, as SQS does."""
    _delete_prefix(txn, t.fifo, _U32.pack(queue_id))
    return core.purge(txn, t, queue_id)


def drop(core: Core, txn: Any, t: Any, queue_id: int) -> None:
    prefix = _U32.pack(queue_id)
    for db in (t.fifo, t.dedup, t.dedupexp):
        _delete_prefix(txn, db, prefix)
    for attempts in (_ATTEMPT, _ATTEMPT_EXPIRY):
        _delete_prefix(txn, t.meta, attempts + prefix)
    core.drop(txn, t, queue_id)


# -- ReceiveRequestAttemptId -------------------------------------------------------------------

# In ``meta``: _ATTEMPT | queue_id u32 | attempt id -> msgpack [expires_ms, entries], and its
# expiry index _ATTEMPT_EXPIRY | queue_id u32 | expires_ms u64 | attempt id -> b"", by which
# the ids past their 5 minutes are forgotten.
_ATTEMPT = b"attempt:"
_ATTEMPT_EXPIRY = b"attempt@"


def recall_attempt(
    txn: Any, t: Any, queue_id: int, now_ms: int, attempt_id: bytes
) -> tuple[int, list[Any]] | None:
    """(expires_ms, entries) remembered for ``attempt_id``, None when it is not (or no longer)
    known. Forgets first every attempt id of the queue whose time is over."""
    prefix = _ATTEMPT_EXPIRY + _U32.pack(queue_id)
    with txn.cursor(db=t.meta) as cur:
        found = cur.set_range(prefix)
        while found:
            key = cur.key()
            at = len(prefix)
            if key[:at] != prefix or _U64.unpack_from(key, at)[0] > now_ms:
                break
            txn.delete(_ATTEMPT + _U32.pack(queue_id) + key[at + 8 :], db=t.meta)
            found = cur.delete()
    raw = txn.get(_ATTEMPT + _U32.pack(queue_id) + attempt_id, db=t.meta)
    if raw is None:
        return None
    expires, entries = msgpack.unpackb(raw)
    return (expires, entries) if expires > now_ms else None


def remember_attempt(
    txn: Any,
    t: Any,
    queue_id: int,
    attempt_id: bytes,
    expires_ms: int,
    entries: list[Any],
    previous_expires_ms: int | None,
) -> None:
    """Remember (or, with no ``entries``, forget) what ``attempt_id`` received, until
    ``expires_ms``; ``previous_expires_ms``: what recall_attempt() found, if anything."""
    key = _ATTEMPT + _U32.pack(queue_id) + attempt_id
    index = _ATTEMPT_EXPIRY + _U32.pack(queue_id)
    if previous_expires_ms is not None and (previous_expires_ms != expires_ms or not entries):
        txn.delete(index + _U64.pack(previous_expires_ms) + attempt_id, db=t.meta)
    if not entries:  # a retry of a receive that got nothing is a new receive: nothing to keep
        txn.delete(key, db=t.meta)
        return
    txn.put(key, msgpack.packb([expires_ms, entries]), db=t.meta)
    txn.put(index + _U64.pack(expires_ms) + attempt_id, b"", db=t.meta)


# -- redrive -----------------------------------------------------------------------------------


def peek(
    txn: Any,
    t: Any,
    queue_id: int,
    now_ms: int,
    limit: int,
    dead_lettered_only: bool,
    retention_cutoff_ms: int = 0,
) -> list[tuple[int, bytes, int]]:
    """Up to ``limit`` receivable members as (seq, g, source_queue_id), group by group; those
    sent (or moved here) before ``retention_cutoff_ms`` are passed over."""
    out: list[tuple[int, bytes, int]] = []
    seen: set[bytes] = set()  # a group with an alarm may come up twice
    with txn.cursor(db=t.vis) as heads:
        if not heads.set_range(_VIS_KEY.pack(queue_id, 0, 0)):
            return out
        for key, g in heads:
            qid, ready_at, _ = _VIS_KEY.unpack(key)
            if qid != queue_id or ready_at > now_ms or len(out) >= limit:
                break
            if g in seen:
                continue
            seen.add(g)
            prefix = _U32.pack(queue_id) + g
            with txn.cursor(db=t.fifo) as cur:
                cur.set_range(prefix)
                for mkey, value in cur:
                    if mkey[: len(prefix)] != prefix or len(out) >= limit:
                        break
                    state = _STATE.unpack(value)
                    if state[0] > now_ms and state[1] >= retention_cutoff_ms:
                        break  # in flight or delayed (and not gone: see _drain_group)
                    if state[1] >= retention_cutoff_ms and (state[5] or not dead_lettered_only):
                        out.append((_U64.unpack_from(mkey, len(mkey) - 8)[0], g, state[5]))
    return out


def move(
    txn: Any,
    t: Any,
    queue_id: int,
    now_ms: int,
    entries: list[Any],
    to_queue_id: int,
    keep_state: bool,
    core: Core,
) -> int:
    """Move members (seq, g) to the end of the same group of another FIFO queue: a redrive
    (new message ids, see _append), or with ``keep_state`` a move to a dead-letter queue.
    Their enqueue time restarts (see _moved_record)."""
    moved = 0
    touched: dict[bytes, bytes | None] = {}
    for seq, g in entries:
        key = _member_key(queue_id, g, seq)
        raw = txn.get(key, db=t.fifo)
        record = txn.get(_LOG_KEY.pack(queue_id, seq), db=t.log)
        if raw is None or record is None:
            continue
        if g not in touched:
            touched[g] = _head_key(txn, t, queue_id, g)
        txn.delete(key, db=t.fifo)
        txn.delete(_LOG_KEY.pack(queue_id, seq), db=t.log)
        _, _, first_ms, last_ms, count, _ = _STATE.unpack(raw)
        state = (
            (now_ms, now_ms, first_ms, last_ms, count, queue_id)
            if keep_state
            else (now_ms, now_ms, 0, 0, 0, 0)
        )
        _append(core, txn, t, to_queue_id, now_ms, record, g, state, keep_state)
        moved += 1
    for g, head in touched.items():
        _reset_head(txn, t, queue_id, g, head)
    if moved:
        next_seq, stored = _load_qstate(txn, t, queue_id)
        _store_qstate(txn, t, queue_id, next_seq, stored - moved)
    return moved


def redeliver(
    core: Core,
    txn: Any,
    t: Any,
    queue_id: int,
    now_ms: int,
    entries: list[Any],
    visibility_ms: int,
    retention_cutoff_ms: int = 0,
) -> list[Any] | None:
    """Deliver members (seq, receive_count, g, visible_at_ms) again, unchanged but for their
    visibility, for a receive retried with the same ReceiveRequestAttemptId.

    SQS repeats a receive only while none of its messages was modified: if any member was
    deleted, received again, re-timed, is visible again or was sent before
    ``retention_cutoff_ms`` (gone), nothing is written and None is returned (the caller
    receives afresh). Otherwise returns entries shaped as receive()'s.
    """
    found = []
    for seq, count, g, visible_at in entries:
        key = _member_key(queue_id, g, seq)
        raw = txn.get(key, db=t.fifo)
        if raw is None:
            return None
        state = _STATE.unpack(raw)
        if state[4] != count or state[0] != visible_at or visible_at <= now_ms:
            return None
        if state[1] < retention_cutoff_ms:
            return None
        record = txn.get(_LOG_KEY.pack(queue_id, seq), db=t.log)
        decoded = None if record is None else core.decode_record(record)
        if decoded is None:
            return None
        found.append((key, seq, g, state, decoded))
    out = []
    new_visible_at = now_ms + visibility_ms
    for key, seq, g, (_, sent_ms, first_ms, last_ms, count, source), decoded in found:
        head = _head_key(txn, t, queue_id, g)
        txn.put(
            key, _STATE.pack(new_visible_at, sent_ms, first_ms, last_ms, count, source), db=t.fifo
        )
        if head is not None and _VIS_KEY.unpack(head)[2] == seq:
            _reset_head(txn, t, queue_id, g, head)
        _alarm(txn, t, queue_id, g, seq, sent_ms, new_visible_at, now_ms - retention_cutoff_ms)
        _, message_id, attrs, body = decoded
        out.append(
            (seq, new_visible_at, count, sent_ms, first_ms, attrs, body, message_id, source, g)
        )
    return out
