"""A topic's fan-out: what one publish writes, inside its single write transaction.

:mod:`millpond.topic` takes a publish and opens the transaction; this module validates the
messages (:func:`outgoing`) and holds what runs inside the transaction: the in-memory snapshot
of a topic's subscriptions (:class:`State`, filter policies compiled once), the messages on
their way (:class:`Outgoing`, each part built once), and the writes: to every matching queue
(raw or in the SNS envelope), to a subscription's dead-letter queue when its queue cannot take
a message, and to the HTTP outbox for HTTP/S subscriptions (POSTed later by the daemon, see
:mod:`millpond.topic_http`). FIFO topics number their messages and drop repeated
deduplication ids here too.

It also owns the key layout of the topic records in the ``meta`` table (see
:mod:`millpond.topic`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgpack

from millpond.counts import Counts
from millpond.dead_letters import parse_arn
from millpond.errors import InvalidFilterPolicy, MillpondError, QueueDoesNotExist
from millpond.fifo_queue import FifoQueue
from millpond.filters import FilterPolicy
from millpond.message import pack_metadata
from millpond.message_attributes import (
    valid_trace_header,
    validate_body_text,
    validate_message_attributes,
)
from millpond.queue import Queue
from millpond.sns_envelope import (
    MAX_RAW_ATTRIBUTES,
    InvalidParameter,
    Notification,
    NotificationForm,
    check_message,
    check_size,
    check_subject,
    checked_attributes,
    unsubscribe_url_prefix,
)
from millpond.sns_envelope import message_id as new_message_id

if TYPE_CHECKING:
    from millpond._core_py import Delivery
    from millpond.broker import Broker
    from millpond.topic import Topic, Topics

log = logging.getLogger("millpond")

DEDUP_WINDOW_MS = 300_000  # FIFO topics drop a repeated deduplication id for 5 minutes
SEQUENCE_START = 10**19  # SNS SequenceNumbers are large and increasing: 20 digits here
_SWEEP_STEP = 8  # expired dedup entries looked at per FIFO publish
# What a publish counts for its topic's metrics (Topic.counters) besides "published"
TALLIES = ("delivered", "filtered_out", "failed", "redriven_to_dlq")
HTTP_OUTBOX = -1  # in a publish's "woken" set: HTTP deliveries were written (not a queue id)
_MESSAGE_ID_CHARS = re.compile(r"[!-~]{1,128}")  # MessageGroupId / MessageDeduplicationId
NO_DEDUPLICATION = (  # AWS's wording
    "Invalid parameter: The topic should either have ContentBasedDeduplication enabled or "
    "MessageDeduplicationId provided explicitly"
)

# One delivery to a queue: (SQS body, SQS attributes or None, size toward MaximumMessageSize,
# group id, deduplication id, AWSTraceHeader).
Item = tuple[bytes, "dict[str, Any] | None", int, "str | None", "str | None", "str | None"]


# -- keys -----------------------------------------------------------------------------------------


def topic_key(name: str) -> bytes:
    return b"t:" + name.encode()


def sub_prefix(name: str) -> bytes:
    return b"s:" + name.encode() + b":"  # topic names hold no ":"


def unsubscribed_prefix(name: str) -> bytes:
    """Deleted HTTP/S subscriptions, kept while their UnsubscribeConfirmation token can restore
    them (the Token's validity)."""
    return b"su:" + name.encode() + b":"


TOKEN_TTL_MS = 2 * 24 * 3600 * 1000  # SNS: a confirmation token is valid for 2 days


def lapsed(record: Mapping[str, Any], now_ms: int) -> bool:
    """Whether a stored subscription is an HTTP/S one left unconfirmed past its token's 2 days:
    "Amazon SNS automatically deletes unconfirmed subscriptions after 48 hours", so it no
    longer exists (it is not listed, counted or found, and is replaced when subscribed again).
    """
    return bool(record.get("pending")) and now_ms - record.get("token_ms", 0) > TOKEN_TTL_MS


def sequence_key(name: str) -> bytes:
    return b"tq:" + name.encode()


def dedup_prefix(name: str) -> bytes:
    return b"td:" + name.encode() + b"\x00"


def tags_key(name: str) -> bytes:
    return b"tg:" + name.encode()


OUTBOX_PREFIX = b"to:"  # + due time (8 bytes, big-endian ms) + 8 random bytes: due order


def outbox_key(due_ms: int) -> bytes:
    return OUTBOX_PREFIX + due_ms.to_bytes(8, "big") + os.urandom(8)


def delete_prefix(txn: Any, db: Any, prefix: bytes) -> None:
    with txn.cursor(db=db) as cur:
        if not cur.set_range(prefix):
            return
        while cur.key().startswith(prefix):
            if not cur.delete():
                break


def touch(txn: Any, meta: Any, topic_name: str) -> None:
    """Give the topic a new version: every process reloads its subscriptions at its next publish.

    Caller holds the write txn and has checked that the topic exists.
    """
    key = topic_key(topic_name)
    record = msgpack.unpackb(txn.get(key, db=meta))
    record["v"] = os.urandom(8)  # made inside the txn: a re-run of the op gets a fresh one
    txn.put(key, msgpack.packb(record), db=meta)


def enqueue_http(txn: Any, meta: Any, due_ms: int, entries: list[dict[str, Any]]) -> None:
    """Add HTTP/S deliveries to the outbox (caller holds the write txn)."""
    for entry in entries:
        txn.put(outbox_key(due_ms), msgpack.packb(entry), db=meta)


# -- the in-memory snapshot the publish path reads -----------------------------------------


class Sub:
    """One confirmed subscription as the publish path needs it; immutable, rebuilt on change."""

    __slots__ = (
        "arn",
        "dead_letter_queue",
        "in_body",
        "match",
        "policy",
        "protocol",
        "queue_name",
        "raw",
        "unsubscribe_url",
        "url",
    )

    def __init__(
        self,
        arn: str,
        queue_name: str,
        raw: bool,
        match: Callable[[Any], bool] | None,
        in_body: bool,
        dead_letter_queue: str | None,
        *,
        protocol: str = "sqs",
        url: str | None = None,
        unsubscribe_url: bytes = b"",
        policy: tuple[str, str] | None = None,
    ) -> None:
        self.arn = arn
        self.policy = policy  # (FilterPolicy, FilterPolicyScope): equal ones match alike
        self.unsubscribe_url = unsubscribe_url  # spliced into the envelope after common()
        self.queue_name = queue_name  # "" for HTTP/S subscriptions: no queue of that name
        self.raw = raw
        self.match = match  # None: no filter policy, every message
        self.in_body = in_body  # match takes the decoded body, else the attributes
        self.dead_letter_queue = dead_letter_queue
        self.protocol = protocol
        self.url = url  # HTTP/S subscriptions: the endpoint


class State:
    """A topic's stored record and subscriptions, as of the ``t:`` bytes in ``raw``."""

    __slots__ = (
        "_form",
        "_plan",
        "attributes",
        "content_dedup",
        "fifo",
        "group_scope",
        "raw",
        "subs",
        "unfiltered",
        "version",
    )

    def __init__(self, raw: bytes, record: dict[str, Any], subs: tuple[Sub, ...]) -> None:
        self.raw = raw
        self.attributes: dict[str, str] = record["attributes"]
        self.fifo = self.attributes.get("FifoTopic") == "true"
        self.content_dedup = self.attributes.get("ContentBasedDeduplication") == "true"
        self.group_scope = self.attributes.get("FifoThroughputScope") == "MessageGroup"
        self.version = self.attributes.get("SignatureVersion", "1")
        self.subs = subs
        self.unfiltered = all(sub.match is None for sub in subs)  # no filter policy
        self._form: NotificationForm | None = None
        self._plan: Plan | None = None

    def notification_form(self, topic: Topic) -> NotificationForm:
        """What the topic's notifications share, encoded once per state (``topic``'s)."""
        if self._form is None:
            self._form = NotificationForm(
                topic_arn=topic.arn,
                region=topic._broker.region,
                fifo=self.fifo,
                signature_version=self.version,
                key=topic._topics._signing_key,
            )
        return self._form


def never(_: Any) -> bool:
    return False


def attributes_matcher(policy: FilterPolicy) -> Callable[[Any], bool]:
    matches = policy.matches

    def match(attributes: Any) -> bool:
        return matches(attributes, None)

    return match


def snapshot_sub(topics: Topics, topic_arn: str, sub_id: str, record: dict[str, Any]) -> Sub:
    """A stored subscription as the publish path needs it (its policy compiled once)."""
    arn = f"{topic_arn}:{sub_id}"
    attrs = record["attributes"]
    text = attrs.get("FilterPolicy")
    match: Callable[[Any], bool] | None = None
    in_body = False
    scope = ""
    if text:
        scope = attrs.get("FilterPolicyScope", "MessageAttributes")
        cached = topics._policies.get(arn)
        if cached is not None and cached[:2] == (text, scope):
            policy = cached[2]
        else:
            try:
                policy = topics._compile(text, scope)
            except InvalidFilterPolicy as exc:  # stored by a laxer version: deliver nothing
                log.error("subscription %s: stored filter policy is invalid (%s)", arn, exc)
                policy = None
            topics._policies[arn] = (text, scope, policy)
        if policy is None:
            match = never
        elif policy._in_body:
            # The compiled check on an already decoded body: the body is decoded once per
            # publish for all subscriptions (FilterPolicy.matches decodes it per call).
            match, in_body = policy._check, True
        else:
            match = attributes_matcher(policy)
    protocol = record.get("protocol", "sqs")
    return Sub(
        arn,
        record["queue"] or "",
        attrs.get("RawMessageDelivery") == "true",
        match,
        in_body,
        dead_letter_name(attrs.get("RedrivePolicy"), topics._broker),
        protocol=protocol,
        url=None if protocol == "sqs" else record["endpoint"],
        unsubscribe_url=(
            unsubscribe_url_prefix(topics._broker.region, record.get("service")) + arn
        ).encode(),
        policy=(text, scope) if text else None,
    )


def dead_letter_name(text: str | None, broker: Broker) -> str | None:
    """The queue a subscription's RedrivePolicy names, if it is one of this broker's."""
    if not text:
        return None
    try:
        doc = json.loads(text)  # validated when set: a JSON object
    except ValueError:
        doc = None
    target = doc.get("deadLetterTargetArn", "") if isinstance(doc, dict) else ""
    parsed = parse_arn(target, "sqs")
    if parsed is None or parsed[:2] != (broker.region, broker.account_id):
        return None  # another account's queue: not one this broker can deliver to
    return parsed[2]


# -- one message on its way ---------------------------------------------------------------------


def _reject_constant(token: str) -> Any:
    raise ValueError(token)  # NaN / Infinity are not JSON: such a body matches no policy


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # one decoder, not one per call
_UNSET: Any = object()


class Outgoing:
    """A validated message of one publish: what every delivery needs, each part built once."""

    __slots__ = (
        "_attributes_block",
        "_doc",
        "_note",
        "_raw_ok",
        "attributes",
        "by_content",
        "content",
        "data",
        "dedup_id",
        "delivered_attributes",
        "group_id",
        "message",
        "message_id",
        "raw_size",
        "size",
        "structured",
        "subject",
        "trace_header",
    )

    def __init__(
        self,
        message: str,
        content: str,
        data: bytes,
        subject: str | None,
        attributes: dict[str, dict[str, Any]],
        structured: bool,
        group_id: str | None,
        dedup_id: str | None,
        size: int,
        by_content: bool = False,
        attributes_block: str | None = None,
    ) -> None:
        self.message_id = new_message_id()
        self.message = message
        self.content = content  # what SQS subscribers get (MessageStructure json: "sqs")
        self.data = data  # content as UTF-8: the raw-delivery body
        self.subject = subject
        self.attributes = attributes  # for filter policies
        self.structured = structured
        # SNS sends attributes only when the message structure is a plain string
        self.delivered_attributes = attributes if attributes and not structured else None
        self._attributes_block = attributes_block  # their envelope JSON, if made already
        self.size = size  # toward the 256 KiB limit: message and attributes as published
        # what a raw delivery counts toward a queue's MaximumMessageSize: the same, unless the
        # message structure picked a content (which goes without attributes)
        self.raw_size = len(data) if structured else size
        self.group_id = group_id
        self.dedup_id = dedup_id
        self.by_content = by_content  # dedup_id is the content's hash (ContentBasedDeduplication)
        self.trace_header: str | None = None  # X-Ray: the queues' AWSTraceHeader
        self._doc: Any = _UNSET
        self._note: Notification | None = None
        self._raw_ok: bool | None = None

    def doc(self) -> Any:
        """The content decoded as JSON (once), for MessageBody-scope policies; None if not JSON."""
        if self._doc is _UNSET:
            try:
                self._doc = _DECODER.decode(self.content)
            except (ValueError, RecursionError):
                self._doc = None
        return self._doc

    def raw_ok(self) -> bool:
        """Whether SQS takes the body and attributes as they are (raw delivery)."""
        if self._raw_ok is None:
            ok = True
            try:
                validate_body_text(self.content)  # SQS's character set
            except MillpondError:
                ok = False
            attrs = self.delivered_attributes
            if attrs:
                if len(attrs) > MAX_RAW_ATTRIBUTES:
                    ok = False
                else:
                    try:
                        validate_message_attributes(attrs)
                    except MillpondError:
                        ok = False
            self._raw_ok = ok
        return self._raw_ok

    def note(self, topic: Topic, state: State) -> Notification:
        if self._note is None:
            self._note = self._notification(topic, state, self.content)
        return self._note

    def _notification(self, topic: Topic, state: State, content: str) -> Notification:
        return Notification(
            state.notification_form(topic),
            message_id=self.message_id,
            message=content,
            subject=self.subject,
            attributes=self.delivered_attributes,
            attributes_block=self._attributes_block if self.delivered_attributes else None,
        )

    def content_for(self, protocol: str) -> str:
        """The message an endpoint of ``protocol`` gets (MessageStructure json: its own entry)."""
        if not self.structured:
            return self.content
        doc = json.loads(self.message)  # validated at publish: an object with "default"
        content = doc.get(protocol)
        return content if isinstance(content, str) else doc["default"]


def outgoing(
    state: State,
    message: Any,
    subject: Any,
    attributes: Any,
    group_id: Any,
    dedup_id: Any,
    structure: Any,
) -> Outgoing:
    """Validate one message for a topic in ``state`` (nothing is stored by a refused one)."""
    if dedup_id is not None and not state.fifo:
        raise InvalidParameter(
            "Invalid parameter: MessageDeduplicationId Reason: The request includes "
            "MessageDeduplicationId parameter that is not valid for this topic type"
        )
    # A FIFO topic checks the message before the group id (AWS-recorded: a JSON structure
    # without "default" and no MessageGroupId is the "No default entry" error).
    text, data, content = check_message(message, structure)
    if group_id is None and state.fifo:
        raise InvalidParameter(
            "Invalid parameter: The MessageGroupId parameter is required for FIFO topics"
        )
    if subject is not None:  # (the calls below are skipped when they have nothing to check)
        subject = check_subject(subject)
    checked, attributes_size, attributes_block = checked_attributes(attributes)
    size = check_size(data, attributes_size)
    if group_id is not None:
        _check_message_id_field("MessageGroupId", group_id)
    if dedup_id is not None:
        _check_message_id_field("MessageDeduplicationId", dedup_id)
    by_content = state.fifo and dedup_id is None
    if by_content:
        if not state.content_dedup:
            raise InvalidParameter(NO_DEDUPLICATION)
        dedup_id = hashlib.sha256(data).hexdigest()  # the body only, not the attributes
    if content is not text:
        data = content.encode("utf-8")
    structured = structure is not None
    return Outgoing(
        text,
        content,
        data,
        subject,
        checked,
        structured,
        group_id,
        dedup_id,
        size,
        by_content,
        attributes_block,
    )


def check_content_deduplication(state: State, outs: list[Outgoing]) -> None:
    """Refuse messages that took their deduplication id from their content when the topic, as
    stored now, has no ContentBasedDeduplication (another process may have turned it off since
    the messages were validated)."""
    if not state.content_dedup and any(out.by_content for out in outs):
        raise InvalidParameter(NO_DEDUPLICATION)


def check_trace_header(value: Any) -> str | None:
    """A publish's X-Ray trace header: None, or text SQS can keep as AWSTraceHeader."""
    if value is not None and not valid_trace_header(value):
        raise InvalidParameter(
            "Invalid parameter: AWSTraceHeader Reason: must be a non-empty string of characters "
            "SQS accepts"
        )
    return value  # type: ignore[no-any-return]


def _check_message_id_field(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not _MESSAGE_ID_CHARS.fullmatch(value)):
        raise InvalidParameter(
            f"Invalid parameter: {name} Reason: must be 1-128 characters of alphanumerics and "
            "punctuation (ASCII 33-126)"
        )


_ENTRY_NAMES = (
    ("Message", "message"),
    ("Subject", "subject"),
    ("MessageAttributes", "attributes"),
    ("MessageGroupId", "group_id"),
    ("MessageDeduplicationId", "deduplication_id"),
    ("MessageStructure", "message_structure"),
)
# A PublishBatch entry's members by their SNS names: all the wire may give (the embedded API
# also takes the keyword names above).
ENTRY_MEMBERS = frozenset(("Id", *(sns for sns, _ in _ENTRY_NAMES)))


_ENTRY_KEYS = frozenset(("Id", "id", *(name for names in _ENTRY_NAMES for name in names)))


def entry_arguments(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """(message, subject, attributes, group id, dedup id, structure) of a PublishBatch entry.

    Any other key is refused, as boto3 refuses an unknown member: read with .get(), a
    misspelt "MessageAttribute" would publish the message without its attributes.
    """
    unknown = [key for key in entry if key not in _ENTRY_KEYS]
    if unknown:
        entry_id = entry.get("Id", entry.get("id"))
        raise InvalidParameter(
            f"Invalid parameter: PublishBatchRequestEntries Reason: unknown key "
            f"{', '.join(map(repr, unknown))} in the entry with Id {entry_id!r}"
        )
    return tuple(entry.get(sns, entry.get(ours)) for sns, ours in _ENTRY_NAMES)


Planned = list[tuple[Sub, list[Outgoing]]] | None  # None: every message to every subscription


def plan(state: State, outs: list[Outgoing]) -> tuple[Planned, int]:
    """The matching messages of each subscription (subscriptions without any left out), and
    how many deliveries that makes. Without filter policies: None (:func:`everyone`), not a
    list (building it cost ~7k instructions for 10 subscriptions, most publishes never read it)."""
    if state.unfiltered and outs:  # no filter policy: no verdicts to reach
        return None, len(state.subs) * len(outs)
    if len(outs) == 1:
        return _plan_one(state, outs)
    planned = []
    deliveries = 0
    # each message's verdict per filter policy: subscriptions with the same policy (text and
    # scope) are matched once
    verdicts: dict[tuple[tuple[str, str] | None, int], bool] = {}
    for sub in state.subs:
        if sub.match is None:
            chosen = outs
        else:
            chosen = []
            for out in outs:
                key = (sub.policy, id(out))
                verdict = verdicts.get(key)
                if verdict is None:
                    verdict = verdicts[key] = _matches(sub, out)
                if verdict:
                    chosen.append(out)
        if chosen:
            planned.append((sub, chosen))
            deliveries += len(chosen)
    return planned, deliveries


def everyone(state: State, outs: list[Outgoing]) -> list[tuple[Sub, list[Outgoing]]]:
    """What ``planned`` None stands for: each subscription with every message."""
    return list(zip(state.subs, repeat(outs)))


def _plan_one(state: State, outs: list[Outgoing]) -> tuple[list[tuple[Sub, list[Outgoing]]], int]:
    """:func:`plan` of one message (``outs``), kept lean: the subscriptions it matches."""
    out = outs[0]
    planned = []
    verdicts: dict[tuple[str, str] | None, bool] = {}  # per filter policy (text and scope)
    for sub in state.subs:
        if sub.match is not None:
            verdict = verdicts.get(sub.policy)
            if verdict is None:
                verdict = verdicts[sub.policy] = _matches(sub, out)
            if not verdict:
                continue
        planned.append((sub, outs))
    return planned, len(planned)


def _matches(sub: Sub, out: Outgoing) -> bool:
    """Whether ``out`` passes the filter policy of ``sub`` (which has one)."""
    assert sub.match is not None
    if sub.in_body:
        doc = out.doc()
        return type(doc) is dict and sub.match(doc)
    return sub.match(out.attributes)


# -- writes in the publish transaction ------------------------------------------------------------


def deliver_to_queue(
    queue: Queue,
    txn: Any,
    now_ms: int,
    bodies: list[bytes],
    attributes: list[dict[str, Any] | None],
    group_ids: list[str | None],
    dedup_ids: list[str | None],
    trace_headers: list[str | None] | None = None,
) -> None:
    """Store fan-out messages in ``queue`` inside the caller's write transaction.

    The one place where a topic's MessageGroupId and MessageDeduplicationId are handed on to a
    queue: a FIFO queue gets both (it keeps group order and drops its own duplicates). SNS also
    forwards the group id to standard "fair" queues, which keep it as a tenant label, and the
    publish's X-Ray trace header as AWSTraceHeader. Raises QueueDoesNotExist before writing
    anything if the queue was deleted.
    """
    if trace_headers is not None and all(t is None for t in trace_headers):
        trace_headers = None  # none traced: as if not given (Queue._deliver_in_txn's fast path)
    if isinstance(queue, FifoQueue):
        queue._deliver_in_txn(txn, now_ms, bodies, attributes, group_ids, dedup_ids, trace_headers)
    else:
        # Standard queues keep a forwarded group id as a tenant label (SQS fair queues).
        forwarded = group_ids if group_ids and any(g is not None for g in group_ids) else None
        queue._deliver_in_txn(
            txn, now_ms, bodies, attributes, forwarded, trace_headers=trace_headers
        )


def _queue(topics: Topics, txn: Any, name: str, stale: Queue | None = None) -> Queue | None:
    """The queue ``name`` as of ``txn`` (None if it does not exist); caller holds the txn.

    The broker's cached object when there is one (dict.get is atomic: no lock on this
    path); with ``stale`` (that object failed) the definition is read in this transaction.
    """
    broker = topics._broker
    if stale is None:
        queue = broker._queues.get(name)
        if queue is not None:
            return queue
    definition = broker._definition_in(txn, name)
    if definition is None:
        return None
    return broker._cache(name, definition)


def put(
    topics: Topics, txn: Any, now_ms: int, name: str, items: list[Item]
) -> tuple[int | None, list[Item], str]:
    """Deliver (body, attributes, size, group id, dedup id) items to queue ``name``.

    Returns the queue id written to (None: nothing written), the items the queue could not
    take (all of them if it does not exist; those over its MaximumMessageSize) and why.
    """
    queue = _queue(topics, txn, name)
    for _ in range(2):
        if queue is None:
            return None, items, f"queue {name} does not exist"
        limit = queue._max_size
        fit = items
        if any(item[2] > limit for item in items):
            fit = [item for item in items if item[2] <= limit]
        too_big = f"larger than the MaximumMessageSize of queue {name}"
        if not fit:
            return None, items, too_big
        try:
            deliver_to_queue(
                queue,
                txn,
                now_ms,
                [item[0] for item in fit],
                [item[1] for item in fit],
                [item[3] for item in fit],
                [item[4] for item in fit],
                [item[5] for item in fit],
            )
        except QueueDoesNotExist:
            # A stale cached object (the queue was deleted, maybe re-created): look again.
            queue = _queue(topics, txn, name, stale=queue)
            continue
        rest = [] if fit is items else [item for item in items if item[2] > limit]
        return queue.queue_id, rest, too_big
    return None, items, f"queue {name} does not exist"


def fan_out(
    topic: Topic,
    txn: Any,
    now_ms: int,
    state: State,
    planned: Planned,
    deliveries: int,
    outs: list[Outgoing],
) -> tuple[set[int], list[tuple[str, str | None]], list[tuple[str, str, int]], dict[str, int]]:
    """The deliveries of one publish (``planned``: :func:`plan`'s, ``deliveries`` of them);
    caller holds the write txn (may re-run after abort).

    Returns the queue ids written to (with HTTP_OUTBOX if HTTP deliveries were queued),
    (message id, sequence number) of each message, what could not be delivered, and the
    publish's counts for the topic's metrics (Topic.counters: only once it committed).
    """
    tally = dict.fromkeys(TALLIES, 0)  # a plain dict: a Counter costs more on this path
    # CloudWatch NumberOfNotificationsFilteredOut: a message a subscription's policy rejected
    tally["filtered_out"] = len(state.subs) * len(outs) - deliveries
    sequences: dict[int, str] = {}
    if state.fifo:
        results = _sequence(topic, txn, now_ms, state, outs, sequences)
    else:
        results = [(out.message_id, None) for out in outs]
    commons: dict[int, bytes] = {}
    woken: set[int] = set()
    lost: list[tuple[str, str, int]] = []
    if len(outs) == 1 and not state.fifo:
        _fan_out_one(topic, txn, now_ms, state, planned, outs[0], commons, woken, lost, tally)
        return woken, results, lost, tally
    if planned is None:
        planned = everyone(state, outs)
    for sub, chosen in planned:
        if state.fifo:
            chosen = [out for out in chosen if id(out) in sequences]  # duplicates dropped
        _deliver(topic, txn, now_ms, state, sub, chosen, sequences, commons, woken, lost, tally)
    return woken, results, lost, tally


class Plan:
    """Where a standard topic's one-message publish goes, worked out once for a topic state
    and the broker's queue cache: each non-raw subscription of a standard queue this process
    knows, as (queue id, its UnsubscribeURL, the queue's DelaySeconds in ms).

    Holds while the broker's ``_queues_token`` is the one it was made with (the broker
    replaces it when a queue is cached, forgotten or deleted, or a cached queue's attributes
    change); the topic state it belongs to is replaced when the subscriptions change.
    """

    __slots__ = (
        "count_sent",
        "entries",
        "limit",
        "queues",
        "rest",
        "targets",
        "token",
        "woken",
    )

    def __init__(self, broker: Broker, state: State) -> None:
        self.token = broker._queues_token  # read first: a change from now on replaces it
        queue_named = broker._queues.get
        queues: list[Queue] = []
        self.targets: list[tuple[int, bytes, int]] = []
        self.rest: list[Sub] = []  # raw, FIFO, HTTP/S or unknown: the per-subscription path
        limits: list[int] = []
        planned_subs: list[Sub] = []
        for sub in state.subs:
            queue = queue_named(sub.queue_name)  # HTTP/S subscriptions: none
            if type(queue) is not Queue or sub.raw:
                self.rest.append(sub)
                continue
            url = sub.unsubscribe_url
            self.targets.append((queue.queue_id, url, queue._delay_ms))
            limits.append(queue._max_size - len(url))
            queues.append(queue)
            planned_subs.append(sub)
        self.queues = queues
        # a filtered publish picks its targets from these (planned subscription, target,
        # queue counters)
        self.entries = [
            (sub, target, queue.counters)
            for sub, target, queue in zip(planned_subs, self.targets, queues)
        ]
        # the largest envelope (without its UnsubscribeURL) every planned queue takes
        self.limit = min(limits, default=0)
        self.woken = frozenset(queue.queue_id for queue in queues)
        # once committed: one message more in each planned queue's ``sent`` metric
        self.count_sent = partial(_count_sent, [queue.counters for queue in queues])


def _fan_out_one(
    topic: Topic,
    txn: Any,
    now_ms: int,
    state: State,
    planned: Planned,
    out: Outgoing,
    commons: dict[int, bytes],
    woken: set[int],
    lost: list[tuple[str, str, int]],
    tally: dict[str, int],
) -> None:
    """The common case, kept lean: one message of a standard topic.

    The queues of the topic's :class:`Plan` that ``planned`` holds get the message in ONE core
    call (``send_envelopes``); the other subscriptions take :func:`_fan_out_each`.
    """
    broker = topic._broker
    plan = state._plan
    if plan is None or plan.token is not broker._queues_token:
        plan = state._plan = Plan(broker, state)
    targets = plan.targets
    count_sent = plan.count_sent
    queue_ids: Iterable[int] = plan.woken
    rest = plan.rest
    if planned is not None and len(planned) != len(state.subs):
        # filter policies left some subscriptions out
        chosen = {sub for sub, _ in planned}
        entries = [entry for entry in plan.entries if entry[0] in chosen]
        targets = [target for _, target, _ in entries]
        count_sent = partial(_count_sent, [counts for _, _, counts in entries])
        queue_ids = [target[0] for target in targets]
        rest = [sub for sub in rest if sub in chosen]
    if targets:
        note = out.note(topic, state)
        common = commons[id(out)] = note.common(now_ms)
        tail = note.tail
        if len(common) + len(tail) > plan.limit:  # too big for one of the queues: one by one
            _fan_out_each(topic, txn, now_ms, state, planned, out, commons, woken, lost, tally)
            return
        group = out.group_id  # standard queues keep it as a tenant label (fair queues)
        trace = out.trace_header
        blob = pack_metadata(None, group, None, trace) if group or trace else b""
        # each body is common + its queue's UnsubscribeURL + tail, stored one after the other
        # by the core (a joined copy cost ~0.9k instructions a delivery, a list of deliveries
        # built here ~0.7k)
        try:
            broker._core.send_envelopes(
                txn, topic._storage.tables, now_ms, broker._env_id, targets, common, tail, blob
            )
        except LookupError:
            # A stale cached queue (deleted, maybe re-created): nothing was written; the
            # general path looks every queue up again in this transaction.
            _fan_out_each(topic, txn, now_ms, state, planned, out, commons, woken, lost, tally)
            return
        topic._storage.after_commit(count_sent)  # once, even on a rerun
        woken.update(queue_ids)
        tally["delivered"] += len(targets)
    if rest:
        others = [(sub, [out]) for sub in rest]
        _fan_out_each(topic, txn, now_ms, state, others, out, commons, woken, lost, tally)


def _fan_out_each(
    topic: Topic,
    txn: Any,
    now_ms: int,
    state: State,
    planned: Planned,
    out: Outgoing,
    commons: dict[int, bytes],
    woken: set[int],
    lost: list[tuple[str, str, int]],
    tally: dict[str, int],
) -> None:
    """One message of a standard topic to ``planned``, looked up one by one.

    Every standard queue known to this process that can take the message gets it in ONE core
    call (``send_each``); the rest (FIFO queues, HTTP/S endpoints, messages too big for their
    queue, unknown or stale queues) take the general path, :func:`_deliver`.
    """
    if planned is None:
        planned = everyone(state, [out])
    queue_named = topic._broker._queues.get
    common = tail = b""
    shared_size = 0
    raw_blob: bytes | None = None
    group = out.group_id  # standard queues keep it as a tenant label (fair queues)
    trace = out.trace_header
    blob = pack_metadata(None, group, None, trace) if group or trace else b""  # of an envelope
    deliveries: list[Delivery] = []
    targets: list[Queue] = []
    others: list[tuple[Sub, list[Outgoing]]] = []
    for sub, chosen in planned:
        queue = queue_named(sub.queue_name)  # HTTP/S subscriptions: none
        if type(queue) is not Queue:  # none (or not known here), or a FIFO queue
            others.append((sub, chosen))
            continue
        if sub.raw:
            if not out.raw_ok() or out.raw_size > queue._max_size:
                others.append((sub, chosen))
                continue
            if raw_blob is None:
                attrs = out.delivered_attributes
                raw_blob = (
                    pack_metadata(attrs, group, None, trace) if attrs or group or trace else b""
                )
            deliveries.append((queue.queue_id, out.data, raw_blob, queue._delay_ms))
        else:
            if not common:
                note = out.note(topic, state)
                common = commons.get(id(out), b"")
                if not common:
                    common = commons[id(out)] = note.common(now_ms)
                tail = note.tail
                shared_size = len(common) + len(tail)
            if shared_size + len(sub.unsubscribe_url) > queue._max_size:
                others.append((sub, chosen))
                continue
            parts = (common, sub.unsubscribe_url, tail)
            deliveries.append((queue.queue_id, parts, blob, queue._delay_ms))
        targets.append(queue)
    if deliveries:
        core = topic._broker._core
        try:
            core.send_each(txn, topic._storage.tables, now_ms, topic._broker._env_id, deliveries)
        except LookupError:
            # A stale cached queue (deleted, maybe re-created): nothing was written; the
            # general path looks every queue up again in this transaction.
            others = planned
        else:
            counts = [queue.counters for queue in targets]
            topic._storage.after_commit(partial(_count_sent, counts))  # once, even on a rerun
            woken.update(map(_queue_id, targets))
            tally["delivered"] += len(targets)
    sequences: dict[int, str] = {}
    for sub, chosen in others:
        _deliver(topic, txn, now_ms, state, sub, chosen, sequences, commons, woken, lost, tally)


_queue_id = attrgetter("queue_id")


def _count_sent(counts: list[Counts]) -> None:
    """One message more in each queue's ``sent`` metric (``counts``: the queues' counters; a
    queue listed twice counts twice)."""
    for queue_counts in counts:
        queue_counts["sent"] += 1


def _deliver(
    topic: Topic,
    txn: Any,
    now_ms: int,
    state: State,
    sub: Sub,
    chosen: list[Outgoing],
    sequences: dict[int, str],
    commons: dict[int, bytes],
    woken: set[int],
    lost: list[tuple[str, str, int]],
    tally: dict[str, int],
) -> None:
    """One subscription's messages, with every check and fallback (caller holds txn).

    HTTP/S deliveries are counted in ``tally`` when the outbox settles them (HttpOutbox).
    """
    if sub.url is not None:
        _deliver_http(topic, txn, now_ms, state, sub, chosen, commons)
        woken.add(HTTP_OUTBOX)
        return
    items: list[Item] = []
    refused: list[Item] = []
    # A standard queue subscribed to a FIFO topic shows no MessageGroupId (AWS-recorded,
    # LocalStack's test_fifo_topic_to_regular_sqs), where a standard topic's is kept.
    drop_group = state.fifo and not sub.queue_name.endswith(".fifo")
    for out in chosen:
        group_id = None if drop_group else out.group_id
        if sub.raw:
            item = (
                out.data,
                out.delivered_attributes,
                out.raw_size,
                group_id,
                out.dedup_id,
                out.trace_header,
            )
            if not out.raw_ok():
                # SQS cannot carry these attributes: the dead-letter copy goes without them
                refused.append(
                    (out.data, None, len(out.data), group_id, out.dedup_id, out.trace_header)
                )
                continue
        else:
            note = out.note(topic, state)
            common = commons.get(id(out))
            if common is None:
                common = commons[id(out)] = note.common(now_ms, sequences.get(id(out)))
            body = b"".join((common, sub.unsubscribe_url, note.tail))
            item = (body, None, len(body), group_id, out.dedup_id, out.trace_header)
        items.append(item)
    if items:
        queue_id, rest, why = put(topic._topics, txn, now_ms, sub.queue_name, items)
        if queue_id is not None:
            woken.add(queue_id)
            tally["delivered"] += len(items) - len(rest)
        if rest:
            _dead_letter(topic, txn, now_ms, sub, rest, why, woken, lost, tally)
    if refused:
        why = "more than 10 or invalid SQS attributes for raw delivery"
        _dead_letter(topic, txn, now_ms, sub, refused, why, woken, lost, tally)


def _deliver_http(
    topic: Topic,
    txn: Any,
    now_ms: int,
    state: State,
    sub: Sub,
    chosen: list[Outgoing],
    commons: dict[int, bytes],
) -> None:
    """Queue POSTs to an HTTP/S endpoint in the outbox (FIFO topics have no HTTP/S subs)."""
    entries = []
    for out in chosen:
        # A raw delivery's dead-letter copy carries the message attributes, as a raw queue
        # subscription's does (the POST does not send them): kept with the entry for that.
        attributes = None
        if sub.raw:
            body = out.content_for(sub.protocol).encode() if out.structured else out.data
            if out.raw_ok():
                attributes = out.delivered_attributes
        elif out.structured and out.content_for(sub.protocol) != out.content:
            note = out._notification(topic, state, out.content_for(sub.protocol))
            body = b"".join((note.common(now_ms), sub.unsubscribe_url, note.tail))
        else:
            note = out.note(topic, state)
            common = commons.get(id(out))
            if common is None:
                common = commons[id(out)] = note.common(now_ms)
            body = b"".join((common, sub.unsubscribe_url, note.tail))
        entries.append(
            {
                "type": "Notification",
                "sub": sub.arn,
                "topic": topic.arn,
                "url": sub.url,
                "id": out.message_id,
                "body": body,
                "raw": sub.raw,
                "try": 0,
                "attributes": attributes,
            }
        )
    enqueue_http(txn, topic._meta, now_ms, entries)


def _dead_letter(
    topic: Topic,
    txn: Any,
    now_ms: int,
    sub: Sub,
    items: list[Item],
    reason: str,
    woken: set[int],
    lost: list[tuple[str, str, int]],
    tally: dict[str, int],
) -> None:
    """Undeliverable items go to the subscription's dead-letter queue, else are counted.

    Both are failed deliveries (CloudWatch NumberOfNotificationsFailed); those the queue took
    are also NumberOfNotificationsRedrivenToDlq.
    """
    tally["failed"] += len(items)
    if sub.dead_letter_queue is not None:
        # SQS cannot carry attributes that failed raw delivery: the copy goes without them.
        items = [
            item
            if item[1] is None or len(item[1]) <= MAX_RAW_ATTRIBUTES
            else (item[0], None, len(item[0]), item[3], item[4], item[5])
            for item in items
        ]
        queue_id, rest, _ = put(topic._topics, txn, now_ms, sub.dead_letter_queue, items)
        if queue_id is not None:
            woken.add(queue_id)
            tally["redriven_to_dlq"] += len(items) - len(rest)
        items = rest
    if items:
        lost.append((sub.arn, reason, len(items)))


def _sequence(
    topic: Topic,
    txn: Any,
    now_ms: int,
    state: State,
    outs: list[Outgoing],
    sequences: dict[int, str],
) -> list[tuple[str, str | None]]:
    """FIFO topics: drop repeated deduplication ids, number the rest (caller holds txn)."""
    meta = topic._meta
    key_of_sequence = sequence_key(topic.name)
    stored = txn.get(key_of_sequence, db=meta)
    sequence = int(stored) if stored else SEQUENCE_START
    prefix = dedup_prefix(topic.name)
    results: list[tuple[str, str | None]] = []
    for out in outs:
        assert out.dedup_id is not None and out.group_id is not None  # checked at publish
        scope = out.group_id if state.group_scope else ""
        key = prefix + scope.encode() + b"\x00" + out.dedup_id.encode()
        seen = txn.get(key, db=meta)
        if seen is not None:
            expires_ms, message_id, number = msgpack.unpackb(seen)
            if expires_ms > now_ms:
                results.append((message_id, number))
                continue
        sequence += 1
        number = str(sequence)
        record = [now_ms + DEDUP_WINDOW_MS, out.message_id, number]
        txn.put(key, msgpack.packb(record), db=meta)
        sequences[id(out)] = number
        results.append((out.message_id, number))
    txn.put(key_of_sequence, str(sequence).encode(), db=meta)
    _sweep(topic, txn, now_ms, prefix)
    return results


def _sweep(topic: Topic, txn: Any, now_ms: int, prefix: bytes) -> None:
    """Remove a few expired dedup entries, round-robin over the topic's table."""
    start = topic._sweep_from or prefix
    with txn.cursor(db=topic._meta) as cur:
        found = cur.set_range(start)
        for _ in range(_SWEEP_STEP):
            if not found or not cur.key().startswith(prefix):
                found = False
                break
            if msgpack.unpackb(cur.value())[0] <= now_ms:
                found = cur.delete() and bool(cur.key())  # delete moves to the next entry
            else:
                found = cur.next()
        key = cur.key() if found else b""
    topic._sweep_from = key if key.startswith(prefix) else None  # only a hint: may go stale
