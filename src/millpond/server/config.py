"""The daemon's TOML configuration: server settings and predefined queues, topics, subscriptions.

    [server]
    host = "127.0.0.1"          # port, data, durability, region, account_id as the CLI options
    port = 9324
    # native_port = 9325        # millpond's native protocol (off unless set)
    # max_regions = 64          # regions served (a request signed for one more: OverLimit)
    # max_http_connections = 4096  # default a quarter of the open-file limit
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

Definitions are created at start-up in file order (but a dead-letter queue before the queues
whose RedrivePolicy names it) and left alone when they already exist.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from millpond import errors, queue_attributes
from millpond.server.context import valid_region

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SERVER_KEYS = {
    "host",
    "port",
    "native_port",
    "data",
    "durability",
    "region",
    "account_id",
    "tls_cert",
    "tls_key",
    "max_regions",
    "max_http_connections",
}
# Every top-level table: a misspelt one ([[queue]], [sever]) would be ignored without a word.
TOP_KEYS = {"server", "auth", "queues", "topics", "subscriptions"}
_ACCOUNT_ID = re.compile(r"\d{12}")


def valid_account_id(text: Any) -> bool:
    """Twelve digits, as AWS's: it is a queue URL's first path segment and an ARN field (a
    "/" or "" there made every queue URL unusable, a ":" broke ARNs)."""
    return isinstance(text, str) and _ACCOUNT_ID.fullmatch(text) is not None


_SERVER_TEXT = SERVER_KEYS - {"port", "native_port", "max_regions", "max_http_connections"}
# Each predefinition section: its required text keys, and its optional keys with their types.
_SECTIONS: dict[str, tuple[tuple[str, ...], dict[str, tuple[type, ...]]]] = {
    "queues": (("name",), {"region": (str,), "attributes": (dict,), "tags": (dict,)}),
    "topics": (("name",), {"region": (str,), "attributes": (dict,)}),
    "subscriptions": (
        ("topic", "queue"),
        {
            "region": (str,),
            "filter_policy": (dict, str),
            "filter_policy_scope": (str,),
            "raw_message_delivery": (bool,),
        },
    ),
}


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and the entry."""


def load(path: str) -> dict[str, Any]:
    """Read and check a TOML configuration (ConfigError, naming the entry, if it is wrong)."""
    try:
        with open(path, "rb") as f:
            config = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(config) - TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown sections: {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(TOP_KEYS))})"
        )
    _check_server(path, config.get("server", {}))
    auth = config.get("auth", {})
    if not isinstance(auth, dict) or set(auth) - {"credentials"}:
        raise ConfigError(f'{path}: [auth] takes only credentials = {{ KEY_ID = "secret" }}')
    pairs = auth.get("credentials", {})
    if not isinstance(pairs, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in pairs.items()
    ):
        raise ConfigError(f"{path}: [auth] credentials must map access key ids to secrets")
    # An [auth] with no key pair would serve with no signature checks at all: refuse it.
    if "auth" in config and not pairs:
        raise ConfigError(f"{path}: [auth] credentials must name at least one key pair")
    for section, (required, optional) in _SECTIONS.items():
        _check_section(path, section, config.get(section, []), required, optional)
    return config


def _check_server(path: str, server: Any) -> None:
    if not isinstance(server, dict):
        raise ConfigError(f"{path}: [server] must be a table")
    unknown = set(server) - SERVER_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown [server] keys: {', '.join(sorted(unknown))}")
    for name in _SERVER_TEXT & server.keys():
        if not isinstance(server[name], str):
            raise ConfigError(f"{path}: [server] {name} must be a string")
    for key in ("port", "native_port"):
        port = server.get(key, 0)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"{path}: [server] {key} must be a number from 0 to 65535")
    for key in ("max_regions", "max_http_connections"):
        value = server.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{path}: [server] {key} must be a number of at least 1")
    if server.get("durability", "fsync") not in ("fsync", "os"):
        raise ConfigError(f'{path}: [server] durability must be "fsync" or "os"')
    if not valid_account_id(server.get("account_id", "123456789012")):
        raise ConfigError(f"{path}: [server] account_id must be 12 digits")
    if not valid_region(server.get("region", "us-east-1")):
        raise ConfigError(f"{path}: [server] region {server['region']!r} is not a region name")


def _check_section(
    path: str,
    section: str,
    entries: Any,
    required: tuple[str, ...],
    optional: dict[str, tuple[type, ...]],
) -> None:
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: {section} must be written as [[{section}]] entries")
    for number, entry in enumerate(entries, 1):
        where = f"{path}: [[{section}]] #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table")
        for key in required:
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ConfigError(f"{where}: {key} is required (a string)")
        for key, value in entry.items():
            if key in required:
                continue
            if key not in optional:
                raise ConfigError(f"{where}: unknown key {key}")
            if not isinstance(value, optional[key]):
                kinds = " or ".join("table" if t is dict else t.__name__ for t in optional[key])
                raise ConfigError(f"{where}: {key} must be a {kinds}")
        if "region" in entry and not valid_region(entry["region"]):
            raise ConfigError(f"{where}: region {entry['region']!r} is not a region name")


def credentials(config: dict[str, Any]) -> dict[str, str] | None:
    """The access key id -> secret pairs requests must be signed with; None: no checking."""
    return config.get("auth", {}).get("credentials") or None


def apply(config: dict[str, Any], ctx: Any) -> list[str]:
    """Create the predefined queues, topics and subscriptions; returns what it created.

    Raises ConfigError naming the definition that cannot be created (and why). What this call
    created before that is removed again: the daemon does not start, and a config half applied
    would leave queues the next start takes for the operator's own (and leaves alone).
    """
    _refuse_duplicates(config, ctx.region)
    created: list[tuple[str, Callable[[], object]]] = []  # what, and how to remove it again
    try:
        for spec in _dead_letter_queues_first(config.get("queues", []), ctx.region):
            with _naming(f"queue {spec['name']!r}"):
                _apply_queue(spec, ctx, created)
        for spec in config.get("topics", []):
            with _naming(f"topic {spec['name']!r}"):
                _apply_topic(spec, ctx, created)
        for spec in config.get("subscriptions", []):
            with _naming(f"subscription {spec['topic']!r} -> {spec['queue']!r}"):
                _apply_subscription(spec, ctx, created)
    except Exception:
        for _, remove in reversed(created):
            remove()
        raise
    return [what for what, _ in created]


# What names a definition, besides its region.
_IDENTITY = {"queues": ("name",), "topics": ("name",), "subscriptions": ("topic", "queue")}


def _refuse_duplicates(config: dict[str, Any], region: str) -> None:
    """Refuse a definition given twice (a copy whose name was not changed, say): the second
    would be taken for one that exists already, and left unapplied."""
    for section, keys in _IDENTITY.items():
        seen = set()
        for number, spec in enumerate(config.get(section, []), 1):
            identity = (spec.get("region") or region, *(spec[key] for key in keys))
            if identity in seen:
                named = " -> ".join(identity[1:])
                raise ConfigError(
                    f"[[{section}]] #{number}: {named!r} in {identity[0]} is defined twice"
                )
            seen.add(identity)


def _dead_letter_queues_first(specs: list[dict[str, Any]], region: str) -> list[dict[str, Any]]:
    """The queue definitions in file order, but each dead-letter queue the config defines before
    the queues whose RedrivePolicy names it: SQS refuses a RedrivePolicy naming a queue that
    does not exist yet, and the config says what queues to have, not in which order to make them.
    """
    first_of: dict[tuple[str, str] | None, int] = {}  # (region, name) -> its first definition
    for index, spec in enumerate(specs):
        first_of.setdefault((spec.get("region") or region, spec["name"]), index)
    order: list[int] = []

    def place(index: int, waiting: frozenset[int]) -> None:
        if index in order or index in waiting:  # placed already, or a loop of redrives
            return
        target = first_of.get(_dead_letter_target(specs[index]))
        if target is not None:
            place(target, waiting | {index})
        order.append(index)

    for index in range(len(specs)):
        place(index, frozenset())
    return [specs[index] for index in order]


def _dead_letter_target(spec: dict[str, Any]) -> tuple[str, str] | None:
    """(region, name) of the queue a definition's RedrivePolicy names; None if none (or if the
    policy is malformed: creating the queue says what is wrong with it)."""
    policy = (spec.get("attributes") or {}).get("RedrivePolicy")
    try:
        arn = json.loads(policy)["deadLetterTargetArn"] if isinstance(policy, str) else None
    except (ValueError, TypeError, KeyError):
        return None
    parts = arn.split(":") if isinstance(arn, str) else []
    return (parts[3], parts[5]) if len(parts) == 6 else None


def _apply_queue(spec: dict[str, Any], ctx: Any, created: list[Any]) -> None:
    broker = ctx.broker(spec.get("region"))
    if spec["name"] in broker.list_queues(spec["name"]):
        queue = broker.queue(spec["name"])
        current = queue.get_attributes()
        # compared as CreateQueue compares them with an existing queue's: as SQS stores and
        # writes them back (60 as "60", a RedrivePolicy's maxReceiveCount "5" as 5)
        wanted = queue_attributes.normalize(spec.get("attributes"), creating=True)
        differ = [name for name, value in wanted.items() if _mismatch(current, name, value)]
        if "tags" in spec and spec["tags"] != queue.tags():  # a tag left out counts too
            differ.append("tags")
        _report_drift(f"queue {spec['name']!r}", differ)
        return
    broker.create_queue(spec["name"], spec.get("attributes"), spec.get("tags"))
    created.append((f"queue {spec['name']}", functools.partial(broker.delete_queue, spec["name"])))


def _apply_topic(spec: dict[str, Any], ctx: Any, created: list[Any]) -> None:
    broker = ctx.broker(spec.get("region"))
    if spec["name"] in broker.list_topics():
        current = broker.topic(spec["name"]).get_attributes()
        _report_drift(f"topic {spec['name']!r}", _differing(spec.get("attributes"), current))
        return
    broker.create_topic(spec["name"], spec.get("attributes"))
    created.append((f"topic {spec['name']}", functools.partial(broker.delete_topic, spec["name"])))


def _apply_subscription(spec: dict[str, Any], ctx: Any, created: list[Any]) -> None:
    broker = ctx.broker(spec.get("region"))
    topic = broker.topic(spec["topic"])
    queue = broker.queue(spec["queue"])
    # looked up, not told apart by Subscribe's answer: it returns an existing subscription
    # with the same attributes as if it had made it (and that one is not ours to remove)
    wanted = {
        "FilterPolicy": spec.get("filter_policy"),
        "FilterPolicyScope": spec.get("filter_policy_scope", "MessageAttributes"),
        "RawMessageDelivery": spec.get("raw_message_delivery", False),
    }
    for existing in topic.list_subscriptions():
        if existing.endpoint == queue.arn:
            # a subscription without a filter policy has no FilterPolicyScope: SNS's default
            current = {"FilterPolicyScope": "MessageAttributes", **existing.get_attributes()}
            what = f"subscription {spec['topic']!r} -> {spec['queue']!r}"
            _report_drift(what, _differing(wanted, current))
            return
    subscription = topic.subscribe(
        queue,
        filter_policy=wanted["FilterPolicy"],
        filter_policy_scope=wanted["FilterPolicyScope"],
        raw_message_delivery=wanted["RawMessageDelivery"],
    )
    created.append((f"subscription {spec['topic']} -> {spec['queue']}", subscription.unsubscribe))


def _mismatch(current: dict[str, str], name: str, value: str) -> bool:
    return queue_attributes.mismatch(current, {name: value}) is not None


def _differing(wanted: dict[str, Any] | None, current: dict[str, str]) -> list[str]:
    """The names of the ``wanted`` attributes whose value ``current`` does not have."""
    return [
        name
        for name, value in (wanted or {}).items()
        if _comparable(value) != _comparable(current.get(name))
    ]


def _report_drift(what: str, differ: list[str]) -> None:
    """Warn that a predefined queue, topic or subscription differs from its (changed)
    definition: it is left as it is, and an operator editing the file would otherwise never
    learn it."""
    if differ:
        logging.getLogger("millpond.server").warning(
            "predefined %s exists with other %s than the config's: left as they are "
            "(the API's Set*Attributes changes them)",
            what,
            ", ".join(sorted(differ)),
        )


def _comparable(value: Any) -> Any:
    """An attribute value as compared: TOML true/60 as "true"/"60", JSON by its content (a
    TOML table, as a filter policy may be written, is that content already)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value if value is None or isinstance(value, dict) else str(value)


@contextlib.contextmanager
def _naming(what: str) -> Iterator[None]:
    """Turn a failure to create ``what`` into a ConfigError that names it."""
    try:
        yield
    except errors.MillpondError as exc:
        raise ConfigError(f"predefined {what}: {exc}") from None
