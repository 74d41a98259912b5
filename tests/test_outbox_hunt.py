"""The HTTP/S outbox and the daemon's listings at scale, with several processes on one directory.

References: the SNS API reference (ListSubscriptions, ListSubscriptionsByTopic: pages of 100
with a NextToken) and the SNS Developer Guide's "Amazon SNS message delivery retries".
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

import millpond
from millpond.server import sns
from millpond.server.context import Context
from millpond.server.protocol import Request
from millpond.subscription import Subscription

from .daemon import Daemon
from .test_http_delivery_hunt import confirmed
from .test_server_sns import Endpoint, confirmation

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:q"


@pytest.fixture
def ctx(tmp_path: Any) -> Any:
    """A daemon's Context (its handlers called in this process)."""
    context = Context(str(tmp_path / "data"), durability="os", workers=2)
    yield context
    context.close()


@pytest.fixture
def endpoint() -> Any:
    e = Endpoint()
    yield e
    e.close()


def call_handler(ctx: Context, handler: Any, **params: Any) -> dict[str, Any]:
    """Run a daemon handler in this process, as a us-east-1 request with ``params``."""
    request = Request(
        action="", params=params, region="us-east-1", account_id="123456789012", host="h"
    )
    return asyncio.run(handler(ctx, request))  # type: ignore[no-any-return]


def _count_built(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the Subscription objects built from stored records (under "built")."""
    built: Counter[str] = Counter()
    from_record = Subscription.from_record.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, *args: Any) -> Subscription:
        built["built"] += 1
        return from_record(cls, *args)  # type: ignore[no-any-return]

    monkeypatch.setattr(Subscription, "from_record", classmethod(counting))
    return built


@pytest.mark.parametrize("by_topic", [False, True], ids=["all", "by_topic"])
def test_a_subscription_listing_page_reads_one_page_not_every_subscription(
    ctx, monkeypatch, by_topic
):
    # Each ListSubscriptions (ListSubscriptionsByTopic) page read and built every subscription
    # of the region (the topic), then kept the 100 after the NextToken: listing 10,000
    # subscriptions took 100 pages of ~0.1 s each (quadratic), holding a worker and the GIL.
    # A page now reads from its NextToken on, 101 records at most; pages stay in ARN order:
    # what exists throughout is listed exactly once while others come and go between pages.
    broker = ctx.broker()
    names = ["t"] if by_topic else ["a", "a-b", "t"]  # "a-b:..." sorts before "a:..." in ARNs
    subs = [broker.create_topic(n).subscribe(f"{QUEUE_ARN}{i}") for n in names for i in range(130)]
    handler = sns.list_subscriptions_by_topic if by_topic else sns.list_subscriptions
    params = {"TopicArn": broker.arn("sns", "t")} if by_topic else {}
    built = _count_built(monkeypatch)
    seen: list[str] = []
    token = None
    in_order = sorted(subs, key=lambda s: s.arn)
    gone, added = in_order[150:160] + in_order[-3:], []  # all after the first page
    while True:
        built.clear()
        page = call_handler(ctx, handler, **params, **({"NextToken": token} if token else {}))
        assert built["built"] <= sns.PAGE + 1, built
        seen += [s["SubscriptionArn"] for s in page["Subscriptions"]]
        token = page.get("NextToken")
        if token is None:
            break
        if not added:  # between the first two pages: some go, others come
            for sub in gone:
                sub.unsubscribe()
            added = [broker.topic(n).subscribe(f"{QUEUE_ARN}-new") for n in names]
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)
    throughout = {s.arn for s in subs} - {s.arn for s in gone}
    assert throughout <= set(seen)
    assert not {s.arn for s in gone[10:]} & set(seen)  # gone before their page came


def test_a_next_token_outside_the_regions_arns_still_pages_by_arn_order(ctx):
    # The NextToken is the last ARN of the page before, compared as a string: a token before
    # every ARN of the region lists from the first, one after them lists nothing.
    broker = ctx.broker()
    topic = broker.create_topic("t")
    arns = [topic.subscribe(f"{QUEUE_ARN}{i}").arn for i in range(3)]

    def listed(after: str) -> list[str]:
        token = base64.urlsafe_b64encode(after.encode()).decode()
        page = call_handler(ctx, sns.list_subscriptions, NextToken=token)
        return [s["SubscriptionArn"] for s in page["Subscriptions"]]

    assert listed("arn:aws:sns:a") == sorted(arns)
    assert listed("arn:aws:sns:zz") == []
    assert listed(sorted(arns)[0]) == sorted(arns)[1:]
    assert listed(topic.arn) == sorted(arns)  # the topic's ARN sorts before its subscriptions'


# -- HTTP/S deliveries with several processes on one data directory -------------------------------


def test_a_region_another_process_created_gets_its_http_deliveries_made(tmp_path, endpoint):
    # A daemon opens every region directory at start "so that /metrics, HTTP deliveries and
    # move tasks cover them from the start" (millpond.server.serve), but a region another
    # process created later (another daemon, an embedded broker) was never looked at until a
    # request for it came: the POSTs of its topics waited in the outbox meanwhile, forever
    # when that region is only published to by other processes. The deliverer now picks up
    # region directories created since.
    data = str(tmp_path / "data")
    daemon = Daemon(data)
    try:
        region = os.path.join(data, "eu-west-1")
        with millpond.open(region, durability="os", region="eu-west-1") as other:
            topic = other.create_topic("events")
            topic.subscribe(endpoint.url + "/hook", protocol="http", service_url=daemon.url)
            message = confirmation(endpoint, "/hook")
            assert message["TopicArn"] == topic.arn
            topic.confirm_subscription(message["Token"])
            sent = topic.publish("hello")
            _, headers, body = endpoint.next()
            assert headers["x-amz-sns-message-id"] == sent
            assert json.loads(body)["Message"] == "hello"
    finally:
        daemon.stop()


def test_a_throttled_subscription_keeps_its_rate_across_processes(broker, clock, data_dir):
    # throttlePolicy.maxReceivesPerSecond is "the maximum number of deliveries per second,
    # per subscription" (SNS's HTTP/S delivery policy). The turns of a throttled subscription
    # were handed out by each process on its own: two daemons on one data directory each
    # POSTed at the full rate, twice it in all. The turns are kept in the store now.
    topic = broker.create_topic("orders")
    policy = json.dumps({"throttlePolicy": {"maxReceivesPerSecond": 1}})
    confirmed(broker, topic, attributes={"DeliveryPolicy": policy})
    for i in range(3):
        topic.publish(f"m{i}")
    outbox = broker._topics.http
    assert [d.attempt for d in outbox.take()] == [1]  # m0 now; m1 and m2 1 s and 2 s later
    # another process (a second daemon) looks at the same moment: no turn is free before 3 s
    code = (
        "import sys, millpond\n"
        "clock = millpond.ManualClock(now_ms=int(sys.argv[2]))\n"
        "with millpond.open(sys.argv[1], durability='os', clock=clock) as b:\n"
        "    b.topic('orders').publish('m3')\n"
        "    print(len(b._topics.http.take()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, data_dir, str(clock.now_ms())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]
    for _ in range(3):  # m1, m2, then m3: one a second
        clock.advance(0.999)
        assert outbox.take() == []
        clock.advance(0.001)
        assert len(outbox.take()) == 1
