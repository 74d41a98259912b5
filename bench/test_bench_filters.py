"""Filter policy evaluations per second: compiled policies beside a hand-written dict lookup.

Each case times one ``FilterPolicy.matches`` call on a typical SNS message (four attributes, or
a small JSON body) and records ``extra_info["us_per_eval"]``, the median in microseconds.
Run: ``PYTHONPATH=src python -m pytest bench/test_bench_filters.py --benchmark-columns=median,ops``
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from millpond.filters import compile_policy

ATTRIBUTES = {
    "customer_interests": {"DataType": "String", "StringValue": "rugby"},
    "store": {"DataType": "String", "StringValue": "example_corp"},
    "price_usd": {"DataType": "Number", "StringValue": "210.75"},
    "event": {"DataType": "String", "StringValue": "order-placed"},
}
BODY = json.dumps(
    {
        "source": "aws.cloudwatch",
        "metricName": "CPUUtilization",
        "detail": {
            "scope": "Service",
            "type": "CloudWatch Alarm State Change",
            "state": {"value": "ALARM", "reason": "Threshold Crossed: 1 datapoint > 80.0"},
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-0abcdef1234567890"],
        },
        "price_usd": 210.75,
    }
)

CASES: dict[str, tuple[dict[str, Any], str, bool]] = {
    # name: (policy, scope, expected result on the message)
    "exact": ({"customer_interests": ["rugby", "football", "baseball"]}, "MessageAttributes", True),
    "prefix": ({"store": [{"prefix": "example_"}, {"prefix": "demo_"}]}, "MessageAttributes", True),
    "numeric_range": (
        {"price_usd": [{"numeric": [">", 100, "<=", 500]}]},
        "MessageAttributes",
        True,
    ),
    "anything_but": (
        {"event": [{"anything-but": ["order-cancelled", "order-refunded"]}]},
        "MessageAttributes",
        True,
    ),
    "or": (
        {
            "store": ["example_corp"],
            "$or": [
                {"customer_interests": ["tennis"]},
                {"price_usd": [{"numeric": [">=", 200]}]},
            ],
        },
        "MessageAttributes",
        True,
    ),
    "body_nested_or": (
        {
            "source": ["aws.cloudwatch"],
            "detail": {
                "scope": ["Service"],
                "$or": [{"type": ["CloudWatch Alarm State Change"]}, {"state.value": ["OK"]}],
            },
        },
        "MessageBody",
        True,
    ),
}


def _record(benchmark: Any) -> None:
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["us_per_eval"] = round(benchmark.stats.stats.median * 1e6, 3)


@pytest.mark.parametrize("name", list(CASES))
def test_bench_policy(benchmark: Any, name: str) -> None:
    policy_doc, scope, expected = CASES[name]
    policy = compile_policy(policy_doc, scope=scope)
    result = benchmark(policy.matches, ATTRIBUTES, BODY)
    assert result is expected
    _record(benchmark)


def _baseline_exact() -> Callable[[Any], bool]:
    wanted = frozenset(("rugby", "football", "baseball"))

    def lookup(attributes: Any) -> bool:
        attr = attributes.get("customer_interests")
        return attr is not None and attr.get("StringValue") in wanted

    return lookup


def test_bench_baseline_dict_lookup(benchmark: Any) -> None:
    """The least a hand-written exact match must do: the floor for the "exact" case."""
    result = benchmark(_baseline_exact(), ATTRIBUTES)
    assert result is True
    _record(benchmark)


def test_bench_baseline_json_loads(benchmark: Any) -> None:
    """Decoding the body alone: the floor for any MessageBody-scope policy."""
    result = benchmark(json.loads, BODY)
    assert result["source"] == "aws.cloudwatch"
    _record(benchmark)
