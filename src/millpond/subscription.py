"""Subscriptions: an SQS queue or an HTTP/S endpoint on a topic, and its SNS attributes.

A :class:`Subscription` is a handle on the stored record ``s:<topic>:<uuid>`` (see
:mod:`millpond.topic`): its attributes are read and changed in the store, never cached here.
SQS subscriptions are confirmed when made; HTTP/S ones wait, "pending confirmation", until the
Token POSTed to the endpoint comes back (:meth:`millpond.topic.Topic.confirm_subscription`).

The attribute rules (RawMessageDelivery, FilterPolicy and its scope, RedrivePolicy,
DeliveryPolicy, SubscriptionRoleArn) are here, with SNS's error texts. Filter policies are
compiled by the caller's ``compile`` function: the topic registry owns compiled policies.
"""

from __future__ import annotations

import hmac
import re
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import msgpack

from millpond.dead_letters import parse_arn
from millpond.errors import InvalidFilterPolicy, MillpondError, TopicNotFound, not_picklable
from millpond.fan_out import (
    TOKEN_TTL_MS,
    enqueue_http,
    lapsed,
    sub_prefix,
    topic_key,
    touch,
    unsubscribed_prefix,
)
from millpond.filters import NESTED_IN_ATTRIBUTES, SCOPES, FilterPolicy
from millpond.sns_envelope import InvalidParameter
from millpond.topic_attributes import (
    SET_PREFIX,
    SUBSCRIBE_PREFIX,
    bool_text,
    json_object,
    subscription_effective_delivery_policy,
    text_value,
)
from millpond.topic_http import confirmation_entry, new_token

if TYPE_CHECKING:
    from millpond.topic import Topic, Topics

__all__ = ["FilterPolicyLimitExceeded", "Subscription"]

Compile = Callable[[Any, str], FilterPolicy]

# Every protocol SNS knows; millpond delivers to the first three.
PROTOCOLS = (
    "sqs",
    "http",
    "https",
    "email",
    "email-json",
    "sms",
    "application",
    "lambda",
    "firehose",
)
HTTP_PROTOCOLS = ("http", "https")
PHONE_NUMBER = re.compile(r"\+?[1-9][0-9]{1,14}")  # E.164: SMS endpoints and PhoneNumber
_SUBSCRIPTION_ATTRIBUTES = frozenset(
    (
        "DeliveryPolicy",
        "FilterPolicy",
        "FilterPolicyScope",
        "RawMessageDelivery",
        "RedrivePolicy",
        "SubscriptionRoleArn",
    )
)
_SUBSCRIPTION_DEFAULTS = {"FilterPolicyScope": "MessageAttributes", "RawMessageDelivery": "false"}


class FilterPolicyLimitExceeded(MillpondError):
    """A topic already has 200 subscriptions with a filter policy (SNS's quota)."""

    code = "FilterPolicyLimitExceeded"
    json_type = "FilterPolicyLimitExceededException"
    http_status = 403
    sender_fault = True


# -- endpoints ------------------------------------------------------------------------------------


def check_protocol(protocol: Any, endpoint: Any = None) -> str:
    """The protocol, if millpond delivers to it (sqs, http, https); else InvalidParameter."""
    if protocol in ("sqs", "http", "https"):
        return protocol  # type: ignore[no-any-return]
    if protocol not in PROTOCOLS:
        raise InvalidParameter(
            f"Invalid parameter: Amazon SNS does not support this protocol string: {protocol}"
        )
    if protocol == "sms" and not (isinstance(endpoint, str) and PHONE_NUMBER.fullmatch(endpoint)):
        raise InvalidParameter(f"Invalid SMS endpoint: {endpoint}")  # SNS's text, no prefix
    raise InvalidParameter(
        f"Invalid parameter: Protocol Reason: millpond delivers to sqs, http and https endpoints, "
        f"not {protocol}"
    )


def check_http_endpoint(protocol: str, endpoint: Any) -> str:
    """An HTTP/S endpoint URL: its scheme must be the protocol, and it must name a host."""
    if not isinstance(endpoint, str) or not endpoint.lower().startswith(f"{protocol}://"):
        raise InvalidParameter("Invalid parameter: Endpoint must match the specified protocol")
    try:
        parts = urllib.parse.urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    # ASCII only, without spaces or control characters (RFC 3986): the URL goes into the POST's
    # request line, where anything else could never be sent (its deliveries failed for good)
    if parts is None or not parts.hostname or any(c <= " " or c >= "\x7f" for c in endpoint):
        raise InvalidParameter("Invalid parameter: Endpoint")
    return endpoint


# -- attributes -----------------------------------------------------------------------------------


def subscription_attributes(
    given: Mapping[str, Any],
    existing: Mapping[str, str],
    prefix: str,
    *,
    fifo_topic: bool,
    fifo_queue: bool,
    compile: Compile,
) -> tuple[dict[str, str | None], FilterPolicy | None]:
    """Validate subscription attributes against what is stored.

    Returns the changes (None: remove the attribute) and the compiled filter policy in force
    after them (None: no policy). Raises InvalidParameter / InvalidFilterPolicy with ``prefix``
    ("Invalid parameter: Attributes Reason: " on Subscribe, "Invalid parameter: " on
    SetSubscriptionAttributes).
    """
    changes: dict[str, str | None] = {}
    for name, value in given.items():
        if name not in _SUBSCRIPTION_ATTRIBUTES:
            raise InvalidParameter(f"{prefix}AttributeName")
        if value is None:
            changes[name] = None
            continue
        text = text_value(value)
        if name == "RawMessageDelivery":
            checked = bool_text(text)
            if checked is None:
                raise InvalidParameter(
                    f"{prefix}RawMessageDelivery: Invalid value [{text}]. Must be true or false."
                )
            text = checked
        elif name == "FilterPolicyScope" and text not in SCOPES:
            raise InvalidParameter(
                f"{prefix}FilterPolicyScope: Invalid value [{text}]. "
                "Please use either MessageBody or MessageAttributes"
            )
        elif name == "DeliveryPolicy":
            _check_delivery_policy(text, prefix)
        elif name == "RedrivePolicy":
            _check_redrive_policy(text, prefix, fifo_topic=fifo_topic, fifo_queue=fifo_queue)
        changes[name] = text or None  # "" removes, as SNS treats an empty value
    merged = {**existing, **changes}
    policy_text = merged.get("FilterPolicy")
    if not policy_text:
        return changes, None
    scope = merged.get("FilterPolicyScope") or "MessageAttributes"
    try:
        policy = compile(policy_text, scope)
    except InvalidFilterPolicy as exc:
        # SNS names the attribute before every reason but the scope one
        label = "" if str(exc) == NESTED_IN_ATTRIBUTES else "FilterPolicy: "
        raise InvalidFilterPolicy(f"{prefix}{label}{exc}") from None
    if "FilterPolicy" in changes:
        changes["FilterPolicy"] = policy_text
    return changes, policy


def _check_delivery_policy(text: str, prefix: str) -> None:
    doc = json_object(text)
    if doc is None:
        raise InvalidParameter(f"{prefix}DeliveryPolicy: failed to parse JSON.")
    retry = doc.get("healthyRetryPolicy")
    low = retry.get("minDelayTarget") if isinstance(retry, dict) else None
    if isinstance(low, (int, float)) and not isinstance(low, bool) and low < 1:
        # SNS's answer, as quoted in awsdocs/amazon-sns-developer-guide#5
        raise InvalidParameter(
            f"{prefix}DeliveryPolicy: healthyRetryPolicy.minDelayTarget must be greater than or "
            "equal to 1"
        )


def _check_redrive_policy(text: str, prefix: str, *, fifo_topic: bool, fifo_queue: bool) -> None:
    doc = json_object(text)
    if doc is None:
        raise InvalidParameter(f"{prefix}RedrivePolicy: failed to parse JSON.")
    for member in doc:
        if member != "deadLetterTargetArn":
            # SNS's wording (AWS's answer to an SQS queue's maxReceiveCount copied in)
            raise InvalidParameter(
                f"{prefix}RedrivePolicy: invalid JSON. Attribute {member} is unknown."
            )
    target = doc.get("deadLetterTargetArn")
    parsed = parse_arn(target, "sqs") if isinstance(target, str) else None
    if parsed is None:
        raise InvalidParameter(f"{prefix}RedrivePolicy: deadLetterTargetArn is an invalid arn")
    if fifo_topic and fifo_queue and not parsed[2].endswith(".fifo"):
        raise InvalidParameter(
            f"{prefix}RedrivePolicy: must use a FIFO queue as DLQ for a FIFO Subscription to a "
            "FIFO Topic."
        )
    if not fifo_topic and parsed[2].endswith(".fifo"):
        raise InvalidParameter(
            f"{prefix}RedrivePolicy: must use a standard queue as DLQ for a subscription to a "
            "standard topic."
        )


def _effective(attributes: Mapping[str, str | None], name: str) -> str | None:
    value = attributes.get(name)
    return _SUBSCRIPTION_DEFAULTS.get(name) if value is None else value


def check_same(
    requested: Mapping[str, str | None],
    policy: FilterPolicy | None,
    stored: Mapping[str, str],
    compile: Compile,
) -> None:
    """Subscribe again: every given attribute must equal the stored one (policies as parsed)."""
    for name in requested:
        if name == "FilterPolicy":
            current = stored.get("FilterPolicy")
            same = (policy is None and not current) or (
                policy is not None
                and current is not None
                and compile(current, stored.get("FilterPolicyScope", "MessageAttributes")).text
                == policy.text
            )
        else:
            same = _effective(requested, name) == _effective(stored, name)
        if not same:
            raise InvalidParameter(
                f"{SUBSCRIBE_PREFIX}Subscription already exists with different attributes"
            )


def policy_count(txn: Any, meta: Any, topic_name: str, skip: bytes | None, now_ms: int) -> int:
    """How many subscriptions of the topic have a filter policy (``skip``: one key not counted)."""
    count = 0
    for key, record in _records(txn, meta, sub_prefix(topic_name)):
        if key != skip and record["attributes"].get("FilterPolicy") and not lapsed(record, now_ms):
            count += 1
    return count


# -- a subscription -----------------------------------------------------------------------------


class Subscription:
    """One topic subscription; from ``Topic.subscribe``, ``broker.subscription`` or the lists.

    Attributes:
        arn: ``arn:aws:sns:<region>:<account>:<topic>:<uuid>``.
        topic_arn, topic_name: the topic.
        protocol: "sqs", "http" or "https".
        endpoint: the queue's ARN, or the HTTP/S URL.
        queue_name: the queue's name ("" for HTTP/S subscriptions).
        pending: True while an HTTP/S subscription awaits its confirmation (as of when this
            handle was made).
    """

    def __init__(
        self,
        topics: Topics,
        topic_name: str,
        sub_id: str,
        queue_name: str | None,
        endpoint: str,
        protocol: str = "sqs",
        pending: bool = False,
    ) -> None:
        self._topics = topics
        self.topic_name = topic_name
        self.topic_arn = topics._broker.arn("sns", topic_name)
        self.arn = f"{self.topic_arn}:{sub_id}"
        self.queue_name = queue_name or ""
        self.endpoint = endpoint
        self.protocol = protocol
        self.pending = pending
        self.owner = topics._broker.account_id
        self._sub_id = sub_id
        self._key = sub_prefix(topic_name) + sub_id.encode()

    @classmethod
    def from_record(
        cls, topics: Topics, topic_name: str, sub_id: str, record: Mapping[str, Any]
    ) -> Subscription:
        return cls(
            topics,
            topic_name,
            sub_id,
            record["queue"],
            record["endpoint"],
            record.get("protocol", "sqs"),
            bool(record.get("pending")),
        )

    def __repr__(self) -> str:
        target = self.queue_name if self.protocol == "sqs" else self.endpoint
        return f"Subscription({self.arn!r} -> {target!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Subscription) and other.arn == self.arn

    def __reduce__(self) -> Any:
        raise not_picklable("Subscription")

    def __hash__(self) -> int:
        return hash(self.arn)

    @property
    def undelivered(self) -> int:
        """Messages this process could not deliver to the endpoint nor its dead-letter queue."""
        return self._topics.undelivered[self.arn]

    def _stored(self, txn: Any) -> dict[str, Any]:
        raw = txn.get(self._key, db=self._topics._meta)
        record = None if raw is None else msgpack.unpackb(raw)
        if record is None or lapsed(record, self._topics._broker.clock.now_ms()):
            raise TopicNotFound("Subscription does not exist")
        return record  # type: ignore[no-any-return]

    def get_attributes(self) -> dict[str, str]:
        """SNS GetSubscriptionAttributes: the read-only ones and whatever was set.

        SubscriptionArn, TopicArn, Owner, SubscriptionPrincipal, Protocol, Endpoint (the queue
        ARN or the URL), PendingConfirmation, ConfirmationWasAuthenticated, RawMessageDelivery;
        FilterPolicy and FilterPolicyScope when there is a policy; RedrivePolicy, DeliveryPolicy,
        SubscriptionRoleArn when set; HTTP/S ones add EffectiveDeliveryPolicy. Raises
        TopicNotFound after unsubscribe.
        """
        meta = self._topics._meta

        def read(txn: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            topic_raw = txn.get(topic_key(self.topic_name), db=meta)
            return self._stored(txn), msgpack.unpackb(topic_raw) if topic_raw else {}

        record, topic_record = self._topics._storage.read(read)
        stored = record["attributes"]
        protocol = record.get("protocol", "sqs")
        values = {
            "SubscriptionArn": self.arn,
            "TopicArn": self.topic_arn,
            "Owner": self.owner,
            "SubscriptionPrincipal": f"arn:aws:iam::{self.owner}:root",  # no IAM users here
            "Protocol": protocol,
            "Endpoint": self.endpoint,
            "PendingConfirmation": "true" if record.get("pending") else "false",
            "ConfirmationWasAuthenticated": "true"
            if record.get("authenticated", protocol == "sqs")
            else "false",
            "RawMessageDelivery": "false",
        }
        if protocol != "sqs":
            values["EffectiveDeliveryPolicy"] = subscription_effective_delivery_policy(
                stored.get("DeliveryPolicy"),
                topic_record.get("attributes", {}).get("DeliveryPolicy"),
            )
        values.update(stored)
        if stored.get("FilterPolicy"):
            values.setdefault("FilterPolicyScope", "MessageAttributes")
        else:
            values.pop("FilterPolicyScope", None)
        return values

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """SNS SetSubscriptionAttributes (several at once, all or none); takes effect at once.

        Settable: FilterPolicy (JSON text or dict; "" or None removes it), FilterPolicyScope,
        RawMessageDelivery, RedrivePolicy, DeliveryPolicy, SubscriptionRoleArn. A policy is
        validated against the scope in force after the change.

        Raises:
            InvalidParameter: "Invalid parameter: <Attribute>…".
            InvalidFilterPolicy: "Invalid parameter: FilterPolicy: <reason>".
            FilterPolicyLimitExceeded: a first policy on a topic that has 200 already.
        """
        topics = self._topics
        meta = topics._meta
        fifo_topic = self.topic_name.endswith(".fifo")
        fifo_queue = self.queue_name.endswith(".fifo")
        if not isinstance(attributes, Mapping):
            raise InvalidParameter("Invalid parameter: Attributes")

        def update(txn: Any, now_ms: int) -> tuple[dict[str, Any], FilterPolicy | None]:
            record = self._stored(txn)
            stored = record["attributes"]
            changes, policy = subscription_attributes(
                attributes,
                stored,
                SET_PREFIX,
                fifo_topic=fifo_topic,
                fifo_queue=fifo_queue,
                compile=topics._compile,
            )
            if (
                policy is not None
                and not stored.get("FilterPolicy")
                and policy_count(txn, meta, self.topic_name, self._key, now_ms)
                >= topics._policy_limit()
            ):
                raise FilterPolicyLimitExceeded("Filter policy limit exceeded")
            merged = {**stored, **changes}
            record["attributes"] = {k: v for k, v in merged.items() if v is not None}
            txn.put(self._key, msgpack.packb(record), db=meta)
            touch(txn, meta, self.topic_name)
            return record["attributes"], policy

        stored, policy = topics._storage.write(update)
        if policy is not None:  # compiled once: the reload reuses it
            topics._remember(self.arn, stored, policy)
        topics._changed(self.topic_name)

    def unsubscribe(self) -> None:
        """Stop delivering to the endpoint (SNS Unsubscribe); unsubscribing twice succeeds.

        HTTP/S deliveries still in the outbox are dropped when their turn comes. An HTTP/S
        endpoint gets an UnsubscribeConfirmation, whose SubscribeURL restores the subscription
        for as long as its token is valid (2 days).

        Raises:
            InvalidParameter: the subscription awaits its confirmation (SNS keeps it until it
                is confirmed, or deletes it itself after 48 hours).
        """
        topics = self._topics
        meta = topics._meta

        def delete(txn: Any, now_ms: int) -> None:
            raw = txn.get(self._key, db=meta)
            if raw is None:
                return
            record = msgpack.unpackb(raw)
            if record.get("pending") and not lapsed(record, now_ms):
                raise InvalidParameter(  # SNS's answer
                    "Invalid parameter: SubscriptionArn Reason: Cannot unsubscribe a subscription "
                    "that is pending confirmation"
                )
            topic_raw = txn.get(topic_key(self.topic_name), db=meta)
            if not txn.delete(self._key, db=meta) or topic_raw is None:
                return
            touch(txn, meta, self.topic_name)
            if record.get("protocol", "sqs") in HTTP_PROTOCOLS and not record.get("pending"):
                _keep_restorable(txn, now_ms, topics._topic(self.topic_name), self._sub_id, record)

        topics._storage.write(delete)
        topics.forget_subscriptions([self.arn])
        topics._changed(self.topic_name)


# -- in the write transaction -----------------------------------------------------------------


def subscribe_in_txn(
    txn: Any,
    now_ms: int,
    topic: Topic,
    queue_name: str,
    endpoint: str,
    protocol: str,
    requested: dict[str, str | None],
    policy: FilterPolicy | None,
    *,
    compile: Compile,
    limit: int,
    service_url: str | None,
) -> tuple[str, bool, bool]:
    """Store a subscription of ``topic`` (caller holds the write txn, which may re-run).

    Returns (subscription id, created, pending). An endpoint already subscribed keeps its
    subscription when every requested attribute matches; a pending HTTP/S one gets its
    confirmation queued again, its token valid for 2 more days. ``limit``: filter policies per
    topic.
    """
    meta = topic._meta
    prefix = sub_prefix(topic.name)
    version = topic._record(txn)["attributes"].get("SignatureVersion", "1")  # TopicNotFound
    policies = 0
    for key, record in list(_records(txn, meta, prefix)):
        if lapsed(record, now_ms):
            txn.delete(key, db=meta)  # deleted by SNS after 48 hours: subscribed anew below
            continue
        stored = record["attributes"]
        if record["endpoint"] == endpoint:
            check_same(requested, policy, stored, compile)
            sub_id = key[len(prefix) :].decode()
            pending = bool(record.get("pending"))
            if pending:
                record["token_ms"] = now_ms
                txn.put(key, msgpack.packb(record), db=meta)
                _queue_confirmation(txn, now_ms, topic, sub_id, record, service_url, version)
            return sub_id, False, pending
        policies += bool(stored.get("FilterPolicy"))
    if policy is not None and policies >= limit:
        raise FilterPolicyLimitExceeded("Filter policy limit exceeded")
    sub_id = str(uuid.uuid4())
    stored = {k: v for k, v in requested.items() if v is not None}
    stored.setdefault("RawMessageDelivery", "false")
    record = {
        "queue": queue_name,
        "endpoint": endpoint,
        "attributes": stored,
        "created": now_ms // 1000,
    }
    if service_url:  # made through the daemon: its messages' UnsubscribeURL points there
        record["service"] = service_url
    http = protocol in HTTP_PROTOCOLS
    if http:
        record.update(protocol=protocol, pending=True, token=new_token(), token_ms=now_ms)
    txn.put(prefix + sub_id.encode(), msgpack.packb(record), db=meta)
    if http:
        _queue_confirmation(txn, now_ms, topic, sub_id, record, service_url, version)
    touch(txn, meta, topic.name)
    return sub_id, True, http


def _queue_confirmation(
    txn: Any,
    now_ms: int,
    topic: Topic,
    sub_id: str,
    record: dict[str, Any],
    service_url: str | None,
    version: str,
    *,
    unsubscribed: bool = False,
) -> None:
    """Queue the endpoint's SubscriptionConfirmation (or, ``unsubscribed``, its
    UnsubscribeConfirmation) with the record's token (caller holds the write txn)."""
    entry = confirmation_entry(
        topic,
        f"{topic.arn}:{sub_id}",
        record["endpoint"],
        record["token"],
        service_url,
        now_ms,
        version,
        unsubscribed=unsubscribed,
    )
    enqueue_http(txn, topic._meta, now_ms, [entry])


def _records(txn: Any, meta: Any, prefix: bytes) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(key, decoded record) of every ``meta`` record under ``prefix``, in key order."""
    with txn.cursor(db=meta) as cur:
        if cur.set_range(prefix):
            for key, value in cur:
                if not key.startswith(prefix):
                    return
                yield key, msgpack.unpackb(value)


def _keep_restorable(
    txn: Any, now_ms: int, topic: Topic, sub_id: str, record: dict[str, Any]
) -> None:
    """Keep a deleted HTTP/S subscription under a new token and send the endpoint its
    UnsubscribeConfirmation (caller holds the write txn); drop the expired ones of the topic."""
    meta = topic._meta
    prefix = unsubscribed_prefix(topic.name)
    with txn.cursor(db=meta) as cur:
        found = cur.set_range(prefix)
        while found and cur.key().startswith(prefix):
            if now_ms - msgpack.unpackb(cur.value()).get("token_ms", 0) > TOKEN_TTL_MS:
                found = cur.delete()
            else:
                found = cur.next()
    record.update(token=new_token(), token_ms=now_ms)
    txn.put(prefix + sub_id.encode(), msgpack.packb(record), db=meta)
    version = topic._record(txn)["attributes"].get("SignatureVersion", "1")
    _queue_confirmation(
        txn, now_ms, topic, sub_id, record, record.get("service"), version, unsubscribed=True
    )


def _restore(txn: Any, now_ms: int, topic: Topic, token: str) -> tuple[str, dict[str, Any]] | None:
    """The deleted subscription an UnsubscribeConfirmation's token names, subscribed again
    (caller holds the write txn); None when no valid token matches."""
    meta = topic._meta
    prefix = unsubscribed_prefix(topic.name)
    for key, record in _records(txn, meta, prefix):
        if not hmac.compare_digest(record["token"], token):
            continue
        if now_ms - record["token_ms"] > TOKEN_TTL_MS:
            return None
        txn.delete(key, db=meta)
        live = sub_prefix(topic.name)
        for live_key, live_record in _records(txn, meta, live):
            if live_record["endpoint"] == record["endpoint"]:  # subscribed again meanwhile
                return live_key[len(live) :].decode(), live_record
        sub_id = key[len(prefix) :].decode()
        txn.put(live + sub_id.encode(), msgpack.packb(record), db=meta)
        touch(txn, meta, topic.name)
        return sub_id, record
    return None


_HEX_TOKEN = re.compile(r"[0-9a-fA-F]+")  # what a confirmation token of SNS looks like


def confirm_in_txn(
    txn: Any, now_ms: int, topic: Topic, token: str, authenticated: bool
) -> tuple[str, dict[str, Any], bool]:
    """Confirm the subscription of ``topic`` whose token this is (caller holds the write txn):
    a pending one, or one deleted and restored by its UnsubscribeConfirmation's token.

    Returns (subscription id, its record, whether it was pending or restored). Raises
    InvalidParameter for an unknown or expired token ("Invalid parameter: Token" when it is
    hex, as SNS's tokens are, else "Invalid token").
    """
    meta = topic._meta
    prefix = sub_prefix(topic.name)
    topic._record(txn)  # TopicNotFound
    restored = _restore(txn, now_ms, topic, token)
    if restored is not None:
        return restored[0], restored[1], True
    for key, record in _records(txn, meta, prefix):
        stored_token = record.get("token")
        if not stored_token or not hmac.compare_digest(stored_token, token):
            continue
        sub_id = key[len(prefix) :].decode()
        if not record.get("pending"):
            return sub_id, record, False  # confirmed already: the same answer
        if now_ms - record.get("token_ms", 0) > TOKEN_TTL_MS:
            break
        record["pending"] = False
        record["authenticated"] = authenticated
        txn.put(key, msgpack.packb(record), db=meta)
        touch(txn, meta, topic.name)
        return sub_id, record, True
    # SNS's texts (AWS-recorded): a token shaped as its tokens are (hex) that names nothing,
    # or no longer, "Invalid parameter: Token"; anything else "Invalid token"
    raise InvalidParameter(
        "Invalid parameter: Token" if _HEX_TOKEN.fullmatch(token) else "Invalid token"
    )
