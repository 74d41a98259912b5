"""Bad input to the embedded API: arguments of the wrong Python type or shape, and text UTF-8
cannot encode, are refused with a MillpondError, and nothing is stored.

One case per place that used to let such a value through (a bare TypeError, AttributeError,
UnicodeEncodeError... or, worse, a call that went ahead: a string taken for a list).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import millpond
from millpond import errors
from millpond.errors import MillpondError

SURROGATE = "\ud800"


@pytest.fixture(params=["c", "py"])
def ctx(request, tmp_path):
    clock = millpond.ManualClock(now_ms=1_700_000_000_000)
    b = millpond.open(str(tmp_path), durability="os", clock=clock, core=request.param)
    c = type("Ctx", (), {})()
    c.b = b
    c.q = b.create_queue("q")
    c.q.tag({"e": "1", "n": "2", "v": "3", "env": "prod"})
    c.dlq = b.create_queue("dlq")
    b.create_queue(
        "src",
        {"RedrivePolicy": json.dumps({"deadLetterTargetArn": c.dlq.arn, "maxReceiveCount": 1})},
    )
    c.q.send("one")
    c.handle = c.q.receive(1)[0].receipt_handle
    c.t = b.create_topic("t")
    c.t.subscribe(c.q)
    yield c
    b.close()


def dump(b):
    st = b._storage

    def read(txn):
        out = {}
        for name in ("meta", "log", "vis", "counters", "moved", "fifo", "dedup", "dedupexp"):
            out[name] = list(txn.cursor(db=getattr(st.tables, name)).iternext())
        return out

    return st.read(read)


CASES = {
    # values of the wrong type
    "queue(None)": lambda c: c.b.queue(None),
    "delete_queue(surrogate)": lambda c: c.b.delete_queue(SURROGATE),
    "list_queues(b'q')": lambda c: c.b.list_queues(b"q"),
    "queue([])": lambda c: c.b.queue([]),
    "start_message_move_task rate='5'": lambda c: c.b.start_message_move_task(c.dlq.arn, None, "5"),
    "list_message_move_tasks(max_results=None)": lambda c: c.b.list_message_move_tasks(
        c.dlq.arn, None
    ),
    "list_message_move_tasks(max_results=1.5)": lambda c: c.b.list_message_move_tasks(
        c.dlq.arn, 1.5
    ),
    "send_batch(5)": lambda c: c.q.send_batch(5),
    "delete_batch(object())": lambda c: c.q.delete_batch(object()),
    "delete_entries(None)": lambda c: c.q.delete_entries(None),
    "change_visibility_entries(None)": lambda c: c.q.change_visibility_entries(None),
    "get_attributes(5)": lambda c: c.q.get_attributes(5),
    "get_attributes([{}])": lambda c: c.q.get_attributes([{}]),
    "untag(None)": lambda c: c.q.untag(None),
    "tag(None)": lambda c: c.q.tag(None),
    "tag(['k'])": lambda c: c.q.tag(["k"]),
    "set_attributes('x')": lambda c: c.q.set_attributes("x"),
    "create_queue('n', True)": lambda c: c.b.create_queue("n", True),
    "create_topic('t2', 5)": lambda c: c.b.create_topic("t2", 5),
    "create_topic('t2', 'ab')": lambda c: c.b.create_topic("t2", "ab"),
    "subscribe(q, attributes=5)": lambda c: c.t.subscribe(c.dlq, attributes=5),
    "topic.set_attributes(None)": lambda c: c.t.set_attributes(None),
    "topic.set_attributes('ab')": lambda c: c.t.set_attributes("ab"),
    "add_permission(account_ids=5)": lambda c: c.t.add_permission("l", 5, ["Publish"]),
    "add_permission(actions=[{}])": lambda c: c.t.add_permission("l", ["123456789012"], [{}]),
    "topic.tag([{'Key': [], 'Value': 'v'}])": lambda c: c.t.tag([{"Key": [], "Value": "v"}]),
    "subscribe(filter_policy={'a': [b'x']})": lambda c: c.t.subscribe(
        c.dlq, filter_policy={"a": b"x"}
    ),
    "subscribe(url, protocol='http', service_url=1.5)": lambda c: c.t.subscribe(
        "http://example.com/x", protocol="http", service_url=1.5
    ),
    "subscribe(url, protocol='http', service_url=2**70)": lambda c: c.t.subscribe(
        "http://example.com/x", protocol="http", service_url=2**70
    ),
    # lone surrogates
    "topic(surrogate)": lambda c: c.b.topic(SURROGATE),
    "publish(json default=surrogate, message_structure='json')": lambda c: c.t.publish(
        json.dumps({"default": SURROGATE}), message_structure="json"
    ),
    "publish(subject=surrogate)": lambda c: c.t.publish("m", subject=SURROGATE),
    "create_topic(DisplayName=surrogate)": lambda c: c.b.create_topic(
        "t2", {"DisplayName": SURROGATE}
    ),
    "create_topic(tags={'k': surrogate})": lambda c: c.b.create_topic("t2", None, {"k": SURROGATE}),
    "topic.set_attributes(DisplayName=surrogate)": lambda c: c.t.set_attributes(
        {"DisplayName": SURROGATE}
    ),
    "topic.tag({'k': surrogate})": lambda c: c.t.tag({"k": SURROGATE}),
    "subscribe(attributes={SubscriptionRoleArn: surrogate})": lambda c: c.t.subscribe(
        c.dlq, attributes={"SubscriptionRoleArn": SURROGATE}
    ),
    "sub.set_attributes(SubscriptionRoleArn=surrogate)": lambda c: c.t.list_subscriptions()[
        0
    ].set_attributes({"SubscriptionRoleArn": SURROGATE}),
    # calls that went ahead with a wrong value (and stored it)
    "send_batch('abc') sends 3 one-character messages": lambda c: c.q.send_batch("abc"),
    "send_batch({'a': 1}) sends the dict's keys": lambda c: c.q.send_batch({"a": 1}),
    "untag('env') removes tags 'e', 'n', 'v'": lambda c: c.q.untag("env"),
    "untag([2**70]) accepted, definition rewritten": lambda c: c.q.untag([2**70]),
    "add_permission(account_ids='123') grants accounts '1','2','3'": lambda c: c.t.add_permission(
        "l", "123", ["Publish"]
    ),
    "start_message_move_task(rate=1.5) accepted and stored": lambda c: c.b.start_message_move_task(
        c.dlq.arn, None, 1.5
    ),
    "start_message_move_task(rate=True) accepted and stored": lambda c: c.b.start_message_move_task(
        c.dlq.arn, None, True
    ),
    "subscribe(url, protocol='http', service_url='\\x00') stored unchecked": lambda c: (
        c.t.subscribe("http://example.com/x", protocol="http", service_url="\x00")
    ),
}


@pytest.mark.parametrize("call", list(CASES.values()), ids=list(CASES))
def test_bad_input_raises_millpond_error_and_stores_nothing(ctx, call):
    before = dump(ctx.b)
    with pytest.raises(MillpondError):
        call(ctx)
    assert dump(ctx.b) == before


def test_a_malformed_visibility_change_is_an_error_of_its_own_entry(ctx):
    results = ctx.q.change_visibility_entries(["h", (ctx.handle, 0)])
    assert isinstance(results[0], MillpondError) and results[1] is None


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"durability": "bogus"}, "durability"),
        ({"map_size": 0}, "map_size"),
        ({"max_map_size": "1TB"}, "max_map_size"),
        ({"reserve": -1}, "reserve"),
        ({"disk_reserve": 1.5}, "disk_reserve"),
        ({"reserve": 1 << 41}, "reserve must be smaller"),
    ],
)
def test_open_refuses_bad_options_before_creating_anything(
    tmp_path: Path, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(errors.InvalidParameterValue, match=named):
        millpond.open(tmp_path / "data", **options)
    assert not (tmp_path / "data").exists()
