"""A durable store zero-fills the data file ahead of its pages (millpond/disk_reserve.py).

What a user would notice: the space a growing store's next commits write into is plain written
blocks (so fdatasync has no file-system metadata to journal), zeros never land on pages in use,
those of another process's commits included, and a file system that refuses the zeros costs
nothing but the speed-up.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import millpond
from millpond import disk_reserve

_FS_IOC_FIEMAP = 0xC020660B
_FIEMAP_FLAG_SYNC = 0x1
_FIEMAP_EXTENT_UNWRITTEN = 0x800
_HEADER = struct.Struct("=QQIIII")  # start, length, flags, mapped, count, reserved
_EXTENT = struct.Struct("=QQQQQIIII")  # logical, physical, length, 2 reserved, flags, 3 reserved


def _extents(path: Path, start: int, length: int) -> list[tuple[int, int, int]]:
    """(logical offset, length, flags) of the file's extents in [start, start + length)."""
    count = 256
    request = bytearray(_HEADER.size + count * _EXTENT.size)
    _HEADER.pack_into(request, 0, start, length, _FIEMAP_FLAG_SYNC, 0, count, 0)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, _FS_IOC_FIEMAP, request)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL):
            pytest.skip(f"this file system does not report extents (FIEMAP): {exc}")
        raise
    finally:
        os.close(fd)
    mapped = _HEADER.unpack_from(request, 0)[3]
    found = []
    for i in range(mapped):
        fields = _EXTENT.unpack_from(request, _HEADER.size + i * _EXTENT.size)
        found.append((fields[0], fields[2], fields[5]))
    return found


def _pages_end(broker: millpond.Broker) -> int:
    storage = broker._storage
    return (storage.env.info()["last_pgno"] + 1) * storage._page_size


def test_a_durable_store_writes_zeros_over_the_space_its_next_commits_take(
    tmp_path: Path,
) -> None:
    with millpond.open(tmp_path / "data", durability="fsync") as broker:
        q = broker.create_queue("q")
        q.send(b"first")
        end = _pages_end(broker)
        ahead = disk_reserve.ZERO_AHEAD // 2
        extents = _extents(tmp_path / "data" / "data.mdb", end, ahead)
        covered = sum(
            min(offset + length, end + ahead) - max(offset, end) for offset, length, _ in extents
        )
        assert covered == ahead  # every block there is allocated
        unwritten = [e for e in extents if e[2] & _FIEMAP_EXTENT_UNWRITTEN]
        assert not unwritten, f"blocks ahead still unwritten: {unwritten}"
        assert q.receive(1)[0].body == b"first"


def test_zeros_never_land_on_pages_another_process_wrote(tmp_path: Path) -> None:
    # This process zero-fills ahead of its first send; another process then grows the file
    # far past that; this process's next fill must start past the other's pages, not where
    # its own last fill ended.
    data = tmp_path / "data"
    body = b"z" * 3000
    with millpond.open(data, durability="fsync") as broker:
        q = broker.create_queue("q")
        q.send(b"before")
        script = (
            "import sys, millpond\n"
            "with millpond.open(sys.argv[1], durability='fsync') as b:\n"
            "    q = b.queue('q')\n"
            "    for i in range(120):\n"
            "        q.send_batch([b'%d-' % i + b'z' * 3000] * 10)\n"
        )
        subprocess.run([sys.executable, "-c", script, str(data)], check=True, timeout=120)
        assert _pages_end(broker) > 3 * disk_reserve.ZERO_AHEAD
        q.send(b"after")  # this process's next commit of sends: a fill is due
        bodies = []
        while got := q.receive(10):
            bodies += [m.body for m in got]
            q.delete_batch([m.receipt_handle for m in got])
    assert len(bodies) == 1202
    assert {b"before", b"after"} <= set(bodies)
    others = sorted(b for b in bodies if b not in (b"before", b"after"))
    assert others == sorted(b"%d-" % i + body for i in range(120) for _ in range(10))


def test_a_file_system_that_refuses_the_zeros_only_loses_the_speed_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "pwrite", refused)
    with millpond.open(tmp_path / "data", durability="fsync") as broker:
        q = broker.create_queue("q")
        for i in range(3):
            q.send(b"%d" % i)
        assert sorted(m.body for m in q.receive(10)) == [b"0", b"1", b"2"]
    assert "not zero-filled ahead" in caplog.text
