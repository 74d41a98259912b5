"""Every SQS (JSON and query) and SNS action, with parameters of the wrong type or shape: each
must get AWS's error for bad input (4xx), never the InternalError (500) kept for bugs.

The requests go straight into the ASGI app in this process (no sockets), so a few thousand of
them take seconds. Each action starts from a well-formed request (real queue URLs, receipt
handles, topic and subscription ARNs, so the handlers get past their first checks) and changes
one member at a time, nested members too: to a value of every other JSON type (JSON), or for
the query protocols to odd values and to keys of other shapes (``X.1``, ``X.member.1``...).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import urllib.parse
from collections.abc import Iterator
from typing import Any

import botocore.model
import botocore.serialize
import botocore.session
import pytest

from millpond.server import sns, sqs
from millpond.server.app import App
from millpond.server.context import Context

from .test_server_sqs import query_model

ACCOUNT = "123456789012"
QUEUE_URL = f"http://localhost/{ACCOUNT}/fuzz"
FIFO_URL = f"http://localhost/{ACCOUNT}/fuzz.fifo"
QUEUE_ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:fuzz"
TOPIC_ARN = f"arn:aws:sns:us-east-1:{ACCOUNT}:fuzz"
# JSON values of every type, and the odd ones of each
JSON_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**64,
    1.5,
    "",
    "x",
    "-1",
    "\x00",
    "\ud800",  # a lone surrogate: no UTF-8 text
    [],
    ["x"],
    [1],
    [None],
    [[]],
    {},
    {"a": 1},
    {"a": None},
    {"a": []},
    {"a": {"b": 1}},
    [{}],
    [{"Id": 1}],
]
FORM_VALUES = ["", "x", "-1", "1.5", "99999999999999999999", "true", "\x00", "%ZZ", "A" * 300]


class Harness:
    """The daemon's ASGI app over a Context in ``data_dir``, driven in this process."""

    def __init__(self, data_dir: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.ctx = Context(data_dir, durability="os")
        self.app = App(self.ctx)
        self._lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        started = self.loop.create_future()

        async def send(message: dict[str, Any]) -> None:
            if not started.done():
                started.set_result(message)

        self._lifespan_task = self.loop.create_task(
            self.app({"type": "lifespan"}, self._lifespan.get, send)
        )
        self._lifespan.put_nowait({"type": "lifespan.startup"})
        self.loop.run_until_complete(started)
        self.ctx.stopping = True  # long polls return at once: no request waits

    def close(self) -> None:
        self._lifespan.put_nowait({"type": "lifespan.shutdown"})
        self.loop.run_until_complete(self._lifespan_task)
        self.loop.close()

    def request(
        self, body: bytes, headers: dict[str, str], query_string: bytes = b""
    ) -> tuple[int, bytes]:
        return self.loop.run_until_complete(self.answer(body, headers, query_string))

    async def answer(
        self, body: bytes, headers: dict[str, str], query_string: bytes = b"", late: bool = False
    ) -> tuple[int, bytes]:
        """The app's (status, body) for one request, on the loop (requests may run at once);
        ``late``: its body comes one round of the loop after the app asks for it."""
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "query_string": query_string,
            "scheme": "http",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
        sent: list[dict[str, Any]] = []
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if pending:
                if late:
                    await asyncio.sleep(0)
                return pending.pop()
            await asyncio.Future()  # never disconnects
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        return sent[0]["status"], sent[1]["body"]

    def sqs_json(self, action: str, params: Any) -> tuple[int, bytes]:
        headers = {
            "Host": "localhost",
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"AmazonSQS.{action}",
        }
        return self.request(json.dumps(params).encode(), headers)

    def form(self, form: dict[str, str]) -> tuple[int, bytes]:
        headers = {"Host": "localhost", "Content-Type": "application/x-www-form-urlencoded"}
        data = urllib.parse.urlencode(form, errors="surrogatepass")  # lone surrogates too
        return self.request(data.encode(), headers)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(str(tmp_path_factory.mktemp("fuzz") / "data"))
    yield h
    h.close()


# -- well-formed requests ------------------------------------------------------------------------


class Targets:
    """What the well-formed requests name: made (again) before each action's requests."""

    receipt_handle = "x"
    subscription_arn = f"{TOPIC_ARN}:00000000-0000-0000-0000-000000000000"

    def __init__(self, h: Harness) -> None:
        self.h = h

    def make(self) -> None:
        h = self.h
        h.sqs_json("CreateQueue", {"QueueName": "fuzz"})
        h.sqs_json("CreateQueue", {"QueueName": "fuzz-dlq"})
        redrive = {"deadLetterTargetArn": QUEUE_ARN + "-dlq", "maxReceiveCount": 5}
        h.sqs_json(
            "SetQueueAttributes",
            {"QueueUrl": QUEUE_URL, "Attributes": {"RedrivePolicy": json.dumps(redrive)}},
        )
        h.sqs_json(
            "AddPermission",
            {"QueueUrl": QUEUE_URL, "Label": "l1", "AWSAccountIds": [ACCOUNT], "Actions": ["*"]},
        )
        h.sqs_json("CreateQueue", {"QueueName": "fuzz.fifo", "Attributes": {"FifoQueue": "true"}})
        h.sqs_json("SendMessage", {"QueueUrl": QUEUE_URL, "MessageBody": "m"})
        status, body = h.sqs_json("ReceiveMessage", {"QueueUrl": QUEUE_URL, "VisibilityTimeout": 0})
        messages = json.loads(body).get("Messages")
        if messages:
            Targets.receipt_handle = messages[0]["ReceiptHandle"]
        h.form({"Action": "CreateTopic", "Version": "2010-03-31", "Name": "fuzz"})
        status, body = h.form(
            {
                "Action": "Subscribe",
                "Version": "2010-03-31",
                "TopicArn": TOPIC_ARN,
                "Protocol": "sqs",
                "Endpoint": QUEUE_ARN,
            }
        )
        text = body.decode()
        if "<SubscriptionArn>" in text:
            Targets.subscription_arn = text.split("<SubscriptionArn>")[1].split("<")[0]
        h.form(
            {
                "Action": "AddPermission",
                "Version": "2010-03-31",
                "TopicArn": TOPIC_ARN,
                "Label": "l1",
                "AWSAccountId.member.1": ACCOUNT,
                "ActionName.member.1": "Publish",
            }
        )


def _string(name: str) -> str:
    """A good value of a string member, by its name."""
    known = {
        "QueueUrl": QUEUE_URL,
        "QueueName": "fuzz",
        "ReceiptHandle": Targets.receipt_handle,
        "TopicArn": TOPIC_ARN,
        "TargetArn": TOPIC_ARN,
        "ResourceArn": TOPIC_ARN,
        "SubscriptionArn": Targets.subscription_arn,
        "SourceArn": QUEUE_ARN,
        "Endpoint": QUEUE_ARN,
        "Protocol": "sqs",
        "DataType": "String",
        "StringValue": "v",
        "AttributeName": "DisplayName",
        "AttributeValue": "d",
        "MessageGroupId": "g",
        "Id": "e1",
        "Label": "l1",
        "Name": "fuzz",
        "QueueOwnerAWSAccountId": ACCOUNT,
        "AWSAccountId": ACCOUNT,
        "AWSAccountIds": ACCOUNT,
        "Action": "SendMessage",
        "ActionName": "Publish",
        "AttributeNames": "All",
        "TagKey": "k",
    }
    return known.get(name, "x")


# Members left out of (or set in) an action's well-formed request, where the model's every
# member would make it fail its first check (a NextToken of "x", an SMS phone number...).
LEFT_OUT = {
    "NextToken",
    "PhoneNumber",
    "TargetArn",
    "MessageDeduplicationId",
    "DataProtectionPolicy",
}
SET: dict[str, dict[str, Any]] = {
    "sqs:SendMessage": {
        "DelaySeconds": 0,
        "MessageSystemAttributes": {
            "AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-5759e988-bd862e3f"}
        },
    },
    "sqs:StartMessageMoveTask": {"SourceArn": QUEUE_ARN + "-dlq", "DestinationArn": QUEUE_ARN},
    "sqs:CancelMessageMoveTask": {"TaskHandle": "x"},
    "sqs:AddPermission": {"Label": "l2"},
    "sns:AddPermission": {"Label": "l2"},
    "sns:SetSubscriptionAttributes": {"AttributeName": "RawMessageDelivery"},
    "sns:SetTopicAttributes": {"AttributeName": "DisplayName"},
    "sns:Subscribe": {"Attributes": {"RawMessageDelivery": "true"}},
    "sns:CreateTopic": {
        "Name": "fuzz-created",
        "Attributes": {"DisplayName": "d"},
        "Tags": [{"Key": "k", "Value": "v"}],
    },
    "sns:Publish": {"MessageStructure": "json", "Message": json.dumps({"default": "m"})},
    "sns:SetSubscriptionAttributes#value": {"AttributeValue": "true"},
}


def good_value(shape: botocore.model.Shape, name: str, service: str, depth: int = 0) -> Any:
    """A well-formed value of ``shape`` (member ``name``), in the JSON member shape."""
    kind = shape.type_name
    if kind == "string":
        return _string(name)
    if kind == "blob":
        return base64.b64encode(b"bin").decode()
    if kind in ("integer", "long"):
        return 0 if name in ("WaitTimeSeconds", "DelaySeconds", "VisibilityTimeout") else 1
    if kind == "boolean":
        return True
    if kind == "list":
        assert isinstance(shape, botocore.model.ListShape)
        member = name if name in ("AttributeNames", "AWSAccountIds") else name.rstrip("s")
        return [good_value(shape.member, member, service, depth + 1)]
    if kind == "map":
        assert isinstance(shape, botocore.model.MapShape)
        key = {
            "Attributes": "VisibilityTimeout" if service == "sqs" else "DisplayName",
            "MessageSystemAttributes": "AWSTraceHeader",
        }
        value = good_value(shape.value, "AttributeValue", service, depth + 1)
        if shape.value.type_name == "string" and name == "Attributes" and service == "sqs":
            value = "30"
        return {key.get(name, "k"): value}
    if kind == "structure":
        assert isinstance(shape, botocore.model.StructureShape)
        if shape.name == "MessageAttributeValue":
            return {"DataType": "String", "StringValue": "v"}
        if depth > 3:
            return {}
        return {
            member: good_value(member_shape, member, service, depth + 1)
            for member, member_shape in shape.members.items()
            if member in shape.required_members or (depth == 0 and member not in LEFT_OUT)
        }
    return "x"


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every member path in ``value`` (dict keys and list indexes), outermost first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with the member at ``path`` set to ``new`` (None: left out)."""
    copy = json.loads(json.dumps(value))
    node = copy
    for step in path[:-1]:
        node = node[step]
    if new is None and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = new
    return copy


def requests(model: botocore.model.ServiceModel, action: str) -> Iterator[dict[str, Any]]:
    """The well-formed request of ``action``, then each one-member change of it."""
    operation = model.operation_model(action)
    service = model.endpoint_prefix
    base = good_value(operation.input_shape, action, service) if operation.input_shape else {}
    base.update(SET.get(f"{service}:{action}", {}))
    base.update(SET.get(f"{service}:{action}#value", {}))
    yield base
    for path in list(paths(base)):
        for value in JSON_VALUES:
            yield replaced(base, path, value)
    # members the model has that the well-formed request left out, given with odd values
    members = operation.input_shape.members if operation.input_shape else {}
    for member in members:
        if member not in base:
            for value in JSON_VALUES:
                if value is not None:
                    yield {**base, member: value}


def form_changes(form: dict[str, str]) -> Iterator[dict[str, str]]:
    """One-key changes of a query request: values, and keys of other shapes."""
    yield form
    for key in [k for k in form if k not in ("Action", "Version")]:
        rest = {k: v for k, v in form.items() if k != key}
        yield rest
        for value in FORM_VALUES:
            yield {**form, key: value}
        head, _, tail = key.rpartition(".")
        variants = [
            f"{key}.1",
            f"{key}.member.1",
            f"{key}.entry.1.key",
            f"{key}.x",
            f"{key}.1.Name",
        ]
        if head:
            variants += [head, f"{head}.0.{tail}", f"{head}.x.{tail}", f"{head}.99999999999"]
        for variant in variants:
            yield {**rest, variant: form[key]}


# -- the fuzz ------------------------------------------------------------------------------------

SESSION = botocore.session.get_session()
SQS_MODEL = SESSION.get_service_model("sqs")
SQS_QUERY_MODEL = botocore.model.ServiceModel(query_model(), "sqs")
SNS_MODEL = SESSION.get_service_model("sns")


def _check(failures: list[str], what: str, reply: tuple[int, bytes]) -> None:
    status, body = reply
    if status >= 500:
        failures.append(f"{what} -> {status} {body[:300]!r}")


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.ERROR, logger="millpond.server"):
        yield
    logged = [r.getMessage() for r in caplog.records if r.name == "millpond.server"]
    assert not logged, logged[:5]


@pytest.mark.parametrize("action", sorted(sqs.HANDLERS))
def test_sqs_json(harness: Harness, action: str, no_tracebacks: None) -> None:
    targets = Targets(harness)
    targets.make()
    failures: list[str] = []
    for params in requests(SQS_MODEL, action):
        _check(failures, f"{action} {params!r}", harness.sqs_json(action, params))
    # bodies that are JSON but no object, or no JSON
    for body in (b"[]", b"1", b'"x"', b"null", b"{", b"\xff"):
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"AmazonSQS.{action}",
        }
        _check(failures, f"{action} {body!r}", harness.request(body, headers))
    assert not failures, "\n".join(failures[:20])


def _forms(model: botocore.model.ServiceModel, action: str) -> Iterator[dict[str, str]]:
    serializer = botocore.serialize.create_serializer("query", include_validation=False)
    operation = model.operation_model(action)
    seen: set[str] = set()
    for params in requests(model, action):
        try:
            form = serializer.serialize_to_request(params, operation)["body"]
        except Exception:  # a change the serializer cannot write: the key changes cover it
            continue
        key = json.dumps(form, sort_keys=True)
        if key not in seen:
            seen.add(key)
            yield form
    base = serializer.serialize_to_request(next(requests(model, action)), operation)["body"]
    yield from form_changes(base)


@pytest.mark.parametrize("action", sorted(sqs.HANDLERS))
def test_sqs_query(harness: Harness, action: str, no_tracebacks: None) -> None:
    Targets(harness).make()
    failures: list[str] = []
    for form in _forms(SQS_QUERY_MODEL, action):
        _check(failures, f"{action} {form!r}", harness.form(form))
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize("action", sorted(sns.HANDLERS))
def test_sns(harness: Harness, action: str, no_tracebacks: None) -> None:
    Targets(harness).make()
    failures: list[str] = []
    for form in _forms(SNS_MODEL, action):
        _check(failures, f"{action} {form!r}", harness.form(form))
    assert not failures, "\n".join(failures[:20])


def test_the_fuzz_can_see_an_internal_error(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A handler that trips over its input with a TypeError is a bug: 500, and logged.
    async def broken(ctx: Any, request: Any) -> dict[str, Any]:
        return {"n": len(request.params["QueueName"])}  # an int has no len()

    monkeypatch.setitem(sqs.HANDLERS, "GetQueueUrl", broken)
    with caplog.at_level(logging.ERROR, logger="millpond.server"):
        status, body = harness.sqs_json("GetQueueUrl", {"QueueName": 5})
    assert status == 500 and b"InternalError" in body
    assert any(r.exc_info for r in caplog.records), caplog.records


def test_a_list_or_map_at_the_top_of_an_sns_request_is_an_unknown_parameter(
    harness: Harness,
) -> None:
    # "member.1=..." made the whole request a list: the handler's params.get raised
    # AttributeError, answered as "A parameter has an invalid type or shape".
    for key in ("member.1", "entry.1.key"):
        status, body = harness.form({"Action": "DeleteTopic", "Version": "2010-03-31", key: "x"})
        assert status == 400
        assert b"Invalid parameter: TopicArn Reason: no value for required parameter" in body
