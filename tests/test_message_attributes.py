"""Message attribute validation, size accounting and MD5 digests.

The digests are AWS-recorded values (reference sqs-sns.md §1.5); the hand-built buffers below
spell the algorithm out byte by byte instead of reusing the module's own packing.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from millpond.errors import InvalidMessageContents, InvalidParameterValue, MissingParameter
from millpond.message_attributes import (
    md5_of_body,
    md5_of_message_attributes,
    message_attributes_size,
    select_message_attributes,
    validate_body_text,
    validate_message_attributes,
)

TRACEPARENT = b"traceparent\x1e00-774062d6c37081a5a0b9b5b88e30627c-2d2482211f6489da-01"


def s(value: str, data_type: str = "String") -> dict[str, Any]:
    return {"DataType": data_type, "StringValue": value}


def b(value: bytes, data_type: str = "Binary") -> dict[str, Any]:
    return {"DataType": data_type, "BinaryValue": value}


# The three-attribute message of LocalStack's AWS-recorded filter test.
STAR_WARS = {"Help.Me": s("Me"), "Hello": s("There"), "General": s("Kenobi")}


# -- MD5 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "digest"),
    [
        ("foobar", "3858f62230ac3c915f300c664312c63f"),
        ("test", "098f6bcd4621d373cade4e832627b4f6"),
        ("msg", "6e2baaf3b97dbeef01c0043275f9a0e7"),
        (b"msg", "6e2baaf3b97dbeef01c0043275f9a0e7"),
    ],
)
def test_md5_of_body_matches_aws(body: str | bytes, digest: str) -> None:
    assert md5_of_body(body) == digest


def test_md5_of_body_hashes_utf8() -> None:
    assert md5_of_body("é€") == hashlib.md5(b"\xc3\xa9\xe2\x82\xac").hexdigest()


@pytest.mark.parametrize(
    ("attributes", "digest"),
    [
        ({"MyAttribute": s("foobar")}, "adb59cd4678ea5a855436b949cd07ab6"),
        (STAR_WARS, "4c360f3fdafd970e05fae2f149d997f5"),
        ({"attr1": b(TRACEPARENT)}, "8cbe4db156db8a94db8b801b7addb984"),
    ],
    ids=["single-string", "three-strings", "binary"],
)
def test_md5_of_message_attributes_matches_aws(attributes: dict[str, Any], digest: str) -> None:
    assert md5_of_message_attributes(attributes) == digest
    assert md5_of_message_attributes(validate_message_attributes(attributes)) == digest


@pytest.mark.parametrize("empty", [None, {}])
def test_md5_of_no_attributes_is_none(empty: dict[str, Any] | None) -> None:
    assert md5_of_message_attributes(empty) is None


@pytest.mark.parametrize(
    ("names", "expected_names", "digest"),
    [
        (["All"], ["General", "Hello", "Help.Me"], "4c360f3fdafd970e05fae2f149d997f5"),
        ([".*"], ["General", "Hello", "Help.Me"], "4c360f3fdafd970e05fae2f149d997f5"),
        (["*"], ["General", "Hello", "Help.Me"], "4c360f3fdafd970e05fae2f149d997f5"),
        (["Hello", "General"], ["General", "Hello"], "fca026605781cb4126a1e9044df24232"),
        (["Foo", "Hello"], ["Hello"], "a311262e065454b75da111d535b8dacd"),
        (["Hel.*"], ["Hello", "Help.Me"], "83fee93c1bcd8b9a5a923ffacdc636c7"),
        (["Foo", "Help"], [], None),
        ([], [], None),
        (None, [], None),
    ],
)
def test_receive_filter_and_its_md5_match_aws(
    names: list[str] | None, expected_names: list[str], digest: str | None
) -> None:
    stored = validate_message_attributes(STAR_WARS)
    selected = select_message_attributes(stored, names)
    assert list(selected) == expected_names
    assert md5_of_message_attributes(selected) == digest


def test_md5_covers_full_type_with_custom_label() -> None:
    attributes = {"n": s("1.5", "Number.float"), "img": b(b"\x89PNG", "Binary.png")}
    buffer = (
        b"\x00\x00\x00\x03img"
        + b"\x00\x00\x00\x0aBinary.png"
        + b"\x02"
        + b"\x00\x00\x00\x04\x89PNG"
        + b"\x00\x00\x00\x01n"
        + b"\x00\x00\x00\x0cNumber.float"
        + b"\x01"
        + b"\x00\x00\x00\x031.5"
    )
    digest = md5_of_message_attributes(validate_message_attributes(attributes))
    assert digest == hashlib.md5(buffer).hexdigest()
    assert digest != md5_of_message_attributes({"n": s("1.5", "Number"), "img": attributes["img"]})


def test_md5_sorts_names_by_utf8_bytes_whatever_the_input_order() -> None:
    # "B" (0x42) < "a" (0x61) < "é" (0xC3 0xA9): byte order, not case-folded or locale order.
    buffer = b"".join(
        len(n).to_bytes(4, "big") + n + b"\x00\x00\x00\x06String\x01\x00\x00\x00\x01v"
        for n in (b"B", b"a", "é".encode())
    )
    scrambled = {"é": s("v"), "a": s("v"), "B": s("v")}
    assert md5_of_message_attributes(scrambled) == hashlib.md5(buffer).hexdigest()


# -- validation: accepted input ------------------------------------------------------------------


@pytest.mark.parametrize("empty", [None, {}])
def test_validate_nothing_gives_empty_dict(empty: dict[str, Any] | None) -> None:
    assert validate_message_attributes(empty) == {}


def test_validate_normalizes_sorts_and_copies() -> None:
    raw = {
        "zeta": {"DataType": "String", "StringValue": "z", "StringListValues": [], "Junk": 1},
        "Alpha": {"DataType": "Binary.png", "BinaryValue": bytearray(b"\x00\x01")},
        "mid": {"DataType": "Number", "StringValue": "42", "BinaryListValues": []},
    }
    out = validate_message_attributes(raw)
    assert list(out) == ["Alpha", "mid", "zeta"]
    assert out == {
        "Alpha": {"DataType": "Binary.png", "BinaryValue": b"\x00\x01"},
        "mid": {"DataType": "Number", "StringValue": "42"},
        "zeta": {"DataType": "String", "StringValue": "z"},
    }
    assert type(out["Alpha"]["BinaryValue"]) is bytes
    assert out["zeta"] is not raw["zeta"]
    assert "Junk" in raw["zeta"]  # the input is left alone


def test_validate_accepts_memoryview_binary() -> None:
    out = validate_message_attributes({"m": b(memoryview(b"abc"))})  # type: ignore[arg-type]
    assert out["m"]["BinaryValue"] == b"abc"


@pytest.mark.parametrize(
    "attributes",
    [
        {f"a{i}": s("v") for i in range(10)},
        {"N" * 256: s("v")},
        {"my-attr_1.sub.x": s("v")},
        {"attr.1øßä": s("v")},  # AWS accepts non-ASCII letters (LocalStack's AWS-validated test)
        {"AWSx": s("v"), "Amazonian": s("v"), "xAWS.y": s("v")},
        {"t": s("v", "String." + "x" * 249)},  # 256-character type
        {"f": s("1.5", "Number.float"), "p": b(b"\x89", "Binary.png"), "j": s("{}", "String.json")},
        {"w": s("tab\tnl\ncr\r \ud7ff\ue000\ufffd\U00010000\U0010ffff😀")},
    ],
    ids=[
        "ten",
        "name-256",
        "name-punct",
        "name-unicode",
        "reserved-lookalikes",
        "type-256",
        "custom-labels",
        "edge-chars",
    ],
)
def test_validate_accepts(attributes: dict[str, Any]) -> None:
    assert validate_message_attributes(attributes) == {k: attributes[k] for k in sorted(attributes)}


@pytest.mark.parametrize(
    "number",
    [
        "0",
        "-0",
        "42",
        "+7",
        "-3.25",
        ".5",
        "5.",
        "1e126",
        "-1E+126",
        "9.9999e125",
        "1e-128",
        "-1e-128",
        "0.0000001",
        "1" * 38,
        "0.000" + "9" * 38,
        "1" + "0" * 60,  # 1e60: trailing zeros are not significant digits
        "00000000000000000000000000000000000000000012",
    ],
)
def test_validate_accepts_numbers(number: str) -> None:
    assert validate_message_attributes({"n": s(number, "Number")}) == {"n": s(number, "Number")}


# -- validation: rejected input ------------------------------------------------------------------

_I = InvalidParameterValue
REJECTIONS: list[tuple[str, Any, type[Exception], str]] = [
    (
        "eleven",
        {f"a{i}": s("v") for i in range(11)},
        _I,
        "Number of message attributes [11] exceeds the allowed maximum [10].",
    ),
    ("not-a-map", [("a", s("v"))], _I, "must be a map"),
    ("name-empty", {"": s("v")}, _I, "non-empty"),
    ("name-not-str", {1: s("v")}, _I, "non-empty strings"),
    ("name-257", {"N" * 257: s("v")}, _I, "at most 256 characters"),
    ("name-bang", {"Invalid-!-attr": s("v")}, _I, "can only contain"),
    ("name-section", {"Invalid-§-attr": s("v")}, _I, "can only contain"),
    ("name-paren", {"Invalid-(-attr": s("v")}, _I, "can only contain"),
    ("name-space", {"two words": s("v")}, _I, "can only contain"),
    ("name-slash", {"a/b": s("v")}, _I, "can only contain"),
    ("name-AWS", {"AWS.trace": s("v")}, _I, "beginning with 'AWS.' or 'Amazon.'"),
    ("name-aWs", {"aWs.trace": s("v")}, _I, "beginning with 'AWS.' or 'Amazon.'"),
    ("name-Amazon", {"Amazon.x": s("v")}, _I, "beginning with 'AWS.' or 'Amazon.'"),
    ("name-AMAZON", {"AMAZON.x": s("v")}, _I, "beginning with 'AWS.' or 'Amazon.'"),
    ("name-leading-dot", {".-Invalid-attr": s("v")}, _I, "cannot start or end with '.'"),
    ("name-trailing-dot", {"Invalid.": s("v")}, _I, "cannot start or end with '.'"),
    ("name-double-dot", {"Invalid..Name": s("v")}, _I, "successive '.'"),
    ("attr-not-map", {"a": "v"}, _I, "must be a map"),
    ("type-missing", {"a": {"StringValue": "v"}}, _I, "Missing required parameter DataType"),
    ("type-empty", {"a": s("v", "")}, _I, "Missing required parameter DataType"),
    ("type-not-str", {"a": s("v", 5)}, _I, "not a string"),  # type: ignore[arg-type]
    ("type-unknown", {"a": s("v", "Invalid")}, _I, "must be prefixed with"),
    ("type-lowercase", {"a": s("v", "string")}, _I, "must be prefixed with"),
    ("type-glued", {"a": s("v", "Stringy")}, _I, "must be prefixed with"),
    ("type-empty-label", {"a": s("v", "String.")}, _I, "custom type label"),
    ("type-257", {"a": s("1", "Number." + "L" * 250)}, _I, "at most 256 characters"),
    ("type-control-char", {"a": s("v", "String.x\x00")}, _I, "DataType"),
    ("string-empty", {"X": s("")}, _I, "'X' must contain a non-empty value of type 'String'."),
    ("string-none", {"X": {"DataType": "String"}}, _I, "non-empty value of type 'String'"),
    ("number-empty", {"X": s("", "Number")}, _I, "non-empty value of type 'Number'"),
    ("binary-empty", {"X": b(b"")}, _I, "non-empty value of type 'Binary'"),
    ("binary-empty-array", {"X": b(bytearray())}, _I, "non-empty value of type 'Binary'"),
    ("binary-given-string", {"X": s("v", "Binary")}, _I, "non-empty value of type 'Binary'"),
    ("string-given-binary", {"X": b(b"v", "String")}, _I, "non-empty value of type 'String'"),
    ("number-given-binary", {"X": b(b"1", "Number")}, _I, "non-empty value of type 'Number'"),
    ("both-values", {"X": {**s("v"), "BinaryValue": b"v"}}, _I, "must have a single value"),
    ("binary-as-str", {"X": b("dGVzdA==")}, _I, "must be bytes"),  # type: ignore[arg-type]
    ("binary-as-int", {"X": b(7)}, _I, "must be bytes"),  # type: ignore[arg-type]
    ("string-as-int", {"X": s(5)}, _I, "must be a string"),  # type: ignore[arg-type]
    ("string-list", {"X": {**s("v"), "StringListValues": ["a"]}}, _I, "not implemented"),
    ("binary-list", {"X": {**b(b"v"), "BinaryListValues": [b"a"]}}, _I, "not implemented"),
    ("string-nul", {"X": s("bad\x00")}, _I, "Invalid binary character '#x0'"),
    ("string-backspace", {"X": s(f"Invalid-{chr(8)},{chr(11)}")}, _I, "'#x8'"),
    ("string-fffe", {"X": s("\ufffe")}, _I, "'#xFFFE'"),
    ("string-surrogate", {"X": s("\ud800")}, _I, "'#xD800'"),
]
REJECTIONS += [
    (f"number-{value!r}", {"Age": s(value, "Number")}, _I, "Can't cast the value of")
    # "\u0661" is an Arabic-Indic one: a digit to Python's \d, not a number to SQS.
    for value in [
        "abc",
        "Hello",
        "1,5",
        " 1",
        "1 ",
        "NaN",
        "Infinity",
        "0x10",
        "1e",
        "--1",
        "1_0",
        "\u0661",
        ".",
    ]
]
REJECTIONS += [
    ("number-39-digits", {"n": s("1" * 39, "Number")}, _I, "more than 38 significant digits"),
    ("number-39-decimals", {"n": s("0." + "1" * 39, "Number")}, _I, "significant digits"),
    ("number-too-big", {"n": s("1e127", "Number")}, _I, "out of range"),
    ("number-just-too-big", {"n": s("1.000001e126", "Number")}, _I, "out of range"),
    ("number-too-negative", {"n": s("-1e127", "Number")}, _I, "out of range"),
    ("number-too-small", {"n": s("1e-129", "Number")}, _I, "out of range"),
    ("number-too-small-neg", {"n": s("-0.9e-128", "Number")}, _I, "out of range"),
    ("number-huge-exponent", {"n": s("1e99999999999999999999", "Number")}, _I, "out of range"),
    ("number-tiny-exponent", {"n": s("-1e-99999999999999999999", "Number")}, _I, "out of range"),
]


@pytest.mark.parametrize(
    ("attributes", "error", "phrase"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_validate_rejects(attributes: Any, error: type[Exception], phrase: str) -> None:
    with pytest.raises(error) as caught:
        validate_message_attributes(attributes)
    assert caught.type is error  # not some subclass such as MessageTooLong
    assert phrase in str(caught.value)
    assert caught.value.code == "InvalidParameterValue"  # type: ignore[attr-defined]


# -- body text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "x",
        "tab\tnl\ncr\r",
        "\x7f\x85\x20\ud7ff\ue000\ufffd",
        "\U00010000\U0010ffff",
        'JSON {"é": 1} 😀',
    ],
)
def test_body_text_accepted(body: str) -> None:
    assert validate_body_text(body) is None


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ("\x00", "#x0"),
        (f"Invalid-{chr(8)}-{chr(19)}", "#x8"),
        ("ok\x0b", "#xB"),  # vertical tab and form feed are not XML characters
        ("ok\x0c", "#xC"),
        ("ok\x1f", "#x1F"),
        ("ok\ufffe", "#xFFFE"),
        ("ok\uffff", "#xFFFF"),
        ("ok\udfff", "#xDFFF"),
    ],
)
def test_body_text_rejects_characters_outside_the_sqs_set(body: str, shown: str) -> None:
    with pytest.raises(InvalidMessageContents) as caught:
        validate_body_text(body)
    message = str(caught.value)
    assert message.startswith(f"Invalid binary character '{shown}' was found in the message body")
    assert "#x10000-#x10FFFF" in message
    assert caught.value.code == "InvalidMessageContents"


@pytest.mark.parametrize("body", ["", None])
def test_body_text_missing_is_missing_parameter(body: str | None) -> None:
    with pytest.raises(MissingParameter, match="must contain the parameter MessageBody"):
        validate_body_text(body)  # type: ignore[arg-type]


def test_body_text_must_be_str() -> None:
    with pytest.raises(InvalidParameterValue, match="MessageBody must be a string"):
        validate_body_text(b"bytes")  # type: ignore[arg-type]


# -- select --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ("All", ["General", "Hello", "Help.Me", "Helper"]),  # a bare string is one selector
        (["Help.*"], ["Help.Me", "Helper"]),  # a prefix, not "Help." then more
        (["Help.M.*"], ["Help.Me"]),
        (["He.*", "General"], ["General", "Hello", "Help.Me", "Helper"]),
        (["hello"], []),  # names are case-sensitive
        (["Help.Me"], ["Help.Me"]),
        (["Help.M"], []),  # no wildcard: exact match only
        (["G.*", "Helper"], ["General", "Helper"]),
    ],
)
def test_select_message_attributes(names: Any, expected: list[str]) -> None:
    stored = validate_message_attributes({**STAR_WARS, "Helper": s("x")})
    assert list(select_message_attributes(stored, names)) == expected


def test_select_returns_a_new_dict() -> None:
    stored = validate_message_attributes(STAR_WARS)
    selected = select_message_attributes(stored, ["All"])
    assert selected == stored
    selected.clear()
    assert len(stored) == 3


@pytest.mark.parametrize("stored", [None, {}])
def test_select_from_nothing(stored: dict[str, Any] | None) -> None:
    assert select_message_attributes(stored, ["All"]) == {}


# -- size ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "size"),
    [
        (None, 0),
        ({}, 0),
        ({"MyAttribute": s("foobar")}, 11 + 6 + 6),
        ({"attr1": b(TRACEPARENT)}, 5 + 6 + 67),
        ({"n": s("1.5", "Number.float")}, 1 + 12 + 3),
        ({"é": s("ü€")}, 2 + 6 + 5),  # UTF-8 bytes, not characters
        (STAR_WARS, (7 + 6 + 2) + (5 + 6 + 5) + (7 + 6 + 6)),
    ],
    ids=["none", "empty", "string", "binary", "custom-label", "utf8", "three"],
)
def test_message_attributes_size(attributes: dict[str, Any] | None, size: int) -> None:
    assert message_attributes_size(validate_message_attributes(attributes)) == size
