"""Filter policies against AWS's SNS documentation: cases found by a targeted hunt."""

from __future__ import annotations

from typing import Any

import pytest

from millpond.filters import compile_policy

# AWS, "Key matching" (attribute-key-matching.html): '"exists": false only matches if at least
# one attribute is present. An empty set of attributes results in the filter not matching.'
ABSENT_POLICIES = [
    {"store": [{"exists": False}]},
    {"store": [{"anything-but": "x"}, {"exists": False}]},
    {"store": [{"exists": True}, {"exists": False}]},
    {"$or": [{"store": [{"exists": False}]}, {"other": ["x"]}]},
]


@pytest.mark.parametrize("policy", ABSENT_POLICIES)
@pytest.mark.parametrize("attributes", [None, {}])
def test_exists_false_needs_some_attribute(policy: Any, attributes: Any) -> None:
    compiled = compile_policy(policy)
    assert not compiled.matches(attributes, None)
    # one attribute, any other one, is enough
    assert compiled.matches({"def": {"DataType": "String", "StringValue": "x"}}, None)


def test_empty_policy_still_matches_a_message_without_attributes() -> None:
    assert compile_policy({}).matches(None, None)
    assert compile_policy({}).matches({}, None)
