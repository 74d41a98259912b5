"""SNS messages: what Publish accepts, and the JSON notification SQS subscribers receive.

:func:`check_message`, :func:`check_subject` and :func:`check_attributes` run before anything is
stored: Amazon SNS's rules, with AWS's error texts where they were recorded (marked so in the
code) and millpond's own wording elsewhere. :class:`Notification` is the
envelope a subscription without raw delivery gets as its SQS message body (or HTTP/S POST body),
byte for byte in the layout SNS sends to SQS::

    {
      "Type" : "Notification",
      "MessageId" : "…",
      "TopicArn" : "…",
      "Message" : "…",
      "Timestamp" : "2024-08-18T22:03:30.355Z",
      "SignatureVersion" : "1",
      "Signature" : "…",
      "SigningCertURL" : "…",
      "UnsubscribeURL" : "…",
      "MessageAttributes" : {
        "name" : {"Type":"String","Value":"x"}
      }
    }

Field order is SNS's: Type, MessageId, [SequenceNumber], TopicArn, [Subject], Message, Timestamp,
SignatureVersion, Signature, SigningCertURL, UnsubscribeURL, [MessageAttributes]. FIFO topics
send no SignatureVersion, Signature or SigningCertURL.

Signature: millpond holds no AWS signing key, so the ``Signature`` is NOT a verifiable AWS
signature. It is base64 of an HMAC over SNS's string-to-sign (HMAC-SHA1 for SignatureVersion 1,
HMAC-SHA256 for 2) keyed with a secret of the data directory: same length on every message,
stable for a given message, checkable with :func:`signature` by whoever holds the broker.

:func:`subscription_confirmation` is the message an HTTP/S endpoint gets when subscribed: its
Token confirms the subscription (ConfirmSubscription, or a GET of its SubscribeURL).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from millpond.errors import (
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    EmptyBatchRequest,
    InvalidBatchEntryId,
    InvalidInputError,
    InvalidMessageContents,
    InvalidParameterValue,
    TooManyEntriesInBatchRequest,
)
from millpond.message_attributes import (
    first_bad_char,
    message_attributes_size,
    validate_body_text,
)

__all__ = [
    "MAX_BATCH",
    "MAX_MESSAGE_BYTES",
    "MAX_RAW_ATTRIBUTES",
    "InvalidParameter",
    "Notification",
    "ParameterValueInvalid",
    "TagLimitExceeded",
    "check_attributes",
    "checked_attributes",
    "check_message",
    "check_subject",
    "iso_timestamp",
    "signature",
    "string_to_sign",
    "subscription_confirmation",
]

MAX_MESSAGE_BYTES = 262_144  # Publish: message plus attributes; PublishBatch: all entries
MAX_SUBJECT_CHARS = 99  # "less than 100 characters"
MAX_BATCH = 10
MAX_RAW_ATTRIBUTES = 10  # raw delivery maps attributes to SQS ones, which allow 10
MAX_NAME_CHARS = 256
_NUMBER_LIMIT = Decimal(1_000_000_000)  # SNS Number range: -10^9 .. 10^9
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SMALL_NUMBER = re.compile(r"[+-]?[0-9]{1,9}(?:\.[0-9]*)?")  # |value| < 10^9: in range
_NAME_CHAR = re.compile(r"[A-Za-z0-9_.\-]")
_NAME = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*")
_SUBJECT_BAD = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")  # line breaks and control characters
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
_BASE_TYPES = frozenset(("String", "Number", "Binary"))
_encode = json.JSONEncoder(ensure_ascii=False).encode
_LINE_FRAME = len('    "" : {"Type":"","Value":""}')  # an attribute's line without its three parts


def _is_plain(text: str) -> bool:
    """Whether ``text`` is a JSON string literal's content as it is (nothing to escape)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _encode_string(text: str) -> str:
    """A JSON string literal as SNS writes it: UTF-8 as is, control characters escaped.

    U+FFFE and U+FFFF are escaped too: JSON allows them raw, but SQS refuses a body holding
    them, so an envelope always fits SQS's character set.
    """
    if _is_plain(text):
        return f'"{text}"'  # nothing to escape (most names, types and values): no encoder
    literal: str = _encode(text)
    if "\ufffe" in literal or "\uffff" in literal:
        literal = literal.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")
    return literal


# -- errors (SNS codes) ---------------------------------------------------------------------------


class InvalidParameter(InvalidInputError):
    """SNS's InvalidParameter: the message names the parameter, "Invalid parameter: …"."""

    code = "InvalidParameter"
    json_type = "InvalidParameterException"


class ParameterValueInvalid(InvalidParameterValue):
    """SNS's InvalidParameterValue (code ParameterValueInvalid): a bad message attribute."""

    code = "ParameterValueInvalid"
    json_type = "InvalidParameterValueException"


class ValidationError(InvalidInputError):
    """A required member is missing (SNS's model-level check)."""

    code = "ValidationError"
    json_type = "ValidationError"


class TagLimitExceeded(InvalidInputError):
    """A topic would have more than 50 tags."""

    code = "TagLimitExceeded"
    json_type = "TagLimitExceededException"


class PublishBatchEmpty(EmptyBatchRequest):
    code = "EmptyBatchRequest"
    json_type = "EmptyBatchRequestException"


class PublishBatchTooManyEntries(TooManyEntriesInBatchRequest):
    code = "TooManyEntriesInBatchRequest"
    json_type = "TooManyEntriesInBatchRequestException"


class PublishBatchIdsNotDistinct(BatchEntryIdsNotDistinct):
    code = "BatchEntryIdsNotDistinct"
    json_type = "BatchEntryIdsNotDistinctException"


class PublishBatchEntryIdInvalid(InvalidBatchEntryId):
    code = "InvalidBatchEntryId"
    json_type = "InvalidBatchEntryIdException"


class PublishBatchTooLong(BatchRequestTooLong):
    code = "BatchRequestTooLong"
    json_type = "BatchRequestTooLongException"


# -- what Publish accepts -----------------------------------------------------------------------


def check_message(message: Any, structure: str | None = None) -> tuple[str, bytes, str]:
    """Validate a Publish ``Message``; returns (message, its UTF-8, content for SQS subscribers).

    Args:
        message: str (or UTF-8 bytes), at least one character. Its size counts toward the
            256 KiB limit together with the attributes (see :func:`check_size`).
        structure: None, or "json": the message is then a JSON object of per-protocol strings
            that must hold "default"; SQS subscribers get its "sqs" entry, else "default".

    Raises:
        InvalidParameter: empty, not text, or a bad "json" structure (SNS's wording).
    """
    if isinstance(message, (bytes, bytearray, memoryview)):
        try:
            message = bytes(message).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidParameter("Invalid parameter: Message Reason: not UTF-8 text") from None
    if not isinstance(message, str):
        raise InvalidParameter(
            f"Invalid parameter: Message Reason: must be a string, not {type(message).__name__}"
        )
    if not message:
        raise InvalidParameter("Invalid parameter: Empty message")
    try:
        data = message.encode("utf-8")  # encoded once: size, hashes and raw bodies reuse it
    except UnicodeEncodeError:
        raise InvalidParameter("Invalid parameter: Message Reason: not UTF-8 text") from None
    if structure is None:
        return message, data, message
    if structure != "json":
        raise InvalidParameter(
            f"Invalid parameter: MessageStructure Reason: {structure!r} is not 'json'"
        )
    try:
        doc = json.loads(message)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise InvalidParameter(
            "Invalid parameter: Message Structure - JSON message body failed to parse"
        )
    # Non-string values do not count as protocol entries (SNS ignores them).
    default = doc.get("default")
    if not isinstance(default, str):
        raise InvalidParameter(
            "Invalid parameter: Message Structure - No default entry in JSON message body"
        )
    content = doc.get("sqs")
    content = content if isinstance(content, str) else default
    if not _encodable(content):
        raise InvalidParameter("Invalid parameter: Message Reason: not UTF-8 text")
    return message, data, content


def _encodable(text: str) -> bool:
    """Whether UTF-8 can encode ``text`` (a lone surrogate cannot be)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_subject(subject: Any) -> str | None:
    """A Publish ``Subject``: None, or 1-99 characters without line breaks or control chars."""
    if subject is None:
        return None
    if (
        not isinstance(subject, str)
        or not 0 < len(subject) <= MAX_SUBJECT_CHARS
        or _SUBJECT_BAD.search(subject)
        or not _encodable(subject)
    ):
        raise InvalidParameter("Invalid parameter: Subject")
    return subject


def check_attributes(attributes: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Validate SNS message attributes and return them normalized (SQS/boto3 shape).

    Args:
        attributes: None or ``{name: {"DataType": ..., "StringValue" | "BinaryValue": ...}}``.
            DataType String, String.Array (a JSON array of strings, numbers, true, false and
            null), Number (-10^9 .. 10^9, kept as the string given) or Binary (bytes, already
            base64-decoded), each with an optional custom label (``Number.int``).

    Returns:
        A new dict in the given order with only DataType and the one value of each attribute.

    Raises:
        ParameterValueInvalid, ValidationError: SNS would refuse the attributes.
    """
    checked, _, _ = checked_attributes(attributes)
    return checked


def checked_attributes(
    attributes: Mapping[str, Any] | None,
) -> tuple[dict[str, dict[str, Any]], int, str]:
    """:func:`check_attributes`, the bytes they count toward the 256 KiB limit, and their
    MessageAttributes block in the envelope (:func:`attributes_json`; "" without any)."""
    if not attributes:
        return {}, 0, ""
    if type(attributes) is not dict and not isinstance(attributes, Mapping):  # (ABC check: slow)
        raise ParameterValueInvalid("MessageAttributes must be a map of name to value.")
    checked: dict[str, dict[str, Any]] = {}
    lines = []
    size = 0
    for name, attribute in attributes.items():
        # The common attribute, checked with a few C calls in this loop (a call per attribute
        # cost more than the checks): a name that is an ASCII identifier (no dot: it cannot be
        # reserved), a String of printable ASCII or a small Number. Anything else:
        # _check_name and _check_attribute decide.
        if type(name) is str and type(attribute) is dict and len(name) <= MAX_NAME_CHARS:
            data_type = attribute.get("DataType")
            value = attribute.get("StringValue")
            if (
                type(value) is str
                and value.isascii()
                and name.isascii()
                and name.isidentifier()
                and (
                    (data_type == "String" and value and value.isprintable())
                    or (data_type == "Number" and _SMALL_NUMBER.fullmatch(value) is not None)
                )
            ):
                checked[name] = plain = {"DataType": data_type, "StringValue": value}
                if '"' in value or "\\" in value:
                    size += len(name) + len(data_type) + len(value)  # all ASCII
                    lines.append(_attribute_line(name, plain))
                else:  # nothing to escape: the line holds the name, type and value as they are
                    line = f'    "{name}" : {{"Type":"{data_type}","Value":"{value}"}}'
                    size += len(line) - _LINE_FRAME  # all ASCII
                    lines.append(line)
                continue
        _check_name(name)
        checked[name] = _check_attribute(name, attribute)
        size += message_attributes_size({name: checked[name]})
        lines.append(_attribute_line(name, checked[name]))
    return checked, size, _attributes_block(lines)


def check_size(message: bytes, attributes_size: int) -> int:
    """Bytes toward the 256 KiB limit of the UTF-8 message and its attributes (of
    :func:`checked_attributes`).

    Raises InvalidParameter "Message too long" past it.
    """
    size = len(message) + attributes_size
    if size > MAX_MESSAGE_BYTES:
        raise InvalidParameter("Invalid parameter: Message too long")
    return size


def check_batch_ids(ids: list[Any]) -> None:
    """PublishBatch's entry count and Id rules (before any entry is looked at)."""
    if not ids:
        raise PublishBatchEmpty("The batch request doesn't contain any entries.")
    if len(ids) > MAX_BATCH:
        raise PublishBatchTooManyEntries(
            "The batch request contains more entries than permissible."
        )
    for entry_id in ids:
        if not isinstance(entry_id, str) or not _BATCH_ID.fullmatch(entry_id):
            raise PublishBatchEntryIdInvalid(
                "The Id of a batch entry in a batch request doesn't abide by the specification."
            )
    if len(set(ids)) != len(ids):
        raise PublishBatchIdsNotDistinct(
            "Two or more batch entries in the request have the same Id."
        )


def check_batch_size(total: int) -> None:
    if total > MAX_MESSAGE_BYTES:
        raise PublishBatchTooLong(
            "The length of all the messages put together is more than the limit."
        )


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ParameterValueInvalid("The message attribute name must be a non-empty string.")
    if len(name) > MAX_NAME_CHARS:
        raise ParameterValueInvalid("Length of message attribute name must be less than 256 bytes.")
    if _NAME.fullmatch(name) is None:
        if name[0] == ".":  # AWS-recorded wording
            raise ParameterValueInvalid(
                "Invalid message attribute name starting with character '.' was found."
            )
        if name[-1] == ".":
            raise ParameterValueInvalid(
                "Invalid message attribute name ending with character '.' was found."
            )
        for char in name:
            if _NAME_CHAR.fullmatch(char) is None:
                raise ParameterValueInvalid(
                    f"Invalid non-alphanumeric character '#x{ord(char):X}' was found in the "
                    "message attribute name. Can only include alphanumeric characters, hyphens, "
                    "underscores, or dots."
                )
        raise ParameterValueInvalid("Message attribute name can not have successive '.' character.")
    if name.lower().startswith(("aws.", "amazon.")):
        raise ParameterValueInvalid(
            f"The message attribute name '{name}' is reserved: names starting with 'AWS.' or "
            "'Amazon.' (in any case) are for Amazon Web Services."
        )


def _check_attribute(name: str, attribute: Any) -> dict[str, Any]:
    if type(attribute) is not dict and not isinstance(attribute, Mapping):
        raise ParameterValueInvalid(
            f"The message attribute '{name}' must be a map with a DataType and a value."
        )
    data_type = attribute.get("DataType")
    if data_type is None:
        raise ValidationError(
            f"1 validation error detected: Value null at 'messageAttributes.{name}.member."
            "dataType' failed to satisfy constraint: Member must not be null"
        )
    base, dot, label = data_type.partition(".") if isinstance(data_type, str) else ("", "", "")
    if base not in _BASE_TYPES or (dot and not label) or len(data_type) > 256:
        raise ParameterValueInvalid(  # AWS-recorded wording
            f"The message attribute '{name}' has an invalid message attribute type, the set of "
            "supported type prefixes is Binary, Number, and String."
        )
    if first_bad_char(data_type) is not None:
        # "The data type has the same restrictions on the content as the message body"; a type
        # SQS refuses would lose the message for every raw queue subscription
        raise ParameterValueInvalid(
            f"The message attribute '{name}' has a type with a character that is not allowed "
            "(the message body's character set applies)."
        )
    string_value = attribute.get("StringValue")
    binary_value = attribute.get("BinaryValue")
    if string_value is None and binary_value is None:
        raise _empty_value(name, data_type)
    if base == "Binary":
        if binary_value is None:
            raise ParameterValueInvalid(
                f"The message attribute '{name}' with type '{data_type}' must use field 'Binary'."
            )
        if not isinstance(binary_value, (bytes, bytearray, memoryview)):
            raise ParameterValueInvalid(
                f"The BinaryValue of message attribute '{name}' must be bytes (already "
                f"base64-decoded), not {type(binary_value).__name__}."
            )
        binary_value = bytes(binary_value)
        if not binary_value:
            raise _empty_value(name, data_type)
        return {"DataType": data_type, "BinaryValue": binary_value}
    if string_value is None:
        raise ParameterValueInvalid(
            f"The message attribute '{name}' with type '{data_type}' must use field 'String'."
        )
    if not isinstance(string_value, str):
        raise ParameterValueInvalid(
            f"The StringValue of message attribute '{name}' must be a string, not "
            f"{type(string_value).__name__}."
        )
    if not string_value:
        raise _empty_value(name, data_type)
    if base == "Number":
        _check_number(name, string_value)
    else:
        try:  # "the same restrictions on the content as the message body"
            validate_body_text(string_value)
        except InvalidMessageContents:
            raise ParameterValueInvalid(
                f"The message attribute '{name}' has a value with a character that is not "
                "allowed (the message body's character set applies)."
            ) from None
        if data_type == "String.Array":
            _check_array(name, string_value)
    return {"DataType": data_type, "StringValue": string_value}


def _empty_value(name: str, data_type: str) -> ParameterValueInvalid:
    return ParameterValueInvalid(  # AWS-recorded wording
        f"The message attribute '{name}' must contain non-empty message attribute value for "
        f"message attribute type '{data_type}'."
    )


def _check_number(name: str, value: str) -> None:
    if _SMALL_NUMBER.fullmatch(value) is not None:
        return  # at most 9 digits before the point: inside the range, no Decimal needed
    number = None
    if _NUMBER.fullmatch(value) is not None:
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = None
    if number is None:
        raise ParameterValueInvalid(
            f"Could not cast message attribute '{name}' value to number: {value}"
        )
    if not -_NUMBER_LIMIT <= number <= _NUMBER_LIMIT:
        raise ParameterValueInvalid(
            f"The message attribute '{name}' with type 'Number' has a value out of range: "
            f"{value} (SNS numbers are between -1000000000 and 1000000000)."
        )


def _reject_constant(token: str) -> Any:
    raise ValueError(token)


_ARRAY_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _check_array(name: str, value: str) -> None:
    try:
        items = _ARRAY_DECODER.decode(value)
    except (ValueError, RecursionError):
        items = None
    if type(items) is not list or any(isinstance(v, (list, dict)) for v in items):
        raise ParameterValueInvalid(
            f"The message attribute '{name}' with type 'String.Array' must hold a JSON array of "
            "strings, numbers, true, false or null."
        )


# -- the notification ---------------------------------------------------------------------------


_last_second: tuple[int, str] = (-1, "")  # strftime once per second, not per publish
_MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))  # formatted once, not per publish


def iso_timestamp(now_ms: int) -> str:
    """``2012-05-02T00:54:06.655Z``: SNS's Timestamp, UTC with milliseconds."""
    global _last_second
    seconds, ms = divmod(now_ms, 1000)
    last = _last_second
    if last[0] != seconds:
        last = _last_second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return last[1] + _MILLISECONDS[ms]


def message_id() -> str:
    """A random (version 4) UUID string, as SNS message ids are; ~3x cheaper than uuid4()."""
    h = os.urandom(16).hex()
    # version 4 (the 13th digit), RFC 4122 variant (the 17th's two top bits 10)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def string_to_sign(
    message: str, message_id: str, subject: str | None, timestamp: str, topic_arn: str
) -> str:
    """SNS's string-to-sign of a Notification (fields in byte order, Subject only if given)."""
    return (
        f"{_signed_head(message, message_id, subject)}{timestamp}"
        f"\nTopicArn\n{topic_arn}\nType\nNotification\n"
    )


def _signed_head(message: str, message_id: str, subject: str | None) -> str:
    """The string-to-sign up to the Timestamp's value."""
    subject_part = "" if subject is None else f"Subject\n{subject}\n"
    return f"Message\n{message}\nMessageId\n{message_id}\n{subject_part}Timestamp\n"


def signature(key: bytes, text: str, version: str = "1") -> str:
    """The ``Signature`` millpond puts in envelopes: base64 HMAC-SHA1 (v1) / -SHA256 (v2).

    Not an AWS signature (no AWS key is involved): ``key`` is the broker's signing key, ``text``
    the :func:`string_to_sign`.
    """
    digest = hashlib.sha256 if version == "2" else hashlib.sha1
    return base64.b64encode(hmac.new(key, text.encode("utf-8"), digest).digest()).decode("ascii")


# Shaped like AWS's; the 32-hex name is millpond's own and serves no certificate.
_CERT_ID = hashlib.md5(b"millpond", usedforsecurity=False).hexdigest()


def signing_cert_url(region: str) -> str:
    return f"https://sns.{region}.amazonaws.com/SimpleNotificationService-{_CERT_ID}.pem"


def unsubscribe_url_prefix(region: str, service_url: str | None = None) -> str:
    """The UnsubscribeURL up to the subscription ARN: at ``service_url`` (where the daemon the
    subscription was made through serves SNS), else SNS's regional endpoint."""
    base = (service_url or f"https://sns.{region}.amazonaws.com").rstrip("/")
    return f"{base}/?Action=Unsubscribe&SubscriptionArn="


def attributes_json(attributes: Mapping[str, Mapping[str, Any]]) -> str:
    """The envelope's MessageAttributes block (Type/Value; Binary as base64, Number as given)."""
    return _attributes_block([_attribute_line(name, value) for name, value in attributes.items()])


def _attributes_block(lines: list[str]) -> str:
    return ',\n  "MessageAttributes" : {\n' + ",\n".join(lines) + "\n  }"


def _attribute_line(name: str, attribute: Mapping[str, Any]) -> str:
    """One checked attribute in the envelope's MessageAttributes block."""
    binary = attribute.get("BinaryValue")
    value = attribute["StringValue"] if binary is None else base64.b64encode(binary).decode()
    data_type = attribute["DataType"]
    if _is_plain(name + data_type + value):  # the usual case: one check for the three
        return f'    "{name}" : {{"Type":"{data_type}","Value":"{value}"}}'
    return (
        f'    {_encode_string(name)} : {{"Type":{_encode_string(data_type)},'
        f'"Value":{_encode_string(value)}}}'
    )


class NotificationForm:
    """What every notification of one topic shares, encoded once per topic state: the topic's
    ARN, its signature version and key, the certificate URL.

    The HMAC is RFC 2104's, computed from the hash states of the key's inner and outer pads
    taken here once: a notification then copies them instead of setting up an HMAC (which
    costs twice as much as the hashing of a short message).
    """

    __slots__ = ("after_ts", "arn_line", "cert_and_url", "fifo", "inner", "outer", "sign_tail")

    def __init__(
        self, *, topic_arn: str, region: str, fifo: bool, signature_version: str, key: bytes
    ) -> None:
        self.fifo = fifo
        self.arn_line = f'  "TopicArn" : "{topic_arn}",\n'
        unsubscribe = '"UnsubscribeURL" : "'  # each subscription's URL follows common()
        self.sign_tail = self.cert_and_url = b""
        self.inner: Any = None
        self.outer: Any = None
        if fifo:  # FIFO topics do not sign (AWS-recorded envelope)
            self.after_ts = f'",\n  {unsubscribe}'.encode()
            return
        self.inner, self.outer = _hmac_pads(key, signature_version)
        self.sign_tail = f"\nTopicArn\n{topic_arn}\nType\nNotification\n".encode()
        self.after_ts = (
            f'",\n  "SignatureVersion" : "{signature_version}",\n  "Signature" : "'
        ).encode()
        self.cert_and_url = (
            f'",\n  "SigningCertURL" : "{signing_cert_url(region)}",\n  {unsubscribe}'
        ).encode()


def _hmac_pads(key: bytes, signature_version: str) -> tuple[Any, Any]:
    """The hash states of HMAC's inner and outer pads of ``key`` (RFC 2104), as
    :func:`signature` keys its HMAC (SHA-1 for version 1, SHA-256 for 2)."""
    new = hashlib.sha256 if signature_version == "2" else hashlib.sha1
    block = new().block_size
    if len(key) > block:
        key = new(key).digest()
    key = key.ljust(block, b"\0")
    return new(key.translate(_INNER_PAD)), new(key.translate(_OUTER_PAD))


_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


class Notification:
    """The SNS envelope of one published message, shared by all its non-raw subscriptions.

    Built in two steps to keep the write transaction short: the constructor encodes everything
    known before the commit (the message is JSON-escaped and fed to the signature's HMAC once);
    :meth:`common` adds what only the commit knows (its ``now_ms`` for Timestamp and Signature,
    the FIFO SequenceNumber) and returns the bytes every subscription shares. A subscription's
    body is then ``common + its UnsubscribeURL + tail``: only that URL differs.
    """

    __slots__ = ("_form", "_head", "_inner", "_mid", "tail")

    def __init__(
        self,
        form: NotificationForm,
        *,
        message_id: str,
        message: str,
        subject: str | None,
        attributes: Mapping[str, Mapping[str, Any]] | None,
        attributes_block: str | None = None,
    ) -> None:
        """``attributes_block``: :func:`attributes_json` of ``attributes`` if already made."""
        self._form = form
        self._head = f'{{\n  "Type" : "Notification",\n  "MessageId" : "{message_id}",\n'.encode()
        subject_line = "" if subject is None else f'  "Subject" : {_encode_string(subject)},\n'
        self._mid = (
            f"{form.arn_line}{subject_line}"
            f'  "Message" : {_encode_string(message)},\n  "Timestamp" : "'
        ).encode()
        self._inner: Any = None
        if form.inner is not None:
            # string_to_sign() up to the Timestamp value is hashed now: the commit hashes the rest
            self._inner = form.inner.copy()
            self._inner.update(_signed_head(message, message_id, subject).encode())
        if attributes_block is not None:
            extra = attributes_block
        else:
            extra = attributes_json(attributes) if attributes else ""
        self.tail = f'"{extra}\n}}'.encode()

    def common(self, now_ms: int, sequence_number: str | None = None) -> bytes:
        """Everything up to the UnsubscribeURL's value, for commit ``now_ms``."""
        timestamp = iso_timestamp(now_ms).encode()
        head = self._head
        form = self._form
        if sequence_number is not None:
            head += f'  "SequenceNumber" : "{sequence_number}",\n'.encode()
        if self._inner is None:
            return b"".join((head, self._mid, timestamp, form.after_ts))
        inner = self._inner.copy()  # common() may run again (the op re-run after an abort)
        inner.update(timestamp + form.sign_tail)
        outer = form.outer.copy()
        outer.update(inner.digest())
        mac = binascii.b2a_base64(outer.digest(), newline=False)  # base64.b64encode's C part
        return b"".join((head, self._mid, timestamp, form.after_ts, mac, form.cert_and_url))


def subscription_confirmation(
    *,
    topic_arn: str,
    message_id: str,
    token: str,
    subscribe_url: str,
    now_ms: int,
    region: str,
    signature_version: str,
    key: bytes,
    unsubscribed: str | None = None,
) -> bytes:
    """The SubscriptionConfirmation body POSTed to a new HTTP/S subscription, in SNS's layout;
    with ``unsubscribed`` (a subscription ARN) the UnsubscribeConfirmation SNS POSTs when that
    subscription is deleted (its SubscribeURL restores it).

    Signed as SNS signs it (Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type),
    with the HMAC of :func:`signature`.
    """
    if unsubscribed is None:
        kind = "SubscriptionConfirmation"
        message = (
            f"You have chosen to subscribe to the topic {topic_arn}.\n"
            "To confirm the subscription, visit the SubscribeURL included in this message."
        )
    else:
        kind = "UnsubscribeConfirmation"
        message = (
            f"You have chosen to deactivate subscription {unsubscribed}.\n"
            "To cancel this operation and restore the subscription, visit the SubscribeURL "
            "included in this message."
        )
    timestamp = iso_timestamp(now_ms)
    text = (
        f"Message\n{message}\nMessageId\n{message_id}\nSubscribeURL\n{subscribe_url}\n"
        f"Timestamp\n{timestamp}\nToken\n{token}\nTopicArn\n{topic_arn}\n"
        f"Type\n{kind}\n"
    )
    return (
        f'{{\n  "Type" : "{kind}",\n  "MessageId" : "{message_id}",\n'
        f'  "Token" : "{token}",\n  "TopicArn" : "{topic_arn}",\n'
        f'  "Message" : {_encode_string(message)},\n'
        f'  "SubscribeURL" : {_encode_string(subscribe_url)},\n'
        f'  "Timestamp" : "{timestamp}",\n  "SignatureVersion" : "{signature_version}",\n'
        f'  "Signature" : "{signature(key, text, signature_version)}",\n'
        f'  "SigningCertURL" : "{signing_cert_url(region)}"\n}}'
    ).encode()
