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
