"""Topics: Amazon SNS fan-out to the broker's queues and HTTP/S endpoints, with filter policies.

A publish is delivered to every matching subscription in ONE write transaction: every queue
gets the message or none does, also across a crash. A subscription whose queue no longer exists
(or cannot take the message: too large, or more attributes than SQS carries with raw delivery)
is skipped, as SNS skips an undeliverable endpoint; its RedrivePolicy dead-letter queue, if that
exists, gets the message instead, in the same transaction. Skips are counted per subscription
(:attr:`Subscription.undelivered`) and logged once per subscription and reason. HTTP/S
subscriptions get their POSTs queued in a durable outbox in that same transaction; the daemon
makes them (:mod:`millpond.topic_http`).

This module holds the registry (:class:`Topics`) and the topic's lifecycle, subscribe and
publish (:class:`Topic`). The rest is split by concept: :mod:`millpond.topic_attributes`
(attribute rules, access policy, tags), :mod:`millpond.subscription` (:class:`Subscription` and
its attributes), :mod:`millpond.fan_out` (what a publish writes in its transaction),
:mod:`millpond.topic_http` (the outbox) and :mod:`millpond.sns_envelope` (message rules and
the envelope).

Stored in the ``meta`` table (msgpack values)::

    t:<topic>                 {"attributes": {set attributes}, "created": s, "v": 8 random bytes}
    tg:<topic>                {tag key: value}
    s:<topic>:<uuid>          {"queue": name, "endpoint": queue ARN, "attributes": {...},
                               "created": s}; HTTP/S ones add "protocol", "pending", "token",
                               "token_ms" (and "queue" is "")
    tq:<topic>                FIFO topics: the last SequenceNumber, decimal ASCII
    td:<topic>\\0<group>\\0<id> FIFO topics: [expires_ms, message id, SequenceNumber] (5 min)
    to:<due><random>          HTTP/S deliveries to make (see millpond.topic_http)
    tt                        throttled HTTP/S subscriptions' next free turns (idem)

``v`` changes with every change to the topic or its subscriptions. A publish matches against an
in-memory snapshot of the subscriptions (filter policies compiled once per subscription), then,
inside its write transaction, compares the stored ``t:<topic>`` bytes with the ones the snapshot
was built from; if another process (or thread) changed anything, it reloads and re-matches in
that transaction. One LMDB read per publish keeps every process coherent.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import msgpack

from millpond import arguments, fan_out
from millpond.counts import Counts
from millpond.dead_letters import parse_arn
from millpond.errors import TopicNotFound, not_picklable
from millpond.fan_out import (
    DEDUP_WINDOW_MS,
    HTTP_OUTBOX,
    Outgoing,
    State,
    dedup_prefix,
    delete_prefix,
    deliver_to_queue,
    lapsed,
    sequence_key,
    sub_prefix,
    tags_key,
    topic_key,
    unsubscribed_prefix,
)
from millpond.filters import FilterPolicy, compile_policy
from millpond.queue import Queue
from millpond.sns_envelope import (
    InvalidParameter,
    ParameterValueInvalid,
    ValidationError,
    check_batch_ids,
    check_batch_size,
)
from millpond.storage import key_names_after
from millpond.subscription import (
    FilterPolicyLimitExceeded,
    Subscription,
    check_http_endpoint,
    check_protocol,
    confirm_in_txn,
    subscribe_in_txn,
    subscription_attributes,
)
from millpond.topic_attributes import (
    SUBSCRIBE_PREFIX,
    TopicSettings,
    bool_text,
    check_tags,
    check_topic_attributes,
    same_topic_value,
    tags_in,
    text_value,
    topic_value,
)
from millpond.topic_http import HttpOutbox

if TYPE_CHECKING:
    from millpond.broker import Broker

__all__ = [
    "DEDUP_WINDOW_MS",
    "FilterPolicyLimitExceeded",
    "InvalidParameter",
    "ParameterValueInvalid",
    "Subscription",
    "Topic",
    "Topics",
    "deliver_to_queue",
]

log = logging.getLogger("millpond")

_Validated = TypeVar("_Validated")
_Arguments = ParamSpec("_Arguments")

MAX_FILTER_POLICIES = 200  # per topic, as SNS (read at each use: tests lower it)

_TOPIC_NAME = re.compile(r"[A-Za-z0-9_-]{1,256}")
_FIFO_TOPIC_NAME = re.compile(r"[A-Za-z0-9_-]{1,251}\.fifo")  # 256 with the suffix
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo")
_MESSAGE_ID_CHARS = re.compile(r"[!-~]{1,128}")  # MessageGroupId / MessageDeduplicationId


# -- the registry ---------------------------------------------------------------------------------


class Topics:
    """The topics of a broker (``broker._topics``); the broker's topic methods call these."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._storage = broker._storage
        self._meta = broker._storage.tables.meta
        self._lock = threading.Lock()
        self._topics: dict[str, Topic] = {}
        # subscription ARN -> (policy text, scope, compiled): compiled once, reused on reloads
        self._policies: dict[str, tuple[str, str, FilterPolicy | None]] = {}
        self.undelivered: Counter[str] = Counter()  # subscription ARN -> messages skipped
        self._reported: dict[str, set[str]] = {}  # subscription ARN -> reasons logged
        # Envelope signatures: HMAC keyed by the directory's secret (not an AWS signature).
        self._signing_key = hmac.new(broker._secret, b"millpond sns signature", "sha256").digest()
        self.http = HttpOutbox(self)  # HTTP/S deliveries, made by the daemon

    # -- topics -------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None,
    ) -> Topic:
        """Create a topic, or return the existing one if every given attribute matches.

        Args:
            name: 1-256 characters of A-Z a-z 0-9 _ -; a FIFO topic adds ".fifo" and needs
                ``{"FifoTopic": "true"}``.
            attributes: SNS topic attributes (DisplayName, Policy, DeliveryPolicy,
                SignatureVersion, TracingConfig, KmsMasterKeyId, FifoTopic,
                ContentBasedDeduplication, FifoThroughputScope, ArchivePolicy, feedback roles).
            tags: ``{key: value}`` (or SNS's ``[{"Key", "Value"}]``), at most 50.

        Raises:
            InvalidParameter: a bad name, attribute or tag, or the topic exists with a different
                value for a given attribute ("Topic already exists with different attributes")
                or tag ("Topic already exists with different tags").
        """
        given = dict(arguments.mapping(attributes, "Attributes", InvalidParameter))
        fifo_text = bool_text(text_value(given["FifoTopic"])) if "FifoTopic" in given else "false"
        if fifo_text is None:
            raise InvalidParameter(
                "Invalid parameter: Attributes Reason: FifoTopic: Invalid value "
                f"[{given['FifoTopic']}]. Must be true or false."
            )
        fifo = fifo_text == "true"
        pattern = _FIFO_TOPIC_NAME if fifo else _TOPIC_NAME
        if not isinstance(name, str) or not pattern.fullmatch(name):
            if fifo:
                raise InvalidParameter(
                    "Invalid parameter: Fifo Topic names must end with .fifo and must be made up "
                    "of only uppercase and lowercase ASCII letters, numbers, underscores, and "
                    "hyphens, and must be between 1 and 256 characters long."
                )
            raise InvalidParameter("Invalid parameter: Topic Name")
        given.pop("FifoTopic", None)  # SNS does not store FifoTopic=false
        requested = check_topic_attributes(given, fifo=fifo, creating=True)
        if fifo:
            requested["FifoTopic"] = "true"
        new_tags = None if tags is None else check_tags(tags)
        arn = self._broker.arn("sns", name)
        meta = self._meta

        def create(txn: Any, now_ms: int) -> None:
            raw = txn.get(topic_key(name), db=meta)
            if raw is not None:
                stored = msgpack.unpackb(raw)["attributes"]
                for key, value in requested.items():
                    if not same_topic_value(key, value, topic_value(stored, key, arn)):
                        raise InvalidParameter(
                            "Invalid parameter: Attributes Reason: Topic already exists with "
                            "different attributes"
                        )
                if new_tags:
                    stored_tags = tags_in(txn, meta, name)
                    if any(stored_tags.get(k) != v for k, v in new_tags.items()):
                        raise InvalidParameter(
                            "Invalid parameter: Tags Reason: Topic already exists with different "
                            "tags"
                        )
                return
            record = {"attributes": requested, "created": now_ms // 1000, "v": os.urandom(8)}
            txn.put(topic_key(name), msgpack.packb(record), db=meta)
            if new_tags:
                txn.put(tags_key(name), msgpack.packb(new_tags), db=meta)

        self._storage.write(create)
        return self._topic(name)

    def get(self, name: str) -> Topic:
        """The topic ``name`` (or its ARN); raises TopicNotFound."""
        name = self._name_of(name)
        # Looked up every time, also when this process has the object: another process may
        # have deleted the topic (its delete drops only its own process's object).
        if self._storage.read(lambda txn: txn.get(topic_key(name), db=self._meta)) is None:
            self._forget(name)
            raise TopicNotFound("Topic does not exist")
        return self._topic(name)

    def delete(self, name: str) -> None:
        """Delete a topic and all its subscriptions; deleting a missing topic succeeds (SNS)."""
        name = self._name_of(name)
        meta = self._meta

        def delete(txn: Any, now_ms: int) -> None:
            txn.delete(topic_key(name), db=meta)
            txn.delete(sequence_key(name), db=meta)
            txn.delete(tags_key(name), db=meta)
            delete_prefix(txn, meta, sub_prefix(name))
            delete_prefix(txn, meta, unsubscribed_prefix(name))
            delete_prefix(txn, meta, dedup_prefix(name))
            # its HTTP/S deliveries still in the outbox are dropped when taken

        self._storage.write(delete)
        self._forget(name)
        arn_prefix = self._broker.arn("sns", name) + ":"
        with self._lock:
            known = {*self._policies, *self.undelivered, *self._reported}
        self.forget_subscriptions([arn for arn in known if arn.startswith(arn_prefix)])

    def subscription(self, arn: str) -> Subscription:
        """The subscription with this ARN; raises TopicNotFound ("Subscription does not exist")."""
        parts = arn.split(":") if isinstance(arn, str) else []
        if len(parts) != 7 or parts[:3] != ["arn", "aws", "sns"]:
            raise InvalidParameter("Invalid parameter: SubscriptionArn")
        topic_name, sub_id = parts[5], parts[6]
        if parts[3:5] != [self._broker.region, self._broker.account_id]:
            raise TopicNotFound("Subscription does not exist")
        key = sub_prefix(topic_name) + sub_id.encode()
        raw = self._storage.read(lambda txn: txn.get(key, db=self._meta))
        record = None if raw is None else msgpack.unpackb(raw)
        if record is None or lapsed(record, self._broker.clock.now_ms()):
            raise TopicNotFound("Subscription does not exist")
        return Subscription.from_record(self, topic_name, sub_id, record)

    def list_subscriptions(self) -> list[Subscription]:
        """Every subscription of every topic (SNS ListSubscriptions)."""
        return self.subscriptions_after("")

    def subscriptions_after(self, after: str, limit: int | None = None) -> list[Subscription]:
        """The subscriptions whose ARN sorts after ``after``, in ARN order, at most ``limit``
        (a ListSubscriptions page): only those are read, not every subscription."""
        now_ms = self._broker.clock.now_ms()
        return self._storage.read(
            lambda txn: _subscriptions_after(self, txn, None, after, limit, now_ms)
        )

    def topic_of_token(self, token: str) -> str | None:
        """The name of the topic whose pending (or unsubscribed) HTTP/S subscription has this
        confirmation token; None when none has it."""

        def scan(txn: Any) -> str | None:
            for prefix in (b"s:", b"su:"):
                with txn.cursor(db=self._meta) as cur:
                    if not cur.set_range(prefix):
                        continue
                    for key, value in cur:
                        if not key.startswith(prefix):
                            break
                        stored = msgpack.unpackb(value).get("token")
                        if stored and hmac.compare_digest(stored, token):
                            name: str = key[len(prefix) :].decode().partition(":")[0]
                            return name
            return None

        if not isinstance(token, str) or not token:
            return None
        owner: str | None = self._storage.read(scan)
        return owner

    # -- internals ----------------------------------------------------------------------------

    def _name_of(self, name_or_arn: str) -> str:
        if isinstance(name_or_arn, str) and name_or_arn.startswith("arn:"):
            parsed = parse_arn(name_or_arn, "sns")
            if parsed is None:
                raise InvalidParameter("Invalid parameter: TopicArn")
            if parsed[:2] != (self._broker.region, self._broker.account_id):
                raise TopicNotFound("Topic does not exist")
            return parsed[2]
        return arguments.text(name_or_arn, "Invalid parameter: TopicArn:", InvalidParameter)

    def _topic(self, name: str) -> Topic:
        with self._lock:
            topic = self._topics.get(name)
            if topic is None:
                topic = self._topics[name] = Topic(self, name)
            return topic

    def _forget(self, name: str) -> None:
        """Drop this process's object of a deleted topic; its snapshot is stale."""
        with self._lock:
            topic = self._topics.pop(name, None)
        if topic is not None:
            topic._state = None

    def _changed(self, topic_name: str) -> None:
        """A subscription of the topic changed: its snapshot is rebuilt at the next publish."""
        topic = self._topics.get(topic_name)
        if topic is not None:
            topic._state = None

    def _compile(self, text: Any, scope: str) -> FilterPolicy:
        return compile_policy(text, scope)  # this module's name: tests count the compilations

    def _policy_limit(self) -> int:
        return MAX_FILTER_POLICIES

    def _remember(
        self, arn: str, attributes: Mapping[str, str | None], policy: FilterPolicy
    ) -> None:
        text = attributes.get("FilterPolicy")
        if text:
            scope = attributes.get("FilterPolicyScope") or "MessageAttributes"
            self._policies[arn] = (text, scope, policy)

    def forget_subscriptions(self, arns: Iterable[str]) -> None:
        """Drop what this process keeps about subscriptions that are gone (compiled filter
        policy, undelivered count, reasons logged): a broker that runs for days sees ever new
        subscriptions come and go."""
        with self._lock:
            for arn in arns:
                self._policies.pop(arn, None)
                self.undelivered.pop(arn, None)
                self._reported.pop(arn, None)

    def _record_lost(self, lost: list[tuple[str, str, int]]) -> None:
        for arn, reason, count in lost:
            with self._lock:  # += on a Counter is a read and a write: not atomic
                self.undelivered[arn] += count
                reported = self._reported.setdefault(arn, set())
                first = reason not in reported
                reported.add(reason)
            if first:
                log.warning(
                    "subscription %s: %d message(s) not delivered: %s (reported once per reason)",
                    arn,
                    count,
                    reason,
                )

    def names_after(self, after: str, limit: int | None = None) -> list[str]:
        """Names of the topics that sort after ``after``, sorted, at most ``limit`` (a
        ListTopics page): only those are read, not every topic's."""
        meta = self._meta
        return self._storage.read(lambda txn: key_names_after(txn, meta, b"t:", "", after, limit))

    # Last in the class: a method named "list" shadows the builtin in later annotations.
    def list(self) -> list[str]:
        """Names of all topics, sorted."""
        return self.names_after("")


def _subscriptions_after(
    topics: Topics, txn: Any, topic_name: str | None, after: str, limit: int | None, now_ms: int
) -> list[Subscription]:
    """The subscriptions (of topic ``topic_name``, else of every topic) whose ARN sorts after
    ``after``, in ARN order, at most ``limit``; caller holds the txn.

    Keys ``s:<topic>:<uuid>`` sort as the ARNs ``arn:aws:sns:<region>:<account>:<topic>:<uuid>``
    do (a common prefix, then the same text): the scan starts where ``after`` would be.
    """
    if topic_name is None:
        key_prefix, arn_prefix = b"s:", topics._broker.arn("sns", "")
    else:
        key_prefix, arn_prefix = sub_prefix(topic_name), topics._broker.arn("sns", topic_name) + ":"
    if after.startswith(arn_prefix):
        start = key_prefix + after[len(arn_prefix) :].encode() + b"\0"  # the first key past it
    elif after < arn_prefix:
        start = key_prefix  # before every ARN here
    else:
        return []  # past every ARN here
    subs: list[Subscription] = []
    with txn.cursor(db=topics._meta) as cur:
        if cur.set_range(start):
            for key, value in cur:
                if not key.startswith(key_prefix) or len(subs) == limit:
                    break
                record = msgpack.unpackb(value)
                if lapsed(record, now_ms):
                    continue
                name, _, sub_id = key[2:].decode().partition(":")
                subs.append(Subscription.from_record(topics, name, sub_id, record))
    return subs


# -- a topic --------------------------------------------------------------------------------------


def _batch_outgoing(state: State, entries: Sequence[Mapping[str, Any]]) -> list[Outgoing]:
    """The validated messages of PublishBatch ``entries`` for a topic in ``state``."""
    outs = []
    for index, entry in enumerate(entries, 1):
        try:
            outs.append(fan_out.outgoing(state, *fan_out.entry_arguments(entry)))
        except ValidationError as exc:  # SNS's path names the entry (1-based)
            raise ValidationError(
                str(exc).replace(
                    "'messageAttributes.",
                    f"'publishBatchRequestEntries.{index}.member.messageAttributes.",
                )
            ) from None
    return outs


class Topic(TopicSettings):
    """One SNS-style topic; get it from ``broker.create_topic`` or ``broker.topic``."""

    def __init__(self, topics: Topics, name: str) -> None:
        self._topics = topics
        self._broker = topics._broker
        self._storage = topics._storage
        self._meta = topics._meta
        self.name = name
        self.arn = self._broker.arn("sns", name)
        self.fifo = name.endswith(".fifo")
        self._state: State | None = None
        self._sweep_from: bytes | None = None
        # What this process published and delivered (the daemon's /metrics, named after the
        # CloudWatch SNS metrics); HTTP/S deliveries are counted as the outbox settles them.
        self.counters = Counts(
            published=0,
            published_bytes=0,
            delivered=0,
            filtered_out=0,
            failed=0,
            redriven_to_dlq=0,
        )

    def __repr__(self) -> str:
        return f"Topic({self.name!r})"

    def __reduce__(self) -> Any:
        raise not_picklable("Topic")

    # -- state ----------------------------------------------------------------------------------

    def _load_in(self, txn: Any, raw: bytes) -> State:
        """Rebuild the snapshot from ``txn``; ``raw`` is the stored topic record."""
        record = msgpack.unpackb(raw)
        prefix = sub_prefix(self.name)
        subs = []
        with txn.cursor(db=self._meta) as cur:
            if cur.set_range(prefix):
                for key, value in cur:
                    if not key.startswith(prefix):
                        break
                    sub = msgpack.unpackb(value)
                    if sub.get("pending"):
                        continue  # HTTP/S, not confirmed yet: gets nothing
                    sub_id = key[len(prefix) :].decode()
                    subs.append(fan_out.snapshot_sub(self._topics, self.arn, sub_id, sub))
        state = State(raw, record, tuple(subs))
        self._state = state
        return state

    def _snapshot(self) -> State:
        state = self._state
        if state is not None:
            return state

        def load(txn: Any) -> State:
            raw = txn.get(topic_key(self.name), db=self._meta)
            if raw is None:
                raise TopicNotFound("Topic does not exist")
            return self._load_in(txn, raw)

        return self._storage.read(load)

    def _validated(
        self,
        validate: Callable[Concatenate[State, _Arguments], _Validated],
        *args: _Arguments.args,
        **kwargs: _Arguments.kwargs,
    ) -> tuple[State, _Validated]:
        """``validate(state, *args, **kwargs)`` on the cached snapshot; when it refuses, once
        more on the stored topic if another process changed it since (e.g. turned
        ContentBasedDeduplication on): the refusal may come from the stale copy. Returns the
        state validated against. (Arguments, not a closure: a publish makes no cells.)"""
        state = self._snapshot()
        try:
            return state, validate(state, *args, **kwargs)
        except InvalidParameter:
            fresh = self._changed_since(state)
            if fresh is None:
                raise
        return fresh, validate(fresh, *args, **kwargs)

    def _changed_since(self, state: State) -> State | None:
        """The stored topic if it is not the one ``state`` was read from, else None."""

        def load(txn: Any) -> State | None:
            raw = txn.get(topic_key(self.name), db=self._meta)
            if raw is None:
                raise TopicNotFound("Topic does not exist")
            return None if raw == state.raw else self._load_in(txn, raw)

        return self._storage.read(load)

    def delete(self) -> None:
        """Delete the topic and its subscriptions (same as ``broker.delete_topic``)."""
        self._topics.delete(self.name)

    # -- subscriptions --------------------------------------------------------------------------

    def subscribe(
        self,
        queue: Queue | str,
        filter_policy: str | Mapping[str, Any] | None = None,
        filter_policy_scope: str | None = None,
        raw_message_delivery: bool | str | None = None,
        *,
        attributes: Mapping[str, Any] | None = None,
        protocol: str = "sqs",
        service_url: str | None = None,
    ) -> Subscription:
        """Subscribe a queue (SNS Subscribe, protocol "sqs") or an HTTP/S endpoint.

        Args:
            queue: a Queue, or a queue name or ARN of this broker. Like SNS, the queue need not
                exist yet: messages published while it does not exist are skipped (or go to the
                subscription's dead-letter queue). With protocol "http" / "https": the URL.
            filter_policy: the policy as the JSON text SNS takes, or the same as a dict.
                Validated and compiled now; None: every message.
            filter_policy_scope: "MessageAttributes" (SNS's default) or "MessageBody".
            raw_message_delivery: True: the endpoint gets the bare message (a queue also its
                attributes); False (SNS's default): the SNS JSON envelope.
            attributes: more SNS subscription attributes as strings (RedrivePolicy,
                DeliveryPolicy, SubscriptionRoleArn, or any of the above by their SNS names).
            protocol: "sqs", or "http" / "https". An HTTP/S subscription is pending until
                confirmed: a SubscriptionConfirmation with a Token is queued for the endpoint
                (see millpond.topic_http), and :meth:`confirm_subscription` with that Token
                confirms it. Standard topics only.
            service_url: where this broker's SNS API is served (the daemon's address): the
                base of an HTTP/S confirmation's SubscribeURL and of the UnsubscribeURL in
                every message of the subscription (default SNS's regional endpoint).

        None means "not given": SNS's default for a new subscription, and not compared when the
        endpoint is subscribed already. Subscribing it again returns the existing subscription
        if every given attribute matches (a pending one gets its confirmation again), else
        raises InvalidParameter "Subscription already exists with different attributes".

        Raises:
            InvalidParameter: a bad endpoint or attribute; "FIFO SQS Queues can not be
                subscribed to standard SNS topics".
            InvalidFilterPolicy: "Invalid parameter: Attributes Reason: FilterPolicy: <reason>".
            FilterPolicyLimitExceeded: the topic has 200 filter policies already.
        """
        protocol = check_protocol(protocol, queue)
        if protocol == "sqs":
            queue_name, endpoint = self._endpoint(queue)
            fifo_queue = queue_name.endswith(".fifo")
            if fifo_queue and not self.fifo:
                raise InvalidParameter(  # AWS's wording, prefix doubled as recorded
                    "Invalid parameter: Invalid parameter: Endpoint Reason: FIFO SQS Queues can "
                    "not be subscribed to standard SNS topics"
                )
            # A FIFO topic takes standard queues too (best-effort order, at-least-once):
            # "SNS FIFO topics support delivery to both Amazon SQS standard and FIFO queues".
        else:
            queue_name, endpoint, fifo_queue = "", check_http_endpoint(protocol, queue), False
            if self.fifo:
                raise InvalidParameter(
                    f"Invalid parameter: Endpoint Reason: FIFO topics deliver to SQS queues only, "
                    f"not {protocol} endpoints"
                )
        given: dict[str, Any] = dict(arguments.mapping(attributes, "Attributes", InvalidParameter))
        if service_url is not None:  # the base of the URLs in its messages
            arguments.text(service_url, "service_url", InvalidParameter)
            if not service_url.startswith(("http://", "https://")) or service_url.isspace():
                raise InvalidParameter("Invalid parameter: service_url must be an http(s) URL")
        if filter_policy is not None:
            given["FilterPolicy"] = filter_policy
        if filter_policy_scope is not None:
            given["FilterPolicyScope"] = filter_policy_scope
        if raw_message_delivery is not None:
            given["RawMessageDelivery"] = raw_message_delivery
        # Validate once on its own: a bad attribute fails even when the subscription exists.
        requested, policy = subscription_attributes(
            given,
            {},
            SUBSCRIBE_PREFIX,
            fifo_topic=self.fifo,
            fifo_queue=fifo_queue,
            compile=compile_policy,
        )

        def subscribe(txn: Any, now_ms: int) -> tuple[str, bool, bool]:
            return subscribe_in_txn(
                txn,
                now_ms,
                self,
                queue_name,
                endpoint,
                protocol,
                requested,
                policy,
                compile=compile_policy,
                limit=MAX_FILTER_POLICIES,
                service_url=service_url,
            )

        sub_id, created, pending = self._storage.write(subscribe)
        if created:
            if policy is not None:  # compiled once: the reload reuses it
                self._topics._remember(f"{self.arn}:{sub_id}", requested, policy)
            self._state = None
        if pending:  # a confirmation was queued
            self._topics.http._notify()
        return Subscription(
            self._topics, self.name, sub_id, queue_name, endpoint, protocol, pending
        )

    def confirm_subscription(
        self, token: str, authenticate_on_unsubscribe: bool | str = False
    ) -> Subscription:
        """Confirm a pending HTTP/S subscription with the Token its endpoint was sent.

        SNS ConfirmSubscription; confirming again returns the same subscription. Tokens expire
        2 days after the (last) Subscribe.

        Raises:
            InvalidParameter: the token is unknown or expired ("Invalid parameter: Token";
                "Invalid token" for one not shaped as SNS's tokens are).
            TopicNotFound: the topic was deleted.
        """
        if not isinstance(token, str) or not token:
            raise InvalidParameter("Invalid parameter: Token")
        authenticated = str(authenticate_on_unsubscribe).lower() == "true"
        sub_id, record, changed = self._storage.write(
            lambda txn, now_ms: confirm_in_txn(txn, now_ms, self, token, authenticated)
        )
        if changed:
            self._state = None
        return Subscription.from_record(self._topics, self.name, sub_id, record)

    def _endpoint(self, queue: Queue | str) -> tuple[str, str]:
        """(queue name, queue ARN) of a Queue, a queue name or a queue ARN of this broker."""
        broker = self._broker
        if isinstance(queue, Queue):
            return queue.name, queue.arn
        if not isinstance(queue, str):
            raise InvalidParameter("Invalid parameter: SQS endpoint ARN")
        name = queue
        if queue.startswith("arn:"):
            parsed = parse_arn(queue, "sqs")
            if parsed is None:
                raise InvalidParameter("Invalid parameter: SQS endpoint ARN")
            if parsed[:2] != (broker.region, broker.account_id):
                raise InvalidParameter(
                    "Invalid parameter: Endpoint Reason: the queue is not in this broker's "
                    f"region and account ({broker.region}, {broker.account_id})"
                )
            name = parsed[2]
        if not _QUEUE_NAME.fullmatch(name):
            raise InvalidParameter("Invalid parameter: SQS endpoint ARN")
        return name, broker.arn("sqs", name)

    def subscription(self, arn: str) -> Subscription:
        """One subscription of this topic by its ARN; raises TopicNotFound."""
        sub = self._topics.subscription(arn)
        if sub.topic_name != self.name:
            raise TopicNotFound("Subscription does not exist")
        return sub

    def list_subscriptions(self) -> list[Subscription]:
        """This topic's subscriptions (SNS ListSubscriptionsByTopic); raises TopicNotFound."""
        return self._subscriptions_after("")

    def _subscriptions_after(self, after: str, limit: int | None = None) -> list[Subscription]:
        """This topic's subscriptions whose ARN sorts after ``after``, in ARN order, at most
        ``limit`` (a ListSubscriptionsByTopic page); raises TopicNotFound."""
        now_ms = self._broker.clock.now_ms()

        def scan(txn: Any) -> list[Subscription]:
            self._record(txn)
            return _subscriptions_after(self._topics, txn, self.name, after, limit, now_ms)

        return self._storage.read(scan)

    # -- publish --------------------------------------------------------------------------------

    def publish(
        self,
        message: str | bytes,
        *,
        subject: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        message_structure: str | None = None,
        trace_header: str | None = None,
    ) -> str:
        """Publish one message to every matching subscription; returns its SNS message id.

        Args:
            message: the text (str, or UTF-8 bytes), non-empty; with its attributes at most
                256 KiB.
            subject: 1-99 characters, no line breaks; goes into the envelope only.
            attributes: ``{name: {"DataType": "String" | "String.Array" | "Number" | "Binary",
                "StringValue" | "BinaryValue": ...}}`` (see sns_envelope.check_attributes).
            group_id: MessageGroupId, required on FIFO topics (1-128 printable ASCII).
            deduplication_id: MessageDeduplicationId, FIFO topics only; without it a FIFO
                topic needs ContentBasedDeduplication (SHA-256 of the message).
            message_structure: "json" to give a message per protocol ("default", "sqs",
                "http", "https").
            trace_header: an AWS X-Ray trace header (what a daemon gets as X-Amzn-Trace-Id):
                the messages of subscribed queues carry it as their AWSTraceHeader.

        Every matching queue gets the message in one write transaction, or none does ("fsync":
        on disk when this returns); HTTP/S deliveries are queued in that transaction. Each
        queue's message has its own SQS message id; the envelope's MessageId is the SNS id
        returned here. On a FIFO topic a repeated deduplication id within 5 minutes delivers
        nothing and returns the first message's id.

        Raises:
            InvalidParameter, ParameterValueInvalid: SNS would refuse the message.
            TopicNotFound: the topic was deleted.
        """
        message_id, _ = self._publish_one(
            message,
            subject,
            attributes,
            group_id,
            deduplication_id,
            message_structure,
            trace_header,
        )
        return message_id

    def publish_message(
        self,
        message: str | bytes,
        *,
        subject: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        message_structure: str | None = None,
        trace_header: str | None = None,
    ) -> dict[str, str]:
        """:meth:`publish`, answering as SNS Publish: ``{"MessageId"}``, plus "SequenceNumber"
        on FIFO topics (a repeated deduplication id: the first message's)."""
        message_id, sequence = self._publish_one(
            message,
            subject,
            attributes,
            group_id,
            deduplication_id,
            message_structure,
            trace_header,
        )
        result = {"MessageId": message_id}
        if sequence is not None:
            result["SequenceNumber"] = sequence
        return result

    def _publish_one(
        self,
        message: str | bytes,
        subject: str | None,
        attributes: Mapping[str, Any] | None,
        group_id: str | None,
        deduplication_id: str | None,
        message_structure: str | None,
        trace_header: str | None,
    ) -> tuple[str, str | None]:
        """:meth:`publish`: (message id, sequence number or None)."""
        state, out = self._validated(
            fan_out.outgoing,
            message,
            subject,
            attributes,
            group_id,
            deduplication_id,
            message_structure,
        )
        if trace_header is not None:
            out.trace_header = fan_out.check_trace_header(trace_header)
        return self._publish(state, [out])[0]

    def publish_batch(
        self, entries: Sequence[Mapping[str, Any]], *, trace_header: str | None = None
    ) -> list[dict[str, Any]]:
        """Publish up to 10 messages in one write transaction (SNS PublishBatch).

        Args:
            entries: dicts with "Id" (1-80 of A-Z a-z 0-9 _ -, unique) and the publish
                arguments by their SNS names (Message, Subject, MessageAttributes,
                MessageGroupId, MessageDeduplicationId, MessageStructure) or by the keyword
                names of :meth:`publish` (message, subject, attributes, group_id,
                deduplication_id, message_structure).
            trace_header: as for :meth:`publish`, for every entry.

        Returns:
            One result per entry, in order: ``{"Id", "MessageId"}``, plus "SequenceNumber" on
            FIFO topics.

        Raises:
            EmptyBatchRequest, TooManyEntriesInBatchRequest, BatchEntryIdsNotDistinct,
            InvalidBatchEntryId, BatchRequestTooLong (SNS's codes), or the error of the first
            entry :meth:`publish` would refuse (as SNS, the whole request fails): nothing was
            published.
        """
        if not isinstance(entries, Sequence) or any(not isinstance(e, Mapping) for e in entries):
            raise InvalidParameter("Invalid parameter: PublishBatchRequestEntries")
        check_batch_ids([entry.get("Id", entry.get("id")) for entry in entries])
        state, outs = self._validated(_batch_outgoing, entries)
        check_batch_size(sum(out.size for out in outs))
        trace_header = fan_out.check_trace_header(trace_header)
        for out in outs:
            out.trace_header = trace_header
        results: list[dict[str, Any]] = [
            {"Id": entry.get("Id", entry.get("id"))} for entry in entries
        ]
        for slot, (message_id, sequence) in enumerate(self._publish(state, outs)):
            results[slot]["MessageId"] = message_id
            if sequence is not None:
                results[slot]["SequenceNumber"] = sequence
        return results

    def _publish(self, state: State, outs: list[Outgoing]) -> list[tuple[str, str | None]]:
        """Deliver validated messages in one write transaction; (message id, sequence) each."""
        # The queues' DelaySeconds and MaximumMessageSize as another process may have changed
        # them (fan-out reads the cached queue objects): queue calls do this in Queue._write.
        self._broker._refresh_definitions()
        planned, deliveries = fan_out.plan(state, outs)
        key = topic_key(self.name)
        meta = self._meta

        def publish(txn: Any, now_ms: int) -> Any:
            raw = txn.get(key, db=meta)
            if raw is None:
                raise TopicNotFound("Topic does not exist")
            current, todo, count = state, planned, deliveries
            if raw != current.raw:  # changed since the snapshot: check and match again
                current = self._load_in(txn, raw)
                fan_out.check_content_deduplication(current, outs)
                todo, count = fan_out.plan(current, outs)
            return fan_out.fan_out(self, txn, now_ms, current, todo, count, outs)

        try:
            # atomic: the op runs in a nested transaction, so a failure after some deliveries
            # rolls all of them back (and only them: the other writers of the commit go on)
            woken, results, lost, tally = self._storage.write(
                publish, sends=deliveries, atomic=True
            )
        except TopicNotFound:
            self._state = None
            raise
        if HTTP_OUTBOX in woken:
            woken.discard(HTTP_OUTBOX)  # the rest are queue ids
            self._topics.http._notify()
        self._broker._wakeups.notify_many(woken)
        if lost:
            self._topics._record_lost(lost)
        # counted once committed: the op may have run more than once
        counters = self.counters
        counters["published"] += len(outs)
        counters["published_bytes"] += sum([out.size for out in outs])  # CloudWatch PublishSize
        for name, count in tally.items():
            if count:
                counters[name] += count
        return results  # type: ignore[no-any-return]
