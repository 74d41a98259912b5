"""SQS over the AWS query protocol (API 2012-11-05): form-encoded requests, XML responses.

Older SDKs (botocore < 1.34.90, Java v1 < 1.12.584, ...) still speak it. Requests flatten
lists and maps into numbered keys (``AttributeName.1``, ``Attribute.1.Name`` /
``Attribute.1.Value``, ``MessageAttribute.1.Value.StringValue``,
``SendMessageBatchRequestEntry.1.Id``...); :func:`parse` rebuilds the AWS JSON member shape the
handlers in :mod:`millpond.server.sqs` take. Responses follow the last query model of SQS:
``<XResponse><XResult>...</XResult><ResponseMetadata>...`` with flattened lists (repeated
``<Message>``, ``<QueueUrl>``, ``<SendMessageBatchResultEntry>``...) and maps as repeated
``<Attribute><Name/><Value/></Attribute>``. They are built with string templates: the shapes
are fixed, and XML is never parsed here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Container
from typing import Any
from xml.sax.saxutils import escape

from millpond.server.protocol import AwsError, missing

CONTENT_TYPE = b"text/xml"
NAMESPACE = "http://queue.amazonaws.com/doc/2012-11-05/"

# -- requests ------------------------------------------------------------------------------------

_LIST, _MAP, _ATTRIBUTE_MAP = range(3)
# Flattened request collections: query name -> (kind, JSON member name).
_COLLECTIONS: dict[str, tuple[int, str]] = {
    "AttributeName": (_LIST, "AttributeNames"),
    "MessageAttributeName": (_LIST, "MessageAttributeNames"),
    "MessageSystemAttributeName": (_LIST, "MessageSystemAttributeNames"),
    "TagKey": (_LIST, "TagKeys"),
    "AWSAccountId": (_LIST, "AWSAccountIds"),
    "ActionName": (_LIST, "Actions"),
    "StringListValue": (_LIST, "StringListValues"),
    "BinaryListValue": (_LIST, "BinaryListValues"),
    "Attribute": (_MAP, "Attributes"),
    "Tag": (_MAP, "Tags"),
    "MessageAttribute": (_ATTRIBUTE_MAP, "MessageAttributes"),
    "MessageSystemAttribute": (_ATTRIBUTE_MAP, "MessageSystemAttributes"),
}
_MAP_KEYS = {"Attribute": "Name", "Tag": "Key"}
_MAP_PARTS = {head: (key, "Value") for head, key in _MAP_KEYS.items()}
_ENTRY_HEADS = frozenset(
    (
        "SendMessageBatchRequestEntry",
        "DeleteMessageBatchRequestEntry",
        "ChangeMessageVisibilityBatchRequestEntry",
    )
)
_INDEX = re.compile(r"[1-9][0-9]{0,8}")
_PROTOCOL_KEYS = ("Action", "Version")
# Actions SQS takes at its endpoint only: a queue's URL (where the query protocol sends the
# queue's own actions, and GetQueueUrl) refuses them (AWS-validated: LocalStack's
# test_get_create_queue_fails and test_get_list_queues_fails).
_ENDPOINT_ONLY = frozenset(("CreateQueue", "ListQueues"))


def check_action(action: str, actions: Container[str], path: str, account_id: str) -> None:
    """Refuse an action SQS does not have, or one this URL does not take, with SQS's words
    (AWS-validated: "The action FooBar is not valid for this endpoint.")."""
    if action not in actions or (action in _ENDPOINT_ONLY and _is_queue_url(path, account_id)):
        raise AwsError("InvalidAction", f"The action {action} is not valid for this endpoint.")


def _is_queue_url(path: str, account_id: str) -> bool:
    """Whether a request path is a queue's (``/<account>/<name>``), not, say, the endpoint
    behind a proxy's path prefix."""
    parts = [part for part in path.split("/") if part]
    return len(parts) == 2 and parts[0] == account_id


def parse(action: str, form: dict[str, str]) -> dict[str, Any]:
    """The request's parameters in the AWS JSON member shape.

    Args:
        action: the ``Action`` of the request.
        form: the form (query string and body) with one value per key.

    Scalars stay strings (the handlers accept numeric strings); Binary values stay base64 text,
    as in the JSON protocol. Keys that do not follow the model are passed on unchanged, and the
    handlers ignore them, as AWS ignores unknown parameters.
    """
    entry_head = f"{action}RequestEntry"
    params = _structure(form, entry_head if entry_head in _ENTRY_HEADS else None)
    for key in _PROTOCOL_KEYS:
        params.pop(key, None)
    if action == "CreateQueue" and "Tags" in params:
        params["tags"] = params.pop("Tags")  # CreateQueue's member is lower-case in the model
    return params


def _structure(
    flat: dict[str, str], entry_head: str | None = None, where: str = ""
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    groups: dict[str, dict[int, dict[str, str]]] = {}
    for key, value in flat.items():
        head, dot, rest = key.partition(".")
        if dot and (head in _COLLECTIONS or head == entry_head):
            index, _, tail = rest.partition(".")
            if _INDEX.fullmatch(index):
                groups.setdefault(head, {}).setdefault(int(index), {})[tail] = value
                continue
        kind = _COLLECTIONS.get(head, (None,))[0]
        if (kind == _LIST and not dot) or (kind == _MAP and rest in _MAP_PARTS[head]):
            # boto 2 sends a one-item list or map unindexed (AttributeName=All,
            # Attribute.Name=...&Attribute.Value=...), and SQS takes it: index 0, before .1
            groups.setdefault(head, {}).setdefault(0, {})[rest] = value
            continue
        out[key] = value
    for head, items in groups.items():
        indexes = sorted(items)
        if head == entry_head:
            out["Entries"] = [_structure(items[i], None, f"{where}{head}.{i}.") for i in indexes]
            continue
        kind, name = _COLLECTIONS[head]
        if kind == _LIST:
            out[name] = [items[i][""] for i in indexes if "" in items[i]]
            continue
        mapping: dict[str, Any] = {}
        key_name = _MAP_KEYS.get(head, "Name")
        for i in indexes:
            item = items[i]
            prefix = f"{where}{head}.{i}." if i else f"{where}{head}."
            map_key = item.get(key_name)
            if map_key is None:
                raise missing(prefix + key_name)
            if kind == _MAP:
                if "Value" not in item:
                    raise missing(prefix + "Value")
                mapping[map_key] = item["Value"]
            else:
                nested = {t[6:]: v for t, v in item.items() if t.startswith("Value.")}
                mapping[map_key] = _structure(nested, None, prefix + "Value.")
        out[name] = mapping
    return out


# -- responses -----------------------------------------------------------------------------------

_ENTITIES = {"\r": "&#xD;"}  # an XML parser would turn a raw CR into LF
_SPECIAL = re.compile(r"[&<>\r]")
# Actions whose response has an <{Action}Result> element (the others carry metadata only).
_WITH_RESULT = frozenset(
    (
        "CancelMessageMoveTask",
        "ChangeMessageVisibilityBatch",
        "CreateQueue",
        "DeleteMessageBatch",
        "GetQueueAttributes",
        "GetQueueUrl",
        "ListDeadLetterSourceQueues",
        "ListMessageMoveTasks",
        "ListQueueTags",
        "ListQueues",
        "ReceiveMessage",
        "SendMessage",
        "SendMessageBatch",
        "StartMessageMoveTask",
    )
)
# JSON member -> element of each item, for lists flattened into repeated elements.
_FLAT_LISTS = {
    "QueueUrls": "QueueUrl",
    "queueUrls": "QueueUrl",
    "Messages": "Message",
    "Failed": "BatchResultErrorEntry",
    "Results": "ListMessageMoveTasksResultEntry",
    "StringListValues": "StringListValue",
    "BinaryListValues": "BinaryListValue",
}
# JSON member -> (element of each entry, key element, value element) for flattened maps.
_FLAT_MAPS = {
    "Attributes": ("Attribute", "Name", "Value"),
    "Tags": ("Tag", "Key", "Value"),
    "MessageAttributes": ("MessageAttribute", "Name", "Value"),
}


def _escape(text: str) -> str:
    if _SPECIAL.search(text) is None:  # the usual case: nothing to escape
        return text
    return escape(text, _ENTITIES)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    return _escape(str(value))


def _attribute_value(value: dict[str, Any]) -> str:
    """A message attribute value in AWS's member order: the value, then DataType."""
    if "StringValue" in value:
        inner = f"<StringValue>{_text(value['StringValue'])}</StringValue>"
    elif "BinaryValue" in value:
        inner = f"<BinaryValue>{_text(value['BinaryValue'])}</BinaryValue>"
    else:
        inner = ""
    if len(value) > 2:  # list values: modeled, though SQS never implemented them
        for key in ("StringListValues", "BinaryListValues"):
            tag = _FLAT_LISTS[key]
            inner += "".join(f"<{tag}>{_text(item)}</{tag}>" for item in value.get(key) or ())
    return f"{inner}<DataType>{_text(value.get('DataType', ''))}</DataType>"


def _map(name: str, mapping: dict[str, Any]) -> str:
    tag, key_tag, value_tag = _FLAT_MAPS[name]
    if tag == "MessageAttribute":
        return "".join(
            f"<MessageAttribute><Name>{_escape(key)}</Name><Value>{_attribute_value(value)}"
            "</Value></MessageAttribute>"
            for key, value in mapping.items()
        )
    return "".join(
        f"<{tag}><{key_tag}>{_escape(key)}</{key_tag}><{value_tag}>{_text(value)}</{value_tag}>"
        f"</{tag}>"
        for key, value in mapping.items()
    )


def _message(message: dict[str, Any]) -> str:
    """One received message: the hot path of ReceiveMessage."""
    parts = []
    for name, value in message.items():
        if type(value) is str:
            parts.append(f"<{name}>{_escape(value)}</{name}>")
        elif name in _FLAT_MAPS:
            parts.append(_map(name, value))
        elif value is not None:
            parts.append(f"<{name}>{_text(value)}</{name}>")
    return f"<Message>{''.join(parts)}</Message>"


def _members(result: dict[str, Any], action: str) -> str:
    parts: list[str] = []
    for name, value in result.items():
        if value is None:
            continue
        if isinstance(value, dict):
            if name in _FLAT_MAPS:
                parts.append(_map(name, value))
            else:
                parts.append(f"<{name}>{_members(value, action)}</{name}>")
        elif isinstance(value, list):
            if name == "Messages":
                parts.extend(_message(m) for m in value)
                continue
            tag = f"{action}ResultEntry" if name == "Successful" else _FLAT_LISTS.get(name, name)
            for item in value:
                inner = _members(item, action) if isinstance(item, dict) else _text(item)
                parts.append(f"<{tag}>{inner}</{tag}>")
        else:
            parts.append(f"<{name}>{_text(value)}</{name}>")
    return "".join(parts)


def response(action: str, result: dict[str, Any], request_id: str) -> bytes:
    """The XML body of a successful ``action``."""
    metadata = f"<ResponseMetadata><RequestId>{_escape(request_id)}</RequestId></ResponseMetadata>"
    if action in _WITH_RESULT:
        members = _members(result, action)
        # nothing in it: one empty element, as SQS writes it (<ReceiveMessageResult/>)
        result_element = (
            f"<{action}Result>{members}</{action}Result>" if members else f"<{action}Result/>"
        )
        body = result_element + metadata
    else:
        body = metadata
    return (
        f'<?xml version="1.0"?><{action}Response xmlns="{NAMESPACE}">{body}</{action}Response>'
    ).encode()


def error(exc: AwsError, request_id: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(HTTP status, headers, XML body) of an error, as SQS sends it."""
    fault = "Sender" if exc.sender_fault else "Receiver"
    body = (
        f'<?xml version="1.0"?><ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{fault}</Type>'
        f"<Code>{_escape(exc.code)}</Code><Message>{_escape(exc.message)}</Message>"
        f"<Detail/></Error><RequestId>{_escape(request_id)}</RequestId></ErrorResponse>"
    )
    return exc.status, [(b"content-type", CONTENT_TYPE)], body.encode()
