"""SQS message attributes: validation, size accounting and the MD5 digests SDKs verify.

SendMessage runs :func:`validate_body_text` and :func:`validate_message_attributes` before
anything is stored; ReceiveMessage returns :func:`select_message_attributes` of what was stored
and the :func:`md5_of_message_attributes` of exactly that subset. Attributes travel in the boto3
shape, with binary values already base64-decoded by the wire layer::

    {"Name": {"DataType": "String", "StringValue": "x"}}
    {"Name": {"DataType": "Binary.png", "BinaryValue": b"..."}}

Everything here is pure and runs per message: a message without attributes returns at once.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from millpond.errors import InvalidMessageContents, InvalidParameterValue, MissingParameter

__all__ = [
    "MAX_ATTRIBUTES",
    "first_bad_char",
    "md5_of_body",
    "md5_of_message_attributes",
    "message_attributes_size",
    "select_message_attributes",
    "valid_trace_header",
    "validate_body_text",
    "validate_message_attributes",
]

MAX_ATTRIBUTES = 10
MAX_NAME_CHARS = 256
MAX_TYPE_CHARS = 256
MAX_NUMBER_DIGITS = 38
_NUMBER_MIN = Decimal("1e-128")  # smallest non-zero magnitude
_NUMBER_MAX = Decimal("1e126")
_BASE_TYPES = frozenset(("String", "Number", "Binary"))

_ALLOWED = "#x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]"
# The longest leading run of XML 1.0 Char, SQS's set (lone surrogates fall outside it). A greedy
# run is about twice as fast in CPython's re as searching for the negated class.
_ALLOWED_RUN = re.compile(r"[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
# \w is Unicode here on purpose: AWS accepts "attr.1øßä" (LocalStack's AWS-validated test)
# and rejects "§", i.e. "alphanumeric" means letters and digits of any script.
_NAME_CHARS = re.compile(r"[\w.-]+")
# Plain decimal with optional exponent; [0-9], not \d, which would admit other scripts' digits.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

_u32 = struct.Struct(">I").pack
# CPython's own MD5 hashes a short input in half the time of OpenSSL's, whose set-up per hash
# costs more than the hashing itself; from a few KiB on, OpenSSL's faster hashing wins (~10% at
# 1 MiB). Some builds of Python leave the built-in out.
_builtin_md5: Callable[[bytes], hashlib._Hash] | None
try:
    from _md5 import md5 as _builtin_md5  # type: ignore[import-not-found,no-redef]
except ImportError:  # pragma: no cover
    _builtin_md5 = None
_SHORT_MD5_INPUT = 4096
_TRANSPORT_STRING = b"\x01"  # String and Number
_TRANSPORT_BINARY = b"\x02"


def first_bad_char(text: str) -> str | None:
    """The first character SQS refuses, spelled as AWS does (``#xFFFF``), or ``None``."""
    if text.isascii() and text.isprintable():
        return None  # the common case, decided in C: printable ASCII is all allowed
    run = _ALLOWED_RUN.match(text)  # always matches, the run may be empty
    end = run.end() if run else 0
    return None if end == len(text) else f"#x{ord(text[end]):X}"


def valid_trace_header(value: Any) -> bool:
    """Whether ``value`` can be kept as an AWSTraceHeader: non-empty text in SQS's character
    set (an X-Amzn-Trace-Id header, or the trace header of an embedded publish)."""
    return isinstance(value, str) and value != "" and first_bad_char(value) is None


def validate_body_text(body: str) -> None:
    """Check a MessageBody the way SendMessage does.

    Args:
        body: The message body. Its size limit is the queue's business, not checked here.

    Raises:
        MissingParameter: The body is missing or empty (SQS needs at least one character).
        InvalidParameterValue: The body is not a ``str``.
        InvalidMessageContents: The body holds a character outside the SQS set.
    """
    if not body:
        raise MissingParameter("The request must contain the parameter MessageBody.")
    if not isinstance(body, str):
        raise InvalidParameterValue("The parameter MessageBody must be a string.")
    bad = first_bad_char(body)
    if bad is not None:
        # AWS's own wording, as captured from a production rejection.
        raise InvalidMessageContents(
            f"Invalid binary character '{bad}' was found in the message body, "
            f"the set of allowed characters is {_ALLOWED}."
        )


def validate_message_attributes(attributes: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Validate SendMessage ``MessageAttributes`` and return them normalized.

    Args:
        attributes: ``None`` or ``{name: {"DataType": ..., "StringValue" | "BinaryValue": ...}}``.
            ``BinaryValue`` must be bytes-like; a ``str`` is refused, never guessed at.

    Returns:
        A new dict in name order holding only ``DataType`` and one value per attribute, with
        ``BinaryValue`` as ``bytes``. ``{}`` for ``None`` or an empty map.

    Raises:
        InvalidParameterValue: Any rule of the SQS developer guide is broken; the message
            names the attribute and the rule, in AWS's wording where it is known.
    """
    if not attributes:
        return {}
    if not isinstance(attributes, Mapping):
        raise InvalidParameterValue("MessageAttributes must be a map of name to value.")
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidParameterValue(
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum "
            f"[{MAX_ATTRIBUTES}]."
        )
    checked: dict[str, dict[str, Any]] = {}
    for name, attribute in attributes.items():
        _check_name(name)
        checked[name] = _check_attribute(name, attribute)
    return {name: checked[name] for name in sorted(checked)}


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidParameterValue("Message (user) attribute names must be non-empty strings.")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidParameterValue(
            f"Message (user) attribute names must be at most {MAX_NAME_CHARS} characters long."
        )
    if _NAME_CHARS.fullmatch(name) is None:
        raise InvalidParameterValue(
            "Message (user) attributes name can only contain upper and lower score characters, "
            f"digits, periods, hyphens and underscores. (got {name!r})"
        )
    if name.lower().startswith(("aws.", "amazon.")) or name[0] == "." or name[-1] == ".":
        raise InvalidParameterValue(
            "You can't use message attribute names beginning with 'AWS.' or 'Amazon.'. These "
            "strings are reserved for internal use. Additionally, they cannot start or end "
            f"with '.'. (got {name!r})"
        )
    if ".." in name:
        raise InvalidParameterValue(
            f"Message (user) attribute name '{name}' must not have successive '.' characters."
        )


def _check_attribute(name: str, attribute: object) -> dict[str, Any]:
    if not isinstance(attribute, Mapping):
        raise InvalidParameterValue(
            f"Message (user) attribute '{name}' must be a map with a DataType and a value."
        )
    data_type = attribute.get("DataType")
    if not data_type:
        raise InvalidParameterValue(
            f"Missing required parameter DataType for message (user) attribute '{name}'."
        )
    if not isinstance(data_type, str):
        raise InvalidParameterValue(
            f"The DataType of message (user) attribute '{name}' is not a string."
        )
    base, dot, label = data_type.partition(".")
    if base not in _BASE_TYPES:
        raise InvalidParameterValue(
            "Type for parameter MessageAttributes.Attribute_name.DataType must be prefixed with "
            f'"String", "Binary", or "Number", but was: {data_type}'
        )
    if dot and not label:
        raise InvalidParameterValue(
            f"The custom type label of message (user) attribute '{name}' is empty: {data_type}"
        )
    if len(data_type) > MAX_TYPE_CHARS:
        raise InvalidParameterValue(
            f"Message (user) attribute types must be at most {MAX_TYPE_CHARS} characters long."
        )
    if first_bad_char(label) is not None:
        raise InvalidParameterValue(
            f"The DataType of message (user) attribute '{name}' holds characters outside "
            f"{_ALLOWED}."
        )
    # The model has these members but SQS answers them with "not implemented"; an empty
    # list is what some SDKs send by default and carries nothing, so it passes.
    if attribute.get("StringListValues") or attribute.get("BinaryListValues"):
        raise InvalidParameterValue(
            f"Message (user) attribute '{name}': StringListValues and BinaryListValues are not "
            "implemented by SQS; use StringValue or BinaryValue."
        )
    string_value = attribute.get("StringValue")
    binary_value = attribute.get("BinaryValue")
    if string_value is not None and binary_value is not None:
        raise InvalidParameterValue(f"Message (user) attribute '{name}' must have a single value.")

    if base == "Binary":
        # A StringValue on a Binary type lands here too: the BinaryValue it needs is absent.
        if binary_value is None:
            raise _empty_value(name, base)
        if not isinstance(binary_value, (bytes, bytearray, memoryview)):
            raise InvalidParameterValue(
                f"The BinaryValue of message (user) attribute '{name}' must be bytes (already "
                f"base64-decoded), not {type(binary_value).__name__}."
            )
        binary_value = bytes(binary_value)
        if not binary_value:
            raise _empty_value(name, base)
        return {"DataType": data_type, "BinaryValue": binary_value}

    if string_value is None or string_value == "":
        raise _empty_value(name, base)
    if not isinstance(string_value, str):
        raise InvalidParameterValue(
            f"The StringValue of message (user) attribute '{name}' must be a string, not "
            f"{type(string_value).__name__}."
        )
    if base == "Number":
        _check_number(name, string_value)
    else:
        bad = first_bad_char(string_value)
        if bad is not None:
            raise InvalidParameterValue(
                f"Invalid binary character '{bad}' was found in the value of "
                f"message (user) attribute '{name}', the set of allowed characters is {_ALLOWED}."
            )
    return {"DataType": data_type, "StringValue": string_value}


def _empty_value(name: str, base: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"Message (user) attribute '{name}' must contain a non-empty value of type '{base}'."
    )


def _check_number(name: str, value: str) -> None:
    if _NUMBER.fullmatch(value) is None:
        # AWS's wording, as captured from a live SendMessage.
        raise InvalidParameterValue(
            f"Can't cast the value of message (user) attribute '{name}' to a number."
        )
    try:
        number = Decimal(value)  # exact: the regex admits only finite decimals
    except InvalidOperation:
        # An exponent beyond what Decimal can hold (~10^18): far outside SQS's range.
        raise _out_of_range(name, value) from None
    # Decimal has dropped leading zeros; trailing ones carry no precision either.
    significant = len(bytes(number.as_tuple().digits).rstrip(b"\x00"))
    if significant > MAX_NUMBER_DIGITS:
        raise InvalidParameterValue(
            f"Value {value} of message (user) attribute '{name}' has more than "
            f"{MAX_NUMBER_DIGITS} significant digits."
        )
    # Decimal comparisons are exact; copy_abs (unlike abs) does not round to the context.
    if number and not _NUMBER_MIN <= number.copy_abs() <= _NUMBER_MAX:
        raise _out_of_range(name, value)


def _out_of_range(name: str, value: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"Value {value} of message (user) attribute '{name}' is out of range: a Number's "
        "magnitude must be between 10^-128 and 10^+126."
    )


def message_attributes_size(attributes: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Bytes the attributes add toward the queue's MaximumMessageSize.

    Args:
        attributes: Output of :func:`validate_message_attributes` (or ``None``).

    Returns:
        The sum over attributes of the UTF-8 name, the UTF-8 DataType and the value (UTF-8
        ``StringValue`` or raw ``BinaryValue``) lengths; 0 when there are none.
    """
    if not attributes:
        return 0
    size = 0
    for name, attribute in attributes.items():
        value = attribute.get("StringValue")
        size += len(name.encode()) + len(attribute["DataType"].encode())
        size += len(attribute["BinaryValue"]) if value is None else len(value.encode())
    return size


def md5_of_body(body: str | bytes) -> str:
    """Hex MD5 of the body's UTF-8 bytes: MD5OfMessageBody / MD5OfBody."""
    data = body.encode() if isinstance(body, str) else body
    if len(data) <= _SHORT_MD5_INPUT and _builtin_md5 is not None:
        return _builtin_md5(data).hexdigest()
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_of_message_attributes(attributes: Mapping[str, Mapping[str, Any]] | None) -> str | None:
    """MD5OfMessageAttributes (and MD5OfMessageSystemAttributes) by the AWS algorithm.

    For each attribute in name order: u32be length + UTF-8 name, u32be length + UTF-8 full
    DataType (custom label included), transport byte 1 (String/Number) or 2 (Binary), u32be
    length + value bytes; then MD5 over the concatenation.

    Args:
        attributes: Validated attributes; on receive, only the subset being returned.

    Returns:
        The hex digest, or ``None`` when there are no attributes (SQS then omits the field).
    """
    if not attributes:
        return None
    parts: list[bytes] = []
    # Code-point order of str equals byte order of UTF-8, which is what AWS sorts by.
    for name in sorted(attributes):
        attribute = attributes[name]
        data_type = attribute["DataType"]
        name_bytes = name.encode()
        type_bytes = data_type.encode()
        if data_type.startswith("Binary"):
            transport, value = _TRANSPORT_BINARY, bytes(attribute["BinaryValue"])
        else:
            transport, value = _TRANSPORT_STRING, attribute["StringValue"].encode()
        parts += (
            _u32(len(name_bytes)),
            name_bytes,
            _u32(len(type_bytes)),
            type_bytes,
            transport,
            _u32(len(value)),
            value,
        )
    # A checksum, not security: usedforsecurity=False keeps it working on FIPS builds.
    return hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()


def select_message_attributes(
    attributes: Mapping[str, Any] | None, names: Iterable[str] | None
) -> dict[str, Any]:
    """Apply ReceiveMessage's MessageAttributeNames filter.

    Args:
        attributes: The stored (validated) attributes.
        names: ``"All"`` (in any case: SQS takes kombu's ``"ALL"``), ``".*"`` or ``"*"``
            select everything; ``"prefix.*"`` selects every
            name that starts with ``prefix`` (AWS returns both ``Hello`` and ``Help.Me`` for
            ``"Hel.*"``); anything else is an exact, case-sensitive name. ``None`` or empty
            selects nothing.

    Returns:
        A new dict, in the stored order, of the selected attributes (values shared, not
        copied); ``{}`` when nothing matched.
    """
    if not attributes or not names:
        return {}
    if isinstance(names, str):
        names = (names,)
    exact: set[str] = set()
    prefixes: list[str] = []
    for selector in names:
        if selector in (".*", "*") or selector.lower() == "all":  # kombu sends "ALL"
            return dict(attributes)
        if selector.endswith(".*"):
            prefixes.append(selector[:-2])
        else:
            exact.add(selector)
    prefix_tuple = tuple(prefixes)
    return {
        name: attribute
        for name, attribute in attributes.items()
        if name in exact or name.startswith(prefix_tuple)
    }
