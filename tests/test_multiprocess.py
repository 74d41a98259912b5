"""Several processes sharing one data directory."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest

import millpond
from millpond import errors
from millpond.wakeups import Wakeups

CTX = mp.get_context("spawn")  # a fresh interpreter: nothing inherited from this process


def _long_poll(data_dir: str, impl: str, ready, out) -> None:  # type: ignore[no-untyped-def]
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.queue("q")
        ready.set()
        messages = q.receive(1, wait_seconds=20)
        out.put((time.monotonic(), [m.text for m in messages]))


def test_a_send_in_one_process_wakes_a_long_poll_in_another(data_dir, impl):
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.create_queue("q")
        ready, out = CTX.Event(), CTX.Queue()
        child = CTX.Process(target=_long_poll, args=(data_dir, impl, ready, out))
        child.start()
        assert ready.wait(30)
        time.sleep(0.2)  # let the child block in its long poll
        q.send("hello")
        sent_at = time.monotonic()
        received_at, texts = out.get(timeout=30)
        child.join(10)
    assert texts == ["hello"]
    # It returned because of the send, not at the end of its 20 s wait. (Latency figures are
    # measured in bench/, not asserted here.)
    assert received_at - sent_at < 5


def _consume(data_dir: str, impl: str, seconds: float, out) -> None:  # type: ignore[no-untyped-def]
    got = []
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.queue("q")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batch = q.receive(10, visibility_timeout=600, wait_seconds=1)
            for m in batch:
                got.append(m.text)
            if batch:
                q.delete_batch([m.receipt_handle for m in batch])
            elif not got and time.monotonic() > deadline - seconds / 2:
                continue
    out.put((os.getpid(), got))


def test_consumers_in_several_processes_never_share_a_message(data_dir, impl):
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.create_queue("q")
        for start in range(0, 400, 10):
            q.send_batch([f"m{i}" for i in range(start, start + 10)])
    out = CTX.Queue()
    children = [CTX.Process(target=_consume, args=(data_dir, impl, 4.0, out)) for _ in range(3)]
    for c in children:
        c.start()
    results = [out.get(timeout=60) for _ in children]
    for c in children:
        c.join(10)
    everything = [text for _, got in results for text in got]
    assert sorted(everything) == sorted(f"m{i}" for i in range(400))  # each exactly once
    with millpond.open(data_dir, durability="os", core=impl) as b:
        assert b.queue("q").get_attributes()["ApproximateNumberOfMessages"] == "0"


def _change_attributes(data_dir: str, impl: str) -> None:
    with millpond.open(data_dir, durability="os", core=impl) as b:
        b.queue("q").set_attributes({"VisibilityTimeout": 1})


def test_attribute_changes_from_another_process_are_picked_up(data_dir, impl, monkeypatch):
    monkeypatch.setattr(millpond.broker, "REFRESH_INTERVAL_S", 0.0)
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.create_queue("q")
        child = CTX.Process(target=_change_attributes, args=(data_dir, impl))
        child.start()
        child.join(30)
        q.send("x")
        assert q.get_attributes()["VisibilityTimeout"] == "1"
        q.receive()
        time.sleep(1.1)  # the real clock: the 1 s visibility timeout from the other process
        assert len(q.receive()) == 1


def test_purge_interval_is_shared_between_processes(data_dir, impl):
    with millpond.open(data_dir, durability="os", core=impl) as b:
        b.create_queue("q").purge()
    with millpond.open(data_dir, durability="os", core=impl) as b:  # as another process would
        with pytest.raises(errors.PurgeQueueInProgress):
            b.queue("q").purge()


def test_opening_a_directory_twice_in_one_process_is_refused(data_dir, impl):
    with millpond.open(data_dir, durability="os", core=impl):
        with pytest.raises(errors.AlreadyOpen, match="already open in this process"):
            millpond.open(data_dir, durability="os", core=impl)
    millpond.open(data_dir, durability="os", core=impl).close()  # fine once closed


def test_the_doorbell_is_used_when_the_extension_is_built(tmp_path):
    w = Wakeups(str(tmp_path))
    try:
        try:
            from millpond._core_c import DOORBELL_SUPPORTED
        except ImportError:
            pytest.skip("C extension not built: long polls fall back to 10 ms re-checks")
        assert w.cross_process == DOORBELL_SUPPORTED
        g = w.generation(7)
        w.notify(7)
        assert w.generation(7) == g + 1
        t0 = time.monotonic()
        w.wait(7, g, 5.0)  # the generation moved: returns at once
        assert time.monotonic() - t0 < 1
    finally:
        w.close()


def _grow_the_map(data_dir: str, impl: str, go, done) -> None:  # type: ignore[no-untyped-def]
    with millpond.open(data_dir, durability="os", core=impl, map_size=64 << 10) as b:
        q = b.queue("q")
        assert go.wait(30)
        q.send(b"x" * (600 << 10))  # MapFull: this process grows the map and commits
        done.set()


def test_open_while_another_process_grows_the_map(data_dir, impl, monkeypatch):
    # Found by a torture run (several processes, small map_size): open() raised a raw
    # lmdb.MapResizedError when another process grew the map between LMDB's env open and
    # Storage._open's first write transaction. The interleaving is forced here by a hook
    # around lmdb.open in this process; open() must adopt the bigger map, as reads and
    # writes already do.
    import lmdb

    import millpond.storage

    with millpond.open(data_dir, durability="os", core=impl, map_size=64 << 10) as b:
        b.create_queue("q")
    go, done = CTX.Event(), CTX.Event()
    child = CTX.Process(target=_grow_the_map, args=(data_dir, impl, go, done))
    child.start()
    real_open = lmdb.open

    def open_then_let_the_other_process_grow(*args, **kwargs):  # type: ignore[no-untyped-def]
        env = real_open(*args, **kwargs)
        go.set()
        assert done.wait(30)
        return env

    monkeypatch.setattr(millpond.storage.lmdb, "open", open_then_let_the_other_process_grow)
    try:
        with millpond.open(data_dir, durability="os", core=impl, map_size=64 << 10) as b:
            monkeypatch.undo()
            assert [m.body for m in b.queue("q").receive(1)] == [b"x" * (600 << 10)]
    finally:
        child.join(30)
    assert child.exitcode == 0


def _grow_once(data_dir: str, impl: str) -> None:
    with millpond.open(data_dir, durability="os", core=impl, map_size=64 << 10) as b:
        b.queue("q").send(b"x" * (600 << 10))  # MapFull: grows the map and commits


def test_a_read_adopts_a_grown_map_while_a_write_is_open(data_dir, impl):
    # Found by a torture run: Storage.read() met MDB_MAP_RESIZED (another process grew the
    # map) and called _adopt_map_size() -> env.set_mapsize(0) while another thread of this
    # process had a write transaction open; py-lmdb refused with a raw lmdb.Error ("Cannot
    # set_mapsize while a write transaction is active"). The reader is held just before it
    # adopts (the wrapper only delays the call) until a writer, which adopted the map itself,
    # is inside its transaction.
    import threading

    b = millpond.open(data_dir, durability="os", core=impl, map_size=64 << 10)
    try:
        q = b.create_queue("q")
        child = CTX.Process(target=_grow_once, args=(data_dir, impl))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        storage = b._storage
        original = storage._adopt_map_size
        resized, in_txn, done = threading.Event(), threading.Event(), threading.Event()
        reader_ident: list[int] = []

        def delayed_adopt() -> None:
            if reader_ident and threading.get_ident() == reader_ident[0]:
                resized.set()
                in_txn.wait(10)
            original()

        storage._adopt_map_size = delayed_adopt  # type: ignore[method-assign]
        outcome: list[object] = []

        def read() -> None:
            reader_ident.append(threading.get_ident())
            try:
                outcome.append(storage.read(lambda txn: txn.stat(storage.tables.log)["entries"]))
            except Exception as exc:  # noqa: BLE001 - the assertion below shows it
                outcome.append(exc)
            done.set()

        def hold_the_write(txn, tables, queue_id, now_ms):  # type: ignore[no-untyped-def]
            in_txn.set()
            done.wait(10)  # the write transaction stays open while the reader adopts
            return 0

        reader = threading.Thread(target=read)
        reader.start()
        assert resized.wait(10), "the read did not meet MDB_MAP_RESIZED"
        q._write(hold_the_write)
        reader.join(10)
        assert outcome == [1], f"the read failed: {outcome!r}"
    finally:
        b.close()


def test_a_full_store_drains_after_a_reader_was_killed(data_dir, impl):
    # Found by a torture run (small max_map_size, SIGKILLed processes): a process killed inside
    # a read transaction leaves a reader slot that pins the full store's pages, so the
    # copy-on-write pages of receives and deletes cannot reuse freed ones and the reserve runs
    # out after a few batches: delete_batch raises StorageFull, and keeps raising, because the
    # stale slot is only cleared by a reader_check() that runs when commits % 1024 == 0 and
    # 60 s have passed (no commit succeeds any more). README: "receives and deletes keep
    # working from that reserve, so a full store can always be drained".
    import subprocess
    import sys

    with millpond.open(
        data_dir,
        durability="os",
        core=impl,
        map_size=64 << 10,
        max_map_size=2 << 20,
        reserve=256 << 10,
    ) as b:
        q = b.create_queue("q")
        with pytest.raises(errors.StorageFull):
            while True:
                q.send_batch([b"x" * 3000] * 10)
        stored = int(q.get_attributes()["ApproximateNumberOfMessages"])
        assert stored > 100
        code = (
            "import lmdb, os, sys; env = lmdb.open(sys.argv[1], max_dbs=12, max_readers=512); "
            "txn = env.begin(); os.kill(os.getpid(), 9)"
        )
        killed = subprocess.run([sys.executable, "-c", code, data_dir], timeout=60)
        assert killed.returncode == -9
        drained = 0
        while True:
            messages = q.receive(10, visibility_timeout=600)
            if not messages:
                break
            q.delete_batch([m.receipt_handle for m in messages])
            drained += len(messages)
        assert drained == stored
