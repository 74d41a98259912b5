"""Amazon SNS over its query protocol (API 2010-03-31): codec, actions and HTTP/S delivery.

SNS speaks only the query protocol: form-encoded requests whose lists are ``Name.member.N`` and
maps ``Name.entry.N.key`` / ``.value`` (message attributes: ``.Name`` / ``.Value.DataType``...).
:func:`parse` rebuilds the JSON member shape the handlers take; :func:`response` writes SNS's
XML (lists as ``<member>``, maps as ``<entry><key/><value/></entry>``) and :func:`error` its
``<ErrorResponse>``, with SNS's codes (InvalidParameter 400, NotFound 404, AuthorizationError
403...). The handlers are thin: the topic logic is the embedded API's (:mod:`millpond.topic`).

HTTP/S subscriptions: Subscribe queues a SubscriptionConfirmation for the endpoint, whose
SubscribeURL points back at this daemon; the topic's outbox (:mod:`millpond.topic_http`) holds
the POSTs, and a background task per daemon (:func:`start`) makes them: HTTP/1.1 POSTs with the
``x-amz-sns-*`` headers, retried per the DeliveryPolicy, only ever to subscribed endpoints.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any
from xml.sax.saxutils import escape

from millpond import errors
from millpond.broker import Broker
from millpond.dead_letters import parse_arn
from millpond.fan_out import ENTRY_MEMBERS
from millpond.server.context import Context, valid_region
from millpond.server.protocol import AwsError, Request, xml_safe
from millpond.subscription import PHONE_NUMBER
from millpond.topic import Subscription, Topic
from millpond.topic_http import HttpDelivery, HttpOutbox

log = logging.getLogger("millpond.server")

CONTENT_TYPE = b"text/xml"
NAMESPACE = "http://sns.amazonaws.com/doc/2010-03-31/"
PAGE = 100  # ListTopics / ListSubscriptions page size, as SNS

Handler = Callable[[Context, Request], Awaitable[dict[str, Any]]]
HANDLERS: dict[str, Handler] = {}


def action(fn: Handler) -> Handler:
    name = "".join(part.capitalize() for part in fn.__name__.split("_"))

    async def handle(ctx: Context, request: Request) -> dict[str, Any]:
        start(ctx)  # the HTTP/S deliverer runs once SNS is in use
        return await fn(ctx, request)

    HANDLERS[name] = handle
    return fn


# -- requests ------------------------------------------------------------------------------------


_MAX_DOTS = 32  # the deepest SNS member has 7 (PublishBatchRequestEntries...Value.DataType)


def parse(action: str, form: dict[str, str]) -> dict[str, Any]:
    """The request's parameters in the JSON member shape (``Action`` and ``Version`` left out).

    ``X.member.N`` -> a list in N order; ``X.entry.N.key/value`` (or ``.Name/.Value``) -> a
    map; other dotted keys -> nested structures. Values stay strings (BinaryValue: base64).
    """
    root: dict[str, Any] = {}
    for key, value in form.items():
        if key in ("Action", "Version") or key.count(".") > _MAX_DOTS:
            continue  # too deep for any SNS member: unknown, ignored (and _shape stays shallow)
        *path, last = key.split(".")
        node = root
        for part in path:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if not isinstance(node.get(last), dict):
            node[last] = value
    # The request itself is a structure, whatever its keys: a lone "member.1" or "entry.1..."
    # at the top is an unknown parameter, not a list or map in the place of all parameters.
    return {key: _shape(value, key) for key, value in root.items()}


def _indexed(node: dict[str, Any], where: str) -> list[Any]:
    try:
        indexes = sorted((int(i), i) for i in node)
    except ValueError:
        raise _invalid(where) from None
    if any(n < 1 for n, _ in indexes):
        raise _invalid(where)
    return [node[i] for _, i in indexes]


def _shape(node: Any, where: str) -> Any:
    if not isinstance(node, dict):
        return node
    if len(node) == 1 and isinstance(node.get("member"), dict):
        items = _indexed(node["member"], where)
        return [_shape(item, f"{where}.member") for item in items]
    if len(node) == 1 and isinstance(node.get("entry"), dict):
        mapping: dict[str, Any] = {}
        for entry in _indexed(node["entry"], where):
            if not isinstance(entry, dict):
                raise _invalid(where)
            key = entry.get("key", entry.get("Name"))
            value = entry.get("value", entry.get("Value"))
            if not isinstance(key, str) or value is None:
                raise _invalid(where)
            mapping[key] = _shape(value, f"{where}.{key}")
        return mapping
    return {k: _shape(v, f"{where}.{k}" if where else k) for k, v in node.items()}


def _invalid(parameter: str) -> AwsError:
    return AwsError("InvalidParameter", f"Invalid parameter: {parameter}", 400)


def _required(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise AwsError(
            "InvalidParameter", f"Invalid parameter: {name} Reason: no value for required parameter"
        )
    return value


def _attribute_name(params: dict[str, Any]) -> str:
    name = _required(params, "AttributeName")
    if not isinstance(name, str):  # AttributeName.x=...: a structure, no attribute's name
        raise _invalid("AttributeName")
    return name


# -- responses -----------------------------------------------------------------------------------

_NO_RESULT = frozenset(
    (
        "AddPermission",
        "DeleteTopic",
        "RemovePermission",
        "SetSubscriptionAttributes",
        "SetTopicAttributes",
        "Unsubscribe",
    )
)
_ENTITIES = {"\r": "&#xD;"}  # an XML parser would turn a raw CR into LF


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    # a stored DisplayName or tag, or an error quoting the input, may hold what XML cannot carry
    return escape(xml_safe(str(value)), _ENTITIES)


def _members(result: dict[str, Any]) -> str:
    parts = []
    for name, value in result.items():
        if value is None:
            continue
        if name == "Attributes" and isinstance(value, dict):
            inner = "".join(
                f"<entry><key>{_text(k)}</key><value>{_text(v)}</value></entry>"
                for k, v in value.items()
            )
        elif isinstance(value, dict):
            inner = _members(value)
        elif isinstance(value, list):
            inner = "".join(
                f"<member>{_members(item) if isinstance(item, dict) else _text(item)}</member>"
                for item in value
            )
        else:
            inner = _text(value)
        parts.append(f"<{name}>{inner}</{name}>")
    return "".join(parts)


def response(action: str, result: dict[str, Any], request_id: str) -> bytes:
    """The XML body of a successful ``action``."""
    metadata = f"<ResponseMetadata><RequestId>{_text(request_id)}</RequestId></ResponseMetadata>"
    if action in _NO_RESULT:
        body = metadata
    else:
        body = f"<{action}Result>{_members(result)}</{action}Result>{metadata}"
    return (
        f'<?xml version="1.0"?><{action}Response xmlns="{NAMESPACE}">{body}</{action}Response>'
    ).encode()


# Codes SNS answers with (its model's errors plus the protocol's own); others are mapped.
_SNS_CODES = frozenset(
    (
        "AuthorizationError",
        "BatchEntryIdsNotDistinct",
        "BatchRequestTooLong",
        "ConcurrentAccess",
        "EmptyBatchRequest",
        "FilterPolicyLimitExceeded",
        "IncompleteSignature",
        "InternalError",
        "InvalidAction",
        "InvalidBatchEntryId",
        "InvalidClientTokenId",
        "InvalidParameter",
        "InvalidSecurity",
        "InvalidState",
        "MissingAction",
        "MissingAuthenticationToken",
        "NotFound",
        "OverLimit",
        "ParameterValueInvalid",
        "RequestExpired",
        "ResourceNotFound",
        "ServiceUnavailable",  # a common error, 503 (AWS Knowledge Center, "sns-5xx-errors")
        "SignatureDoesNotMatch",
        "StaleTag",
        "SubscriptionLimitExceeded",
        "TagLimitExceeded",
        "TagPolicy",
        "Throttled",
        "TooManyEntriesInBatchRequest",
        "TopicLimitExceeded",
        "ValidationError",
    )
)


def error(exc: AwsError, request_id: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(HTTP status, headers, XML body) of an error, as SNS sends it.

    Errors of the shared layers with SQS codes (InvalidParameterValue, MissingParameter,
    AWS.SimpleQueueService.*) become SNS's InvalidParameter with its "Invalid parameter: " text;
    other server faults InternalError.
    """
    code, message, status, sender = exc.code, exc.message, exc.status, exc.sender_fault
    if code not in _SNS_CODES:
        if status < 500:
            code, status, sender = "InvalidParameter", 400, True
            if not message.startswith("Invalid parameter"):
                message = f"Invalid parameter: {message}"
        else:
            code, status, sender = "InternalError", 500, False
    body = (
        f'<?xml version="1.0"?><ErrorResponse xmlns="{NAMESPACE}"><Error>'
        f"<Type>{'Sender' if sender else 'Receiver'}</Type><Code>{_text(code)}</Code>"
        f"<Message>{_text(message)}</Message></Error><RequestId>{_text(request_id)}</RequestId>"
        "</ErrorResponse>"
    )
    return status, [(b"content-type", CONTENT_TYPE)], body.encode()


# -- helpers -------------------------------------------------------------------------------------


def _arn_name(ctx: Context, request: Request, arn: Any, parameter: str) -> tuple[Broker, str]:
    """(broker, topic name) of a topic ARN of this account and the request's region."""
    parsed = parse_arn(arn, "sns") if isinstance(arn, str) else None
    if parsed is None:
        raise _invalid(_short_arn_reason(arn, parameter))
    broker = ctx.broker(request.region)
    if parsed[1] != request.account_id:
        raise AwsError(
            "AuthorizationError",
            f"User: arn:aws:iam::{request.account_id}:root is not authorized to perform: "
            f"SNS:{request.action} on resource: {arn}",
            403,
        )
    if parsed[0] != broker.region:
        raise _invalid(parameter)
    return broker, parsed[2]


def _short_arn_reason(arn: Any, parameter: str) -> str:
    """SNS's text for a malformed topic or subscription ARN: one of fewer than 6 ':'-separated
    elements names their count ("TopicArn Reason: An ARN must have at least 6 elements, not 1")."""
    count = len(arn.split(":")) if isinstance(arn, str) else 0
    if parameter in ("TopicArn", "SubscriptionArn") and 0 < count < 6:
        return f"{parameter} Reason: An ARN must have at least 6 elements, not {count}"
    return parameter


async def _topic(ctx: Context, request: Request, parameter: str = "TopicArn") -> Topic:
    arn = _required(request.params, parameter)
    broker, name = _arn_name(ctx, request, arn, parameter)
    return await ctx.call(broker.topic, name)  # type: ignore[no-any-return]


def _broker_of_region(ctx: Context, region: str, parameter: str) -> Any:
    """The broker of the region an ARN names, for unsigned requests (which name none).

    Only a region that has data already: an unsigned request must not create one (its topic
    cannot exist there anyway), so TopicNotFound then.
    """
    if not valid_region(region):
        raise _invalid(parameter)
    broker = ctx.existing_broker(region)
    if broker is None:
        raise errors.TopicNotFound("Topic does not exist")
    return broker


async def _subscription(ctx: Context, request: Request) -> Subscription:
    arn = _required(request.params, "SubscriptionArn")
    parts = arn.split(":") if isinstance(arn, str) else []
    if len(parts) == 6 and parts[:3] == ["arn", "aws", "sns"]:
        raise _invalid("SubscriptionId")  # SNS: a topic's ARN, no subscription id after it
    if len(parts) != 7 or parts[:3] != ["arn", "aws", "sns"]:
        raise _invalid(_short_arn_reason(arn, "SubscriptionArn"))
    if not request.access_key and parts[4] == request.account_id:
        # Unsigned (an UnsubscribeURL fetched as is): no credential scope names a region, the
        # subscription's ARN does.
        broker = _broker_of_region(ctx, parts[3], "SubscriptionArn")
    else:
        broker, _ = _arn_name(ctx, request, ":".join(parts[:6]), "SubscriptionArn")
    return await ctx.call(broker.subscription, arn)  # type: ignore[no-any-return]


def _message_attributes(raw: Any) -> dict[str, Any] | None:
    """Wire message attributes (BinaryValue base64) to the embedded shape (bytes)."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise _invalid("MessageAttributes")
    out = {}
    for name, value in raw.items():
        if not isinstance(value, dict):
            raise _invalid(f"MessageAttributes.{name}")
        entry = {k: value[k] for k in ("DataType", "StringValue", "BinaryValue") if k in value}
        if isinstance(entry.get("BinaryValue"), str):
            try:
                entry["BinaryValue"] = base64.b64decode(entry["BinaryValue"], validate=True)
            except (binascii.Error, ValueError):
                raise AwsError(
                    "ParameterValueInvalid",
                    f"The message attribute '{name}' has an invalid Base64 BinaryValue.",
                ) from None
        out[name] = entry
    return out


def _after(token: Any) -> str:
    """What a NextToken names: the key (name, ARN) of the last entry of the page before ("" for
    no token): the next page lists the entries whose keys sort after it."""
    if not token:
        return ""
    if not isinstance(token, str):  # NextToken.x=...: a structure, no token
        raise _invalid("NextToken")
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise _invalid("NextToken") from None


def _first_page(items: list[Any], key: Callable[[Any], str]) -> tuple[list[Any], str | None]:
    """The first PAGE of ``items`` (sorted by ``key``), and the token of the next page."""
    page = items[:PAGE]
    more = len(items) > PAGE
    return page, base64.urlsafe_b64encode(key(page[-1]).encode()).decode() if more else None


def _subscription_entry(sub: Subscription) -> dict[str, Any]:
    return {
        "SubscriptionArn": "PendingConfirmation" if sub.pending else sub.arn,
        "Owner": sub.owner,
        "Protocol": sub.protocol,
        "Endpoint": _listed_endpoint(sub.endpoint),
        "TopicArn": sub.topic_arn,
    }


def _listed_endpoint(endpoint: str) -> str:
    """The endpoint as SNS lists it: the password of an http(s)://user:password@host URL shown
    as **** (AWS's ListSubscriptionsByTopic answer, logged in hashicorp/terraform#11108).
    A queue's ARN has no netloc: listed as is."""
    netloc = urllib.parse.urlsplit(endpoint).netloc
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return endpoint
    user = userinfo.partition(":")[0]
    return endpoint.replace(netloc, f"{user}:****@{host}", 1)


# -- topics --------------------------------------------------------------------------------------


@action
async def create_topic(ctx: Context, request: Request) -> dict[str, Any]:
    params = request.params
    name = _required(params, "Name")
    broker = ctx.broker(request.region)
    # An empty list ("Tags=", as boto3 sends []) is no tags, as for SNS.
    tags = params.get("Tags") or None
    topic = await ctx.call(broker._topics.create, name, params.get("Attributes") or None, tags)
    return {"TopicArn": topic.arn}


@action
async def delete_topic(ctx: Context, request: Request) -> dict[str, Any]:
    broker, name = _arn_name(ctx, request, _required(request.params, "TopicArn"), "TopicArn")
    await ctx.call(broker.delete_topic, name)
    return {}


@action
async def list_topics(ctx: Context, request: Request) -> dict[str, Any]:
    broker = ctx.broker(request.region)
    after = _after(request.params.get("NextToken"))  # the name of the page before's last topic
    # only this page's topics (and one more: is there a next page?), not every topic's name
    names = await ctx.call(broker._topics.names_after, after, PAGE + 1)
    page, token = _first_page(names, str)
    return {"Topics": [{"TopicArn": broker.arn("sns", n)} for n in page], "NextToken": token}


@action
async def get_topic_attributes(ctx: Context, request: Request) -> dict[str, Any]:
    topic = await _topic(ctx, request)
    return {"Attributes": await ctx.call(topic.get_attributes)}


@action
async def set_topic_attributes(ctx: Context, request: Request) -> dict[str, Any]:
    topic = await _topic(ctx, request)
    name = _attribute_name(request.params)
    await ctx.call(topic.set_attributes, {name: request.params.get("AttributeValue") or ""})
    return {}


@action
async def add_permission(ctx: Context, request: Request) -> dict[str, Any]:
    topic = await _topic(ctx, request)
    params = request.params
    label = _required(params, "Label")
    accounts = _required(params, "AWSAccountId")
    actions = _required(params, "ActionName")
    await ctx.call(topic.add_permission, label, accounts, actions)
    return {}


@action
async def remove_permission(ctx: Context, request: Request) -> dict[str, Any]:
    topic = await _topic(ctx, request)
    await ctx.call(topic.remove_permission, _required(request.params, "Label"))
    return {}


async def _tagged(ctx: Context, request: Request) -> Topic:
    try:
        return await _topic(ctx, request, "ResourceArn")
    except errors.TopicNotFound:
        raise AwsError("ResourceNotFound", "Resource does not exist", 404) from None


@action
async def tag_resource(ctx: Context, request: Request) -> dict[str, Any]:
    topic = await _tagged(ctx, request)
    await ctx.call(topic.tag, _required(request.params, "Tags"))
    return {}


@action
async def untag_resource(ctx: Context, request: Request) -> dict[str, Any]:
    topic = await _tagged(ctx, request)
    await ctx.call(topic.untag, _required(request.params, "TagKeys"))
    return {}


@action
async def list_tags_for_resource(ctx: Context, request: Request) -> dict[str, Any]:
    topic = await _tagged(ctx, request)
    tags = await ctx.call(topic.tags)
    return {"Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


# -- subscriptions -------------------------------------------------------------------------------


@action
async def subscribe(ctx: Context, request: Request) -> dict[str, Any]:
    params = request.params
    topic = await _topic(ctx, request)
    protocol = _required(params, "Protocol")
    endpoint = params.get("Endpoint") or ""
    if protocol == "sqs" and not (isinstance(endpoint, str) and endpoint.startswith("arn:")):
        raise _invalid("SQS endpoint ARN")  # a queue URL is refused, as by SNS
    sub = await ctx.call(
        lambda: topic.subscribe(
            endpoint,
            attributes=params.get("Attributes") or None,
            protocol=protocol,
            service_url=f"{request.scheme}://{request.host}",
        )
    )
    if sub.pending and str(params.get("ReturnSubscriptionArn", "")).lower() != "true":
        return {"SubscriptionArn": "pending confirmation"}
    return {"SubscriptionArn": sub.arn}


@action
async def confirm_subscription(ctx: Context, request: Request) -> dict[str, Any]:
    params = request.params
    arn = _required(params, "TopicArn")
    token = _required(params, "Token")
    # The SubscribeURL is fetched unsigned: the topic's region is the ARN's, not the request's.
    parsed = parse_arn(arn, "sns") if isinstance(arn, str) else None
    if parsed is None or parsed[1] != request.account_id:
        raise _invalid("Topic")
    topic = await _confirming_topic(ctx, parsed[0], parsed[2], token)
    # Only a signed confirmation can ask that unsubscribing be signed too (SNS's rule); an
    # unsigned fetch of the SubscribeURL that adds the parameter does not get that power.
    authenticate = params.get("AuthenticateOnUnsubscribe") or False
    sub = await ctx.call(
        topic.confirm_subscription, token, authenticate if request.authenticated else False
    )
    return {"SubscriptionArn": sub.arn}


async def _confirming_topic(ctx: Context, region: str, name: str, token: Any) -> Topic:
    """The topic a ConfirmSubscription confirms in: the one its ARN names or, when that names no
    topic of the region, the one whose subscription the token is for. SNS confirms with such an
    ARN all the same (AWS-recorded: LocalStack's test_subscribe_external_http_endpoint,
    "nonexistent-token-confirm"); with no subscription to confirm, "Invalid parameter: Token"
    (never NotFound)."""
    try:
        broker = _broker_of_region(ctx, region, "Topic")
    except errors.TopicNotFound:
        raise _invalid("Token") from None  # a region without data: no token of it exists
    try:
        return await ctx.call(broker.topic, name)  # type: ignore[no-any-return]
    except errors.TopicNotFound:
        pass
    owner = await ctx.call(broker._topics.topic_of_token, token)
    if owner is not None:
        with contextlib.suppress(errors.TopicNotFound):  # deleted meanwhile: no token either
            return await ctx.call(broker.topic, owner)  # type: ignore[no-any-return]
    raise _invalid("Token")


@action
async def unsubscribe(ctx: Context, request: Request) -> dict[str, Any]:
    try:
        sub = await _subscription(ctx, request)
    except errors.TopicNotFound:
        return {}  # unsubscribing twice succeeds
    if not request.authenticated:
        # An unsigned UnsubscribeURL GET (the daemon checks signatures): SNS allows it unless
        # the subscription was confirmed with AuthenticateOnUnsubscribe (SQS ones always are).
        attributes = await ctx.call(sub.get_attributes)
        if attributes.get("ConfirmationWasAuthenticated") == "true":
            raise AwsError(
                "AuthorizationError",
                "Unsubscribing this subscription requires a signed request "
                "(it was confirmed with AuthenticateOnUnsubscribe).",
                403,
            )
    await ctx.call(sub.unsubscribe)
    return {}


@action
async def list_subscriptions(ctx: Context, request: Request) -> dict[str, Any]:
    after = _after(request.params.get("NextToken"))
    # One page (and one more to know whether there is a next): not every subscription read
    subs = await ctx.call(ctx.broker(request.region)._topics.subscriptions_after, after, PAGE + 1)
    page, token = _first_page(subs, _arn_of)
    return {"Subscriptions": [_subscription_entry(s) for s in page], "NextToken": token}


@action
async def list_subscriptions_by_topic(ctx: Context, request: Request) -> dict[str, Any]:
    topic = await _topic(ctx, request)
    after = _after(request.params.get("NextToken"))
    subs = await ctx.call(topic._subscriptions_after, after, PAGE + 1)
    page, token = _first_page(subs, _arn_of)
    return {"Subscriptions": [_subscription_entry(s) for s in page], "NextToken": token}


def _arn_of(sub: Subscription) -> str:
    return sub.arn


@action
async def get_subscription_attributes(ctx: Context, request: Request) -> dict[str, Any]:
    sub = await _subscription(ctx, request)
    return {"Attributes": await ctx.call(sub.get_attributes)}


@action
async def set_subscription_attributes(ctx: Context, request: Request) -> dict[str, Any]:
    sub = await _subscription(ctx, request)
    name = _attribute_name(request.params)
    await ctx.call(sub.set_attributes, {name: request.params.get("AttributeValue")})
    return {}


# -- publish -------------------------------------------------------------------------------------


@action
async def publish(ctx: Context, request: Request) -> dict[str, Any]:
    params = request.params
    phone = params.get("PhoneNumber")
    if phone:
        if not (isinstance(phone, str) and PHONE_NUMBER.fullmatch(phone)):
            raise _invalid(f"PhoneNumber Reason: {phone} is not valid to publish to")
        raise _invalid("PhoneNumber Reason: millpond does not send SMS")
    # An empty TopicArn is given (SNS: a malformed ARN of 1 element), not missing.
    parameter = "TopicArn" if "TopicArn" in params or not params.get("TargetArn") else "TargetArn"
    arn = params.get(parameter)
    if arn is None:
        raise _invalid("TopicArn or TargetArn Reason: no value for required parameter")
    if parameter == "TargetArn" and isinstance(arn, str) and ":endpoint/" in arn:
        # SNS: a (mobile push) platform endpoint ARN; none exist here
        raise _invalid("TargetArn Reason: No endpoint found for the target arn specified")
    broker, name = _arn_name(ctx, request, arn, parameter)
    if "Message" not in params:
        raise AwsError(
            "ValidationError",
            "1 validation error detected: Value null at 'message' failed to satisfy constraint: "
            "Member must not be null",
        )
    attributes = _message_attributes(params.get("MessageAttributes"))
    topic = await ctx.call(broker.topic, name)
    result = await ctx.call(
        lambda: topic.publish_message(
            params["Message"],
            subject=params.get("Subject"),
            attributes=attributes,
            group_id=params.get("MessageGroupId"),
            deduplication_id=params.get("MessageDeduplicationId"),
            message_structure=params.get("MessageStructure"),
            trace_header=request.trace_header,  # X-Amzn-Trace-Id: the queues' AWSTraceHeader
        )
    )
    return result  # type: ignore[no-any-return]


@action
async def publish_batch(ctx: Context, request: Request) -> dict[str, Any]:
    topic = await _topic(ctx, request)
    entries = request.params.get("PublishBatchRequestEntries") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise _invalid("PublishBatchRequestEntries")
    # Only SNS's member names: the embedded API also reads its keyword names ("id", "message",
    # ...), which on the wire are unknown parameters, not an entry's Id or Message.
    entries = [{k: v for k, v in e.items() if k in ENTRY_MEMBERS} for e in entries]
    for entry in entries:
        entry["MessageAttributes"] = _message_attributes(entry.get("MessageAttributes"))
    results = await ctx.call(
        lambda: topic.publish_batch(entries, trace_header=request.trace_header)
    )
    return {
        "Successful": [r for r in results if "MessageId" in r],
        "Failed": [r for r in results if "MessageId" not in r],
    }


# -- HTTP/S delivery -----------------------------------------------------------------------------

POLL_S = 0.5  # how often the outbox is looked at without a wake-up (other processes, retries)
TIMEOUT_S = 15.0  # per POST: connect, send, and the status line
MAX_IN_FLIGHT = 64
_deliverers: dict[int, _Deliverer] = {}  # id(Context) -> its deliverer
_ssl_context: ssl.SSLContext | None = None


def start(ctx: Context) -> None:
    """Start the HTTP/S deliverer of ``ctx`` (idempotent; call from its event loop)."""
    if id(ctx) not in _deliverers:
        _deliverers[id(ctx)] = _Deliverer(ctx)


async def stop(ctx: Context) -> None:
    """Stop the deliverer (before ``ctx.close()``): POSTs in flight are abandoned, and their
    deliveries due again at once for the next run (their leases given back)."""
    deliverer = _deliverers.pop(id(ctx), None)
    if deliverer is not None:
        await deliverer.stop()


class _Deliverer:
    """Drains the outboxes of a daemon's brokers: one task, plus one task per POST in flight."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._watched: dict[int, HttpOutbox] = {}
        self._posts: set[asyncio.Task[None]] = set()
        # Deliveries taken and not yet answered (POST unfinished): given back on stop. Once
        # a POST has an answer it leaves here, and its settling is never cut short.
        self._unfinished: dict[HttpDelivery, HttpOutbox] = {}
        # A take under way (its outbox and result): a stop during it gives back what it took.
        self._taking: tuple[HttpOutbox, asyncio.Future[list[HttpDelivery]]] | None = None
        self._region_failed = False  # a new region's data could not be opened (logged once)
        self._task = self._loop.create_task(self._run())

    def poke(self) -> None:
        """Look at the outboxes now (any thread: the outbox calls this after a commit)."""
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(self._wake.set)

    async def stop(self) -> None:
        for outbox in self._watched.values():
            outbox.remove_listener(self.poke)
        tasks = [self._task, *self._posts]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._taking is not None:  # a take under way when stopped: its deliveries too
            outbox, taking = self._taking
            with contextlib.suppress(Exception):
                for delivery in await taking:
                    self._unfinished[delivery] = outbox
        by_outbox: dict[int, tuple[HttpOutbox, list[HttpDelivery]]] = {}
        for delivery, outbox in self._unfinished.items():
            by_outbox.setdefault(id(outbox), (outbox, []))[1].append(delivery)
        for outbox, deliveries in by_outbox.values():
            try:
                await self._ctx.call(outbox.release, deliveries)
            except (errors.BrokerClosed, RuntimeError):
                pass  # closed already: the leases run out and the next run makes them
        self._unfinished.clear()

    async def _run(self) -> None:
        while True:
            wait_s = POLL_S
            try:
                self._open_new_regions()
                for broker in self._ctx.brokers():
                    wait_s = min(wait_s, await self._drain(broker))
            except (errors.BrokerClosed, RuntimeError):  # closing: the executor is shut down
                return
            except Exception:  # keep delivering whatever one failure was
                log.exception("HTTP/S delivery: outbox error")
                wait_s = POLL_S
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)
            self._wake.clear()

    def _open_new_regions(self) -> None:
        """Open the regions another process created since the start (another daemon, an
        embedded broker): their deliveries are made too, as those of the regions found then."""
        try:
            self._ctx.open_regions()
        except (errors.BrokerClosed, RuntimeError):
            raise  # closing
        except Exception as exc:  # one region that cannot be opened stops no other's POSTs
            if not self._region_failed:
                log.warning("HTTP/S delivery: cannot open a new region's data: %s", exc)
            self._region_failed = True
        else:
            self._region_failed = False

    async def _drain(self, broker: Broker) -> float:
        """Make the POSTs due in ``broker``'s outbox; returns how long (s) until the next one
        (POLL_S at most: other processes add deliveries too)."""
        outbox = broker._topics.http
        if id(outbox) not in self._watched:
            self._watched[id(outbox)] = outbox
            outbox.add_listener(self.poke)
        room = MAX_IN_FLIGHT - len(self._posts)
        if room <= 0:
            return POLL_S  # a finished POST pokes
        due = await self._ctx.call(outbox.next_due_ms)
        now_ms = broker.clock.now_ms()
        if due is None or due > now_ms:  # a read, not a write: an idle daemon commits nothing
            # due soon (a retry, a throttled subscription's turn): looked at again then
            return POLL_S if due is None else min(POLL_S, (due - now_ms) / 1000)
        # Shielded: a stop during the take still learns what it leased (to give it back).
        taking = asyncio.ensure_future(self._ctx.call(outbox.take, room))
        self._taking = (outbox, taking)
        deliveries = await asyncio.shield(taking)
        self._taking = None
        for delivery in deliveries:
            self._unfinished[delivery] = outbox
            task = self._loop.create_task(self._send(outbox, delivery))
            self._posts.add(task)
            task.add_done_callback(self._posts.discard)
        return 0.0  # looked at again at once: more may be due, or due soon

    async def _send(self, outbox: HttpOutbox, delivery: HttpDelivery) -> None:
        try:
            status = await post(delivery.url, delivery.headers, delivery.body, TIMEOUT_S)
            reason = f"HTTP {status}"
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            status, reason = 0, f"{type(exc).__name__}: {exc}"
        # Answered: settled below, and not given back by a stop (a 2xx must be settled once).
        del self._unfinished[delivery]
        try:
            if 200 <= status < 300:
                settle = self._ctx.call(outbox.delivered, delivery)
            else:
                log.info("HTTP/S delivery %r failed: %s", delivery, reason)
                # SNS retries only 5xx, 429 and an endpoint it cannot reach (status 0 here);
                # any other answer (3xx redirects too, which it does not follow) is permanent.
                permanent = not (status == 0 or status == 429 or 500 <= status < 600)
                settle = self._ctx.call(
                    lambda: outbox.failed(delivery, permanent=permanent, reason=reason)
                )
            # Shielded: a stop now lets the settling finish (ctx.close waits for the pool).
            await asyncio.shield(settle)
        except (errors.BrokerClosed, RuntimeError):
            return  # closing: the lease runs out and the delivery is made after a restart
        finally:
            self.poke()  # room for another POST


async def post(url: str, headers: list[tuple[str, str]], body: bytes, timeout: float) -> int:
    """POST ``body`` to ``url`` over HTTP/1.1 (TLS for https); returns the response status.

    One connection per POST, closed after the status line: SNS reads no response body.
    """
    global _ssl_context
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    if https and _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=_ssl_context if https else None), timeout
    )
    try:
        head = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc.rpartition('@')[2]}"]
        head += [f"{name}: {value}" for name, value in headers]
        head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        writer.write("\r\n".join(head).encode("latin-1") + body)
        await asyncio.wait_for(writer.drain(), timeout)
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1)
    fields = line.split()
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        raise ValueError(f"not an HTTP response: {line[:80]!r}")
    return int(fields[1])
