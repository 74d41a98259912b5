"""The SQS access-policy statement that lets an SNS topic send to a queue.

On AWS a topic delivers to a subscribed queue only if the queue's Policy allows it
(``sqs:SendMessage`` for the principal ``sns.amazonaws.com`` from the topic's ARN); the embedded
broker and the daemon need no such thing, so :meth:`AwsTopic.subscribe` adds the statement.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SNS_PRINCIPAL = "sns.amazonaws.com"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _allows(statement: Any, queue_arn: str, topic_arn: str) -> bool:
    """Whether one statement already lets the topic send to the queue.

    Recognised: an Allow of sqs:SendMessage (or sqs:*, *) to the SNS service principal or to
    everyone, on this queue (or *), with no condition or an aws:SourceArn condition naming the
    topic. Anything subtler is not recognised, and a statement is added beside it.
    """
    if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
        return False
    actions = [str(a).lower() for a in _as_list(statement.get("Action", []))]
    if not {"sqs:sendmessage", "sqs:*", "*"} & set(actions):
        return False
    principal = statement.get("Principal")
    if principal != "*":
        if not isinstance(principal, dict):
            return False
        services = _as_list(principal.get("Service", []))
        if SNS_PRINCIPAL not in services and "*" not in _as_list(principal.get("AWS", [])):
            return False
    if not {queue_arn, "*"} & set(_as_list(statement.get("Resource", "*"))):
        return False
    condition = statement.get("Condition")
    if not condition:
        return True
    if not isinstance(condition, dict) or set(condition) - {"ArnEquals", "ArnLike"}:
        return False
    for test in condition.values():
        if not isinstance(test, dict) or set(test) != {"aws:SourceArn"}:
            return False
        if topic_arn not in _as_list(test["aws:SourceArn"]):
            return False
    return True


def allow_topic(policy_text: str | None, queue_arn: str, topic_arn: str) -> str | None:
    """The queue Policy with a statement letting the topic send, or None if it allows that
    already.

    Raises:
        ValueError: the stored policy is not a JSON object (it then cannot be extended).
    """
    if policy_text:
        policy = json.loads(policy_text)
        if not isinstance(policy, dict):
            raise ValueError("the queue's Policy is not a JSON object")
    else:
        policy = {"Version": "2012-10-17", "Id": f"{queue_arn}/SQSDefaultPolicy"}
    statements = _as_list(policy.get("Statement", []))
    if any(_allows(statement, queue_arn, topic_arn) for statement in statements):
        return None
    digest = hashlib.sha256(topic_arn.encode()).hexdigest()[:16]
    statements.append(
        {
            "Sid": f"millpondTopic{digest}",  # one per topic: subscribing again finds it
            "Effect": "Allow",
            "Principal": {"Service": SNS_PRINCIPAL},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
        }
    )
    policy["Statement"] = statements
    return json.dumps(policy, separators=(",", ":"))
