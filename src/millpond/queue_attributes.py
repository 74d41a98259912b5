"""SQS queue attributes: names, defaults, ranges, and validation.

Values are kept as SQS keeps them, strings ("30", "true"), whatever Python type the caller
passed (ints and bools are accepted for convenience and normalised). Amazon SQS is the
reference for every default, range and error text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from millpond import arguments
from millpond.dead_letters import check_redrive_allow_policy
from millpond.errors import InvalidAttributeName, InvalidAttributeValue, InvalidParameterValue
from millpond.message_attributes import first_bad_char

# name -> (minimum, maximum) for the integer attributes, all in seconds except the size.
INT_RANGES: dict[str, tuple[int, int]] = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 1_048_576),
    "MessageRetentionPeriod": (60, 1_209_600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, 43_200),
    "KmsDataKeyReusePeriodSeconds": (60, 86_400),
}

DEFAULTS: dict[str, str] = {
    "DelaySeconds": "0",
    "MaximumMessageSize": "1048576",
    "MessageRetentionPeriod": "345600",
    "ReceiveMessageWaitTimeSeconds": "0",
    "VisibilityTimeout": "30",
    "SqsManagedSseEnabled": "true",
}

ENUMS: dict[str, tuple[str, ...]] = {
    "DeduplicationScope": ("queue", "messageGroup"),
    "FifoThroughputLimit": ("perQueue", "perMessageGroupId"),
}
FIFO_DEFAULTS: dict[str, str] = {
    "FifoQueue": "true",
    "ContentBasedDeduplication": "false",
    "DeduplicationScope": "queue",
    "FifoThroughputLimit": "perQueue",
}

BOOLEANS = frozenset({"SqsManagedSseEnabled", "FifoQueue", "ContentBasedDeduplication"})
FREE_TEXT = frozenset({"Policy", "KmsMasterKeyId"})
JSON_POLICIES = frozenset({"RedrivePolicy", "RedriveAllowPolicy"})
FIFO_ONLY = frozenset({"ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"})
READ_ONLY = frozenset(
    {
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
        "CreatedTimestamp",
        "LastModifiedTimestamp",
        "QueueArn",
    }
)
SETTABLE = frozenset(INT_RANGES) | BOOLEANS | FREE_TEXT | JSON_POLICIES | FIFO_ONLY | set(ENUMS)
ALL_NAMES = SETTABLE | READ_ONLY


def normalize(
    attributes: Mapping[str, Any] | None, *, creating: bool, fifo: bool | None = None
) -> dict[str, str]:
    """Validate ``attributes`` and return them as SQS strings.

    Args:
        attributes: attribute name -> value (str, int or bool), as boto3 passes them.
        creating: True for create_queue (FifoQueue may be given), False for set_attributes.
        fifo: whether the queue is a FIFO queue (set_attributes); None: from FifoQueue.

    Raises:
        InvalidAttributeName: unknown, read-only, or not valid for this queue type.
        InvalidAttributeValue: a value outside the attribute's range or format.
    """
    out: dict[str, str] = {}
    for name, value in arguments.mapping(attributes, "Attributes").items():
        if name not in SETTABLE:
            raise InvalidAttributeName(f"Unknown Attribute {name}.")
        if name == "FifoQueue" and not creating:
            # as AWS: a standard queue has no FifoQueue attribute to set; a FIFO queue takes
            # FifoQueue=true as a no-op and refuses only a change of type
            if not fifo:
                raise InvalidAttributeName(f"Unknown Attribute {name}.")
            if _normalize_value(name, value) == "true":
                continue
            raise InvalidAttributeValue(
                "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not "
                "supported."
            )
        out[name] = _normalize_value(name, value)
    _one_encryption(out)
    if fifo is None:
        fifo = out.get("FifoQueue") == "true"
    if not fifo:
        for name in sorted(FIFO_ONLY & out.keys()):
            if name == "ContentBasedDeduplication":
                raise InvalidAttributeName(f"Unknown Attribute {name}.")
            raise InvalidAttributeName(
                f"You can specify the {name} only when FifoQueue is set to true."
            )
    return out


def _one_encryption(out: dict[str, str]) -> None:
    """SSE-KMS (a KmsMasterKeyId) and SSE-SQS exclude each other: both in one request are
    refused, and enabling one turns the other off."""
    if out.get("KmsMasterKeyId"):
        if out.get("SqsManagedSseEnabled") == "true":
            raise InvalidAttributeName(  # AWS's wording
                "You can use one type of server-side encryption (SSE) at one time. You can "
                "either enable KMS SSE or SQS SSE."
            )
        out["SqsManagedSseEnabled"] = "false"
    elif out.get("SqsManagedSseEnabled") == "true" and "KmsMasterKeyId" not in out:
        out["KmsMasterKeyId"] = ""  # "" removes it (see effective())


def check_fifo_throughput(attributes: Mapping[str, str]) -> None:
    """High-throughput FIFO (perMessageGroupId) needs de-duplication per message group."""
    eff = effective(attributes)
    if eff.get("FifoThroughputLimit") == "perMessageGroupId" and (
        eff.get("DeduplicationScope") != "messageGroup"
    ):
        raise InvalidAttributeValue(
            "Invalid value for the parameter FifoThroughputLimit. Reason: perMessageGroupId is "
            "only allowed with DeduplicationScope messageGroup."
        )


def _normalize_value(name: str, value: Any) -> str:
    if name in INT_RANGES:
        low, high = INT_RANGES[name]
        number = _as_int(value)
        if number is None or not low <= number <= high:
            raise InvalidAttributeValue(
                f"Invalid value for the parameter {name}. Reason: must be an integer from "
                f"{low} to {high}, not {value!r}."
            )
        return str(number)
    if name in ENUMS:
        if value not in ENUMS[name]:
            raise InvalidAttributeValue(
                f"Invalid value for the parameter {name}. Reason: must be one of "
                f"{', '.join(ENUMS[name])}."
            )
        return str(value)
    if name in BOOLEANS:
        text = str(value).lower() if isinstance(value, (bool, str)) else None
        if text not in ("true", "false"):
            raise InvalidAttributeValue(
                f"Invalid value for the parameter {name}. Reason: must be true or false."
            )
        return text
    if not isinstance(value, str):
        raise InvalidAttributeValue(f"Invalid value for the parameter {name}: must be a string.")
    if name in JSON_POLICIES and value:
        _check_json_policy(name, value)
    if name == "Policy" and value:
        _check_access_policy(value)
    if first_bad_char(value):  # the query protocol's XML could not carry it back
        raise InvalidAttributeValue(f"Invalid value for the parameter {name}.")
    return value


def _check_access_policy(value: str) -> None:
    """An access policy document: a JSON object with a Statement (AddPermission adds to it)."""
    try:
        policy = json.loads(value)
    except ValueError:
        policy = None
    if not isinstance(policy, dict) or "Statement" not in policy:
        raise InvalidAttributeValue("Invalid value for the parameter Policy.")  # AWS's wording


_DECIMAL = re.compile(r"\s*-?[0-9]+\s*")  # ASCII digits only: str.isdigit() takes "²"


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    return None


def _check_json_policy(name: str, value: str) -> None:
    try:
        policy = json.loads(value)
    except ValueError:
        raise InvalidAttributeValue(
            f"Invalid value for the parameter {name}. Reason: it is not valid JSON."
        ) from None
    if not isinstance(policy, dict):
        raise InvalidAttributeValue(
            f"Invalid value for the parameter {name}. Reason: it must be a JSON object."
        )
    if name == "RedriveAllowPolicy":
        check_redrive_allow_policy(value)
    if name == "RedrivePolicy":
        _check_redrive_policy_shape(value, policy)


def _check_redrive_policy_shape(text: str, policy: dict[str, Any]) -> None:
    """Both members present, maxReceiveCount 1-1000 (the target is checked against the broker
    by dead_letters.check_redrive_policy). SQS answers InvalidParameterValue here, echoing the
    policy, where other attributes get InvalidAttributeValue."""
    invalid = f"Value {text} for parameter RedrivePolicy is invalid. Reason:"
    # maxReceiveCount first: SQS names it when both are missing (reported AWS answers to {} and
    # to miscased members, ansible-collections/community.aws#2321, rubyonjets/jets#101)
    for member in ("maxReceiveCount", "deadLetterTargetArn"):
        if policy.get(member) is None:
            raise InvalidParameterValue(
                f"{invalid} Redrive policy does not contain mandatory attribute: {member}."
            )
    count = _as_int(policy["maxReceiveCount"])
    if not isinstance(policy["deadLetterTargetArn"], str):
        raise InvalidParameterValue(f"{invalid} Invalid value for deadLetterTargetArn.")
    if count is None or not 1 <= count <= 1000:
        raise InvalidParameterValue(
            f"{invalid} Invalid value for maxReceiveCount: {policy['maxReceiveCount']}, valid "
            "values are from 1 to 1000 both inclusive."
        )


def _canonical_redrive_policy(text: str) -> str:
    """A valid RedrivePolicy as SQS writes it back: compact JSON, deadLetterTargetArn first and
    maxReceiveCount a number (the AWS CLI's documented get-queue-attributes output
    ``{"deadLetterTargetArn":"arn:...","maxReceiveCount":1000}``, whatever was sent)."""
    try:
        policy = json.loads(text)
        count = _as_int(policy["maxReceiveCount"])
        canonical = {"deadLetterTargetArn": policy["deadLetterTargetArn"], "maxReceiveCount": count}
    except (ValueError, TypeError, KeyError):
        return text
    return json.dumps(canonical, separators=(",", ":"))


# Attributes SQS leaves out of GetQueueAttributes until they are set, and the value they have
# meanwhile (what create_queue compares a requested value with).
UNSET_VALUES: dict[str, str] = {"KmsDataKeyReusePeriodSeconds": "300", "FifoQueue": "false"}


def effective(stored: Mapping[str, str]) -> dict[str, str]:
    """The queue's attributes as GetQueueAttributes shows them: SQS defaults filled in (FIFO
    ones for FIFO queues), and what SQS leaves out left out: an empty Policy (or other text
    attribute: removed by setting it to ""), FifoQueue on a standard queue, and the KMS data key
    reuse period while no KMS key is set (SSE-SQS is off while one is)."""
    if stored.get("FifoQueue") == "true":
        values = {**DEFAULTS, **FIFO_DEFAULTS, **stored}
    else:
        values = {**DEFAULTS, **stored}
        values.pop("FifoQueue", None)
    for name in [name for name, value in values.items() if value == ""]:
        del values[name]
    if "RedrivePolicy" in values:
        values["RedrivePolicy"] = _canonical_redrive_policy(values["RedrivePolicy"])
    if values.get("KmsMasterKeyId"):
        values.setdefault(
            "KmsDataKeyReusePeriodSeconds", UNSET_VALUES["KmsDataKeyReusePeriodSeconds"]
        )
        if "SqsManagedSseEnabled" not in stored:  # SSE-KMS: SSE-SQS is off, not the default
            values["SqsManagedSseEnabled"] = "false"
    return values


def mismatch(existing: Mapping[str, str], requested: Mapping[str, str]) -> str | None:
    """The first requested attribute whose value differs from the existing queue's, if any."""
    current = effective(existing)
    for name, value in requested.items():
        unset = UNSET_VALUES.get(name, "false" if name in BOOLEANS else "")
        if name == "RedrivePolicy" and value:
            value = _canonical_redrive_policy(value)
        if current.get(name, unset) != value:
            return name
    return None


# -- retention -----------------------------------------------------------------------------------

# In a queue's stored definition: messages sent before this time (ms) are gone for good, whatever
# MessageRetentionPeriod says now (see record_expired).
EXPIRED_BEFORE = "expired_before_ms"


def record_expired(definition: dict[str, Any], now_ms: int) -> None:
    """Before a change of MessageRetentionPeriod: what the period in force let expire stays
    expired. SQS deletes a message once it has been in the queue longer than the period, so a
    longer period set afterwards must not give it back (here expired messages are removed only
    when a read meets them: without this, a read before the change decided their fate)."""
    retention_s = int(effective(definition["attributes"])["MessageRetentionPeriod"])
    expired_before = now_ms - retention_s * 1000
    definition[EXPIRED_BEFORE] = max(definition.get(EXPIRED_BEFORE, 0), expired_before)


def retention_cutoff_ms(now_ms: int, retention_ms: int, expired_before_ms: int) -> int:
    """The send time before which a queue's messages are gone (expired)."""
    return max(now_ms - retention_ms, expired_before_ms)
