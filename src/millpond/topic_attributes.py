"""A topic's settings: SNS topic attributes, its access policy (Add/RemovePermission) and tags.

Validation with SNS's error texts, SNS's defaults and the JSON the attributes hold are plain
functions over values; :class:`TopicSettings` is the part of :class:`millpond.topic.Topic` that
reads and changes them in the store (``t:<topic>`` record, ``tg:<topic>`` tags).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from millpond import arguments
from millpond.errors import TopicNotFound
from millpond.fan_out import lapsed, sub_prefix, tags_key, topic_key
from millpond.sns_envelope import InvalidParameter, TagLimitExceeded

if TYPE_CHECKING:
    from millpond.broker import Broker
    from millpond.storage import Storage

__all__ = [
    "DEFAULT_EFFECTIVE_DELIVERY_POLICY",
    "MAX_TAGS",
    "POLICY_ACTIONS",
    "SET_PREFIX",
    "SUBSCRIBE_PREFIX",
    "TopicSettings",
    "add_statement",
    "bool_text",
    "check_tag_keys",
    "check_tags",
    "check_topic_attributes",
    "default_policy",
    "http_content_type",
    "http_retry_delays_ms",
    "json_object",
    "remove_statement",
    "same_topic_value",
    "tags_in",
    "text_value",
    "subscription_effective_delivery_policy",
    "topic_attribute_values",
    "topic_effective_delivery_policy",
    "topic_value",
]

SUBSCRIBE_PREFIX = "Invalid parameter: Attributes Reason: "  # CreateTopic and Subscribe
SET_PREFIX = "Invalid parameter: "  # SetTopicAttributes and SetSubscriptionAttributes
MAX_TAGS = 50  # per topic, as SNS
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256

_DEFAULT_POLICY_ACTIONS = (
    "SNS:GetTopicAttributes",
    "SNS:SetTopicAttributes",
    "SNS:AddPermission",
    "SNS:RemovePermission",
    "SNS:DeleteTopic",
    "SNS:Subscribe",
    "SNS:ListSubscriptionsByTopic",
    "SNS:Publish",
)
# ActionName values AddPermission takes (the topic actions a policy can grant)
POLICY_ACTIONS = frozenset(a[4:] for a in _DEFAULT_POLICY_ACTIONS) | {"Receive"}
JSON_TOPIC_ATTRIBUTES = frozenset(
    ("Policy", "DeliveryPolicy", "ArchivePolicy", "DataProtectionPolicy")
)
_FEEDBACK_ATTRIBUTES = frozenset(
    f"{protocol}{kind}"
    for protocol in ("HTTP", "Firehose", "Lambda", "SQS", "Application")
    for kind in ("SuccessFeedbackRoleArn", "FailureFeedbackRoleArn", "SuccessFeedbackSampleRate")
)
_REMOVABLE = ("DeliveryPolicy",)  # SetTopicAttributes with "" removes these
_FIFO_ONLY = frozenset(("ContentBasedDeduplication", "FifoThroughputScope", "ArchivePolicy"))
_SETTABLE_TOPIC_ATTRIBUTES = (
    frozenset(("DisplayName", "SignatureVersion", "TracingConfig", "KmsMasterKeyId"))
    | JSON_TOPIC_ATTRIBUTES
    | _FEEDBACK_ATTRIBUTES
    | _FIFO_ONLY
)


# -- values ---------------------------------------------------------------------------------------


def text_value(value: Any) -> str:
    """An attribute value as SNS stores it: strings as given, bools as true/false, maps as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (Mapping, list)):
        try:  # strict: NaN, bytes, sets or objects have no JSON text
            return json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            raise InvalidParameter(
                "Invalid parameter: attribute value is not JSON (only maps, lists, strings, "
                "numbers, true, false and null)"
            ) from None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return arguments.text(value, "an attribute value", InvalidParameter)
    raise InvalidParameter(f"Invalid parameter: attribute value {value!r} is not a string")


def json_object(text: str) -> dict[str, Any] | None:
    """``text`` parsed as a JSON object, or None (not JSON, or not an object)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def bool_text(value: str) -> str | None:
    """ "true" / "false" for any case of them, else None."""
    lowered = value.lower()
    return lowered if lowered in ("true", "false") else None


# -- topic attributes ---------------------------------------------------------------------------


def check_topic_attributes(
    given: Mapping[str, Any], *, fifo: bool, creating: bool
) -> dict[str, str]:
    """Validate and normalize settable topic attributes (values as SNS stores them).

    ``creating``: CreateTopic's wording ("Invalid parameter: Attributes Reason: ...") instead of
    SetTopicAttributes' ("Invalid parameter: ...").
    """
    prefix = SUBSCRIBE_PREFIX if creating else SET_PREFIX
    out: dict[str, str] = {}
    for name, value in arguments.mapping(given, "Attributes", InvalidParameter).items():
        if name not in _SETTABLE_TOPIC_ATTRIBUTES:
            raise InvalidParameter(
                f"{prefix}Unknown attribute name {name}" if creating else f"{prefix}AttributeName"
            )
        text = text_value(value)
        if name in _FIFO_ONLY and not fifo:
            raise InvalidParameter(f"{prefix}{name}: only FIFO topics have this attribute")
        if name == "ContentBasedDeduplication":
            checked = bool_text(text)
            if checked is None:
                raise InvalidParameter(
                    f"{prefix}ContentBasedDeduplication: Invalid value [{text}]. "
                    "Must be true or false."
                )
            text = checked
        elif name == "FifoThroughputScope" and text not in ("Topic", "MessageGroup"):
            raise InvalidParameter(
                f"{prefix}FifoThroughputScope: Invalid value [{text}]. "
                "Please use either Topic or MessageGroup"
            )
        elif name == "SignatureVersion" and text not in ("1", "2"):
            raise InvalidParameter(f"{prefix}SignatureVersion: Invalid value [{text}]")
        elif name == "TracingConfig" and text not in ("PassThrough", "Active"):
            raise InvalidParameter(f"{prefix}TracingConfig: Invalid value [{text}]")
        elif name in JSON_TOPIC_ATTRIBUTES and json_object(text) is None:
            raise InvalidParameter(f"{prefix}{name}: failed to parse JSON.")
        elif name.endswith("SampleRate") and not (
            text.isascii() and text.isdigit() and 0 <= int(text) <= 100
        ):
            raise InvalidParameter(f"{prefix}{name}: must be an integer from 0 to 100")
        out[name] = text
    return out


def default_policy(arn: str, account_id: str) -> str:
    """The access policy SNS gives a new topic: the owner's account may do everything."""
    statement = {
        "Sid": "__default_statement_ID",
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": list(_DEFAULT_POLICY_ACTIONS),
        "Resource": arn,
        "Condition": {"StringEquals": {"AWS:SourceOwner": account_id}},
    }
    policy = {"Version": "2008-10-17", "Id": "__default_policy_ID", "Statement": [statement]}
    return json.dumps(policy, separators=(",", ":"))


def topic_value(stored: Mapping[str, str], name: str, arn: str) -> str | None:
    """A topic attribute's effective value: as set, else SNS's default (None: no default)."""
    if name in stored:
        return stored[name]
    fifo = stored.get("FifoTopic") == "true"
    defaults = {
        "DisplayName": "",
        "SignatureVersion": "1",
        "TracingConfig": "PassThrough",
        "Policy": default_policy(arn, arn.split(":")[4]),
    }
    if fifo:
        defaults.update(ContentBasedDeduplication="false", FifoThroughputScope="Topic")
    return defaults.get(name)


def same_topic_value(name: str, a: str | None, b: str | None) -> bool:
    """Whether two values of attribute ``name`` are the same (JSON ones compared as parsed)."""
    if a is None or b is None:
        return a == b
    if name in JSON_TOPIC_ATTRIBUTES:
        return json_object(a) == json_object(b)
    return a == b


def topic_attribute_values(
    arn: str, account_id: str, stored: Mapping[str, str], confirmed: int, pending: int
) -> dict[str, str]:
    """GetTopicAttributes: the read-only attributes, SNS's defaults, then what was set."""
    values = {
        "TopicArn": arn,
        "Owner": account_id,
        "DisplayName": "",
        "Policy": default_policy(arn, account_id),
        "EffectiveDeliveryPolicy": topic_effective_delivery_policy(stored.get("DeliveryPolicy")),
        # no SignatureVersion unless set: SNS lists it only then (messages are signed v1 anyway)
        "SubscriptionsConfirmed": str(confirmed),
        "SubscriptionsPending": str(pending),
        "SubscriptionsDeleted": "0",
    }
    if stored.get("FifoTopic") == "true":
        values.update(ContentBasedDeduplication="false", FifoThroughputScope="Topic")
    values.update(stored)
    return values


# -- the access policy (AddPermission / RemovePermission) -----------------------------------------


def add_statement(
    policy_text: str, arn: str, label: Any, account_ids: Sequence[Any], actions: Sequence[Any]
) -> str:
    """The topic policy with an Allow statement ``label`` for the accounts and actions.

    Raises InvalidParameter for a missing or repeated label, no accounts, or an action that is
    not a topic action (SNS's texts).
    """
    if not isinstance(label, str) or not label:
        raise InvalidParameter("Invalid parameter: Label")
    if (
        not isinstance(account_ids, (list, tuple))
        or not account_ids
        or not all(isinstance(a, str) and a for a in account_ids)
    ):
        raise InvalidParameter("Invalid parameter: AWSAccountId")
    if (
        not isinstance(actions, (list, tuple))
        or not actions
        or any(not isinstance(a, str) or a not in POLICY_ACTIONS for a in actions)
    ):
        raise InvalidParameter("Invalid parameter: Policy statement action out of service scope!")
    policy = _policy_document(policy_text)
    if any(s.get("Sid") == label for s in policy["Statement"]):
        raise InvalidParameter("Invalid parameter: Statement already exists")
    principals = [f"arn:aws:iam::{account}:root" for account in account_ids]
    granted = [f"SNS:{action}" for action in actions]
    policy["Statement"].append(
        {
            "Sid": label,
            "Effect": "Allow",
            "Principal": {"AWS": principals[0] if len(principals) == 1 else principals},
            "Action": granted[0] if len(granted) == 1 else granted,
            "Resource": arn,
        }
    )
    return json.dumps(policy, separators=(",", ":"))


def remove_statement(policy_text: str, label: Any) -> str | None:
    """The topic policy without statement ``label``; None if it has no such statement."""
    if not isinstance(label, str) or not label:
        raise InvalidParameter("Invalid parameter: Label")
    policy = _policy_document(policy_text)
    kept = [s for s in policy["Statement"] if s.get("Sid") != label]
    if len(kept) == len(policy["Statement"]):
        return None  # SNS: removing an unknown label succeeds and changes nothing
    policy["Statement"] = kept
    return json.dumps(policy, separators=(",", ":"))


def _policy_document(text: str) -> dict[str, Any]:
    policy = json_object(text) or {}
    statements = policy.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    elif not isinstance(statements, list):
        statements = []  # a Policy set with "Statement": 5 (or "x"): no statement to keep
    policy["Statement"] = [s for s in statements if isinstance(s, dict)]
    return policy


# -- tags ---------------------------------------------------------------------------------------


def check_tags(tags: Any) -> dict[str, str]:
    """Validate tags given as ``{key: value}`` or as ``[{"Key": k, "Value": v}]`` (the wire shape).

    Keys 1-128 characters, not starting with "aws:"; values 0-256 characters; no key twice.
    """
    if isinstance(tags, Mapping):
        pairs = list(tags.items())
    elif isinstance(tags, Sequence) and not isinstance(tags, str):
        pairs = []
        for tag in tags:
            if not isinstance(tag, Mapping):
                raise InvalidParameter("Invalid parameter: Tags")
            pairs.append((tag.get("Key"), tag.get("Value", "")))
    else:
        raise InvalidParameter("Invalid parameter: Tags")
    if not all(isinstance(key, str) for key, _ in pairs):
        raise InvalidParameter("Invalid parameter: Tags")
    if len({key for key, _ in pairs}) != len(pairs):
        raise InvalidParameter("Invalid parameter: Duplicated keys are not allowed.")
    out: dict[str, str] = {}
    for key, value in pairs:
        for part in (key, value):
            arguments.text(part, "Invalid parameter: Tags:", InvalidParameter)
        if not 0 < len(key) <= MAX_TAG_KEY_CHARS:
            raise InvalidParameter(
                f"Invalid parameter: Tags Reason: tag keys are 1 to {MAX_TAG_KEY_CHARS} characters"
            )
        if key.lower().startswith("aws:"):
            raise InvalidParameter(
                "Invalid parameter: Tags Reason: tag keys starting with 'aws:' are reserved"
            )
        if value is None:
            value = ""
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE_CHARS:
            raise InvalidParameter(
                f"Invalid parameter: Tags Reason: tag values are at most {MAX_TAG_VALUE_CHARS} "
                "characters"
            )
        out[key] = value
    if len(out) > MAX_TAGS:
        raise TagLimitExceeded("Could not complete request: tag quota of per resource exceeded")
    return out


def check_tag_keys(keys: Any) -> list[str]:
    if (
        not isinstance(keys, Sequence)
        or isinstance(keys, str)
        or not all(isinstance(k, str) and 0 < len(k) <= MAX_TAG_KEY_CHARS for k in keys)
    ):
        raise InvalidParameter("Invalid parameter: TagKeys")
    return list(keys)


# -- HTTP/S delivery ----------------------------------------------------------------------------


_DEFAULT_RETRY_POLICY: dict[str, Any] = {  # SNS's healthy retry policy (the order it shows)
    "minDelayTarget": 20,
    "maxDelayTarget": 20,
    "numRetries": 3,
    "numMaxDelayRetries": 0,
    "numNoDelayRetries": 0,
    "numMinDelayRetries": 0,
    "backoffFunction": "linear",
}
DEFAULT_CONTENT_TYPE = "text/plain; charset=UTF-8"  # of HTTP/S POSTs
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")


def _member(document: Any, name: str) -> dict[str, Any]:
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, dict) else {}


def _topic_http_policy(topic_policy: str | None) -> dict[str, Any]:
    return _member(json_object(topic_policy) if topic_policy else None, "http")


def _healthy_retry_policy(own: Any, topic_http: dict[str, Any]) -> dict[str, Any]:
    """The HTTP/S retry policy in force: the subscription's DeliveryPolicy ``own`` over the
    topic's "http" defaults over SNS's (3 retries, 20 s apart), member by member."""
    return {
        **_DEFAULT_RETRY_POLICY,
        **_member(topic_http, "defaultHealthyRetryPolicy"),
        **_member(own, "healthyRetryPolicy"),
    }


def topic_effective_delivery_policy(topic_policy: str | None) -> str:
    """A topic's EffectiveDeliveryPolicy: its DeliveryPolicy's "http" part over SNS's
    defaults, member by member, as SNS shows it."""
    http = _topic_http_policy(topic_policy)
    effective: dict[str, Any] = {
        "defaultHealthyRetryPolicy": {
            **_DEFAULT_RETRY_POLICY,
            **_member(http, "defaultHealthyRetryPolicy"),
        },
        "disableSubscriptionOverrides": http.get("disableSubscriptionOverrides", False),
        "defaultRequestPolicy": {
            "headerContentType": DEFAULT_CONTENT_TYPE,
            **_member(http, "defaultRequestPolicy"),
        },
    }
    for name in ("defaultSicklyRetryPolicy", "defaultThrottlePolicy"):
        if name in http:
            effective[name] = http[name]
    return json.dumps({"http": effective}, separators=(",", ":"))


# A topic without a DeliveryPolicy shows SNS's defaults
DEFAULT_EFFECTIVE_DELIVERY_POLICY = topic_effective_delivery_policy(None)


def subscription_effective_delivery_policy(
    subscription_policy: str | None, topic_policy: str | None
) -> str:
    """An HTTP/S subscription's EffectiveDeliveryPolicy, in the subscription's own shape: its
    DeliveryPolicy over the topic's "http" defaults over SNS's, member by member."""
    http = _topic_http_policy(topic_policy)
    own = json_object(subscription_policy) if subscription_policy else None
    own = own if isinstance(own, dict) else {}
    effective = {
        "healthyRetryPolicy": _healthy_retry_policy(own, http),
        "sicklyRetryPolicy": own.get("sicklyRetryPolicy", http.get("defaultSicklyRetryPolicy")),
        "throttlePolicy": own.get("throttlePolicy", http.get("defaultThrottlePolicy")),
        "requestPolicy": {
            "headerContentType": DEFAULT_CONTENT_TYPE,
            **_member(http, "defaultRequestPolicy"),
            **_member(own, "requestPolicy"),
        },
        "guaranteed": own.get("guaranteed", False),
    }
    return json.dumps(effective, separators=(",", ":"))


def http_content_type(subscription_policy: str | None, topic_policy: str | None) -> str:
    """The Content-Type of an HTTP/S notification: the subscription's requestPolicy, else the
    topic's defaultRequestPolicy, else text/plain."""
    own = json_object(subscription_policy) if subscription_policy else None
    content_type = _member(own, "requestPolicy").get("headerContentType") or _member(
        _topic_http_policy(topic_policy), "defaultRequestPolicy"
    ).get("headerContentType")
    # Printable ASCII only: the value is written into the POST's header as is, and a CR LF in it
    # would add headers of its own (a DeliveryPolicy is any JSON object).
    if isinstance(content_type, str) and _HEADER_VALUE.fullmatch(content_type):
        return content_type
    return DEFAULT_CONTENT_TYPE


def http_retry_delays_ms(subscription_policy: str | None, topic_policy: str | None) -> list[int]:
    """The wait (ms) before each retry of an HTTP/S delivery: one per retry, numRetries in all.

    SNS's four phases, from the healthy retry policy as its EffectiveDeliveryPolicy shows it
    (member by member): numNoDelayRetries at once, then numMinDelayRetries after
    minDelayTarget, the backoff phase rising from minDelayTarget to maxDelayTarget (geometric
    for an "exponential" or "geometric" backoffFunction, else linear), and numMaxDelayRetries
    after maxDelayTarget. SNS's jitter is left out.
    """
    own = json_object(subscription_policy) if subscription_policy else None
    retry = _healthy_retry_policy(own, _topic_http_policy(topic_policy))

    def number(name: str, low: int, high: int) -> int:
        value = retry.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            value = _DEFAULT_RETRY_POLICY[name]
        return min(max(value, low), high)

    retries = number("numRetries", 0, 100)
    low = number("minDelayTarget", 1, 3600)
    high = number("maxDelayTarget", low, 3600)
    no_delay = min(number("numNoDelayRetries", 0, 100), retries)
    at_low = min(number("numMinDelayRetries", 0, 100), retries - no_delay)
    at_high = min(number("numMaxDelayRetries", 0, 100), retries - no_delay - at_low)
    backoff = retries - no_delay - at_low - at_high
    geometric = retry.get("backoffFunction") in ("exponential", "geometric")
    rising = []
    for k in range(backoff):
        fraction = k / (backoff - 1) if backoff > 1 else 0.0
        step = low * (high / low) ** fraction if geometric else low + (high - low) * fraction
        rising.append(step)
    delays_s = [0.0] * no_delay + [low] * at_low + rising + [high] * at_high
    return [round(s * 1000) for s in delays_s]


# -- the stored settings of a topic ---------------------------------------------------------------


class TopicSettings:
    """A topic's attribute, access-policy and tag methods (part of :class:`millpond.topic.Topic`).

    Each call is one read or one write transaction on the topic's records.
    """

    name: str
    arn: str
    fifo: bool
    _broker: Broker
    _storage: Storage
    _meta: Any
    _state: Any  # the publish snapshot, dropped when the record changes

    def _record(self, txn: Any) -> dict[str, Any]:
        raw = txn.get(topic_key(self.name), db=self._meta)
        if raw is None:
            raise TopicNotFound("Topic does not exist")
        return msgpack.unpackb(raw)  # type: ignore[no-any-return]

    def _update_record(self, change: Callable[[dict[str, Any]], bool]) -> None:
        """Apply ``change(record)`` to the stored record (it returns whether it changed it)."""
        meta = self._meta

        def update(txn: Any, now_ms: int) -> None:
            record = self._record(txn)
            if change(record):
                record["v"] = os.urandom(8)
                txn.put(topic_key(self.name), msgpack.packb(record), db=meta)

        self._storage.write(update)
        self._state = None

    # -- attributes -----------------------------------------------------------------------------

    def get_attributes(self) -> dict[str, str]:
        """Topic attributes by their SNS names, values strings as SNS returns them.

        Always: TopicArn, Owner, Policy, DisplayName, EffectiveDeliveryPolicy,
        SubscriptionsConfirmed (SQS subscriptions are confirmed at once), SubscriptionsPending
        (HTTP/S ones awaiting confirmation) and SubscriptionsDeleted ("0"); FIFO topics add
        FifoTopic, ContentBasedDeduplication and FifoThroughputScope (SNS leaves them out for
        standard topics); plus whatever was set (SignatureVersion only then, as SNS).
        """

        now_ms = self._broker.clock.now_ms()

        def read(txn: Any) -> tuple[dict[str, Any], int, int]:
            record = self._record(txn)
            prefix = sub_prefix(self.name)
            confirmed = pending = 0
            with txn.cursor(db=self._meta) as cur:
                if cur.set_range(prefix):
                    for key, value in cur:
                        if not key.startswith(prefix):
                            break
                        sub = msgpack.unpackb(value)
                        if lapsed(sub, now_ms):
                            continue  # deleted by SNS after 48 hours
                        if sub.get("pending"):
                            pending += 1
                        else:
                            confirmed += 1
            return record, confirmed, pending

        record, confirmed, pending = self._storage.read(read)
        return topic_attribute_values(
            self.arn, self._broker.account_id, record["attributes"], confirmed, pending
        )

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Change topic attributes (SNS SetTopicAttributes, several at once); immediate.

        FifoTopic cannot be changed; ContentBasedDeduplication, FifoThroughputScope and
        ArchivePolicy exist on FIFO topics only.
        """
        attributes = arguments.mapping(attributes, "Attributes", InvalidParameter, required=True)
        if "FifoTopic" in attributes:
            raise InvalidParameter("Invalid parameter: AttributeName")
        # An empty DeliveryPolicy removes it, SNS's defaults in force again (AWS-recorded)
        removed = {name for name in _REMOVABLE if attributes.get(name) == ""}
        given = {k: v for k, v in attributes.items() if k not in removed}
        changes = check_topic_attributes(given, fifo=self.fifo, creating=False)

        def change(record: dict[str, Any]) -> bool:
            kept = {k: v for k, v in record["attributes"].items() if k not in removed}
            record["attributes"] = {**kept, **changes}
            return True

        self._update_record(change)

    def add_permission(
        self, label: str, account_ids: Sequence[str], actions: Sequence[str]
    ) -> None:
        """SNS AddPermission: a statement ``label`` in the topic's Policy allowing ``actions``
        (``"Publish"``, ``"Subscribe"``...) to the accounts.

        millpond stores the policy (GetTopicAttributes shows it) but does not enforce it.
        Raises InvalidParameter for a label already in the policy or an unknown action.
        """
        arn = self.arn
        add_statement("{}", arn, label, account_ids, actions)  # validate outside the txn

        def change(record: dict[str, Any]) -> bool:
            policy = topic_value(record["attributes"], "Policy", arn) or "{}"
            new = add_statement(policy, arn, label, account_ids, actions)
            record["attributes"] = {**record["attributes"], "Policy": new}
            return True

        self._update_record(change)

    def remove_permission(self, label: str) -> None:
        """SNS RemovePermission: drop statement ``label`` (no such statement: no change)."""
        arn = self.arn
        remove_statement("{}", label)  # validate outside the txn

        def change(record: dict[str, Any]) -> bool:
            policy = topic_value(record["attributes"], "Policy", arn) or "{}"
            new = remove_statement(policy, label)
            if new is None:
                return False
            record["attributes"] = {**record["attributes"], "Policy": new}
            return True

        self._update_record(change)

    # -- tags -------------------------------------------------------------------------------------

    def tags(self) -> dict[str, str]:
        """The topic's tags (SNS ListTagsForResource); raises TopicNotFound."""

        def read(txn: Any) -> dict[str, str]:
            self._record(txn)
            return tags_in(txn, self._meta, self.name)

        return self._storage.read(read)

    def tag(self, tags: Mapping[str, str] | Sequence[Mapping[str, str]]) -> None:
        """Add or change tags (SNS TagResource); at most 50 in all (TagLimitExceeded)."""
        new = check_tags(tags)
        meta = self._meta

        def update(txn: Any, now_ms: int) -> None:
            self._record(txn)
            merged = {**tags_in(txn, meta, self.name), **new}
            if len(merged) > MAX_TAGS:
                check_tags(merged)  # raises TagLimitExceeded
            txn.put(tags_key(self.name), msgpack.packb(merged), db=meta)

        self._storage.write(update)

    def untag(self, keys: Sequence[str]) -> None:
        """Remove tags by key (SNS UntagResource); absent keys are ignored."""
        keys = check_tag_keys(keys)
        meta = self._meta

        def update(txn: Any, now_ms: int) -> None:
            self._record(txn)
            kept = {k: v for k, v in tags_in(txn, meta, self.name).items() if k not in keys}
            txn.put(tags_key(self.name), msgpack.packb(kept), db=meta)

        self._storage.write(update)


def tags_in(txn: Any, meta: Any, name: str) -> dict[str, str]:
    """The tags of topic ``name`` (caller holds a txn)."""
    raw = txn.get(tags_key(name), db=meta)
    return {} if raw is None else msgpack.unpackb(raw)
