"""The daemon's TOML configuration: server settings and predefined queues, topics, subscriptions.

    [server]
    host = "127.0.0.1"          # port, data, durability, region, account_id as the CLI options
    port = 9324
    # tls_cert = "cert.pem"     # with tls_key: HTTPS (PEM files)

    [auth]                      # optional: requests must be signed (SigV4) with one of these
    credentials = { AKIAEXAMPLE = "secret" }

    [[queues]]
    name = "jobs-dlq"

    [[queues]]
    name = "jobs"
    attributes = { VisibilityTimeout = "60", RedrivePolicy = '''{"maxReceiveCount": 5,
        "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:jobs-dlq"}''' }
    # region = "eu-west-1"      # optional, default region otherwise

    [[topics]]
    name = "events"

    [[subscriptions]]
    topic = "events"
    queue = "jobs"
    filter_policy = { kind = ["order"] }
    raw_message_delivery = true

Definitions are created at start-up in file order and left alone when they already exist.
"""

from __future__ import annotations

import sys
from typing import Any

from millpond import errors

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SERVER_KEYS = {"host", "port", "data", "durability", "region", "account_id", "tls_cert", "tls_key"}


def load(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        config = tomllib.load(f)
    unknown = set(config.get("server", {})) - SERVER_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown [server] keys: {', '.join(sorted(unknown))}")
    auth = config.get("auth", {})
    if set(auth) - {"credentials"}:
        raise ValueError(f'{path}: [auth] takes only credentials = {{ KEY_ID = "secret" }}')
    pairs = auth.get("credentials", {})
    if not isinstance(pairs, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in pairs.items()
    ):
        raise ValueError(f"{path}: [auth] credentials must map access key ids to secrets")
    return config


def credentials(config: dict[str, Any]) -> dict[str, str] | None:
    """The access key id -> secret pairs requests must be signed with; None: no checking."""
    return config.get("auth", {}).get("credentials") or None


def apply(config: dict[str, Any], ctx: Any) -> list[str]:
    """Create the predefined queues, topics and subscriptions; returns what it created."""
    created = []
    for spec in config.get("queues", []):
        broker = ctx.broker(spec.get("region"))
        if spec["name"] in broker.list_queues(spec["name"]):
            continue
        broker.create_queue(spec["name"], spec.get("attributes"), spec.get("tags"))
        created.append(f"queue {spec['name']}")
    for spec in config.get("topics", []):
        broker = ctx.broker(spec.get("region"))
        if spec["name"] in broker.list_topics():
            continue
        broker.create_topic(spec["name"], spec.get("attributes"))
        created.append(f"topic {spec['name']}")
    for spec in config.get("subscriptions", []):
        broker = ctx.broker(spec.get("region"))
        topic = broker.topic(spec["topic"])
        queue = broker.queue(spec["queue"])
        try:
            topic.subscribe(
                queue,
                filter_policy=spec.get("filter_policy"),
                filter_policy_scope=spec.get("filter_policy_scope", "MessageAttributes"),
                raw_message_delivery=spec.get("raw_message_delivery", False),
            )
        except errors.MillpondError as exc:
            if "already exists" not in str(exc):
                raise
            continue
        created.append(f"subscription {spec['topic']} -> {spec['queue']}")
    return created
