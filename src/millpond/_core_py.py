"""Pure-Python twin of the Cython core: the executable specification.

Same names, signatures and semantics as ``_core_c``; every core test runs on both. The byte
layouts are those of ``csrc/millpond.h`` (all integers big-endian, so LMDB key order is numeric):

- ``log``      key queue_id u32 | seq u64                     value: record
- ``vis``      key queue_id u32 | visible_at_ms u64 | seq u64  value: delivery state
- ``counters`` key queue_id u32                  value: floor u64 | gone u64 | fresh u64
- ``moved``    key queue_id u32 | seq u64                     value: visible_at_ms u64
               key queue_id u32 | 0xFF | sent_ms u64 | seq u64 value: moved_at_ms u64 (the
               expiry index; b"" in stores written before it held the time of the move)

record = crc32c u32 | format u32 (1, | INDEXED) | sent_ms u64 | attrs_len u32 | body_len u32
         | message id (env_id u32 | queue_id u32 | seq u64 of its send or redrive) | attrs | body
delivery state = sent_ms u64 | first_receive_ms u64 | last_receive_ms u64 | receive_count u32
                 | dead-letter source queue_id u32 (0: sent to this queue)

A send writes only the message's log record: a fresh message has no ``vis`` entry. A receive
first takes what ``vis`` holds (deliveries whose visibility timeout ran out, delayed messages now
due, dead-lettered ones), then walks the log from the queue's ``fresh`` cursor, giving each fresh
message it delivers its in-flight ``vis`` entry. Messages that need a ``vis`` entry from the
start (a delay, a dead-letter move) carry the INDEXED flag in their record's format word, and
the walk steps over them. So the common send dirties one table, the log, next to its tail.

Counters never change on a send either: the next seq is max(floor, the queue's last log seq + 1)
and the number of records is next seq - 1 - gone. Whatever removes records adds them to
``gone`` and lifts ``floor`` past the highest seq it removed, so no seq is ever handed out
twice. ``fresh`` is the lowest seq the walk has not passed.

A dead-lettered message keeps its sent time (SQS: "the enqueue timestamp is unchanged"), so a
dead-letter queue's log is not in sent-time order: expire() trims the log head, and finds the
moved records past retention behind younger ones through the expiry index, which move() fills.
Its entries go when expire() meets them (a record deleted meanwhile leaves its entry until
then), so no other verb pays for it.

The top bit of receive_count (RELOCATED) marks a delivery that change_visibility re-timed: its
receipt handle still names the old visible_at, so ``moved`` points from the seq to the current
key. A receive (which issues a new handle), a delete or an expiry drops the pointer.

Contract of every function: the caller holds an open write transaction ``txn`` and passes the
table handles in ``dbs`` (an object with ``log``, ``vis`` and ``counters``). The core never reads
the clock, opens or commits transactions, or logs: time comes in as ``now_ms`` and results go
out as lists.
"""

from __future__ import annotations

import base64
import struct
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from typing import TypeAlias

    import lmdb

    # The write transaction the caller holds (storage opens them without buffers=True).
    Txn: TypeAlias = lmdb.Transaction[bytes]

# decode_record(): (sent_ms, message_id, attrs, body)
DecodedRecord = tuple[int, str, bytes, bytes]
# receive(): (seq, visible_at_ms, receive_count, sent_ms, first_receive_ms, attrs, body,
# message_id, source_queue_id, receipt_handle)
Received = tuple[int, int, int, int, int, bytes, bytes, str, int, str | None]
# send_each(): (queue_id, body, attrs, delay_ms); a body may come as parts (bytes) to be stored
# one after the other (a fan-out's envelopes differ in one part: no joined copy of each)
Delivery = tuple[int, bytes | tuple[bytes, ...], bytes, int]


class CoreTables(Protocol):
    """The tables the core verbs work in (``storage.Tables`` has them, among others)."""

    log: lmdb._Database
    vis: lmdb._Database
    counters: lmdb._Database
    moved: lmdb._Database
    # The C core's cache of each queue's next seq (_core_next_seqs.pxi); this core keeps none.
    next_seqs: Any


IMPLEMENTATION = "py"

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_LOG_KEY = struct.Struct(">IQ")
_VIS_KEY = struct.Struct(">IQQ")
_HEADER = struct.Struct(">IIQIIIIQ")
_RECORD_ID_AT = 24  # env_id u32 | queue_id u32 | seq u64: the message id in the header
_VIS_VALUE = struct.Struct(">QQQII")
_COUNTERS = struct.Struct(">QQQ")  # floor, gone, fresh
_HANDLE = struct.Struct(">IQQI")
_EXPIRY_KEY = struct.Struct(">IBQQ")  # queue_id, EXPIRY_MARK, sent_ms, seq: in ``moved``
EXPIRY_MARK = 0xFF  # after every queue_id | seq key of the queue (seqs stay below 2**56)
_RECORD_FORMAT = 1
INDEXED = 0x100  # record flag: the message got its vis entry when stored; the fresh walk skips it
FRESH = (1 << 64) - 1  # peek()'s visible_at for a fresh message (it has no vis entry)
_RELOCATED = 0x80000000
_COUNT = 0x7FFFFFFF
HEADER_SIZE = _HEADER.size

# Receive statuses returned by delete() and change_visibility().
OK = 0  # the handle named the message's current delivery
STALE = 1  # the message lives on under a newer receive (delete still removed it if allowed)
GONE = 2  # no such message any more (deleted, expired or purged)
NOT_IN_FLIGHT = 3  # change_visibility: the message is visible, not in flight
TOO_LONG = 4  # change_visibility: past the 12-hour limit counted from the receive


# -- CRC32C --------------------------------------------------------------------------------------


def _make_crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from ``crc``."""
    table = _CRC_TABLE
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- keys, records, handles, ids ----------------------------------------------------------------


def log_key(queue_id: int, seq: int) -> bytes:
    return _LOG_KEY.pack(queue_id, seq)


def vis_key(queue_id: int, visible_at_ms: int, seq: int) -> bytes:
    return _VIS_KEY.pack(queue_id, visible_at_ms, seq)


def encode_record(
    sent_ms: int, env_id: int, queue_id: int, seq: int, attrs: bytes, body: bytes, flags: int = 0
) -> bytes:
    """The immutable log value for one message, sealed with its CRC.

    (env_id, queue_id, seq) name the message: its message id (see message_id()), kept on a
    move to a dead-letter queue, renewed by a redrive (renew_record()).
    ``flags``: INDEXED when the message gets a vis entry as it is stored.
    """
    header = _HEADER.pack(
        0, _RECORD_FORMAT | flags, sent_ms, len(attrs), len(body), env_id, queue_id, seq
    )
    rest = header[4:] + attrs + body
    return _U32.pack(crc32c(rest)) + rest


def decode_record(record: bytes) -> DecodedRecord | None:
    """(sent_ms, message_id, attrs, body) of a record, or None when its lengths or CRC fail."""
    if len(record) < HEADER_SIZE:
        return None
    crc, fmt, sent_ms, attrs_len, body_len, env_id, queue_id, seq = _HEADER.unpack_from(record)
    if fmt & ~INDEXED != _RECORD_FORMAT or HEADER_SIZE + attrs_len + body_len != len(record):
        return None
    if crc32c(record[4:]) != crc:
        return None
    body_at = HEADER_SIZE + attrs_len
    return sent_ms, message_id(env_id, queue_id, seq), record[HEADER_SIZE:body_at], record[body_at:]


def record_flags(record: bytes) -> int:
    """The flags of a record (INDEXED or 0); meaningful once decode_record() accepted it."""
    fmt: int = _U32.unpack_from(record, 4)[0]
    return fmt & INDEXED


def reflag_record(record: bytes, flags: int) -> bytes:
    """The same record with ``flags`` instead of its own, sealed again (a move between queues).

    A record that fails its check is returned unchanged: sealing it again would hide the
    corruption (it is reported when a receive meets it)."""
    if decode_record(record) is None or record_flags(record) == flags:
        return record
    rest = _U32.pack(_RECORD_FORMAT | flags) + record[8:]
    return _U32.pack(crc32c(rest)) + rest


def renew_record(record: bytes, sent_ms: int, queue_id: int, seq: int) -> bytes:
    """The record of a redriven message, which SQS counts as a new one: sent at ``sent_ms``,
    with the message id of ``seq`` in queue ``queue_id``, unflagged (a fresh message).

    A record that fails its check is returned unchanged: sealing it again would hide the
    corruption (it is reported when a receive meets it)."""
    decoded = decode_record(record)
    if decoded is None:
        return record
    env_id = _U32.unpack_from(record, _RECORD_ID_AT)[0]
    return encode_record(sent_ms, env_id, queue_id, seq, decoded[2], decoded[3])


def encode_handle(secret: bytes, queue_id: int, seq: int, visible_at_ms: int, count: int) -> str:
    """Receipt handle: where the delivery sits in ``vis``, checked by a CRC keyed by ``secret``."""
    raw = _HANDLE.pack(queue_id, seq, visible_at_ms, count)
    raw += _U32.pack(crc32c(raw, crc32c(secret)))
    return _b64(raw)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_handle(secret: bytes, handle: str) -> tuple[int, int, int, int] | None:
    """(queue_id, seq, visible_at_ms, receive_count) of a handle, or None if it is not ours."""
    if not isinstance(handle, str) or len(handle) != 38:
        return None
    try:
        raw = base64.urlsafe_b64decode(handle + "==")
    except ValueError:
        return None
    if len(raw) != _HANDLE.size + 4 or _b64(raw) != handle:  # one spelling per handle
        return None
    body = raw[: _HANDLE.size]
    if _U32.unpack_from(raw, _HANDLE.size)[0] != crc32c(body, crc32c(secret)):
        return None
    return _HANDLE.unpack(body)


def decode_handles(
    secret: bytes, queue_id: int, handles: list[str]
) -> list[tuple[int, int, int] | None]:
    """(seq, visible_at_ms, receive_count) of each handle of queue ``queue_id``; None for a
    handle that is not ours or names another queue. One call for a batch."""
    out: list[tuple[int, int, int] | None] = []
    for handle in handles:
        decoded = decode_handle(secret, handle)
        out.append(None if decoded is None or decoded[0] != queue_id else decoded[1:])
    return out


def message_id(env_id: int, queue_id: int, seq: int) -> str:
    """A UUID-shaped id, unique per data directory (``env_id``), queue incarnation and seq."""
    h = f"{env_id:08x}{queue_id:08x}{seq:016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# -- counters ------------------------------------------------------------------------------------


def _counters(txn: Txn, dbs: CoreTables, queue_id: int) -> tuple[int, int, int]:
    """(floor, gone, fresh) of a queue; LookupError if it does not exist."""
    raw = txn.get(_U32.pack(queue_id), db=dbs.counters)
    if raw is None:
        raise LookupError(queue_id)
    return _COUNTERS.unpack(raw)


def _store_counters(
    txn: Txn, dbs: CoreTables, queue_id: int, floor: int, gone: int, fresh: int
) -> None:
    txn.put(_U32.pack(queue_id), _COUNTERS.pack(floor, gone, fresh), db=dbs.counters)


def _tail_seq(txn: Txn, dbs: CoreTables, queue_id: int) -> int:
    """The highest seq the queue has in the log, 0 when it has none."""
    with txn.cursor(db=dbs.log) as cur:
        if queue_id < 0xFFFFFFFF and cur.set_range(_U32.pack(queue_id + 1)):
            found = cur.prev()
        else:
            found = cur.last()
        if not found:
            return 0
        key = cur.key()
        if len(key) != _LOG_KEY.size:
            return 0
        qid, seq = _LOG_KEY.unpack(key)
        return seq if qid == queue_id else 0


def _next_seq(txn: Txn, dbs: CoreTables, queue_id: int, floor: int) -> int:
    return max(floor, _tail_seq(txn, dbs, queue_id) + 1)


def _forget(txn: Txn, dbs: CoreTables, queue_id: int, removed: int, top_seq: int) -> None:
    """Count ``removed`` records as gone, the highest of them ``top_seq``: the floor moves past
    it, so that its seq is never handed out again."""
    floor, gone, fresh = _counters(txn, dbs, queue_id)
    _store_counters(txn, dbs, queue_id, max(floor, top_seq + 1), gone + removed, fresh)


def _load_qstate(txn: Txn, dbs: CoreTables, queue_id: int) -> tuple[int, int]:
    """(next_seq, stored records): the counters as FIFO queues keep them."""
    floor, gone, _ = _counters(txn, dbs, queue_id)
    next_seq = _next_seq(txn, dbs, queue_id, floor)
    return next_seq, next_seq - 1 - gone


def _store_qstate(txn: Txn, dbs: CoreTables, queue_id: int, next_seq: int, count: int) -> None:
    """Record (next_seq, stored records) after FIFO bookkeeping changed them.

    FIFO queues never walk fresh messages (their records are reached through their groups),
    so the fresh cursor is simply kept at next_seq."""
    _store_counters(txn, dbs, queue_id, next_seq, next_seq - 1 - count, next_seq)


# -- queue lifecycle -----------------------------------------------------------------------------


def create(txn: Txn, dbs: CoreTables, queue_id: int) -> None:
    """Start the counters of a new queue (seq numbers start at 1)."""
    _store_counters(txn, dbs, queue_id, 1, 0, 1)


def exists(txn: Txn, dbs: CoreTables, queue_id: int) -> bool:
    return txn.get(_U32.pack(queue_id), db=dbs.counters) is not None


def _delete_prefix(txn: Txn, db: lmdb._Database, prefix: bytes) -> int:
    n = 0
    with txn.cursor(db=db) as cur:
        if not cur.set_range(prefix):
            return 0
        while cur.key()[: len(prefix)] == prefix:
            n += 1
            if not cur.delete():
                break
    return n


def purge(txn: Txn, dbs: CoreTables, queue_id: int) -> int:
    """Remove every message of the queue; returns how many records were removed."""
    floor, _, _ = _counters(txn, dbs, queue_id)
    next_seq = _next_seq(txn, dbs, queue_id, floor)
    prefix = _U32.pack(queue_id)
    _delete_prefix(txn, dbs.vis, prefix)
    _delete_prefix(txn, dbs.moved, prefix)
    n = _delete_prefix(txn, dbs.log, prefix)
    _store_counters(txn, dbs, queue_id, next_seq, next_seq - 1, next_seq)
    return n


def drop(txn: Txn, dbs: CoreTables, queue_id: int) -> None:
    """Remove the queue's messages and counters."""
    purge(txn, dbs, queue_id)
    txn.delete(_U32.pack(queue_id), db=dbs.counters)


# -- the verbs -----------------------------------------------------------------------------------


def _store_message(
    txn: Txn,
    dbs: CoreTables,
    queue_id: int,
    seq: int,
    now_ms: int,
    env_id: int,
    body: bytes,
    attr: bytes,
    delay_ms: int,
) -> None:
    """A fresh message is its log record alone; a delayed one also gets its vis entry."""
    lkey = _LOG_KEY.pack(queue_id, seq)
    if delay_ms:
        record = encode_record(now_ms, env_id, queue_id, seq, attr, body, INDEXED)
        txn.put(lkey, record, db=dbs.log)
        vis_value = _VIS_VALUE.pack(now_ms, 0, 0, 0, 0)
        txn.put(_VIS_KEY.pack(queue_id, now_ms + delay_ms, seq), vis_value, db=dbs.vis)
    else:
        txn.put(lkey, encode_record(now_ms, env_id, queue_id, seq, attr, body), db=dbs.log)


def send(
    txn: Txn,
    dbs: CoreTables,
    queue_id: int,
    now_ms: int,
    bodies: list[bytes],
    attrs: list[bytes],
    delays_ms: list[int],
    env_id: int,
) -> int:
    """Append messages; returns the seq of the first (the rest follow consecutively).

    ``bodies`` and ``attrs`` are lists of bytes (attrs ``b""`` when none), ``delays_ms`` a list of
    ints; ``env_id`` goes into the message ids. Raises LookupError if the queue does not exist.
    Writes only the log (and vis for delayed messages): the counters stay as they are.
    """
    floor, _, _ = _counters(txn, dbs, queue_id)
    first = seq = _next_seq(txn, dbs, queue_id, floor)
    for body, attr, delay_ms in zip(bodies, attrs, delays_ms):
        _store_message(txn, dbs, queue_id, seq, now_ms, env_id, body, attr, delay_ms)
        seq += 1
    return first


def send_each(
    txn: Txn,
    dbs: CoreTables,
    now_ms: int,
    env_id: int,
    deliveries: list[Delivery],
) -> list[int]:
    """One message into each of several queues (a topic's fan-out) in one call.

    ``deliveries`` is a list of (queue_id, body, attrs, delay_ms), a body bytes or a tuple of
    bytes parts stored one after the other; a queue may appear more than once. Returns the seq
    each delivery got. Raises LookupError(index of the first delivery whose queue does not
    exist) before writing anything.
    """
    next_seqs: dict[int, int] = {}
    for index, delivery in enumerate(deliveries):
        queue_id = delivery[0]
        if queue_id not in next_seqs:
            raw = txn.get(_U32.pack(queue_id), db=dbs.counters)
            if raw is None:
                raise LookupError(index)
            next_seqs[queue_id] = _next_seq(txn, dbs, queue_id, _COUNTERS.unpack(raw)[0])
    seqs: list[int] = []
    for queue_id, body, attr, delay_ms in deliveries:
        seq = next_seqs[queue_id]
        next_seqs[queue_id] = seq + 1
        if isinstance(body, tuple):
            body = b"".join(body)
        _store_message(txn, dbs, queue_id, seq, now_ms, env_id, body, attr, delay_ms)
        seqs.append(seq)
    return seqs


def send_envelopes(
    txn: Txn,
    dbs: CoreTables,
    now_ms: int,
    env_id: int,
    targets: list[tuple[int, bytes, int]],
    head: bytes,
    tail: bytes,
    attrs: bytes,
) -> list[int]:
    """:func:`send_each` of one message whose body differs per queue in one part (a topic's
    SNS envelope: its UnsubscribeURL): ``targets`` is a list of (queue_id, that part, delay_ms),
    each body ``head + part + tail``, each with ``attrs``. Returns the seq of each."""
    deliveries: list[Delivery] = [
        (queue_id, (head, part, tail), attrs, delay_ms) for queue_id, part, delay_ms in targets
    ]
    return send_each(txn, dbs, now_ms, env_id, deliveries)


def receive(
    txn: Txn,
    dbs: CoreTables,
    queue_id: int,
    now_ms: int,
    max_messages: int,
    visibility_ms: int,
    retention_cutoff_ms: int,
    max_receive_count: int,
    secret: bytes | None = None,
) -> tuple[list[Received], list[tuple[int, int]], list[int], int, int]:
    """Deliver up to ``max_messages`` visible messages and hide them for ``visibility_ms``.

    Messages come in (visible_at, seq) order, a fresh one being visible from its sent time:
    the scan of due vis entries and the walk of fresh messages are merged (so a message that is
    handed back at once cannot starve newer ones). Returns
    ``(received, over_limit, corrupt, expired, next_visible_at_ms)``:

    - received: list of (seq, visible_at_ms, receive_count, sent_ms, first_receive_ms, attrs, body,
      message_id, source_queue_id, receipt_handle) with the new delivery state; the handle is
      encode_handle(secret, ...) of (seq, visible_at_ms, count), None without ``secret``;
      source_queue_id is the queue a dead-lettered message came from.
    - over_limit: (seq, visible_at_ms) of visible messages already received ``max_receive_count``
      times (0 disables); they are left untouched for the caller to move to a dead-letter queue.
    - corrupt: seqs whose record failed its CRC; their delivery entry is removed (a fresh one is
      passed over), the record kept (it is never served, and stays for inspection).
    - expired: how many messages older than ``retention_cutoff_ms`` were removed on the way.
    - next_visible_at_ms: when the first still-hidden message becomes visible (0: none or unknown,
      as when the scan stopped early); long polls sleep until then.
    """
    start = _VIS_KEY.pack(queue_id, 0, 0)
    received: list[Received] = []
    over_limit: list[tuple[int, int]] = []
    corrupt: list[int] = []
    rekeyed: list[
        tuple[bytes, bytes]
    ] = []  # new vis entries, written after the scan so it cannot meet them again
    expired = 0
    top_removed = 0
    next_visible_at = 0
    new_visible_at = now_ms + visibility_ms

    def deliver(
        seq: int, decoded: DecodedRecord, sent_ms: int, first_ms: int, count: int, source: int
    ) -> None:
        rekeyed.append(
            (
                _VIS_KEY.pack(queue_id, new_visible_at, seq),
                _VIS_VALUE.pack(sent_ms, first_ms, now_ms, count, source),
            )
        )
        _, mid, attrs, body = decoded
        handle = None
        if secret is not None:
            handle = encode_handle(secret, queue_id, seq, new_visible_at, count)
        received.append(
            (seq, new_visible_at, count, sent_ms, first_ms, attrs, body, mid, source, handle)
        )

    floor, gone, fresh = _counters(txn, dbs, queue_id)
    walked_from = fresh
    with txn.cursor(db=dbs.vis) as vis, txn.cursor(db=dbs.log) as log:

        def fresh_head(found: bool) -> tuple[int, DecodedRecord] | None:
            """The next fresh message from the log cursor on: (seq, decoded record), or None.
            Passes over (and moves the fresh cursor past) INDEXED, corrupt and expired ones."""
            nonlocal fresh, expired, top_removed
            while found:
                key = log.key()
                if len(key) != _LOG_KEY.size:
                    return None  # past the end of the table after a delete
                qid, seq = _LOG_KEY.unpack(key)
                if qid != queue_id:
                    return None
                record = log.value()
                decoded = decode_record(record)
                if decoded is not None and not record_flags(record) & INDEXED:
                    if decoded[0] >= retention_cutoff_ms:
                        return seq, decoded
                    expired += 1
                    top_removed = max(top_removed, seq)
                    fresh = seq + 1
                    found = log.delete()
                    continue
                if decoded is None:
                    corrupt.append(seq)  # never served; the record stays for inspection
                fresh = seq + 1  # an INDEXED one is delivered through its vis entry
                found = log.next()
            return None

        # The walk reads records only as they are asked for: after the last message taken, the
        # next one is not read (a large body would be copied and checked for nothing).
        head: tuple[int, DecodedRecord] | None = None
        walk_at = "start"  # "start": nothing read yet; "taken": the head was delivered
        found = vis.set_range(start)
        while len(received) < max_messages:
            due: tuple[int, int] | None = (
                None  # (visible_at, seq) of the next vis entry that is due
            )
            if found:
                key = vis.key()
                if len(key) == _VIS_KEY.size:
                    qid, visible_at, seq = _VIS_KEY.unpack(key)
                    if qid == queue_id:
                        if visible_at <= now_ms:
                            due = visible_at, seq
                        else:
                            next_visible_at = visible_at
                if due is None:
                    found = False  # no more due entries in this receive
            if walk_at == "start":
                head = fresh_head(log.set_range(_LOG_KEY.pack(queue_id, fresh)))
            elif walk_at == "taken":
                head = fresh_head(log.next())
            walk_at = ""
            # One order for both: (visible_at, seq), a fresh message being visible since sent.
            if head is not None and (due is None or (head[1][0], head[0]) < due):
                seq, head_record = head
                deliver(seq, head_record, head_record[0], now_ms, 1, 0)
                fresh = seq + 1
                walk_at = "taken"
                continue
            if due is None:
                break
            visible_at, seq = due
            sent_ms, first_ms, last_ms, count, source = _VIS_VALUE.unpack(vis.value())
            if (
                max_receive_count
                and count & _COUNT >= max_receive_count
                and sent_ms >= retention_cutoff_ms
            ):
                over_limit.append((seq, visible_at))  # left for the dead-letter move
                found = vis.next()
                continue
            # Expired or delivered: the entry goes; the cursor moves to the next one.
            found = vis.delete()
            lkey = _LOG_KEY.pack(queue_id, seq)
            if count & _RELOCATED:
                txn.delete(lkey, db=dbs.moved)
            if sent_ms < retention_cutoff_ms:
                if txn.delete(lkey, db=dbs.log):
                    expired += 1
                    top_removed = max(top_removed, seq)
                continue
            record = txn.get(lkey, db=dbs.log)
            if record is None:
                continue  # left behind by expire(); the message is gone
            decoded = decode_record(record)
            if decoded is None:
                corrupt.append(seq)  # never served; the record stays for inspection
                continue
            deliver(seq, decoded, sent_ms, first_ms or now_ms, (count & _COUNT) + 1, source)
        if rekeyed:
            vis.putmulti(rekeyed)
    if expired or fresh != walked_from:
        _store_counters(txn, dbs, queue_id, max(floor, top_removed + 1), gone + expired, fresh)
    return received, over_limit, corrupt, expired, next_visible_at


def _find_delivery(
    txn: Txn, dbs: CoreTables, queue_id: int, seq: int, from_visible_at: int
) -> bytes | None:
    """The vis key of message ``seq`` (slow path: a scan, for handles of an older receive)."""
    prefix = _U32.pack(queue_id)
    with txn.cursor(db=dbs.vis) as cur:
        # A newer receive is usually later than the handle's, so look there first, then wrap.
        for start in (_VIS_KEY.pack(queue_id, from_visible_at, 0), prefix):
            if not cur.set_range(start):
                continue
            for key in cur.iternext(values=False):
                if key[:4] != prefix:
                    break
                if _VIS_KEY.unpack(key)[2] == seq:
                    return key
    return None


def _relocated_key(txn: Txn, dbs: CoreTables, queue_id: int, seq: int) -> bytes | None:
    """The current vis key of a delivery that change_visibility re-timed, if there is one."""
    raw = txn.get(_LOG_KEY.pack(queue_id, seq), db=dbs.moved)
    return None if raw is None else _VIS_KEY.pack(queue_id, _U64.unpack(raw)[0], seq)


def _current(
    txn: Txn, dbs: CoreTables, queue_id: int, seq: int, visible_at: int
) -> tuple[bytes | None, bytes | None]:
    """(vis key, value) of the delivery a handle names, following a re-timing; (None, None)."""
    key = _VIS_KEY.pack(queue_id, visible_at, seq)
    value = txn.get(key, db=dbs.vis)
    if value is None:
        relocated = _relocated_key(txn, dbs, queue_id, seq)
        return relocated, None if relocated is None else txn.get(relocated, db=dbs.vis)
    return key, value


def delete(
    txn: Txn, dbs: CoreTables, queue_id: int, entries: list[tuple[int, int, int]]
) -> list[int]:
    """Delete messages named by decoded receipt handles ``(seq, visible_at_ms, receive_count)``.

    Standard-queue rules: a handle from an older receive deletes too. Returns a status per entry:
    OK (the handle named the current delivery), STALE (an older one; deleted all the same) or
    GONE (nothing to delete).
    """
    statuses: list[int] = []
    removed = top = 0
    for seq, visible_at, count in entries:
        lkey = _LOG_KEY.pack(queue_id, seq)
        if txn.delete(_VIS_KEY.pack(queue_id, visible_at, seq), db=dbs.vis):
            status = OK  # the fast path: the handle names the delivery's key exactly
        else:
            key = _relocated_key(txn, dbs, queue_id, seq)
            value = None if key is None else txn.get(key, db=dbs.vis)
            if value is not None:
                status = OK if _VIS_VALUE.unpack(value)[3] & _COUNT == count else STALE
                txn.delete(lkey, db=dbs.moved)
            elif txn.get(lkey, db=dbs.log) is None:
                statuses.append(GONE)
                continue
            else:
                status = STALE
                key = _find_delivery(txn, dbs, queue_id, seq, visible_at)
                txn.delete(lkey, db=dbs.moved)
            if key is not None:
                txn.delete(key, db=dbs.vis)
        if txn.delete(lkey, db=dbs.log):
            removed += 1
            top = max(top, seq)
        statuses.append(status)
    if removed:
        _forget(txn, dbs, queue_id, removed, top)
    return statuses


def change_visibility(
    txn: Txn,
    dbs: CoreTables,
    queue_id: int,
    now_ms: int,
    entries: list[tuple[int, int, int, int]],
    max_hidden_ms: int,
) -> list[int]:
    """Re-time deliveries: entries ``(seq, visible_at_ms, receive_count, visibility_ms)``.

    The message becomes visible ``visibility_ms`` after ``now_ms``. One handle may re-time its
    delivery any number of times (heartbeats). Standard-queue rules: a handle from an older
    receive re-times the message's current delivery (as SQS does; delete() too). Returns a
    status per entry: OK (the handle named the current delivery), STALE (an older one; re-timed
    all the same), GONE, NOT_IN_FLIGHT (visible already), or TOO_LONG (it would stay hidden more
    than ``max_hidden_ms`` after the current delivery's receive).
    """
    statuses: list[int] = []
    for seq, visible_at, count, visibility_ms in entries:
        key, value = _current(txn, dbs, queue_id, seq, visible_at)
        if value is None and txn.get(_LOG_KEY.pack(queue_id, seq), db=dbs.log) is not None:
            key = _find_delivery(txn, dbs, queue_id, seq, visible_at)  # a newer receive's
            value = None if key is None else txn.get(key, db=dbs.vis)
        if key is None or value is None:
            statuses.append(GONE)
            continue
        sent_ms, first_ms, last_ms, raw_count, source = _VIS_VALUE.unpack(value)
        if _VIS_KEY.unpack(key)[1] <= now_ms:
            statuses.append(NOT_IN_FLIGHT)
        elif now_ms + visibility_ms > last_ms + max_hidden_ms:
            statuses.append(TOO_LONG)
        else:
            new_visible_at = now_ms + visibility_ms
            txn.delete(key, db=dbs.vis)
            txn.put(
                _VIS_KEY.pack(queue_id, new_visible_at, seq),
                _VIS_VALUE.pack(sent_ms, first_ms, last_ms, raw_count | _RELOCATED, source),
                db=dbs.vis,
            )
            txn.put(_LOG_KEY.pack(queue_id, seq), _U64.pack(new_visible_at), db=dbs.moved)
            statuses.append(OK if raw_count & _COUNT == count else STALE)
    return statuses


def expire(txn: Txn, dbs: CoreTables, queue_id: int, retention_cutoff_ms: int) -> int:
    """Remove the records sent before ``retention_cutoff_ms``; returns how many.

    They are trimmed from the log head, and dead-lettered ones anywhere in the log are found
    through the expiry index. Their delivery entries stay behind: every reader of ``vis``
    recognises them as expired by their own ``sent_ms`` and removes them when met.
    """
    prefix = _U32.pack(queue_id)
    removed = top = 0
    with txn.cursor(db=dbs.log) as cur:
        if cur.set_range(prefix):
            while cur.key()[:4] == prefix:
                if _HEADER.unpack_from(cur.value())[2] >= retention_cutoff_ms:
                    break
                removed += 1
                top = _LOG_KEY.unpack(cur.key())[1]
                if not cur.delete():
                    break
    with txn.cursor(db=dbs.moved) as cur:
        found = cur.set_range(_EXPIRY_KEY.pack(queue_id, EXPIRY_MARK, 0, 0))
        while found:
            key = cur.key()
            if len(key) != _EXPIRY_KEY.size or key[:5] != prefix + b"\xff":
                break
            _, _, sent_ms, seq = _EXPIRY_KEY.unpack(key)
            if sent_ms >= retention_cutoff_ms:
                break
            lkey = _LOG_KEY.pack(queue_id, seq)
            record = txn.get(lkey, db=dbs.log)  # None: deleted or expired already
            if (
                record is not None
                and len(record) >= HEADER_SIZE
                and _HEADER.unpack_from(record)[2] < retention_cutoff_ms
            ):
                txn.delete(lkey, db=dbs.log)
                removed += 1
                top = max(top, seq)
            found = cur.delete()
    if removed:
        _forget(txn, dbs, queue_id, removed, top)
    return removed


def counts(
    txn: Txn, dbs: CoreTables, queue_id: int, now_ms: int, retention_cutoff_ms: int
) -> tuple[int, int, int]:
    """(stored, in_flight, delayed): records kept, deliveries hidden by a receive, not yet due."""
    _, stored = _load_qstate(txn, dbs, queue_id)
    in_flight = delayed = 0
    prefix = _U32.pack(queue_id)
    with txn.cursor(db=dbs.vis) as cur:
        if cur.set_range(_VIS_KEY.pack(queue_id, now_ms + 1, 0)):
            for key, value in cur:
                if key[:4] != prefix:
                    break
                sent_ms, _, _, count, _ = _VIS_VALUE.unpack(value)
                if sent_ms < retention_cutoff_ms:
                    continue
                if count & _COUNT:
                    in_flight += 1
                else:
                    delayed += 1
    return stored, in_flight, delayed


def oldest_ms(txn: Txn, dbs: CoreTables, queue_id: int) -> int | None:
    """When the age of the queue's oldest message counts from (CloudWatch
    ApproximateAgeOfOldestMessage), None for an empty queue.

    The oldest is the log head: seqs follow sends and moves in time. Its age counts from its
    send, or for a dead-lettered message from its move (SQS: in a dead-letter queue the metric
    "indicates when the message moved to the dead-letter queue"), which the expiry index keeps
    (a store written before it did gives the sent time). One cursor step and one lookup. The
    caller expires the queue first: a record past retention still counts here.
    """
    prefix = _U32.pack(queue_id)
    with txn.cursor(db=dbs.log) as cur:
        if not cur.set_range(prefix) or cur.key()[:4] != prefix:
            return None
        key, record = cur.item()
    if len(record) < HEADER_SIZE:
        return None  # corrupt: no sent time to trust (a receive reports it)
    sent_ms = _HEADER.unpack_from(record)[2]
    if record_flags(record) & INDEXED:  # delayed or dead-lettered: only these can have moved
        seq = _LOG_KEY.unpack(key)[1]
        moved_at = txn.get(_EXPIRY_KEY.pack(queue_id, EXPIRY_MARK, sent_ms, seq), db=dbs.moved)
        if moved_at is not None and len(moved_at) == _U64.size:
            return int(_U64.unpack(moved_at)[0])
    return int(sent_ms)


def move(
    txn: Txn,
    dbs: CoreTables,
    queue_id: int,
    now_ms: int,
    entries: list[tuple[int, int]],
    to_queue_id: int,
    keep_state: bool,
) -> int:
    """Move messages ``(seq, visible_at_ms)`` of queue_id to to_queue_id, visible at ``now_ms``.

    ``keep_state``: a move to a dead-letter queue. The record moves unchanged (same message id,
    sent time and body: SQS keeps a standard message's enqueue time), the receive count and
    first receive stay, and queue_id is recorded as the dead-letter source. Without it, a
    redrive: SQS counts the message as new ("A new messageID and enqueueTime are assigned to
    redriven messages", SQS Developer Guide), so its record gets the id of its new seq and
    ``now_ms`` as its sent time (its retention restarts), and it arrives as a fresh message.
    visible_at_ms FRESH names a fresh message (as peek() gives them). Messages that no longer
    exist are skipped. Returns how many moved. Raises LookupError for a missing queue.
    """
    seq_to = _next_seq(txn, dbs, to_queue_id, _counters(txn, dbs, to_queue_id)[0])
    fresh_from = _counters(txn, dbs, queue_id)[2]
    removed = top = 0
    for seq, visible_at in entries:
        lkey = _LOG_KEY.pack(queue_id, seq)
        record = txn.get(lkey, db=dbs.log)
        if record is None:
            continue
        key: bytes | None = None
        value: bytes | None = None
        if visible_at != FRESH:
            key = _VIS_KEY.pack(queue_id, visible_at, seq)
            value = txn.get(key, db=dbs.vis)
            if value is None:
                continue
        elif seq < fresh_from or len(record) < HEADER_SIZE or record_flags(record) & INDEXED:
            continue  # not fresh (any more): it has a vis entry, to be moved by that
        if key is not None:
            txn.delete(key, db=dbs.vis)
        txn.delete(lkey, db=dbs.log)
        removed += 1
        top = max(top, seq)
        if value is None:  # fresh: as it would be in vis
            value = _VIS_VALUE.pack(_HEADER.unpack_from(record)[2], 0, 0, 0, 0)
        sent_ms, first_ms, last_ms, count, _ = _VIS_VALUE.unpack(value)
        if count & _RELOCATED:
            txn.delete(lkey, db=dbs.moved)
        to_key = _LOG_KEY.pack(to_queue_id, seq_to)
        if keep_state:
            txn.put(to_key, reflag_record(record, INDEXED), db=dbs.log)
            value = _VIS_VALUE.pack(sent_ms, first_ms, last_ms, count & _COUNT, queue_id)
            txn.put(_VIS_KEY.pack(to_queue_id, now_ms, seq_to), value, db=dbs.vis)
            # it keeps its sent time, likely older than its new neighbours': for expire(); and
            # the time of the move, from which its age counts there: for oldest_ms()
            txn.put(
                _EXPIRY_KEY.pack(to_queue_id, EXPIRY_MARK, sent_ms, seq_to),
                _U64.pack(now_ms),
                db=dbs.moved,
            )
        else:  # fresh: no vis entry
            txn.put(to_key, renew_record(record, now_ms, to_queue_id, seq_to), db=dbs.log)
        seq_to += 1
    if removed:
        _forget(txn, dbs, queue_id, removed, top)
    return removed


def peek(
    txn: Txn,
    dbs: CoreTables,
    queue_id: int,
    now_ms: int,
    limit: int,
    dead_lettered_only: bool,
    retention_cutoff_ms: int = 0,
) -> list[tuple[int, int, int]]:
    """Up to ``limit`` visible messages as (seq, visible_at_ms, source_queue_id), untouched.

    With ``dead_lettered_only``, only messages a dead-letter move brought here. Redrive uses it
    to pick what to move without receiving it. Fresh messages come last, with visible_at_ms
    FRESH. Messages sent before ``retention_cutoff_ms`` are passed over: they are never
    delivered, so never moved either.
    """
    out: list[tuple[int, int, int]] = []
    with txn.cursor(db=dbs.vis) as cur:
        if cur.set_range(_VIS_KEY.pack(queue_id, 0, 0)):
            for key, value in cur:
                qid, visible_at, seq = _VIS_KEY.unpack(key)
                if qid != queue_id or visible_at > now_ms or len(out) >= limit:
                    break
                sent_ms, _, _, _, source = _VIS_VALUE.unpack(value)
                if sent_ms >= retention_cutoff_ms and (source or not dead_lettered_only):
                    out.append((seq, visible_at, source))
    if dead_lettered_only or len(out) >= limit:
        return out
    with txn.cursor(db=dbs.log) as cur:
        if cur.set_range(_LOG_KEY.pack(queue_id, _counters(txn, dbs, queue_id)[2])):
            for key, value in cur:
                qid, seq = _LOG_KEY.unpack(key)
                if qid != queue_id or len(out) >= limit:
                    break
                if (
                    len(value) >= HEADER_SIZE
                    and not record_flags(value) & INDEXED
                    and _HEADER.unpack_from(value)[2] >= retention_cutoff_ms
                ):
                    out.append((seq, FRESH, 0))
    return out
