"""The raw py-lmdb queue model: the floor every millpond queue benchmark is measured against.

It does the least LMDB work a durable queue needs, with the flags millpond's storage uses, and
nothing else: no queue ids, records, CRCs, counters, handles or group commit.

- ``log``: key seq u64 (big-endian, so ``append=True`` is allowed), value the body.
- ``vis``: key visible_at_ms u64 | seq u64, value a 4-byte receive count.
- send = log put (append) + vis put; receive = vis cursor step + delete + re-put at a later
  visible_at + log get; delete = two deletes. One write transaction per call, exactly as the
  broker commits one per call (send 1 = 1 txn, send 100 = 1 txn, receive 10 = 1 txn,
  delete 10 = 1 txn).

Durability flags mirror ``millpond.storage.Storage``: "fsync" = ``sync=True, metasync=True``
(one data fdatasync plus a synchronous meta-page write per commit); "os" = ``sync=False``.
"""

from __future__ import annotations

import os
import struct
import time

import lmdb

_LOG_KEY = struct.Struct(">Q")
_VIS_KEY = struct.Struct(">QQ")
_COUNT = struct.Struct(">I")
_NEW_STATE = _COUNT.pack(0)
MAP_SIZE = 1 << 30  # millpond's DEFAULT_MAP_SIZE
VISIBILITY_MS = 30_000  # millpond's default VisibilityTimeout


def _open(path: str, durability: str, max_dbs: int) -> lmdb.Environment:
    if durability not in ("fsync", "os"):
        raise ValueError(f"durability must be 'fsync' or 'os', not {durability!r}")
    os.makedirs(path, exist_ok=True)
    return lmdb.open(
        path,
        map_size=MAP_SIZE,
        max_dbs=max_dbs,
        max_readers=512,
        sync=durability == "fsync",
        metasync=True,
        readahead=False,
    )


class RawQueue:
    """The raw model of one queue in its own environment at ``path``.

    Handles returned by ``receive`` are ``(vis_key, log_key)`` pairs; ``delete`` takes a list of
    them. Not thread-safe by itself except for ``send_one``/``send_many``, whose seq counter is
    bumped under the LMDB writer lock (the write transaction).
    """

    def __init__(self, path: str, durability: str) -> None:
        self.env = _open(path, durability, max_dbs=2)
        self.log = self.env.open_db(b"log")
        self.vis = self.env.open_db(b"vis")
        self._seq = 1

    def close(self) -> None:
        self.env.close()

    def send_one(self, body: bytes) -> None:
        """One message, one write transaction: 2 puts."""
        now = time.time_ns() // 1_000_000
        with self.env.begin(write=True) as txn:
            seq = self._seq  # read inside the txn: the writer lock orders concurrent senders
            self._seq = seq + 1
            txn.put(_LOG_KEY.pack(seq), body, append=True, db=self.log)
            txn.put(_VIS_KEY.pack(now, seq), _NEW_STATE, db=self.vis)

    def send_many(self, bodies: list[bytes]) -> None:
        """All ``bodies`` in one write transaction: 2 puts each."""
        now = time.time_ns() // 1_000_000
        log, vis, log_key, vis_key, state = (
            self.log,
            self.vis,
            _LOG_KEY.pack,
            _VIS_KEY.pack,
            _NEW_STATE,
        )
        with self.env.begin(write=True) as txn:
            put = txn.put
            seq = self._seq
            for body in bodies:
                put(log_key(seq), body, append=True, db=log)
                put(vis_key(now, seq), state, db=vis)
                seq += 1
            self._seq = seq

    def receive(self, max_messages: int) -> list[tuple[bytes, bytes]]:
        """Up to ``max_messages`` visible messages, hidden for 30 s; one write transaction.

        Per message: cursor read + cursor delete (which steps to the next entry) + re-put at
        ``now + 30 s`` + log get. Re-put keys sort after every visible key, so the cursor never
        meets them before it stops.
        """
        now = time.time_ns() // 1_000_000
        later = now + VISIBILITY_MS
        vis, log, unpack, vis_key, log_key = (
            self.vis,
            self.log,
            _VIS_KEY.unpack,
            _VIS_KEY.pack,
            _LOG_KEY.pack,
        )
        handles = []
        with self.env.begin(write=True) as txn:
            cur = txn.cursor(db=vis)
            if cur.first():
                put, get = txn.put, txn.get
                for _ in range(max_messages):
                    key, state = cur.item()
                    if not key:
                        break
                    visible_at, seq = unpack(key)
                    if visible_at > now:
                        break
                    cur.delete()
                    new_key = vis_key(later, seq)
                    put(new_key, state, db=vis)
                    lkey = log_key(seq)
                    get(lkey, db=log)
                    handles.append((new_key, lkey))
        return handles

    def delete(self, handles: list[tuple[bytes, bytes]]) -> None:
        """Delete received messages in one write transaction: 2 deletes each."""
        vis, log = self.vis, self.log
        with self.env.begin(write=True) as txn:
            delete = txn.delete
            for vkey, lkey in handles:
                delete(vkey, db=vis)
                delete(lkey, db=log)

    def prefill(self, count: int, body: bytes, chunk: int = 5000) -> None:
        """Store ``count`` visible messages (setup only, big transactions)."""
        while count > 0:
            n = min(chunk, count)
            self.send_many([body] * n)
            count -= n

    def stored(self) -> tuple[int, int]:
        """(log entries, vis entries): for the sanity checks after a benchmark."""
        with self.env.begin() as txn:
            return txn.stat(self.log)["entries"], txn.stat(self.vis)["entries"]


class RawCommit:
    """One put per write transaction into the main DB: the cost of one bare LMDB commit."""

    def __init__(self, path: str, durability: str = "fsync") -> None:
        self.env = _open(path, durability, max_dbs=0)
        self._seq = 1

    def close(self) -> None:
        self.env.close()

    def commit_one(self, value: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(_LOG_KEY.pack(self._seq), value, append=True)
        self._seq += 1
