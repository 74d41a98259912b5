"""Operator tools for a data directory: a consistent backup while it is in use, and an
integrity check (``millpond backup`` and ``millpond check``).

A path names either one store (a directory holding ``data.mdb``: ``millpond.open``'s) or a
daemon's ``--data`` directory, which holds one store per region (``us-east-1/``, ...); both
tools take either and keep the layout.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass, field

import lmdb

from millpond import directories
from millpond.clock import SystemClock
from millpond.core import load as load_core
from millpond.errors import InvalidParameterValue
from millpond.storage import _TABLES, Storage

DATA_FILE = "data.mdb"
_LOG_KEY = struct.Struct(">IQ")  # queue_id | seq (csrc/millpond.h)
_QUEUE_NAME_PREFIX = b"qn:"  # meta: queue id -> name (broker.py)


def stores(path: str) -> list[str]:
    """The stores under ``path``, as paths relative to it ("." for ``path`` itself).

    Raises InvalidParameterValue when there is none (not a millpond data directory).
    """
    if os.path.isfile(os.path.join(path, DATA_FILE)):
        return ["."]
    found = []
    if os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            if os.path.isfile(os.path.join(path, name, DATA_FILE)):
                found.append(name)
    if not found:
        raise InvalidParameterValue(f"{path} holds no millpond data (no {DATA_FILE})")
    return found


def _open(path: str) -> Storage:
    # "os": opening writes nothing (the tables exist), and the tools never write.
    return Storage(path, SystemClock(), durability="os")


def backup(source: str, destination: str) -> list[str]:
    """Copy every store under ``source`` into ``destination`` (missing or empty), keeping
    the layout; returns the stores copied. See :func:`copy_store`. From a process that has the
    data open, use ``Broker.backup`` (LMDB allows one opening per process)."""
    found = stores(source)
    _check_empty(destination)
    for store in found:
        storage = _open(os.path.join(source, store))
        try:
            copy_store(storage, os.path.normpath(os.path.join(destination, store)))
        finally:
            storage.close()
    return found


def copy_store(storage: Storage, destination: str) -> None:
    """Copy one open store into ``destination`` (missing or empty): a consistent snapshot (one
    read transaction: other threads and processes go on writing meanwhile), compacted, and
    synced to disk before this returns. Restore by opening the copy (``millpond.open``, or
    ``millpond serve --data``)."""
    _check_empty(destination)
    created = directories.make_dirs(destination)
    storage.read(lambda txn: storage.env.copy(destination, compact=True, txn=txn))
    fd = os.open(os.path.join(destination, DATA_FILE), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    directories.sync_new_entries(destination, created, new_files=True)


def _check_empty(destination: str) -> None:
    if os.path.exists(destination) and (not os.path.isdir(destination) or os.listdir(destination)):
        raise InvalidParameterValue(f"the backup's destination {destination} is not empty")


@dataclass
class StoreCheck:
    """What :func:`check` found in one store."""

    store: str
    queues: int = 0  # queues that hold records
    records: int = 0  # message records read
    entries: int = 0  # entries read in all tables
    corrupt: list[tuple[str, int]] = field(default_factory=list)  # (queue, seq) failing the CRC
    error: str | None = None  # a table LMDB could not read through

    @property
    def ok(self) -> bool:
        return not self.corrupt and self.error is None


def check(path: str) -> list[StoreCheck]:
    """Read every entry of every table of every store under ``path`` (LMDB reports a broken
    page) and check each message record's CRC32C; changes nothing. A receive skips a record
    that fails its CRC (and logs it): this lists them all."""
    results = []
    for store in stores(path):
        result = StoreCheck(store)
        storage = _open(os.path.join(path, store))
        try:
            storage.read(functools.partial(_check, storage=storage, result=result))
        except lmdb.Error as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            storage.close()
        results.append(result)
    return results


def _check(txn: lmdb.Transaction[bytes], storage: Storage, result: StoreCheck) -> None:
    tables = storage.tables
    names = {}
    with txn.cursor(db=tables.meta) as cursor:
        if cursor.set_range(_QUEUE_NAME_PREFIX):
            for key, value in cursor:
                if not key.startswith(_QUEUE_NAME_PREFIX):
                    break
                names[int.from_bytes(key[len(_QUEUE_NAME_PREFIX) :], "big")] = value.decode()
    queues = set()
    decode_record = load_core().decode_record
    with txn.cursor(db=tables.log) as cursor:
        for key, value in cursor:
            queue_id, seq = _LOG_KEY.unpack(key)
            queues.add(queue_id)
            result.records += 1
            if decode_record(value) is None:
                result.corrupt.append((names.get(queue_id, f"#{queue_id}"), seq))
    result.queues = len(queues)
    for name in _TABLES:
        with txn.cursor(db=getattr(tables, name)) as cursor:
            result.entries += sum(1 for _ in cursor.iternext(keys=True, values=True))
