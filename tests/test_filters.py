"""SNS filter policies: the reference's test vectors (table 3.5), validation texts, limits, edges.

Vector numbers refer to /work/shared/reference/sqs-sns.md section 3.5; "AWS" marks behaviour
recorded against Amazon SNS, the rest follows Event Ruler, which SNS runs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from millpond.errors import InvalidFilterPolicy, InvalidInputError
from millpond.filters import FilterPolicy, compile_policy

A = "MessageAttributes"
B = "MessageBody"


def s(value: str, data_type: str = "String") -> dict[str, Any]:
    return {"DataType": data_type, "StringValue": value}


def n(value: str) -> dict[str, Any]:
    return {"DataType": "Number", "StringValue": value}


def arr(values: list[Any]) -> dict[str, Any]:
    return {"DataType": "String.Array", "StringValue": json.dumps(values)}


def binary(value: bytes) -> dict[str, Any]:
    return {"DataType": "Binary", "BinaryValue": value}


def matches(policy: Any, scope: str, message: Any) -> bool:
    """Compile and match; attribute messages are dicts, body messages JSON-able or text."""
    compiled = compile_policy(policy, scope=scope)
    if scope == A:
        return compiled.matches(message, None)
    body = message if isinstance(message, (str, bytes)) else json.dumps(message)
    return compiled.matches(None, body)


INTERESTS = {"customer_interests": ["rugby", "tennis"]}
PREFIX_BAS = {"customer_interests": [{"prefix": "bas"}]}
BUT_SPORTS = {"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}
BUT_PRICES = {"price": [{"anything-but": [100, 500]}]}
BUT_ORDER = {"event": [{"anything-but": {"prefix": "order-"}}]}
PRICE_EQ = {"price_usd": [{"numeric": ["=", 301.5]}]}
CIDR_24 = {"source_ip": [{"cidr": "10.0.0.0/24"}]}
P26 = {
    "detail": {
        "$or": [
            {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]},
            {"sourceIPAddressV6": [{"cidr": "2001:db8:1234:1a00::/64"}]},
        ]
    }
}
P27 = {
    "$or": [
        {"metricName": ["CPUUtilization", "ReadLatency"]},
        {"namespace": ["AWS/EC2", "AWS/ES"]},
    ],
    "detail": {
        "scope": ["Service"],
        "$or": [{"source": ["aws.cloudwatch"]}, {"type": ["CloudWatch Alarm State Change"]}],
    },
}
P30 = {
    "Records": {
        "s3": {"object": {"key": [{"prefix": "auto-"}]}},
        "eventName": [{"prefix": "ObjectCreated:"}],
    }
}


def s3_event(event_name: str, key: str) -> dict[str, Any]:
    return {"Records": [{"eventName": event_name, "s3": {"object": {"key": key, "size": 17}}}]}


S3_TWO_RECORDS = {
    "Records": [
        {"eventName": "ObjectCreated:Put", "s3": {"object": [[{"key": "auto-insurance.xml"}]]}},
        {"eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": "home-insurance.xml"}}},
    ]
}
CW = {"scope": "Service", "source": "aws.cloudwatch"}
ALARM = {"scope": "Service", "type": "CloudWatch Alarm State Change"}

VECTORS = [
    # (id, policy, scope, message, expected)
    ("v1", INTERESTS, A, {"customer_interests": s("rugby")}, True),
    ("v2", INTERESTS, A, {"customer_interests": s("baseball")}, False),
    ("v3", INTERESTS, A, {"customer_interests": arr(["rugby", "tennis"])}, True),
    ("v4", INTERESTS, B, {"customer_interests": "rugby"}, True),
    ("v5-aws", {"store": ["value1"]}, A, {"store": arr(["value1", "value2"])}, True),
    ("v6-aws", {"store": ["value1"]}, A, {"store": arr(["value2", "value3"])}, False),
    ("v7-a-baseball", PREFIX_BAS, A, {"customer_interests": s("baseball")}, True),
    ("v7-a-basketball", PREFIX_BAS, A, {"customer_interests": s("basketball")}, True),
    ("v7-a-rugby", PREFIX_BAS, A, {"customer_interests": s("rugby")}, False),
    ("v7-b-baseball", PREFIX_BAS, B, {"customer_interests": "baseball"}, True),
    ("v7-b-basketball", PREFIX_BAS, B, {"customer_interests": "basketball"}, True),
    ("v7-b-rugby", PREFIX_BAS, B, {"customer_interests": "rugby"}, False),
    ("v8-baseball", {"k": [{"suffix": "ball"}]}, B, {"k": "baseball"}, True),
    ("v8-rugby", {"k": [{"suffix": "ball"}]}, B, {"k": "rugby"}, False),
    ("v8-attr", {"k": [{"suffix": "ball"}]}, A, {"k": s("football")}, True),
    ("v9-rugby", {"k": [{"equals-ignore-case": "RUGBY"}]}, A, {"k": s("rugby")}, True),
    ("v9-rugby7", {"k": [{"equals-ignore-case": "RUGBY"}]}, A, {"k": s("rugby7")}, False),
    ("v10", BUT_SPORTS, A, {"customer_interests": s("baseball")}, True),
    ("v11", BUT_SPORTS, A, {"customer_interests": s("rugby")}, False),
    ("v12", BUT_SPORTS, A, {"customer_interests": arr(["rugby", "baseball"])}, True),
    ("v13", BUT_SPORTS, B, {"customer_interests": ["rugby"]}, False),
    ("v14-101", BUT_PRICES, A, {"price": n("101")}, True),
    ("v14-100.1", BUT_PRICES, A, {"price": n("100.1")}, True),
    ("v14-100", BUT_PRICES, A, {"price": n("100")}, False),
    ("v15", BUT_PRICES, B, {"price": [100, 50]}, True),
    ("v16-a-data-entry", BUT_ORDER, A, {"event": s("data-entry")}, True),
    ("v16-a-order_number", BUT_ORDER, A, {"event": s("order_number")}, True),
    ("v16-a-order-cancelled", BUT_ORDER, A, {"event": s("order-cancelled")}, False),
    ("v16-b-data-entry", BUT_ORDER, B, {"event": "data-entry"}, True),
    ("v16-b-order-cancelled", BUT_ORDER, B, {"event": "order-cancelled"}, False),
    ("v17-aws", {"attr1": [None, {"anything-but": "whatever"}]}, A, {}, False),
    ("v18-a-301.5", PRICE_EQ, A, {"price_usd": n("301.5")}, True),
    ("v18-a-3.015e2", PRICE_EQ, A, {"price_usd": n("3.015e2")}, True),
    ("v18-b-301.5", PRICE_EQ, B, '{"price_usd": 301.5}', True),
    ("v18-b-3.015e2", PRICE_EQ, B, '{"price_usd": 3.015e2}', True),
    ("v19-aws-99", {"attr1": [{"numeric": [">", 0, "<=", 100]}]}, A, {"attr1": n("99")}, True),
    ("v19-aws-111", {"attr1": [{"numeric": [">", 0, "<=", 100]}]}, A, {"attr1": n("111")}, False),
    ("v20-150", {"p": [{"numeric": [">", 0, "<=", 150]}]}, B, {"p": 150}, True),
    ("v20-0", {"p": [{"numeric": [">", 0, "<=", 150]}]}, B, {"p": 0}, False),
    ("v20-151", {"p": [{"numeric": [">", 0, "<=", 150]}]}, B, {"p": 151}, False),
    ("v21-neg", {"p": [{"numeric": ["<", 0]}]}, B, {"p": -1}, True),
    ("v21-zero", {"p": [{"numeric": ["<", 0]}]}, B, {"p": 0}, False),
    ("v22-string", {"p": [{"numeric": [">", 1]}]}, B, {"p": "5"}, False),
    ("v23-aws-has", {"store": [{"exists": True}]}, A, {"store": n("99"), "def": n("99")}, True),
    ("v23-aws-lacks", {"store": [{"exists": True}]}, A, {"attr1": n("111")}, False),
    ("v24-aws-lacks", {"store": [{"exists": False}]}, A, {"def": n("99")}, True),
    ("v24-aws-has", {"store": [{"exists": False}]}, A, {"store": n("99"), "def": n("99")}, False),
    ("v25-a-first", CIDR_24, A, {"source_ip": s("10.0.0.0")}, True),
    ("v25-a-last", CIDR_24, A, {"source_ip": s("10.0.0.255")}, True),
    ("v25-a-outside", CIDR_24, A, {"source_ip": s("10.1.1.0")}, False),
    ("v25-b-last", CIDR_24, B, {"source_ip": "10.0.0.255"}, True),
    ("v25-b-outside", CIDR_24, B, {"source_ip": "10.1.1.0"}, False),
    ("v26-aws-v4", P26, B, {"detail": {"sourceIPAddress": "10.0.0.255"}}, True),
    ("v26-aws-v4-invalid", P26, B, {"detail": {"sourceIPAddress": "10.0.0.256"}}, False),
    (
        "v26-aws-v6",
        P26,
        B,
        {"detail": {"sourceIPAddressV6": "2001:0db8:1234:1a00:0000:0000:0000:0000"}},
        True,
    ),
    (
        "v26-aws-v6-outside",
        P26,
        B,
        {"detail": {"sourceIPAddressV6": "2001:0db8:123f:1a01::"}},
        False,
    ),
    ("v27-aws-metric-source", P27, B, {"metricName": "CPUUtilization", "detail": CW}, True),
    ("v27-aws-namespace-source", P27, B, {"namespace": "AWS/ES", "detail": CW}, True),
    ("v27-aws-metric-type", P27, B, {"metricName": "CPUUtilization", "detail": ALARM}, True),
    ("v27-aws-readlatency", P27, B, {"metricName": "ReadLatency", "detail": CW}, True),
    ("v27-aws-ec2", P27, B, {"namespace": "AWS/EC2", "detail": CW}, True),
    (
        "v28-aws-wrong-scope",
        P27,
        B,
        {
            "metricName": "CPUUtilization",
            "detail": {"scope": "aws.cloudwatch", "type": "CloudWatch Alarm State Change"},
        },
        False,
    ),
    (
        "v28-aws-no-source-or-type",
        P27,
        B,
        {"metricName": "CPUUtilization", "detail": {"scope": "Service"}},
        False,
    ),
    (
        "v28-aws-scope-not-nested",
        P27,
        B,
        {"metricName": "CPUUtilization", "scope": "Service"},
        False,
    ),
    ("v28-aws-metric-value-swapped", P27, B, {"metricName": "AWS/EC2", "detail": ALARM}, False),
    ("v28-aws-namespace-swapped", P27, B, {"namespace": "CPUUtilization", "detail": ALARM}, False),
    (
        "v28-aws-wrong-type",
        P27,
        B,
        {"metricName": "CPUUtilization", "detail": {"scope": "Service", "type": "CPUUtilization"}},
        False,
    ),
    (
        "v29-aws-both",
        {"headers": {"route-to": ["queue1"]}},
        B,
        {"headers": {"route-to": ["queue1", "queue2"]}},
        True,
    ),
    (
        "v29-aws-one",
        {"headers": {"route-to": ["queue1"]}},
        B,
        {"headers": {"route-to": ["queue1"]}},
        True,
    ),
    (
        "v29-aws-other",
        {"headers": {"route-to": ["queue1"]}},
        B,
        {"headers": {"route-to": ["queue3"]}},
        False,
    ),
    ("v30-aws-created-auto", P30, B, s3_event("ObjectCreated:Put", "auto-insurance.xml"), True),
    ("v30-aws-removed", P30, B, s3_event("ObjectRemoved:Delete", "auto-insurance.xml"), False),
    ("v30-aws-home", P30, B, s3_event("ObjectCreated:Put", "home-insurance.xml"), False),
    ("v30-aws-two-records", P30, B, S3_TWO_RECORDS, True),
    (
        "v31-aws-nested",
        {"object.nested": ["string.value"]},
        B,
        {"object": {"nested": "string.value"}},
        True,
    ),
    (
        "v31-aws-dotted",
        {"object.nested": ["string.value"]},
        B,
        {"object.nested": "string.value"},
        True,
    ),
    (
        "v31-aws-other",
        {"object.nested": ["string.value"]},
        B,
        {"object": {"nested": "test-auto"}},
        False,
    ),
]
DEEP = {"object.nested.test": ["string.value"]}
VECTORS += [
    ("v32-aws-nested", DEEP, B, {"object": {"nested": {"test": "string.value"}}}, True),
    ("v32-aws-dotted", DEEP, B, {"object.nested.test": "string.value"}, True),
    ("v32-aws-dotted-head", DEEP, B, {"object.nested": {"test": "string.value"}}, True),
    ("v32-aws-dotted-tail", DEEP, B, {"object": {"nested.test": "string.value"}}, True),
    ("v32-aws-other", DEEP, B, {"object": {"nested": {"test": "string.notvalue"}}}, False),
    (
        "v33-aws-empty-string",
        {"detail": {"eventVersion": [""]}},
        B,
        {"detail": {"eventVersion": "", "resources": []}},
        True,
    ),
    ("v34-not-json", {"k": [{"exists": False}]}, B, "not json", False),
    ("v34-array", {"k": [{"exists": False}]}, B, "[1, 2]", False),
    ("v34-json-string", {"k": [{"exists": False}]}, B, '"Regular string message"', False),
    ("v37-binary-ignored", {"bin": ["x"]}, A, {"bin": binary(b"x")}, False),
    ("v37-binary-is-absent", {"bin": [{"exists": False}]}, A, {"bin": binary(b"x")}, True),
    # 39 and 42 are Event Ruler vectors; these are the answers millpond's SNS rules give.
    (
        "v39-non-leaf-is-absent",
        {"detail": {"c-count": [{"exists": False}]}},
        B,
        {"detail": {"c-count": {"c1": 100}}},
        True,
    ),
    (
        "v42-arrays-crushed",
        {"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}},
        B,
        {
            "employees": [
                {"firstName": "John", "lastName": "Doe"},
                {"firstName": "Anna", "lastName": "Smith"},
                {"firstName": "Peter", "lastName": "Jones"},
            ]
        },
        True,
    ),
    # From LocalStack's AWS-validated body test: nested keys, exists:false beside values.
    (
        "aws-body-hardcoded",
        {
            "object": {
                "key": [{"prefix": "auto-"}, "hardcodedvalue"],
                "nested_key": [{"exists": False}],
            },
            "test": [{"exists": False}],
        },
        B,
        {"object": {"key": "hardcodedvalue"}},
        True,
    ),
]
BODY_AWS = VECTORS[-1][1]
VECTORS += [
    ("aws-body-wrong-prefix", BODY_AWS, B, {"object": {"key": "test-auto"}}, False),
    ("aws-body-test-exists", BODY_AWS, B, {"object": {"key": "auto-test"}, "test": "x"}, False),
    (
        "aws-body-nested-key-exists",
        BODY_AWS,
        B,
        {"object": {"key": "auto-test", "nested_key": "x"}},
        False,
    ),
    ("aws-body-key-missing", BODY_AWS, B, {"object": {"test": "auto-test"}}, False),
]


@pytest.mark.parametrize(
    ("policy", "scope", "message", "expected"),
    [v[1:] for v in VECTORS],
    ids=[v[0] for v in VECTORS],
)
def test_reference_vectors(policy: Any, scope: str, message: Any, expected: bool) -> None:
    assert matches(policy, scope, message) is expected


# -- typing: strings, numbers, booleans and null never stand in for each other ----------------

TYPING = [
    ("number-policy-string-attr", {"k": [100]}, {"k": s("100")}, False),
    ("number-policy-number-attr", {"k": [100]}, {"k": n("100")}, True),
    ("number-policy-exponent", {"k": [100]}, {"k": n("1e2")}, True),
    ("number-policy-float-int", {"k": [1.5]}, {"k": n("1.50")}, True),
    ("string-policy-number-attr", {"k": ["100"]}, {"k": n("100")}, False),
    ("numeric-range-string-attr", {"k": [{"numeric": [">", 1]}]}, {"k": s("50")}, False),
    ("prefix-number-attr", {"k": [{"prefix": "1"}]}, {"k": n("123")}, False),
    ("suffix-number-attr", {"k": [{"suffix": "3"}]}, {"k": n("123")}, False),
    ("cidr-number-attr", {"k": [{"cidr": "10.0.0.0/8"}]}, {"k": n("10")}, False),
    ("but-numbers-string-attr", {"k": [{"anything-but": [100]}]}, {"k": s("100")}, True),
    ("but-strings-number-attr", {"k": [{"anything-but": ["100"]}]}, {"k": n("100")}, True),
    ("but-prefix-number-attr", {"k": [{"anything-but": {"prefix": "1"}}]}, {"k": n("123")}, True),
    ("labelled-string", {"k": ["x"]}, {"k": s("x", "String.custom")}, True),
    ("labelled-number", {"k": [{"numeric": ["<", 0]}]}, {"k": s("-2.5", "Number.float")}, True),
    ("array-numbers-range", {"k": [{"numeric": [">", 10]}]}, {"k": arr([1, 20])}, True),
    ("array-numbers-below", {"k": [{"numeric": [">", 10]}]}, {"k": arr([1, 2])}, False),
    ("array-string-number", {"k": [{"numeric": [">", 10]}]}, {"k": arr(["20"])}, False),
    ("array-exact-number", {"k": [20]}, {"k": arr(["a", 20.0])}, True),
    ("array-true", {"k": [True]}, {"k": arr([False, True])}, True),
    ("array-true-as-string", {"k": ["true"]}, {"k": arr([True])}, False),
    ("array-string-true", {"k": [True]}, {"k": arr(["true"])}, False),
    ("array-null", {"k": [None]}, {"k": arr([None])}, True),
    ("array-null-not-false", {"k": [None]}, {"k": arr([False, 0, ""])}, False),
    ("array-nested-arrays", {"k": ["deep"]}, {"k": arr([["a", ["deep"]]])}, True),
    ("array-objects-ignored", {"k": ["v"]}, {"k": arr([{"v": "v"}])}, False),
    ("array-anything-but-null", {"k": [{"anything-but": "x"}]}, {"k": arr([None])}, True),
    ("array-empty", {"k": [{"anything-but": "x"}]}, {"k": arr([])}, False),
    (
        "array-invalid-json",
        {"k": ["a"]},
        {"k": {"DataType": "String.Array", "StringValue": "[a"}},
        False,
    ),
    (
        "array-invalid-exists",
        {"k": [{"exists": True}]},
        {"k": {"DataType": "String.Array", "StringValue": "[a"}},
        True,
    ),
    ("number-unparsable", {"k": [{"numeric": [">", 0]}]}, {"k": n("abc")}, False),
    ("number-nan", {"k": [{"numeric": [">", 0]}]}, {"k": n("nan")}, False),
    ("number-5-decimals", {"k": [{"numeric": ["=", 1]}]}, {"k": n("1.000001")}, True),
    ("number-5th-decimal", {"k": [{"numeric": ["=", 1]}]}, {"k": n("1.00001")}, False),
    ("number-beyond-limit", {"k": [{"numeric": [">", 0]}]}, {"k": n("2e9")}, False),
    ("number-at-limit", {"k": [{"numeric": [">", 0]}]}, {"k": n("1e9")}, True),
    ("big-exact-number", {"k": [123456789012]}, {"k": n("123456789012")}, True),
    ("string-missing-value", {"k": ["x"]}, {"k": {"DataType": "String"}}, False),
    ("string-missing-exists", {"k": [{"exists": True}]}, {"k": {"DataType": "String"}}, True),
]


@pytest.mark.parametrize(
    ("policy", "attributes", "expected"), [t[1:] for t in TYPING], ids=[t[0] for t in TYPING]
)
def test_attribute_typing(policy: Any, attributes: Any, expected: bool) -> None:
    assert matches(policy, A, attributes) is expected


BODY_TYPING = [
    ("true", {"k": [True]}, {"k": True}, True),
    ("true-vs-1", {"k": [True]}, {"k": 1}, False),
    ("one-vs-true", {"k": [1]}, {"k": True}, False),
    ("null", {"k": [None]}, {"k": None}, True),
    ("null-missing", {"k": [None]}, {}, False),
    ("null-exists", {"k": [{"exists": True}]}, {"k": None}, True),
    ("string-number", {"k": ["5"]}, {"k": 5}, False),
    ("number-string", {"k": [5]}, {"k": "5"}, False),
    ("int-float", {"k": [5]}, {"k": 5.0}, True),
    ("dict-exists", {"k": [{"exists": True}]}, {"k": {"a": 1}}, False),
    ("empty-array-exists", {"k": [{"exists": True}]}, {"k": []}, False),
    ("empty-array-absent", {"k": [{"exists": False}]}, {"k": []}, True),
    ("array-of-dicts-absent", {"k": [{"exists": False}]}, {"k": [{"a": 1}]}, True),
    ("infinity-token", {"k": [{"exists": False}]}, '{"k": Infinity}', False),
    ("huge-number-but", {"k": [{"anything-but": [1]}]}, '{"k": 1e400}', True),
    ("huge-number-range", {"k": [{"numeric": [">", 0]}]}, '{"k": 1e400}', False),
    ("empty-string", {"k": [""]}, {"k": ""}, True),
    ("empty-prefix", {"k": [{"prefix": ""}]}, {"k": "anything"}, True),
    ("empty-prefix-number", {"k": [{"prefix": ""}]}, {"k": 7}, False),
    ("unicode", {"k": ["café"]}, {"k": "café"}, True),
    ("unicode-ignore-case", {"k": [{"equals-ignore-case": "CAFÉ"}]}, {"k": "café"}, True),
    ("unicode-prefix", {"k": [{"prefix": "日本"}]}, {"k": "日本語"}, True),
    ("unicode-bytes", {"k": ["ü"]}, '{"k": "ü"}'.encode(), True),
    ("invalid-utf8", {"k": [{"exists": False}]}, b'{"k": "\xff"}', False),
    ("deep-array", {"k": [1]}, {"k": [[[[[[1]]]]]]}, True),
    ("dict-path-through-array", {"a": {"b": [1]}}, {"a": [{"b": 2}, [{"b": 1}]]}, True),
    ("scalar-where-object", {"a": {"b": [1]}}, {"a": 1}, False),
]


@pytest.mark.parametrize(
    ("policy", "body", "expected"),
    [t[1:] for t in BODY_TYPING],
    ids=[t[0] for t in BODY_TYPING],
)
def test_body_typing(policy: Any, body: Any, expected: bool) -> None:
    assert matches(policy, B, body) is expected


# -- exists, anything-but and $or combinations ------------------------------------------------

OR_150 = {
    "source": ["aws.cloudwatch", "aws.events", "aws.test"],
    "$or": [
        {"metricName": ["CPUUtilization", "ReadLatency", "T1", "T2", "T3", "T4"]},
        {
            "metricType": ["MetricType", "TestType", "TestType2", "TestType3"],
            "$or": [{"metricId": [1234, 4321, 5678, 9012]}, {"spaceId": [1, 2, 3, 4, 5, 6, 7]}],
        },
    ],
}
NOT_X_OR_MISSING = {"k": [{"anything-but": "x"}, {"exists": False}]}

COMBINATIONS = [
    (
        "nested-or-space",
        OR_150,
        {"source": s("aws.events"), "metricType": s("TestType"), "spaceId": n("3")},
        True,
    ),
    ("nested-or-metric", OR_150, {"source": s("aws.test"), "metricName": s("T4")}, True),
    (
        "nested-or-id-string",
        OR_150,
        {"source": s("aws.test"), "metricType": s("TestType"), "metricId": s("1234")},
        False,
    ),
    ("nested-or-no-leaf", OR_150, {"source": s("aws.events"), "metricType": s("TestType")}, False),
    ("nested-or-no-source", OR_150, {"metricName": s("T1")}, False),
    # SNS: "exists": false needs some attribute; "An empty set of attributes results in the
    # filter not matching" (attribute-key-matching.html); any other attribute is enough
    ("but-or-missing-absent", NOT_X_OR_MISSING, {"other": s("y")}, True),
    ("but-or-missing-no-attributes", NOT_X_OR_MISSING, {}, False),
    ("but-or-missing-other", NOT_X_OR_MISSING, {"k": s("y")}, True),
    ("but-or-missing-x", NOT_X_OR_MISSING, {"k": s("x")}, False),
    ("exists-both", {"k": [{"exists": True}, {"exists": False}]}, {"other": s("y")}, True),
    ("exists-both-no-attributes", {"k": [{"exists": True}, {"exists": False}]}, {}, False),
    ("null-only-absent", {"k": [None]}, {}, False),
    ("two-keys-and", {"a": ["1"], "b": ["2"]}, {"a": s("1"), "b": s("3")}, False),
    ("two-keys-both", {"a": ["1"], "b": ["2"]}, {"a": s("1"), "b": s("2")}, True),
    (
        "many-anything-but",
        {"k": [{"anything-but": "a"}, {"anything-but": "b"}]},
        {"k": s("a")},
        True,
    ),
    (
        "mixed-operators",
        {"k": ["x", {"prefix": "p"}, {"suffix": "s"}, {"numeric": ["<", 0]}]},
        {"k": n("-1")},
        True,
    ),
    (
        "mixed-operators-miss",
        {"k": ["x", {"prefix": "p"}, {"suffix": "s"}, {"numeric": ["<", 0]}]},
        {"k": s("q")},
        False,
    ),
    ("cidr-v6-attr", {"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": s("2001:db8::1")}, True),
    ("cidr-v4-vs-v6-net", {"ip": [{"cidr": "::/0"}]}, {"ip": s("10.0.0.1")}, False),
    ("cidr-v6-vs-v6-any", {"ip": [{"cidr": "::/0"}]}, {"ip": s("fe80::1")}, True),
    ("cidr-not-ip", {"ip": [{"cidr": "10.0.0.0/8"}]}, {"ip": s("hello")}, False),
    (
        "cidr-two-nets",
        {"ip": [{"cidr": "10.0.0.0/8"}, {"cidr": "192.168.0.0/16"}]},
        {"ip": s("192.168.3.4")},
        True,
    ),
    ("range-and-exact", {"k": [{"numeric": [">=", 10, "<", 20]}, 50]}, {"k": n("50")}, True),
    ("range-top-open", {"k": [{"numeric": [">=", 10, "<", 20]}, 50]}, {"k": n("20")}, False),
    ("range-bottom-closed", {"k": [{"numeric": [">=", 10, "<", 20]}, 50]}, {"k": n("10")}, True),
    ("range-le", {"k": [{"numeric": ["<=", -5.5]}]}, {"k": n("-5.5")}, True),
    ("dotted-attribute-name", {"a.b": ["x"]}, {"a.b": s("x")}, True),
]


@pytest.mark.parametrize(
    ("policy", "attributes", "expected"),
    [c[1:] for c in COMBINATIONS],
    ids=[c[0] for c in COMBINATIONS],
)
def test_attribute_combinations(policy: Any, attributes: Any, expected: bool) -> None:
    assert matches(policy, A, attributes) is expected


def test_nested_or_under_body_key() -> None:
    policy = compile_policy(
        {"a": {"$or": [{"b": ["1"]}, {"c": {"$or": [{"d": [2]}, {"e.f": [3]}]}}]}}, scope=B
    )
    assert policy.matches(None, json.dumps({"a": {"b": "1"}}))
    assert policy.matches(None, json.dumps({"a": {"c": {"d": 2}}}))
    assert policy.matches(None, json.dumps({"a": [{"c": [{"e": {"f": 3}}]}]}))
    assert not policy.matches(None, json.dumps({"a": {"c": {"d": 3}}}))
    assert not policy.matches(None, json.dumps({"b": "1"}))


MIXED_BUT = (
    "Inside anything but list, either all values are number or string, mixed type is not supported"
)

# -- validation: SNS's reason texts -----------------------------------------------------------

INVALID = [
    (
        "v35-nested-attributes",
        {"a": {"b": ["x"]}},
        A,
        "Filter policy scope MessageAttributes does not support nested filter policy",
    ),
    (
        "v35-nested-in-or",
        {"$or": [{"a": ["x"]}, {"b": {"c": ["y"]}}]},
        A,
        "Filter policy scope MessageAttributes does not support nested filter policy",
    ),
    (
        "v36-but-suffix-attr",
        {"k": [{"anything-but": {"suffix": "test"}}]},
        A,
        "Unsupported anything-but pattern: suffix",
    ),
    (
        "v36-but-suffix-body",
        {"k": [{"anything-but": {"suffix": "test"}}]},
        B,
        "Unsupported anything-but pattern: suffix",
    ),
    (
        "v38-wildcard",
        {"source": [{"wildcard": "Simple*Service"}]},
        B,
        "Unrecognized match type wildcard",
    ),
    (
        "v40-but-suffix",
        {"detail": {"instance-id": [{"anything-but": {"suffix": "1234"}}]}},
        B,
        "Unsupported anything-but pattern: suffix",
    ),
    (
        "v41-prefix-ignore-case",
        {"source": [{"prefix": {"equals-ignore-case": "EC2"}}]},
        B,
        "prefix match pattern must be a string",
    ),
    (
        "aws-list-in-list",
        {"key": [["value"]]},
        A,
        "Match value must be String, number, true, false, or null",
    ),
    (
        "aws-wrong-operator",
        {"key": [{"wrong-operator": True}]},
        A,
        "Unrecognized match type wrong-operator",
    ),
    (
        "aws-two-operators",
        {"key": [{"suffix": "value", "prefix": "value2"}]},
        A,
        "Only one key allowed in match expression",
    ),
    ("aws-suffix-number", {"key": [{"suffix": 100}]}, A, "suffix match pattern must be a string"),
    ("aws-suffix-null", {"key": [{"suffix": None}]}, A, "suffix match pattern must be a string"),
    (
        "aws-suffix-list",
        {"key": [{"suffix": ["test", "test2"]}]},
        A,
        "suffix match pattern must be a string",
    ),
    (
        "aws-suffix-empty-list",
        {"key": [{"suffix": []}]},
        A,
        "suffix match pattern must be a string",
    ),
    (
        "aws-operator-not-in-list",
        {"key": {"suffix": "value"}},
        A,
        '"suffix" must be an object or an array',
    ),
    (
        "aws-two-operators-not-in-list",
        {"key": {"suffix": "value", "prefix": "value"}},
        A,
        '"suffix" must be an object or an array',
    ),
    (
        "aws-no-operator-not-in-list",
        {"key": {"not-an-operator": "value"}},
        A,
        '"not-an-operator" must be an object or an array',
    ),
    ("aws-value-not-list", {"key_a": "value_one"}, B, '"key_a" must be an object or an array'),
    ("prefix-number", {"key": [{"prefix": 1}]}, A, "prefix match pattern must be a string"),
    (
        "ignore-case-number",
        {"key": [{"equals-ignore-case": 1}]},
        A,
        "equals-ignore-case match pattern must be a string",
    ),
    ("empty-array", {"key": []}, A, "Empty arrays are not allowed"),
    ("empty-nested-array", {"a": {"b": []}}, B, "Empty arrays are not allowed"),
    ("empty-nested-object", {"a": {}}, B, "Empty objects are not allowed"),
    ("empty-match-expression", {"a": [{}]}, A, "Match expression name not found"),
    ("aws-numeric-empty", {"key": [{"numeric": []}]}, A, "Invalid member in numeric match: ]"),
    (
        "aws-numeric-bad-operator",
        {"key": [{"numeric": ["operator"]}]},
        A,
        "Unrecognized numeric range operator: operator",
    ),
    (
        "aws-numeric-operator-order",
        {"key": [{"numeric": [1, "<="]}]},
        A,
        "Invalid member in numeric match: 1",
    ),
    (
        "aws-numeric-string-value",
        {"key": [{"numeric": ["=", "000"]}]},
        A,
        "Value of equals must be numeric",
    ),
    ("aws-numeric-missing-value", {"key": [{"numeric": [">="]}]}, A, "Value of >= must be numeric"),
    (
        "aws-numeric-range-order",
        {"key": [{"numeric": ["<", 100, ">", 10]}]},
        A,
        "Too many elements in numeric expression",
    ),
    (
        "aws-numeric-range-operators",
        {"key": [{"numeric": [">=", 1, ">", 2]}]},
        A,
        "Bad numeric range operator: >",
    ),
    (
        "aws-numeric-bottom-top",
        {"key": [{"numeric": [">", 3, "<", 1]}]},
        A,
        "Bottom must be less than top",
    ),
    (
        "numeric-bottom-equals-top",
        {"key": [{"numeric": [">=", 3, "<=", 3]}]},
        A,
        "Bottom must be less than top",
    ),
    (
        "aws-numeric-missing-top",
        {"key": [{"numeric": [">", 20, "<="]}]},
        A,
        "Value of <= must be numeric",
    ),
    (
        "aws-numeric-missing-top-operator",
        {"key": [{"numeric": [">", 20, 30]}]},
        A,
        "Bad value in numeric range: 30",
    ),
    (
        "aws-numeric-bad-top-operator",
        {"key": [{"numeric": [">", 20, "test"]}]},
        A,
        "Bad numeric range operator: test",
    ),
    (
        "aws-numeric-string-bottom",
        {"key": [{"numeric": [">", "20", "<", "30"]}]},
        A,
        "Value of > must be numeric",
    ),
    (
        "aws-numeric-string-top",
        {"key": [{"numeric": [">", 20, "<", "30"]}]},
        A,
        "Value of < must be numeric",
    ),
    (
        "aws-numeric-too-many-terms",
        {"key": [{"numeric": [">", 20, "<", 30, "<", 50]}]},
        A,
        "Too many terms in numeric range expression",
    ),
    (
        "numeric-equals-extra",
        {"key": [{"numeric": ["=", 1, 2]}]},
        A,
        "Too many elements in numeric expression",
    ),
    (
        "numeric-bool-value",
        {"key": [{"numeric": ["=", True]}]},
        A,
        "Value of equals must be numeric",
    ),
    ("numeric-not-list", {"key": [{"numeric": 5}]}, A, "Value of numeric must be an array."),
    (
        "numeric-extra-key",
        {"key": [{"numeric": ["<", 5], "prefix": "x"}]},
        A,
        "Too many elements in numeric expression",
    ),
    (
        "numeric-out-of-range",
        {"key": [{"numeric": [">", 1e10]}]},
        A,
        "Value must be between -1.0E9 and 1.0E9, inclusive",
    ),
    (
        "numeric-out-of-range-top",
        {"key": [{"numeric": [">", 0, "<", -2e9]}]},
        A,
        "Value must be between -1.0E9 and 1.0E9, inclusive",
    ),
    (
        "aws-exists-null",
        {"key": [{"exists": None}]},
        A,
        "exists match pattern must be either true or false.",
    ),
    (
        "aws-exists-string",
        {"key": [{"exists": "no"}]},
        A,
        "exists match pattern must be either true or false.",
    ),
    (
        "exists-extra-key",
        {"key": [{"exists": True, "prefix": "x"}]},
        A,
        "Only one key allowed in match expression",
    ),
    (
        "aws-but-wrong-operator",
        {"key": [{"anything-but": {"wrong-operator": None}}]},
        A,
        "Unsupported anything-but pattern: wrong-operator",
    ),
    (
        "aws-but-exists",
        {"key": [{"anything-but": {"exists": False}}]},
        A,
        "Unsupported anything-but pattern: exists",
    ),
    (
        "but-ignore-case",
        {"key": [{"anything-but": {"equals-ignore-case": "x"}}]},
        A,
        "Unsupported anything-but pattern: equals-ignore-case",
    ),
    (
        "aws-but-prefix-bool",
        {"key": [{"anything-but": {"prefix": False}}]},
        A,
        "prefix match pattern must be a string",
    ),
    (
        "but-prefix-empty",
        {"key": [{"anything-but": {"prefix": ""}}]},
        A,
        "Null prefix/suffix not allowed",
    ),
    (
        "but-empty-object",
        {"key": [{"anything-but": {}}]},
        A,
        "Anything-But expression name not found",
    ),
    (
        "but-bool",
        {"key": [{"anything-but": True}]},
        A,
        "Value of anything-but must be an array or single string/number value.",
    ),
    (
        "but-null-in-list",
        {"key": [{"anything-but": ["a", None]}]},
        A,
        "Inside anything but list, start|null|boolean is not supported.",
    ),
    (
        "but-mixed-list",
        {"key": [{"anything-but": ["a", 1]}]},
        A,
        MIXED_BUT,
    ),
    (
        "but-empty-list",
        {"key": [{"anything-but": []}]},
        A,
        MIXED_BUT,
    ),
    (
        "but-number-out-of-range",
        {"key": [{"anything-but": 5e9}]},
        A,
        "Value must be between -1.0E9 and 1.0E9, inclusive",
    ),
    ("cidr-number", {"ip": [{"cidr": 10}]}, A, "prefix match pattern must be a string"),
    ("cidr-no-slash", {"ip": [{"cidr": "10.0.0.0"}]}, A, "Malformed CIDR, one '/' required"),
    ("cidr-trailing-slash", {"ip": [{"cidr": "10.0.0.0/"}]}, A, "Malformed CIDR, one '/' required"),
    ("cidr-two-slashes", {"ip": [{"cidr": "10.0.0.0/8/8"}]}, A, "Malformed CIDR, one '/' required"),
    (
        "cidr-mask-text",
        {"ip": [{"cidr": "10.0.0.0/x"}]},
        A,
        "Malformed CIDR, mask bits must be an integer",
    ),
    (
        "cidr-mask-negative",
        {"ip": [{"cidr": "10.0.0.0/-1"}]},
        A,
        "Malformed CIDR, mask bits must not be negative",
    ),
    (
        "cidr-hostname",
        {"ip": [{"cidr": "example.com/8"}]},
        A,
        "Nonstandard IP address: example.com",
    ),
    ("cidr-bad-octet", {"ip": [{"cidr": "10.0.0.256/24"}]}, A, "Invalid IP address: 10.0.0.256"),
    ("cidr-v4-mask-32", {"ip": [{"cidr": "10.0.0.1/32"}]}, A, "IPv4 mask bits must be < 32"),
    ("cidr-v6-mask-128", {"ip": [{"cidr": "::1/128"}]}, A, "IPv6 mask bits must be < 128"),
    ("or-not-array", {"$or": {"a": ["x"]}}, A, "It must be an Array followed with $or."),
    (
        "or-one-branch",
        {"$or": [{"a": ["x"]}]},
        A,
        "There must have at least 2 Objects in $or relationship.",
    ),
    ("or-empty", {"$or": []}, A, "There must have at least 2 Objects in $or relationship."),
    (
        "or-not-object",
        {"$or": [{"a": ["x"]}, ["b"]]},
        A,
        "Only JSON object is allowed in array of $or relationship.",
    ),
    (
        "or-reserved-name",
        {"$or": [{"prefix": ["x"]}, {"b": ["y"]}]},
        A,
        "prefix is Ruler reserved fieldName which cannot be used inside $or.",
    ),
    ("or-empty-branch", {"$or": [{}, {"b": ["y"]}]}, A, "Empty objects are not allowed"),
]


@pytest.mark.parametrize(
    ("policy", "scope", "message"), [i[1:] for i in INVALID], ids=[i[0] for i in INVALID]
)
def test_invalid_policy_reason(policy: Any, scope: str, message: str) -> None:
    with pytest.raises(InvalidFilterPolicy) as caught:
        compile_policy(policy, scope=scope)
    assert str(caught.value) == message
    # the same policy as JSON text fails the same way
    with pytest.raises(InvalidFilterPolicy) as caught_text:
        compile_policy(json.dumps(policy), scope=scope)
    assert str(caught_text.value) == message


@pytest.mark.parametrize(
    "text",
    ["", "{", "not json", '{"a": ["x"],}', '{"a": [NaN]}', '{"a": [Infinity]}', "{'a': ['x']}"],
)
def test_invalid_json(text: str) -> None:
    with pytest.raises(InvalidFilterPolicy, match=r"^failed to parse JSON\. "):
        compile_policy(text)


@pytest.mark.parametrize("text", ["[]", '["a"]', '"text"', "5", "null", "true"])
def test_policy_must_be_an_object(text: str) -> None:
    with pytest.raises(InvalidFilterPolicy, match=r"^Filter is not an object$"):
        compile_policy(text)


@pytest.mark.parametrize("policy", [["a"], 5, None, {"a": [float("nan")]}, {"a": [{1, 2}]}])
def test_invalid_python_policy(policy: Any) -> None:
    with pytest.raises(InvalidFilterPolicy):
        compile_policy(policy)


@pytest.mark.parametrize("scope", ["RandomValue", "messagebody", "", "MessageAttributes "])
def test_invalid_scope(scope: str) -> None:
    with pytest.raises(InvalidFilterPolicy) as caught:
        compile_policy({"a": ["x"]}, scope=scope)
    assert str(caught.value) == (
        f"FilterPolicyScope: Invalid value [{scope}]. "
        "Please use either MessageBody or MessageAttributes"
    )


def test_error_is_an_invalid_parameter() -> None:
    with pytest.raises(InvalidInputError) as caught:
        compile_policy({"a": []})
    assert caught.value.code == "InvalidParameter"
    assert caught.value.http_status == 400


# -- limits: keys, combinations, size ----------------------------------------------------------


def values(count: int, prefix: str = "value") -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


OR_152 = {
    "source": ["aws.cloudwatch", "aws.events", "aws.test", "aws.test2"],
    "$or": [
        {"metricName": values(6)},
        {
            "metricType": values(4),
            "$or": [{"metricId": [1234, 4321, 5678, 9012]}, {"spaceId": [1, 2, 3, 4]}],
        },
    ],
}
BODY_OR_160 = {
    "$or": [
        {"metricName": ["CPUUtilization", "ReadLatency", "TestValue"]},
        {"namespace": ["AWS/EC2", "AWS/ES"]},
    ],
    "detail": {
        "scope": ["Service", "Test"],
        "$or": [
            {"source": ["aws.cloudwatch"]},
            {"type": ["CloudWatch Alarm State Change", "TestValue", "TestValue2"]},
        ],
    },
}
NESTED_216 = {
    "key_a": {"key_b": {"key_c": values(4)}},
    "key_d": {"key_e": values(3)},
    "key_f": values(3),
}
NESTED_72 = {"key_a": {"key_b": {"key_c": values(4)}}, "key_d": {"key_e": values(3)}}
SIX_KEYS = {f"key{i}": [f"value{i}"] for i in range(1, 7)}
FIVE_KEYS = {f"key{i}": [f"value{i}"] for i in range(1, 6)}

LIMITS = [
    # (id, policy, scope, accepted, reason if refused)
    ("aws-151-values", {"key": values(151)}, A, False, "Filter policy is too complex"),
    ("150-values", {"key": values(150)}, A, True, None),
    (
        "aws-100x51",
        {"key1": values(100), "key2": values(51)},
        A,
        False,
        "Filter policy is too complex",
    ),
    ("aws-6-keys", SIX_KEYS, A, False, "Filter policy can not have more than 5 keys"),
    ("5-keys", FIVE_KEYS, A, True, None),
    ("6-keys-body", SIX_KEYS, B, False, "Filter policy can not have more than 5 keys"),
    ("nested-keys-count-once", {"a": {f"k{i}": ["x"] for i in range(7)}}, B, True, None),
    ("aws-or-152", OR_152, A, False, "Filter policy is too complex"),
    ("aws-or-150", OR_150, A, True, None),
    ("aws-body-or-160", BODY_OR_160, B, False, "Filter policy is too complex"),
    ("aws-nested-216", NESTED_216, B, False, "Filter policy is too complex"),
    ("doc-nested-72", NESTED_72, B, True, None),
    ("depth-2-x-75", {"a": {"b": values(75)}}, B, True, None),
    ("depth-2-x-76", {"a": {"b": values(76)}}, B, False, "Filter policy is too complex"),
    (
        "or-counts-as-one-key",
        {**FIVE_KEYS, "$or": [{"a": ["x"]}, {"b": ["y"]}]},
        A,
        False,
        "Filter policy can not have more than 5 keys",
    ),
]


@pytest.mark.parametrize(
    ("policy", "scope", "accepted", "reason"), [x[1:] for x in LIMITS], ids=[x[0] for x in LIMITS]
)
def test_limits(policy: Any, scope: str, accepted: bool, reason: str | None) -> None:
    if accepted:
        assert isinstance(compile_policy(policy, scope=scope), FilterPolicy)
        return
    with pytest.raises(InvalidFilterPolicy) as caught:
        compile_policy(policy, scope=scope)
    assert str(caught.value) == reason


@pytest.mark.parametrize(("length", "accepted"), [(262_000, True), (262_200, False)])
def test_policy_size_limit(length: int, accepted: bool) -> None:
    text = json.dumps({"k": ["x" * length]})
    if accepted:
        assert compile_policy(text).matches({"k": s("x" * length)}, None)
        return
    with pytest.raises(InvalidFilterPolicy, match="256 KB"):
        compile_policy(text)


def test_policy_size_counts_utf8_bytes() -> None:
    text = json.dumps({"k": ["é" * 131_100]}, ensure_ascii=False)  # < 256 Ki chars, > 256 KiB
    with pytest.raises(InvalidFilterPolicy, match="256 KB"):
        compile_policy(text)


# -- the compiled object ------------------------------------------------------------------------


def test_text_is_compact_json_in_given_order() -> None:
    policy = compile_policy('{ "b" : [ 1, 2.5 ],\n "a": {"c": ["é"]} }', scope=B)
    assert policy.text == '{"b":[1,2.5],"a":{"c":["é"]}}'
    assert compile_policy({"b": [1, 2.5], "a": {"c": ["é"]}}, scope=B).text == policy.text
    assert compile_policy(policy.text, scope=B).text == policy.text
    assert policy.scope == B


def test_default_scope_is_message_attributes() -> None:
    policy = compile_policy({"k": ["v"]})
    assert policy.scope == A
    assert policy.matches({"k": s("v")}, '{"k": "x"}')
    assert not policy.matches({"k": s("x")}, '{"k": "v"}')


def test_body_scope_ignores_attributes() -> None:
    policy = compile_policy({"k": ["v"]}, scope=B)
    assert not policy.matches({"k": s("v")}, '{"k": "x"}')
    assert policy.matches({"k": s("x")}, '{"k": "v"}')


def test_dict_policy_is_not_modified() -> None:
    original = {"a": ["x", {"numeric": [">", 1]}], "$or": [{"b": ["y"]}, {"c": ["z"]}]}
    snapshot = json.loads(json.dumps(original))
    compile_policy(original)
    assert original == snapshot


@pytest.mark.parametrize("scope", [A, B])
def test_empty_policy_matches_everything(scope: str) -> None:
    policy = compile_policy("{}", scope=scope)
    assert policy.text == "{}"
    assert policy.matches(None, None)
    assert policy.matches({"k": s("v")}, "not json")


@pytest.mark.parametrize(
    "attributes",
    [
        None,
        {},
        {"k": {}},
        {"k": {"DataType": "String", "StringValue": None}},
        {"k": {"DataType": "Number", "StringValue": "1_000"}},
        {"k": {"DataType": None, "StringValue": "v"}},
        {"k": {"DataType": "Weird", "StringValue": "v"}},
        {"k": {"DataType": "String.Array", "StringValue": '{"a": 1}'}},
        {"k": {"DataType": "String.Array", "StringValue": "[" * 100_000}},
    ],
)
def test_matching_never_raises(attributes: Any) -> None:
    policy = compile_policy(
        {"k": ["v", 1, {"prefix": "p"}, {"cidr": "10.0.0.0/8"}, {"numeric": [">", 0]}]}
    )
    assert policy.matches(attributes, None) in (True, False)


@pytest.mark.parametrize(
    "body", [None, b"", "", "null", 42, bytearray(b'{"k": "v"}'), "[" * 100_000, '{"k": ' * 5000]
)
def test_body_matching_never_raises(body: Any) -> None:
    policy = compile_policy({"k": ["v"]}, scope=B)
    expected = isinstance(body, bytearray)
    assert policy.matches(None, body) is expected


# Nested nearly as deep as json decodes: matching walks it without recursing (no RecursionError).
DEPTH = 900


@pytest.mark.parametrize(
    ("policy", "inner"),
    [({"k": ["v"]}, '"v"'), ({"k.j": ["v"]}, '{"j": "v"}'), ({"k": {"j": ["v"]}}, '{"j": "v"}')],
)
def test_deep_body_arrays(policy: Any, inner: str) -> None:
    body = '{"k": ' + "[" * DEPTH + inner + "]" * DEPTH + "}"
    assert compile_policy(policy, scope=B).matches(None, body)


def test_deep_string_array_attribute() -> None:
    nested = "[" * DEPTH + '"v"' + "]" * DEPTH
    attributes = {"k": {"DataType": "String.Array", "StringValue": nested}}
    assert compile_policy({"k": ["v"]}).matches(attributes, None)


def test_repr_names_scope_and_text() -> None:
    assert repr(compile_policy({"k": ["v"]})) == (
        "FilterPolicy(scope='MessageAttributes', text='{\"k\":[\"v\"]}')"
    )


# 13+ digit identifiers: an EAN-13 barcode, 2**53 + 1, a 64-bit snowflake id
@pytest.mark.parametrize("value", [4006381333931, 9007199254740993, 1234567890123456789])
def test_a_large_integer_number_attribute_equals_itself(value: int) -> None:
    # A Number attribute is read as the JSON decoder reads a body or a String.Array element:
    # an integer exactly (through a float it stopped equalling itself above ~2.9e12).
    policy = compile_policy({"id": [value]}, scope=A)
    assert policy.matches({"id": {"DataType": "Number", "StringValue": str(value)}}, None)
    assert policy.matches({"id": {"DataType": "String.Array", "StringValue": f"[{value}]"}}, None)
    assert compile_policy({"id": [value]}, scope=B).matches(None, json.dumps({"id": value}))
    assert not policy.matches({"id": {"DataType": "Number", "StringValue": str(value + 1)}}, None)
