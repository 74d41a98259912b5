"""The disk reserve's reading of where LMDB's pages end (millpond/lmdb_meta.py): the same
answer as py-lmdb's env.info(), after this process's commits and another process's, and
env.info() itself when the file is not laid out as expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import millpond
from millpond import lmdb_meta


def _both(broker: millpond.Broker) -> tuple[int, int]:
    storage = broker._storage
    return storage._last_page.last_pgno(), storage.env.info()["last_pgno"]


def test_the_last_page_read_off_the_meta_pages_is_lmdbs(tmp_path: Path) -> None:
    with millpond.open(tmp_path / "data", durability="os") as broker:
        assert broker._storage._last_page._map is not None  # read off the file, not env.info()
        q = broker.create_queue("q")
        seen = set()
        for _ in range(30):
            q.send_batch([b"m" * 2000] * 10)
            mine, lmdbs = _both(broker)
            assert mine == lmdbs
            seen.add(mine)
        assert len(seen) > 10  # it followed the file as it grew
        script = (
            "import sys, millpond\n"
            "with millpond.open(sys.argv[1], durability='os') as b:\n"
            "    b.queue('q').send_batch([b'o' * 3000] * 10)\n"
        )
        before = _both(broker)[0]
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "data")], check=True)
        mine, lmdbs = _both(broker)
        assert mine == lmdbs > before  # another process's commits too


def test_an_unexpected_layout_falls_back_to_env_info(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lmdb_meta, "_MAGIC", 0x12345678)
    with millpond.open(tmp_path / "data", durability="fsync") as broker:
        assert broker._storage._last_page._map is None
        q = broker.create_queue("q")
        for _ in range(20):
            q.send_batch([b"m" * 2000] * 10)
            mine, lmdbs = _both(broker)
            assert mine == lmdbs
        assert len(q.receive(10)) == 10
