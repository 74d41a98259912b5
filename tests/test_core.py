"""The core contract, run on both implementations, and byte equality between them."""

from __future__ import annotations

import os

import lmdb
import pytest

from millpond import _core_py, core
from millpond.storage import Tables

from .conftest import IMPLEMENTATIONS


@pytest.fixture
def c(impl):
    return core.load(impl)


@pytest.fixture
def env(tmp_path):
    e = lmdb.open(str(tmp_path / "env"), max_dbs=8, map_size=1 << 26, sync=False)
    with e.begin(write=True) as txn:
        tables = Tables(e, txn)
    yield e, tables
    e.close()


ENV_ID = 0xABCD0123


def _send(c, env, queue_id, now, bodies, delays=None, attrs=None):
    e, t = env
    with e.begin(write=True) as txn:
        return c.send(
            txn,
            t,
            queue_id,
            now,
            list(bodies),
            attrs or [b""] * len(bodies),
            delays or [0] * len(bodies),
            ENV_ID,
        )


def _receive(c, env, queue_id, now, n=10, vis=30_000, cutoff=0, max_count=0):
    e, t = env
    with e.begin(write=True) as txn:
        return c.receive(txn, t, queue_id, now, n, vis, cutoff, max_count)


def _create(env, c, *queue_ids):
    e, t = env
    with e.begin(write=True) as txn:
        for queue_id in queue_ids:
            c.create(txn, t, queue_id)


@pytest.mark.parametrize("data", [b"", b"a", b"123456789", bytes(range(256)) * 5, b"x" * 7])
def test_crc32c_matches_the_castagnoli_check_value_and_the_twin(data):
    assert _core_py.crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    for name in IMPLEMENTATIONS:
        assert core.load(name).crc32c(data) == _core_py.crc32c(data)


@pytest.mark.skipif("c" not in IMPLEMENTATIONS, reason="C core not built")
def test_layouts_are_byte_identical_between_implementations():
    cc, py = core.load("c"), _core_py
    assert cc.log_key(7, 2**40 + 3) == py.log_key(7, 2**40 + 3)
    assert cc.vis_key(7, 1_700_000_000_000, 9) == py.vis_key(7, 1_700_000_000_000, 9)
    body = os.urandom(1500)
    assert cc.encode_record(123, 1, 2, 3, b"attrs", body) == py.encode_record(
        123, 1, 2, 3, b"attrs", body
    )
    args = (b"secret", 3, 99, 1_700_000_030_000, 4)
    assert cc.encode_handle(*args) == py.encode_handle(*args)
    assert cc.message_id(0xDEADBEEF, 3, 99) == py.message_id(0xDEADBEEF, 3, 99)


def test_keys_sort_numerically(c):
    keys = [c.vis_key(1, t, s) for t in (5, 256, 70_000, 2**40) for s in (1, 300)]
    assert keys == sorted(keys)
    assert c.vis_key(1, 2**40, 1) < c.vis_key(2, 0, 0)


def test_record_round_trip_and_every_corruption_is_caught(c):
    record = c.encode_record(42, 0xDEADBEEF, 3, 99, b"meta", b"the body")
    assert c.decode_record(record) == (
        42,
        "deadbeef-0000-0003-0000-000000000063",
        b"meta",
        b"the body",
    )
    for i in range(len(record)):
        broken = bytearray(record)
        broken[i] ^= 0x01
        assert c.decode_record(bytes(broken)) is None, f"flip at byte {i} not caught"
    assert c.decode_record(record[:-1]) is None
    assert c.decode_record(b"") is None


def test_handles_round_trip_and_reject_forgeries(c):
    handle = c.encode_handle(b"k1", 3, 99, 1234, 2)
    assert c.decode_handle(b"k1", handle) == (3, 99, 1234, 2)
    assert c.decode_handle(b"k2", handle) is None  # another data directory's handle
    tampered = ("B" if handle[5] != "B" else "C").join((handle[:5], handle[6:]))
    assert c.decode_handle(b"k1", tampered) is None
    for junk in ("garbage", "", handle + "x", "!" * 38, None, 17):
        assert c.decode_handle(b"k1", junk) is None


def test_send_then_receive_hides_and_counts(c, env):
    e, t = env
    _create(env, c, 1)
    first = _send(c, env, 1, 1000, [b"a", b"b", b"c"], delays=[0, 0, 5000])
    assert first == 1
    received, over, corrupt, expired, next_due = _receive(c, env, 1, 1000)
    assert [r[6] for r in received] == [b"a", b"b"]  # c is delayed until 6000
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in received] == [
        (1, 31_000, 1, 1000, 1000),
        (2, 31_000, 1, 1000, 1000),
    ]
    assert (over, corrupt, expired, next_due) == ([], [], 0, 6000)
    with e.begin() as txn:
        assert c.counts(txn, t, 1, 1000, 0) == (3, 2, 1)
    # Visible again after the timeout, receive count grows, first receive stays.
    received = _receive(c, env, 1, 40_000)[0]
    assert sorted((r[0], r[2], r[4]) for r in received) == [
        (1, 2, 1000),
        (2, 2, 1000),
        (3, 1, 40_000),
    ]


def test_send_to_a_missing_queue_raises_lookup_error_and_writes_nothing(c, env):
    e, t = env
    with pytest.raises(LookupError):
        _send(c, env, 5, 1000, [b"x"])
    with e.begin() as txn:
        assert txn.stat(t.log)["entries"] == 0


def test_send_each_puts_one_message_in_each_queue_like_send(c, env):
    e, t = env
    with e.begin(write=True) as txn:
        for queue_id in (1, 2, 3):
            c.create(txn, t, queue_id)
    _send(c, env, 2, 900, [b"earlier"])
    with e.begin(write=True) as txn:
        seqs = c.send_each(
            txn,
            t,
            1000,
            ENV_ID,
            [(1, b"a", b"", 0), (2, b"b", b"m", 5000), (1, b"c", b"", 0), (3, b"d", b"", 0)],
        )
    assert seqs == [1, 2, 2, 1]  # per queue: q2 held one already; q1, named twice, gets 1, 2
    assert [(m[6], m[5], m[2]) for m in _receive(c, env, 1, 1000)[0]] == [
        (b"a", b"", 1),
        (b"c", b"", 1),
    ]
    assert _receive(c, env, 2, 1000)[0][0][6] == b"earlier"
    (later,) = _receive(c, env, 2, 6000)[0]  # its delay_ms held it back
    assert (later[6], later[5], later[7]) == (b"b", b"m", c.message_id(ENV_ID, 2, 2))
    with e.begin() as txn:
        assert c.counts(txn, t, 3, 1000, 0)[0] == 1


def test_send_each_never_hands_out_the_seq_of_a_deleted_tail_again(c, env):
    # q1's last messages were deleted: its floor is past its last log key, as for send()
    e, t = env
    _create(env, c, 1, 2)
    _send(c, env, 1, 900, [b"gone 1", b"gone 2"])
    _send(c, env, 2, 900, [b"stays"])
    received = _receive(c, env, 1, 1000)[0]
    with e.begin(write=True) as txn:
        assert c.delete(txn, t, 1, [(m[0], m[1], m[2]) for m in received]) == [c.OK, c.OK]
        assert txn.get(c.log_key(1, 2), db=t.log) is None  # no log key of q1 left
    with e.begin(write=True) as txn:
        seqs = c.send_each(txn, t, 2000, ENV_ID, [(2, b"b", b"", 0), (1, b"a", b"", 0)])
    assert seqs == [2, 3]  # q1: not 1 or 2 again
    (fresh,) = _receive(c, env, 1, 2000)[0]
    assert (fresh[6], fresh[7]) == (b"a", c.message_id(ENV_ID, 1, 3))


def test_send_each_counts_each_queue_apart_however_often_and_wherever_named(c, env):
    # queue ids 256 apart meet in one slot of send_each's table of next seqs; the highest id
    # has no log key after its own
    e, t = env
    queue_ids = [7 + 256 * k for k in range(10)] + [1, 2, 0xFFFFFFFF]
    with e.begin(write=True) as txn:
        for queue_id in queue_ids:
            c.create(txn, t, queue_id)
    _send(c, env, 2, 900, [b"earlier"])
    named = [queue_ids[(k * 5) % len(queue_ids)] for k in range(3 * len(queue_ids))]
    with e.begin(write=True) as txn:
        seqs = c.send_each(
            txn, t, 1000, ENV_ID, [(q, b"%d" % k, b"", 0) for k, q in enumerate(named)]
        )
    expected = []
    for k, queue_id in enumerate(named):
        expected.append(named[:k].count(queue_id) + 1 + (queue_id == 2))
    assert seqs == expected
    with e.begin(write=True) as txn:
        assert c.send_each(txn, t, 2000, ENV_ID, [(0xFFFFFFFF, b"x", b"", 0)]) == [4]
        assert c.counts(txn, t, 7 + 256 * 9, 2000, 0)[0] == 3


def test_send_each_stores_a_body_given_in_parts_as_one(c, env):
    # a fan-out hands its envelopes over in parts (all but the UnsubscribeURL shared)
    e, t = env
    _create(env, c, 1)
    with e.begin(write=True) as txn:
        deliveries = [(1, (b"head ", b"", b"tail"), b"m", 0), (1, (b"later", b"!"), b"", 5000)]
        assert c.send_each(txn, t, 1000, ENV_ID, deliveries) == [1, 2]
    [now] = _receive(c, env, 1, 1000)[0]
    assert (now[6], now[5]) == (b"head tail", b"m")
    [later] = _receive(c, env, 1, 6000)[0]  # delayed: its vis entry too
    assert later[6] == b"later!"


def test_send_envelopes_stores_head_part_tail_in_each_queue(c, env):
    # a topic's envelopes: one head and tail, each queue's UnsubscribeURL between them
    e, t = env
    _create(env, c, 1, 2)
    targets = [(1, b"<url 1>", 0), (2, b"<url 2>", 5000), (1, b"<url 1 again>", 0)]
    with e.begin(write=True) as txn:
        assert c.send_envelopes(txn, t, 1000, ENV_ID, targets, b"head ", b" tail", b"m") == [
            1,
            1,
            2,
        ]
        with pytest.raises(LookupError) as caught:
            c.send_envelopes(txn, t, 1000, ENV_ID, [(1, b"", 0), (9, b"", 0)], b"", b"", b"")
        assert caught.value.args == (1,)  # nothing of it written: seqs 3 and 2 come next
        assert c.send_envelopes(txn, t, 1000, ENV_ID, targets[:2], b"h ", b" t", b"") == [3, 2]
    first = _receive(c, env, 1, 1000)[0]
    assert [(r[0], r[6], r[5]) for r in first] == [
        (1, b"head <url 1> tail", b"m"),
        (2, b"head <url 1 again> tail", b"m"),
        (3, b"h <url 1> t", b""),
    ]
    assert _receive(c, env, 2, 1000)[0] == []
    later = _receive(c, env, 2, 6000)[0]  # delayed: their vis entries too
    assert [(r[0], r[6]) for r in later] == [(1, b"head <url 2> tail"), (2, b"h <url 2> t")]


def test_send_each_to_a_missing_queue_writes_nothing(c, env):
    e, t = env
    _create(env, c, 1)
    with e.begin(write=True) as txn:
        with pytest.raises(LookupError) as caught:
            c.send_each(txn, t, 1000, ENV_ID, [(1, b"a", b"", 0), (9, b"b", b"", 0)])
        assert caught.value.args == (1,)  # the index of the delivery whose queue is missing
        assert txn.stat(t.log)["entries"] == 0
        assert c.counts(txn, t, 1, 1000, 0)[0] == 0


def test_delete_current_stale_and_gone(c, env):
    e, t = env
    _create(env, c, 1)
    _send(c, env, 1, 0, [b"a", b"b"])
    old = [(r[0], r[1], r[2]) for r in _receive(c, env, 1, 0, vis=1000)[0]]
    new = [(r[0], r[1], r[2]) for r in _receive(c, env, 1, 2000, vis=1000)[0]]
    with e.begin(write=True) as txn:
        assert c.delete(txn, t, 1, [old[0]]) == [c.STALE]  # standard rule: deleted all the same
        assert c.delete(txn, t, 1, [new[0]]) == [c.GONE]
        assert c.delete(txn, t, 1, [new[1]]) == [c.OK]
        assert c.counts(txn, t, 1, 2000, 0) == (0, 0, 0)
        assert txn.stat(t.vis)["entries"] == 0


def test_change_visibility_statuses_and_heartbeats(c, env):
    e, t = env
    _create(env, c, 1)
    _send(c, env, 1, 0, [b"a"])
    seq, vis_at, count = _receive(c, env, 1, 0, vis=10_000)[0][0][:3]
    h = (seq, vis_at, count)
    limit = 43_200_000

    def cv(now, handle, visibility_ms):
        with e.begin(write=True) as txn:
            return c.change_visibility(txn, t, 1, now, [(*handle, visibility_ms)], limit)[0]

    assert cv(5000, h, limit) == c.TOO_LONG  # 12 h counted from the receive at 0
    assert cv(5000, h, 20_000) == c.OK  # heartbeat: the same handle, again and again
    assert cv(20_000, h, 20_000) == c.OK
    assert _receive(c, env, 1, 39_999)[0] == []
    assert cv(30_000, h, 0) == c.OK  # visible at once
    assert cv(30_001, h, 10) == c.NOT_IN_FLIGHT
    again = _receive(c, env, 1, 30_001)[0]
    assert [r[0] for r in again] == [seq] and again[0][2] == count + 1
    assert cv(30_002, h, 10) == c.STALE  # a newer receive holds it
    new = (seq, again[0][1], again[0][2])
    assert cv(30_002, new, 10) == c.OK
    with e.begin(write=True) as txn:
        assert c.delete(txn, t, 1, [h]) == [c.STALE]  # standard: deletes all the same
        assert c.delete(txn, t, 1, [new]) == [c.GONE]
        assert txn.stat(t.vis)["entries"] == 0 and txn.stat(t.moved)["entries"] == 0
        assert c.change_visibility(txn, t, 1, 30_003, [(*new, 10)], limit) == [c.GONE]


def test_delete_follows_a_heartbeat(c, env):
    e, t = env
    _create(env, c, 1)
    _send(c, env, 1, 0, [b"a"])
    h = _receive(c, env, 1, 0, vis=10_000)[0][0][:3]
    with e.begin(write=True) as txn:
        assert c.change_visibility(txn, t, 1, 5000, [(*h, 60_000)], 43_200_000) == [c.OK]
        assert c.delete(txn, t, 1, [h]) == [c.OK]
        assert txn.stat(t.vis)["entries"] == 0 and txn.stat(t.moved)["entries"] == 0
        assert c.counts(txn, t, 1, 5000, 0) == (0, 0, 0)


def test_retention_expire_and_receive_skip_old_messages(c, env):
    e, t = env
    _create(env, c, 1)
    _send(c, env, 1, 1000, [b"old"])
    _send(c, env, 1, 5000, [b"new"])
    received, _, _, expired, _ = _receive(c, env, 1, 9000, cutoff=2000)
    assert [r[6] for r in received] == [b"new"] and expired == 1
    _send(c, env, 1, 6000, [b"newer"])
    with e.begin(write=True) as txn:
        assert c.expire(txn, t, 1, 7000) == 2  # trims the head: new and newer
        assert c.counts(txn, t, 1, 9000, 7000) == (0, 0, 0)


def test_over_limit_messages_are_left_for_the_dead_letter_policy(c, env):
    _create(env, c, 1)
    _send(c, env, 1, 0, [b"a"])
    _receive(c, env, 1, 0, vis=0, max_count=2)
    _receive(c, env, 1, 0, vis=0, max_count=2)
    received, over, _, _, _ = _receive(c, env, 1, 0, vis=0, max_count=2)
    assert received == [] and [o[0] for o in over] == [1]


def test_corrupt_record_is_reported_not_served(c, env):
    e, t = env
    _create(env, c, 1)
    _send(c, env, 1, 0, [b"good", b"bad"])
    with e.begin(write=True) as txn:
        key = c.log_key(1, 2)
        broken = bytearray(txn.get(key, db=t.log))
        broken[-1] ^= 0xFF
        txn.put(key, bytes(broken), db=t.log)
    received, _, corrupt, _, _ = _receive(c, env, 1, 0)
    assert [r[6] for r in received] == [b"good"] and corrupt == [2]


def test_queues_are_isolated_and_purge_drop(c, env):
    e, t = env
    with e.begin(write=True) as txn:
        for q in (1, 2):
            c.create(txn, t, q)
    _send(c, env, 1, 0, [b"one"] * 3)
    _send(c, env, 2, 0, [b"two"] * 2)
    assert [r[6] for r in _receive(c, env, 2, 0)[0]] == [b"two", b"two"]
    with e.begin(write=True) as txn:
        assert c.purge(txn, t, 1) == 3
        assert c.counts(txn, t, 1, 0, 0) == (0, 0, 0)
        assert c.counts(txn, t, 2, 0, 0) == (2, 2, 0)
        c.drop(txn, t, 2)
        assert not c.exists(txn, t, 2)
        assert txn.stat(t.log)["entries"] == 0 and txn.stat(t.vis)["entries"] == 0
    # seqs keep increasing after a purge: ids are never reused
    assert _send(c, env, 1, 0, [b"x"]) == 4


def test_a_dead_letter_move_keeps_the_record_and_state_a_redrive_renews_them(c, env):
    e, t = env
    _create(env, c, 1, 2)
    _send(c, env, 1, 100, [b"a", b"b", b"c"])
    got = _receive(c, env, 1, 100, vis=0)[0]
    with e.begin(write=True) as txn:
        assert c.peek(txn, t, 1, 100, 10, True) == []
        assert [p[0] for p in c.peek(txn, t, 1, 100, 2, False)] == [1, 2]
        entries = [(r[0], r[1]) for r in got[:2]] + [(99, 100)]  # 99 does not exist: skipped
        assert c.move(txn, t, 1, 200, entries, 2, True) == 2
        assert c.counts(txn, t, 1, 200, 0)[0] == 1 and c.counts(txn, t, 2, 200, 0)[0] == 2
        assert c.peek(txn, t, 2, 200, 10, True) == [(1, 200, 1), (2, 200, 1)]
    moved = _receive(c, env, 2, 200)[0]
    # same message ids and sent time; receive count continues; the source is remembered
    assert [(r[6], r[7], r[3], r[2], r[4], r[8]) for r in moved] == [
        (b"a", got[0][7], 100, 2, 100, 1),
        (b"b", got[1][7], 100, 2, 100, 1),
    ]
    with e.begin(write=True) as txn:
        c.move(txn, t, 2, 300, [(r[0], r[1]) for r in moved], 1, False)
    back = _receive(c, env, 1, 300_000)[0]
    # A redrive makes new messages (SQS: a new message id and enqueue time): the ids of their
    # seqs in queue 1 (4 and 5, after "c"), sent at the move, delivered afresh.
    assert [(r[0], r[6], r[7], r[3], r[2], r[4], r[8]) for r in back] == [
        (3, b"c", got[2][7], 100, 2, 100, 0),
        (4, b"a", c.message_id(ENV_ID, 1, 4), 300, 1, 300_000, 0),
        (5, b"b", c.message_id(ENV_ID, 1, 5), 300, 1, 300_000, 0),
    ]


# -- the fresh-message layout: a send writes the log alone ----------------------------------------


def _table_entries(env):
    e, t = env
    with e.begin() as txn:
        return {name: txn.stat(getattr(t, name))["entries"] for name in ("log", "vis", "counters")}


def test_a_send_without_delay_writes_only_its_log_record(c, env):
    e, t = env
    with e.begin(write=True) as txn:
        c.create(txn, t, 1)
        counters = txn.get(b"\0\0\0\1", db=t.counters)
    _send(c, env, 1, 100, [b"a", b"b"])
    _send(c, env, 1, 100, [b"c"])
    assert _table_entries(env) == {"log": 3, "vis": 0, "counters": 1}
    with e.begin() as txn:
        assert txn.get(b"\0\0\0\1", db=t.counters) == counters  # untouched by sends
        assert c.counts(txn, t, 1, 100, 0) == (3, 0, 0)
    _send(c, env, 1, 100, [b"d"], delays=[5000])  # a delayed one gets its vis entry at once
    assert _table_entries(env)["vis"] == 1
    with e.begin() as txn:
        assert c.record_flags(txn.get(c.log_key(1, 4), db=t.log)) == c.INDEXED
        assert c.record_flags(txn.get(c.log_key(1, 1), db=t.log)) == 0


def test_receive_merges_due_entries_and_fresh_messages_in_visible_at_order(c, env):
    e, t = env
    _create(env, c, 1)
    _send(c, env, 1, 0, [b"returned"])
    assert [r[6] for r in _receive(c, env, 1, 0, vis=1000)[0]] == [b"returned"]  # due at 1000
    _send(c, env, 1, 500, [b"delayed"], delays=[100])  # due at 600
    _send(c, env, 1, 700, [b"fresh1"])  # visible since 700
    _send(c, env, 1, 1500, [b"fresh2"])  # visible since 1500
    received = _receive(c, env, 1, 2000, n=3)[0]
    assert [r[6] for r in received] == [b"delayed", b"fresh1", b"returned"]
    assert [r[2] for r in received] == [1, 1, 2]
    assert [r[6] for r in _receive(c, env, 1, 2000)[0]] == [b"fresh2"]
    assert _receive(c, env, 1, 2000)[0] == []  # the walk does not serve anything twice
    with e.begin() as txn:
        assert c.counts(txn, t, 1, 2000, 0) == (4, 4, 0)


def test_a_message_handed_back_at_once_does_not_starve_newer_ones(c, env):
    _create(env, c, 1)
    _send(c, env, 1, 0, [b"poison"])
    _send(c, env, 1, 10, [b"other"])
    got = [_receive(c, env, 1, 20 + i, n=1, vis=0)[0][0][6] for i in range(4)]
    assert got == [b"poison", b"other", b"poison", b"other"]


def test_an_empty_receive_writes_nothing(c, env):
    e = env[0]
    _create(env, c, 1)
    _send(c, env, 1, 0, [b"a"])
    _receive(c, env, 1, 0)  # in flight now: the next receives find nothing
    before = e.info()["last_txnid"]
    for _ in range(3):
        assert _receive(c, env, 1, 0)[0] == []
    # LMDB commits (and, durably, fsyncs) nothing for a transaction that wrote nothing
    assert e.info()["last_txnid"] == before


def test_the_walk_stops_at_the_end_of_the_table_after_removing_its_last_record(c, env):
    _create(env, c, 1)
    _send(c, env, 1, 10, [b"old"])  # the highest key in the whole log
    received, _, _, expired, _ = _receive(c, env, 1, 100, cutoff=50)
    assert received == [] and expired == 1
    assert _receive(c, env, 1, 100, cutoff=50)[0] == []


def test_moves_do_not_reseal_a_corrupt_record(c, env):
    e, t = env
    _create(env, c, 1, 2)
    _send(c, env, 1, 0, [b"important body"])
    (got,) = _receive(c, env, 1, 0, vis=0)[0]
    with e.begin(write=True) as txn:
        key = c.log_key(1, got[0])
        broken = bytearray(txn.get(key, db=t.log))
        broken[-1] ^= 1
        txn.put(key, bytes(broken), db=t.log)
        assert c.move(txn, t, 1, 10, [(got[0], got[1])], 2, True) == 1
    received, _, corrupt, _, _ = _receive(c, env, 2, 10)
    assert received == [] and corrupt  # still detected as corrupt in the dead-letter queue
    assert c.reflag_record(b"short", c.INDEXED) == b"short"


def test_move_skips_an_entry_named_fresh_that_is_not_fresh(c, env):
    e, t = env
    _create(env, c, 1, 2)
    _send(c, env, 1, 0, [b"in flight"])
    (got,) = _receive(c, env, 1, 0)[0]
    with e.begin(write=True) as txn:
        assert c.move(txn, t, 1, 10, [(got[0], c.FRESH)], 2, False) == 0
        assert c.counts(txn, t, 1, 10, 0) == (1, 1, 0)


def test_no_seq_is_handed_out_twice_after_the_tail_is_removed(c, env):
    e, t = env
    _create(env, c, 1)
    _send(c, env, 1, 0, [b"a", b"b"])
    got = _receive(c, env, 1, 0)[0]
    with e.begin(write=True) as txn:  # delete both: the log of queue 1 is empty again
        assert c.delete(txn, t, 1, [(r[0], r[1], r[2]) for r in got]) == [c.OK, c.OK]
        assert c.counts(txn, t, 1, 0, 0) == (0, 0, 0)
    assert _send(c, env, 1, 0, [b"c"]) == 3
    _send(c, env, 1, 0, [b"old"])
    with e.begin(write=True) as txn:  # expiry of the tail
        assert c.expire(txn, t, 1, 1) == 2
    assert _send(c, env, 1, 5, [b"d"]) == 5
    assert [r[0] for r in _receive(c, env, 1, 5, cutoff=5)[0]] == [5]


def test_the_walk_removes_expired_fresh_messages_and_counts_them(c, env):
    e, t = env
    _create(env, c, 1)
    _send(c, env, 1, 10, [b"old", b"old"])
    _send(c, env, 1, 50, [b"new"])
    received, _, _, expired, _ = _receive(c, env, 1, 60, cutoff=20)
    assert [r[6] for r in received] == [b"new"] and expired == 2
    with e.begin() as txn:
        assert c.counts(txn, t, 1, 60, 20) == (1, 1, 0)
    assert _send(c, env, 1, 60, [b"x"]) == 4


def test_peek_and_move_take_fresh_messages_too(c, env):
    e, t = env
    _create(env, c, 1, 2)
    _send(c, env, 1, 100, [b"a", b"b"])
    with e.begin(write=True) as txn:
        picked = c.peek(txn, t, 1, 100, 10, False)
        assert picked == [(1, c.FRESH, 0), (2, c.FRESH, 0)]
        assert c.move(txn, t, 1, 200, [p[:2] for p in picked], 2, False) == 2
        assert c.counts(txn, t, 1, 200, 0)[0] == 0 and c.counts(txn, t, 2, 200, 0)[0] == 2
    received = _receive(c, env, 2, 200)[0]
    assert [(r[6], r[2], r[3], r[7]) for r in received] == [
        (b"a", 1, 200, c.message_id(ENV_ID, 2, 1)),
        (b"b", 1, 200, c.message_id(ENV_ID, 2, 2)),
    ]


def test_reflag_keeps_the_record_valid_and_the_twin_agrees(c):
    record = c.encode_record(1, 2, 3, 4, b"attrs", b"body")
    flagged = c.reflag_record(record, c.INDEXED)
    assert c.record_flags(flagged) == c.INDEXED and c.decode_record(flagged) == c.decode_record(
        record
    )
    assert c.reflag_record(flagged, 0) == record
    assert flagged == _core_py.encode_record(1, 2, 3, 4, b"attrs", b"body", _core_py.INDEXED)


def test_renew_record_gives_a_new_id_and_sent_time_and_the_twin_agrees(c):
    record = c.encode_record(1, 2, 3, 4, b"attrs", b"body", c.INDEXED)
    renewed = c.renew_record(record, 99, 7, 8)
    assert c.decode_record(renewed) == (99, c.message_id(2, 7, 8), b"attrs", b"body")
    assert c.record_flags(renewed) == 0
    assert renewed == _core_py.encode_record(99, 2, 7, 8, b"attrs", b"body")
    spoiled = record[:-1] + b"x"
    assert c.renew_record(spoiled, 99, 7, 8) == spoiled  # never sealed again


def test_a_receive_reads_no_record_past_the_last_one_it_takes(c, env):
    e, t = env
    _create(env, c, 1)
    _send(c, env, 1, 0, [b"first", b"second"])
    with e.begin(write=True) as txn:  # spoil the second: reading it would report it corrupt
        key = c.log_key(1, 2)
        txn.put(key, txn.get(key, db=t.log)[:-1], db=t.log)
    received, _, corrupt, _, _ = _receive(c, env, 1, 0, n=1)
    assert [r[6] for r in received] == [b"first"] and corrupt == []
    received, _, corrupt, _, _ = _receive(c, env, 1, 0, n=1)
    assert received == [] and corrupt == [2]


def test_expire_removes_dead_lettered_records_past_retention_behind_younger_ones(c, env):
    # A dead-letter move keeps the sent time, so the log is not in sent order: the old record
    # sits behind a young one, where trimming the head does not reach it.
    e, t = env
    _create(env, c, 1, 2)
    _send(c, env, 1, 50, [b"young"])
    _send(c, env, 1, 60, [b"younger"])
    with e.begin(write=True) as txn:
        c.move(txn, t, 1, 70, [(1, c.FRESH)], 2, True)
    _send(c, env, 1, 0, [b"old"])  # sent at 0: its record is the newest of queue 1
    with e.begin(write=True) as txn:
        c.move(txn, t, 1, 80, [(3, c.FRESH)], 2, True)
        assert c.counts(txn, t, 2, 100, 40) == (2, 0, 0)
        assert c.expire(txn, t, 2, 40) == 1  # "old", behind "young" in queue 2's log
        assert c.counts(txn, t, 2, 100, 40) == (1, 0, 0)
        assert c.expire(txn, t, 2, 40) == 0
        assert c.expire(txn, t, 1, 40) == 0  # queue 1 keeps "younger"
    assert [r[6] for r in _receive(c, env, 2, 100, cutoff=40)[0]] == [b"young"]
    with e.begin(write=True) as txn:  # a record deleted before it expires: nothing to count
        c.move(txn, t, 1, 80, [(2, c.FRESH)], 2, True)
    received = _receive(c, env, 2, 110, cutoff=40)[0]
    assert [r[6] for r in received] == [b"younger"]
    with e.begin(write=True) as txn:
        c.delete(txn, t, 2, [(r[0], r[1], r[2]) for r in received])
        assert c.expire(txn, t, 2, 65) == 1  # "young", at the head; "younger" is not counted
        assert c.counts(txn, t, 2, 110, 65)[0] == 0
        assert txn.stat(t.moved)["entries"] == 0  # the index entries went as they were met
