"""HTTP/S subscriptions: the durable outbox of POSTs, and the messages and headers they carry.

A publish cannot wait for web servers, so HTTP/S deliveries are written to an outbox in the
``meta`` table, in the publish's own transaction (all or nothing with the queue deliveries):
``to:<due ms, 8 bytes><8 random bytes>`` -> msgpack ``{"type", "sub", "topic", "url", "id",
"body", "raw", "try"}`` (and ``"turn"`` while a throttled Notification waits for the turn it was
given). Keys sort by due time, so what is due is a prefix. ``tt`` -> msgpack ``{subscription ARN:
its next free turn, epoch ms}`` for the throttled subscriptions, shared by every process.

Whoever does the HTTP (the daemon, :mod:`millpond.server.sns`) drains it::

    for delivery in outbox.take():      # leased: taken again only if not settled in time
        status = POST delivery.url, delivery.headers, delivery.body
        outbox.delivered(delivery)  or  outbox.failed(delivery, permanent=an answer but 5xx or 429)
    outbox.release(unfinished)          # stopping: POSTs cut short are due again at once

A failed POST is retried as the subscription's (or topic's) DeliveryPolicy says, phase by phase,
3 times 20 s apart by default (the policies in force when it failed); then a Notification goes
to the subscription's RedrivePolicy dead-letter queue, if it has one, else it is counted in
``Subscription.undelivered``. Only the endpoint of a stored subscription is ever POSTed to: an
entry whose subscription is gone (or is another endpoint now) is dropped when taken. Without a
drainer (embedded use, no daemon) entries wait in the store.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from millpond import fan_out
from millpond.errors import TopicNotFound
from millpond.fan_out import OUTBOX_PREFIX, outbox_key, sub_prefix, topic_key
from millpond.message_attributes import message_attributes_size
from millpond.sns_envelope import message_id as new_message_id
from millpond.sns_envelope import subscription_confirmation
from millpond.topic_attributes import (
    DEFAULT_CONTENT_TYPE,
    http_content_type,
    http_retry_delays_ms,
    subscription_effective_delivery_policy,
)

if TYPE_CHECKING:
    from millpond.topic import Topic, Topics

__all__ = ["HttpDelivery", "HttpOutbox", "new_token"]

LEASE_MS = 60_000  # a taken delivery is offered again if not settled by then
TURNS_KEY = b"tt"  # the throttled subscriptions' next free turns (see the module docstring)
USER_AGENT = "Amazon Simple Notification Service Agent"


def new_token() -> str:
    return secrets.token_hex(64)


def subscribe_url(service_url: str | None, region: str, topic_arn: str, token: str) -> str:
    """The SubscribeURL of a confirmation: a GET of it confirms the subscription.

    ``service_url``: where this broker's SNS API is served (the daemon's own address); None
    gives SNS's regional endpoint. Written as SNS writes it (AWS-recorded): the ARN as is, no
    Version (the daemon knows ConfirmSubscription for SNS's by its name).
    """
    base = (service_url or f"https://sns.{region}.amazonaws.com").rstrip("/")
    return f"{base}/?Action=ConfirmSubscription&TopicArn={topic_arn}&Token={token}"


def confirmation_entry(
    topic: Topic,
    sub_arn: str,
    url: str,
    token: str,
    service_url: str | None,
    now_ms: int,
    signature_version: str,
    *,
    unsubscribed: bool = False,
) -> dict[str, Any]:
    """The outbox entry of a SubscriptionConfirmation (built in the subscribe transaction), or
    with ``unsubscribed`` of the UnsubscribeConfirmation of a deleted subscription."""
    message_id = new_message_id()
    body = subscription_confirmation(
        topic_arn=topic.arn,
        message_id=message_id,
        token=token,
        subscribe_url=subscribe_url(service_url, topic._broker.region, topic.arn, token),
        now_ms=now_ms,
        region=topic._broker.region,
        signature_version=signature_version,
        key=topic._topics._signing_key,
        unsubscribed=sub_arn if unsubscribed else None,
    )
    return {
        "type": "UnsubscribeConfirmation" if unsubscribed else "SubscriptionConfirmation",
        "sub": sub_arn,
        "topic": topic.arn,
        "url": url,
        "id": message_id,
        "body": body,
        "raw": False,
        "try": 0,
    }


class HttpDelivery:
    """One POST to make: ``url``, ``headers`` (name, value pairs) and ``body`` (bytes)."""

    __slots__ = (
        "attempt",
        "body",
        "headers",
        "key",
        "message_type",
        "subscription_arn",
        "topic_arn",
        "url",
    )

    def __init__(
        self, key: bytes, entry: dict[str, Any], content_type: str = DEFAULT_CONTENT_TYPE
    ) -> None:
        self.key = key  # the outbox key while leased
        self.url: str = entry["url"]
        self.body: bytes = entry["body"]
        self.message_type: str = entry["type"]
        self.subscription_arn: str = entry["sub"]
        self.topic_arn: str = entry["topic"]
        self.attempt: int = entry["try"] + 1
        headers = [
            ("Content-Type", content_type),  # a Notification's: from its delivery policy
            ("User-Agent", USER_AGENT),
            ("x-amz-sns-message-type", entry["type"]),
            ("x-amz-sns-message-id", entry["id"]),
            ("x-amz-sns-topic-arn", entry["topic"]),
        ]
        if entry["type"] != "SubscriptionConfirmation":  # no subscription yet then
            headers.append(("x-amz-sns-subscription-arn", entry["sub"]))
        if entry["raw"]:
            headers.append(("x-amz-sns-rawdelivery", "true"))
        parts = urllib.parse.urlsplit(self.url)
        if parts.username is not None:  # https://user:password@host/ as SNS allows
            credentials = f"{urllib.parse.unquote(parts.username)}:" + urllib.parse.unquote(
                parts.password or ""
            )
            headers.append(
                ("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
            )
        self.headers = headers

    def __repr__(self) -> str:
        return f"HttpDelivery({self.message_type} -> {self.url!r}, attempt {self.attempt})"


class HttpOutbox:
    """The outbox of a broker's topics (``broker._topics.http``)."""

    def __init__(self, topics: Topics) -> None:
        self._topics = topics
        self._meta = topics._meta
        self._storage = topics._storage
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (from any thread) after this process adds due deliveries."""
        with self._lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _count(self, delivery: HttpDelivery, name: str) -> None:
        """Add a settled Notification to its topic's metrics (Topic.counters), as publish
        counts the deliveries to queues."""
        if delivery.message_type != "Notification":
            return  # (Un)SubscriptionConfirmations are no notifications of a publish
        try:
            topic = self._topics.get(delivery.topic_arn)
        except TopicNotFound:
            return  # deleted meanwhile: nothing left to count for
        topic.counters[name] += 1

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def take(self, limit: int = 64, lease_ms: int = LEASE_MS) -> list[HttpDelivery]:
        """Up to ``limit`` due deliveries, leased for ``lease_ms``: settle each before then.

        A Notification of a subscription whose delivery policy has a throttlePolicy
        (maxReceivesPerSecond) waits for its turn instead: due again then, its attempt count
        unchanged, so that the subscription's POSTs are spaced 1/maxReceivesPerSecond apart
        (turns are kept in the store, so that processes sharing it keep to one rate between
        them; one taken late goes with the others then due).
        """
        meta = self._meta

        def take(txn: Any, now_ms: int) -> list[HttpDelivery]:
            turns = _next_turns(txn, meta, now_ms)
            turns_given = False
            due = []
            with txn.cursor(db=meta) as cur:
                if cur.set_range(OUTBOX_PREFIX):
                    for key, value in cur:
                        if not key.startswith(OUTBOX_PREFIX) or _due_ms(key) > now_ms:
                            break
                        due.append((key, value))
                        if len(due) >= limit:
                            break
            taken = []
            for key, value in due:
                txn.delete(key, db=meta)
                entry = msgpack.unpackb(value)
                record = _subscription_record(txn, meta, entry["sub"])
                if not _still_subscribed(record, entry):
                    continue  # unsubscribed (or re-subscribed elsewhere): dropped
                content_type = DEFAULT_CONTENT_TYPE
                if entry["type"] == "Notification":  # the delivery policies in force now
                    assert record is not None
                    own = record["attributes"].get("DeliveryPolicy")
                    topic_policy = _topic_attributes(txn, meta, entry["sub"]).get("DeliveryPolicy")
                    content_type = http_content_type(own, topic_policy)
                    rate = _max_receives_per_second(own, topic_policy)
                    if "turn" in entry:  # postponed to a turn it was given: this one
                        del entry["turn"]
                        value = msgpack.packb(entry)
                    elif rate is not None:
                        turn = max(now_ms, turns.get(entry["sub"], now_ms))
                        turns[entry["sub"]] = turn + -(-1000 // rate)  # 1/rate s later
                        turns_given = True
                        if turn > now_ms:  # not its turn yet: due then
                            entry["turn"] = turn
                            txn.put(outbox_key(turn), msgpack.packb(entry), db=meta)
                            continue
                leased = outbox_key(now_ms + lease_ms)
                txn.put(leased, value, db=meta)
                taken.append(HttpDelivery(leased, entry, content_type))
            if turns_given:
                txn.put(TURNS_KEY, msgpack.packb(turns), db=meta)
            return taken

        return self._storage.write(take)

    def next_due_ms(self) -> int | None:
        """When the earliest delivery is due (epoch ms), None if the outbox is empty."""

        def first(txn: Any) -> int | None:
            with txn.cursor(db=self._meta) as cur:
                if cur.set_range(OUTBOX_PREFIX) and cur.key().startswith(OUTBOX_PREFIX):
                    return _due_ms(cur.key())
            return None

        return self._storage.read(first)

    def release(self, deliveries: list[HttpDelivery]) -> None:
        """Give back the leases of deliveries whose POST never finished (the drainer stops):
        due now, their attempt count unchanged, so that the next drainer makes them at once
        instead of after LEASE_MS. One already settled is left alone."""
        meta = self._meta

        def release(txn: Any, now_ms: int) -> None:
            for delivery in deliveries:
                value = txn.get(delivery.key, db=meta)
                if value is None:
                    continue  # settled (or its lease ran out and it was taken again)
                txn.delete(delivery.key, db=meta)
                txn.put(outbox_key(now_ms), value, db=meta)

        self._storage.write(release)

    def delivered(self, delivery: HttpDelivery) -> None:
        """The endpoint took it (2xx): forget it."""
        self._storage.write(lambda txn, now_ms: txn.delete(delivery.key, db=self._meta))
        self._count(delivery, "delivered")

    def failed(self, delivery: HttpDelivery, *, permanent: bool = False, reason: str = "") -> None:
        """The POST failed: try again later, or give up (``permanent``, or no retries left).

        A Notification given up on goes to the subscription's dead-letter queue, if any.
        """
        topics = self._topics
        meta = self._meta

        def fail(txn: Any, now_ms: int) -> tuple[int | None, bool]:
            value = txn.get(delivery.key, db=meta)
            if value is None:
                return None, False  # settled already (the lease ran out and it was retaken)
            txn.delete(delivery.key, db=meta)
            entry = msgpack.unpackb(value)
            record = _subscription_record(txn, meta, entry["sub"])
            if record is None and entry["type"] != "UnsubscribeConfirmation":
                return None, False  # unsubscribed meanwhile (an UnsubscribeConfirmation's is)
            attributes = record["attributes"] if record is not None else {}
            if entry["type"] == "Notification":  # the policies in force now, phase by phase
                delays_ms = http_retry_delays_ms(
                    attributes.get("DeliveryPolicy"),
                    _topic_attributes(txn, meta, entry["sub"]).get("DeliveryPolicy"),
                )
            else:  # a (Un)SubscriptionConfirmation: SNS's default, 3 retries 20 s apart
                delays_ms = http_retry_delays_ms(None, None)
            if not permanent and entry["try"] < len(delays_ms):
                delay_ms = delays_ms[entry["try"]]
                entry["try"] += 1
                txn.put(outbox_key(now_ms + delay_ms), msgpack.packb(entry), db=meta)
                return None, False
            if entry["type"] != "Notification":
                return None, False
            dlq = fan_out.dead_letter_name(attributes.get("RedrivePolicy"), topics._broker)
            if dlq is None:
                return None, True
            body, attributes = entry["body"], entry.get("attributes")  # None in older entries
            size = len(body) + message_attributes_size(attributes)
            queue_id, rest, _ = fan_out.put(
                topics, txn, now_ms, dlq, [(body, attributes, size, None, None, None)]
            )
            return queue_id, bool(rest)

        queue_id, lost = self._storage.write(fail, atomic=True)
        if queue_id is not None or lost:  # given up: to the dead-letter queue, or lost
            self._count(delivery, "failed")
        if queue_id is not None:
            topics._broker._wakeups.notify(queue_id)
            self._count(delivery, "redriven_to_dlq")
        if lost:
            why = f"HTTP delivery failed ({reason or 'error'}) after {delivery.attempt} attempt(s)"
            topics._record_lost([(delivery.subscription_arn, why, 1)])


def _max_receives_per_second(own: str | None, topic_policy: str | None) -> int | None:
    """The throttlePolicy's maxReceivesPerSecond in force (the subscription's, else the topic's
    defaultThrottlePolicy), None when deliveries are not throttled."""
    effective = json.loads(subscription_effective_delivery_policy(own, topic_policy))
    throttle = effective.get("throttlePolicy")
    rate = throttle.get("maxReceivesPerSecond") if isinstance(throttle, dict) else None
    if isinstance(rate, int) and not isinstance(rate, bool) and rate >= 1:
        return rate
    return None


def _next_turns(txn: Any, meta: Any, now_ms: int) -> dict[str, int]:
    """The throttled subscriptions' next free turns (epoch ms) still to come, as stored."""
    raw = txn.get(TURNS_KEY, db=meta)
    turns: dict[str, int] = msgpack.unpackb(raw) if raw else {}
    return {sub: at for sub, at in turns.items() if at > now_ms}


def _due_ms(key: bytes) -> int:
    return int.from_bytes(key[len(OUTBOX_PREFIX) : len(OUTBOX_PREFIX) + 8], "big")


def _subscription_record(txn: Any, meta: Any, arn: str) -> dict[str, Any] | None:
    parts = arn.split(":")
    if len(parts) != 7:
        return None
    raw = txn.get(sub_prefix(parts[5]) + parts[6].encode(), db=meta)
    return None if raw is None else msgpack.unpackb(raw)


def _topic_attributes(txn: Any, meta: Any, subscription_arn: str) -> dict[str, Any]:
    """The stored attributes of a subscription's topic ({} if it is gone)."""
    raw = txn.get(topic_key(subscription_arn.split(":")[5]), db=meta)
    return msgpack.unpackb(raw)["attributes"] if raw else {}


def _still_subscribed(record: dict[str, Any] | None, entry: dict[str, Any]) -> bool:
    """The entry's subscription (``record``) exists, names this URL, and is confirmed (for
    Notifications); an UnsubscribeConfirmation goes out once the subscription is gone."""
    if entry["type"] == "UnsubscribeConfirmation":
        return record is None
    if record is None or record["endpoint"] != entry["url"]:
        return False
    return entry["type"] != "Notification" or not record.get("pending")
