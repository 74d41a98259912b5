"""Sends remember each queue's next seq between transactions (the C core's NextSeqs); every
test here is one way another writer can append in between. Had the remembered seq been used
there, a send would take a seq already taken and overwrite that message: one would be missing.

Both cores run them: the pure-Python core keeps no such cache and must give the same result.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import lmdb
import pytest

import millpond
from millpond import core
from millpond.storage import Tables

CTX = mp.get_context("spawn")
ENV_ID = 7


def _drain(queue: millpond.Queue) -> list[str]:
    texts: list[str] = []
    while batch := queue.receive(10, visibility_timeout=600):
        texts += [m.text for m in batch]
    return texts


def _send_batch(data_dir: str, impl: str, texts: list[str]) -> None:
    with millpond.open(data_dir, durability="os", core=impl) as b:
        b.queue("q").send_batch(texts)  # one transaction


def _in_another_process(data_dir: str, impl: str, texts: list[str]) -> None:
    child = CTX.Process(target=_send_batch, args=(data_dir, impl, texts))
    child.start()
    child.join(60)
    assert child.exitcode == 0


def test_sends_and_publishes_around_another_process_s_sends_lose_nothing(data_dir, impl):
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.create_queue("q")
        topic = b.create_topic("t")
        topic.subscribe(q, raw_message_delivery=True)
        q.send("ours-1")
        topic.publish("ours-2")
        _in_another_process(data_dir, impl, ["theirs-1", "theirs-2"])
        q.send("ours-3")
        topic.publish("ours-4")
        assert _drain(q) == ["ours-1", "ours-2", "theirs-1", "theirs-2", "ours-3", "ours-4"]


def test_a_rolled_back_send_then_another_process_s_commit_loses_nothing(data_dir, impl):
    # The rolled-back transaction and the other process's have the same LMDB number: only
    # a confirmed commit may carry seqs over.
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.create_queue("q")
        q.send("ours-1")

        def send_then_fail(txn: Any, now_ms: int) -> None:
            b._core.send(txn, b._storage.tables, q.queue_id, now_ms, [b"void"], [b""], [0], 1)
            raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            b._storage.write(send_then_fail)
        _in_another_process(data_dir, impl, ["theirs-1", "theirs-2"])
        q.send("ours-2")
        assert _drain(q) == ["ours-1", "theirs-1", "theirs-2", "ours-2"]


def test_a_publish_rolled_back_inside_a_group_commit_loses_nothing(data_dir, impl):
    with millpond.open(data_dir, durability="os", core=impl) as b:
        q = b.create_queue("q")
        q.send("kept-1")
        tables, send = b._storage.tables, b._core.send

        def publish_then_fail(txn: Any, now_ms: int) -> None:
            send(txn, tables, q.queue_id, now_ms, [b"void"], [b""], [0], 1)
            raise millpond.errors.InvalidParameterValue("rolled back alone")

        def two_ops_in_one_commit(txn: Any, now_ms: int) -> None:
            # what Storage does for an atomic op sharing its commit: a nested transaction
            b._storage._nested(txn, _Op(publish_then_fail), now_ms)

        with pytest.raises(millpond.errors.InvalidParameterValue):
            b._storage.write(two_ops_in_one_commit)
        _in_another_process(data_dir, impl, ["theirs-1", "theirs-2"])
        q.send("kept-2")
        assert _drain(q) == ["kept-1", "theirs-1", "theirs-2", "kept-2"]


class _Op:
    def __init__(self, fn: Any) -> None:
        self.fn = fn


@pytest.fixture
def env(tmp_path):  # type: ignore[no-untyped-def]
    e = lmdb.open(str(tmp_path / "env"), max_dbs=8, map_size=1 << 26, sync=False)
    with e.begin(write=True) as txn:
        tables = Tables(e, txn)
    yield e, tables
    e.close()


def _bodies(c: Any, txn: Any, tables: Tables, queue_id: int) -> list[bytes]:
    received = c.receive(txn, tables, queue_id, 1_000, 10, 30_000, 0, 0)[0]
    return [r[6] for r in received]


def test_a_move_into_the_queue_in_the_same_transaction_is_not_overwritten(env, impl):
    c = core.load(impl)
    e, t = env
    with e.begin(write=True) as txn:
        c.create(txn, t, 1)
        c.create(txn, t, 2)
        c.send(txn, t, 2, 1_000, [b"moved"], [b""], [0], ENV_ID)
        c.send(txn, t, 1, 1_000, [b"before"], [b""], [0], ENV_ID)
        c.send_each(txn, t, 1_000, ENV_ID, [(1, b"published", b"", 0)])
        assert c.move(txn, t, 2, 1_000, [(1, c.FRESH)], 1, False) == 1
        c.send(txn, t, 1, 1_000, [b"after"], [b""], [0], ENV_ID)
        c.send_each(txn, t, 1_000, ENV_ID, [(1, b"published later", b"", 0)])
        assert _bodies(c, txn, t, 1) == [
            b"before",
            b"published",
            b"moved",
            b"after",
            b"published later",
        ]


def test_a_queue_dropped_in_the_same_transaction_takes_no_more_sends(env, impl):
    c = core.load(impl)
    e, t = env
    with e.begin(write=True) as txn:
        c.create(txn, t, 1)
        c.send(txn, t, 1, 1_000, [b"a"], [b""], [0], ENV_ID)
        c.drop(txn, t, 1)
        with pytest.raises(LookupError):
            c.send(txn, t, 1, 1_000, [b"b"], [b""], [0], ENV_ID)
        with pytest.raises(LookupError):
            c.send_each(txn, t, 1_000, ENV_ID, [(1, b"c", b"", 0)])


def test_many_queues_keep_their_seqs_apart_across_commits(data_dir, impl):
    # more queues than the table's first size: it grows, and every queue keeps its own seqs
    with millpond.open(data_dir, durability="os", core=impl) as b:
        topic = b.create_topic("t")
        queues = [b.create_queue(f"q{i}") for i in range(40)]
        for q in queues:
            topic.subscribe(q, raw_message_delivery=True)
        for i in range(3):
            topic.publish(f"m{i}")
            queues[i].send(f"direct{i}")
        assert _drain(queues[0]) == ["m0", "direct0", "m1", "m2"]
        assert _drain(queues[2]) == ["m0", "m1", "m2", "direct2"]
        assert _drain(queues[39]) == ["m0", "m1", "m2"]


def test_a_refused_send_or_fan_out_hands_out_no_seq(env, impl):
    # A fan-out refused for a missing queue falls back to single sends in the same transaction;
    # a failed op's transaction may commit the other ops': a seq handed out for nothing would
    # count as a stored message for good (counts are seq arithmetic).
    c = core.load(impl)
    e, t = env
    with e.begin(write=True) as txn:
        c.create(txn, t, 1)
        with pytest.raises(LookupError):
            c.send_each(txn, t, 1_000, ENV_ID, [(1, b"a", b"", 0), (99, b"b", b"", 0)])
        with pytest.raises(TypeError):
            c.send(txn, t, 1, 1_000, [b"d", "not bytes"], [b"", b""], [0, 0], ENV_ID)
        c.send(txn, t, 1, 1_000, [b"c"], [b""], [0], ENV_ID)
        stored = c.counts(txn, t, 1, 1_000, 0)[0]
        bodies = _bodies(c, txn, t, 1)
        # (the pure-Python core stores b"d" before it meets the str; the C core checks first)
        assert bodies in ([b"c"], [b"d", b"c"])
        assert stored == len(bodies)
