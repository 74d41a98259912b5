"""Picks the core implementation: the Cython extension, or its pure-Python twin.

``MILLPOND_NO_EXTENSIONS=1`` (or a missing extension) selects the twin. ``IMPLEMENTATION`` says
which one is in use: ``"c"`` or ``"py"``. Both expose the same names (see ``_core_py``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from millpond import _core_py

if TYPE_CHECKING:
    from millpond._core_py import CoreTables, DecodedRecord, Delivery, Received, Txn


class Core(Protocol):
    """The core modules' API: what ``_core_py`` (the executable specification) and the Cython
    ``_core_c`` both provide, with the twin's signatures (see ``_core_py`` for each verb)."""

    IMPLEMENTATION: str
    HEADER_SIZE: int
    INDEXED: int
    FRESH: int
    OK: int
    STALE: int
    GONE: int
    NOT_IN_FLIGHT: int
    TOO_LONG: int

    def crc32c(self, data: bytes, crc: int = ...) -> int: ...
    def log_key(self, queue_id: int, seq: int) -> bytes: ...
    def vis_key(self, queue_id: int, visible_at_ms: int, seq: int) -> bytes: ...
    def encode_record(
        self,
        sent_ms: int,
        env_id: int,
        queue_id: int,
        seq: int,
        attrs: bytes,
        body: bytes,
        flags: int = ...,
    ) -> bytes: ...
    def decode_record(self, record: bytes) -> DecodedRecord | None: ...
    def record_flags(self, record: bytes) -> int: ...
    def reflag_record(self, record: bytes, flags: int) -> bytes: ...
    def renew_record(self, record: bytes, sent_ms: int, queue_id: int, seq: int) -> bytes: ...
    def encode_handle(
        self, secret: bytes, queue_id: int, seq: int, visible_at_ms: int, count: int
    ) -> str: ...
    def decode_handle(self, secret: bytes, handle: str) -> tuple[int, int, int, int] | None: ...
    def decode_handles(
        self, secret: bytes, queue_id: int, handles: list[str]
    ) -> list[tuple[int, int, int] | None]: ...
    def message_id(self, env_id: int, queue_id: int, seq: int) -> str: ...
    def create(self, txn: Txn, dbs: CoreTables, queue_id: int) -> None: ...
    def exists(self, txn: Txn, dbs: CoreTables, queue_id: int) -> bool: ...
    def purge(self, txn: Txn, dbs: CoreTables, queue_id: int) -> int: ...
    def drop(self, txn: Txn, dbs: CoreTables, queue_id: int) -> None: ...
    def send(
        self,
        txn: Txn,
        dbs: CoreTables,
        queue_id: int,
        now_ms: int,
        bodies: list[bytes],
        attrs: list[bytes],
        delays_ms: list[int],
        env_id: int,
    ) -> int: ...
    def send_each(
        self,
        txn: Txn,
        dbs: CoreTables,
        now_ms: int,
        env_id: int,
        deliveries: list[Delivery],
    ) -> list[int]: ...
    def send_envelopes(
        self,
        txn: Txn,
        dbs: CoreTables,
        now_ms: int,
        env_id: int,
        targets: list[tuple[int, bytes, int]],
        head: bytes,
        tail: bytes,
        attrs: bytes,
    ) -> list[int]: ...
    def receive(
        self,
        txn: Txn,
        dbs: CoreTables,
        queue_id: int,
        now_ms: int,
        max_messages: int,
        visibility_ms: int,
        retention_cutoff_ms: int,
        max_receive_count: int,
        secret: bytes | None = ...,
    ) -> tuple[list[Received], list[tuple[int, int]], list[int], int, int]: ...
    def delete(
        self, txn: Txn, dbs: CoreTables, queue_id: int, entries: list[tuple[int, int, int]]
    ) -> list[int]: ...
    def change_visibility(
        self,
        txn: Txn,
        dbs: CoreTables,
        queue_id: int,
        now_ms: int,
        entries: list[tuple[int, int, int, int]],
        max_hidden_ms: int,
    ) -> list[int]: ...
    def expire(self, txn: Txn, dbs: CoreTables, queue_id: int, retention_cutoff_ms: int) -> int: ...
    def counts(
        self, txn: Txn, dbs: CoreTables, queue_id: int, now_ms: int, retention_cutoff_ms: int
    ) -> tuple[int, int, int]: ...
    def oldest_ms(self, txn: Txn, dbs: CoreTables, queue_id: int) -> int | None: ...
    def move(
        self,
        txn: Txn,
        dbs: CoreTables,
        queue_id: int,
        now_ms: int,
        entries: list[tuple[int, int]],
        to_queue_id: int,
        keep_state: bool,
    ) -> int: ...
    def peek(
        self,
        txn: Txn,
        dbs: CoreTables,
        queue_id: int,
        now_ms: int,
        limit: int,
        dead_lettered_only: bool,
        retention_cutoff_ms: int = ...,
    ) -> list[tuple[int, int, int]]: ...


def load(name: str | None = None) -> Core:
    """The core module named ``"c"`` or ``"py"``; ``None`` picks as described above."""
    if name == "py":
        return _core_py
    if name is None and os.environ.get("MILLPOND_NO_EXTENSIONS", "") not in ("", "0"):
        return _core_py
    try:
        from millpond import _core_c
    except ImportError:
        if name == "c":
            raise
        return _core_py
    return _core_c


_default = load()
IMPLEMENTATION: str = _default.IMPLEMENTATION
