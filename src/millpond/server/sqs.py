"""Amazon SQS actions over the broker: parameters and results in the AWS JSON member shape.

Each handler is ``async def action(ctx, request) -> dict``; the codecs in ``sqs_json`` and
``sqs_query`` turn wire requests into ``request.params`` and results back into bytes. Errors are
raised as AwsError (or MillpondError, mapped by the caller).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from millpond import errors
from millpond.broker import Broker
from millpond.dead_letters import handle_source, parse_arn
from millpond.fifo_queue import FifoQueue
from millpond.message import Message
from millpond.message_attributes import (
    first_bad_char,
    md5_of_body,
    md5_of_message_attributes,
    message_attributes_size,
    select_message_attributes,
    validate_message_attributes,
)
from millpond.queue import MAX_BATCH, Queue, check_message_id_field
from millpond.server.context import Context
from millpond.server.protocol import (
    AwsError,
    Request,
    invalid,
    missing,
    queue_name_from_url,
    queue_url,
    xml_safe,
)
from millpond.wakeups import Wakeups

Handler = Callable[[Context, Request], Awaitable[dict[str, Any]]]
HANDLERS: dict[str, Handler] = {}
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only, as queue_attributes._DECIMAL
SYSTEM_ATTRIBUTES = (
    "ApproximateFirstReceiveTimestamp",
    "ApproximateReceiveCount",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
    "MessageDeduplicationId",
    "MessageGroupId",
    "SenderId",
    "SentTimestamp",
    "SequenceNumber",
)


def action(fn: Handler) -> Handler:
    name = "".join(part.capitalize() for part in fn.__name__.split("_"))
    HANDLERS[name] = fn
    return fn


# -- helpers -------------------------------------------------------------------------------------


def _queue(ctx: Context, request: Request) -> Queue:
    name = queue_name_from_url(request, request.params.get("QueueUrl") or request.path)
    return ctx.broker(request.region).queue(name)


def _int_param(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    # int() alone would take " 1 ", "1_0" (10) and non-ASCII digits ("١"), which SQS refuses;
    # a float, list or map is no integer either (the JSON codec refuses them first).
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    raise invalid(f"Value {value} for parameter {name} is invalid. Reason: must be an integer.")


def _message_attributes(raw: Any) -> dict[str, Any] | None:
    """Wire message attributes (Binary as base64 text) to the broker's shape (bytes)."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise invalid("MessageAttributes must be a map.")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if not isinstance(value, dict):
            raise invalid(f"The message attribute '{name}' is malformed.")
        entry = dict(value)
        binary = entry.get("BinaryValue")
        if isinstance(binary, str):
            try:
                entry["BinaryValue"] = base64.b64decode(binary, validate=True)
            except (binascii.Error, ValueError):
                raise invalid(
                    f"The message attribute '{name}' has an invalid Base64 BinaryValue."
                ) from None
        out[name] = entry
    return out


def _wire_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in attributes.items():
        entry = {"DataType": value["DataType"]}
        if "BinaryValue" in value:
            entry["BinaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
        else:
            entry["StringValue"] = value["StringValue"]
        out[name] = entry
    return out


def _md5_of_trace_header(trace: str | None) -> str | None:
    """MD5OfMessageSystemAttributes, from the checked value alone: computed from the raw map, it
    could fail (a stray invalid BinaryValue) after the message was stored."""
    if trace is None:
        return None
    return md5_of_message_attributes(
        {"AWSTraceHeader": {"DataType": "String", "StringValue": trace}}
    )


def _check_batch(entries: Any, entry_name: str) -> list[dict[str, Any]]:
    if not entries:
        raise AwsError(
            "AWS.SimpleQueueService.EmptyBatchRequest",
            f"There should be at least one {entry_name} in the request.",
            400,
            "EmptyBatchRequest",
        )
    if not isinstance(entries, list):
        raise invalid("Entries must be a list.")
    if len(entries) > MAX_BATCH:
        raise AwsError(
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}.",
            400,
            "TooManyEntriesInBatchRequest",
        )
    ids = [e.get("Id") if isinstance(e, dict) else None for e in entries]
    for entry_id in ids:
        if not isinstance(entry_id, str) or not _BATCH_ID.fullmatch(entry_id):
            raise AwsError(
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and "
                "underscores. It can be at most 80 letters long.",
                400,
                "InvalidBatchEntryId",
            )
    if len(set(ids)) != len(ids):
        raise AwsError(
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            "Two or more batch entries in the request have the same Id.",
            400,
            "BatchEntryIdsNotDistinct",
        )
    return entries


def _token_name(token: Any) -> str:
    """The name a NextToken names (the base64 of the last name of the previous page); "" for
    no token: the next page lists the names after it."""
    if not token:
        return ""
    if not isinstance(token, str):
        raise invalid("Invalid NextToken.")
    try:
        return base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid("Invalid NextToken.") from None


def _after_token(names: list[str], token: Any) -> list[str]:
    """The names after a NextToken."""
    last = _token_name(token)
    return [n for n in names if n > last]


def _batch_result(entries: list[dict[str, Any]], errors: list[Any]) -> dict[str, Any]:
    """Successful/Failed lists of a batch whose entries succeed or fail one by one."""
    return {
        "Successful": [{"Id": e["Id"]} for e, r in zip(entries, errors) if r is None],
        "Failed": [_failed(e["Id"], r) for e, r in zip(entries, errors) if r is not None],
    }


def _failed(entry_id: str, exc: BaseException) -> dict[str, Any]:
    error = exc if isinstance(exc, AwsError) else AwsError.from_millpond(exc)  # type: ignore[arg-type]
    return {
        "Id": entry_id,
        "SenderFault": error.sender_fault,
        "Code": error.code,
        "Message": error.message,
    }


# -- queues --------------------------------------------------------------------------------------


@action
async def create_queue(ctx: Context, request: Request) -> dict[str, Any]:
    params = request.params
    name = params.get("QueueName")
    if not name:
        raise missing("QueueName")
    broker = ctx.broker(request.region)
    queue = await ctx.call(
        broker.create_queue, name, params.get("Attributes") or None, params.get("tags") or None
    )
    return {"QueueUrl": queue_url(request, queue.name)}


@action
async def get_queue_url(ctx: Context, request: Request) -> dict[str, Any]:
    name = request.params.get("QueueName")
    if not name:
        raise missing("QueueName")
    owner = request.params.get("QueueOwnerAWSAccountId")
    if owner and owner != request.account_id:
        raise errors.QueueDoesNotExist(name)
    queue = await ctx.call(ctx.broker(request.region).queue, name)
    return {"QueueUrl": queue_url(request, queue.name)}


@action
async def delete_queue(ctx: Context, request: Request) -> dict[str, Any]:
    name = queue_name_from_url(request, request.params.get("QueueUrl") or request.path)
    await ctx.call(ctx.broker(request.region).delete_queue, name)
    return {}


@action
async def list_queues(ctx: Context, request: Request) -> dict[str, Any]:
    params = request.params
    max_results = _int_param(params, "MaxResults")
    if max_results is not None and not 1 <= max_results <= 1000:
        raise invalid(
            f"Value {max_results} for parameter MaxResults is invalid. Reason: must be between "
            "1 and 1000."
        )
    prefix = params.get("QueueNamePrefix") or ""
    after = _token_name(params.get("NextToken"))
    limit = max_results or 1000
    # only this page's names (and one more: is there a next page?), not every queue's name
    names = await ctx.call(ctx.broker(request.region)._queue_names, prefix, after, limit + 1)
    page = names[:limit]
    result: dict[str, Any] = {}
    if page:
        result["QueueUrls"] = [queue_url(request, n) for n in page]
    if max_results is not None and len(names) > limit:  # AWS: a token only when MaxResults set
        result["NextToken"] = base64.b64encode(page[-1].encode()).decode()
    return result


@action
async def get_queue_attributes(ctx: Context, request: Request) -> dict[str, Any]:
    queue = _queue(ctx, request)
    names = request.params.get("AttributeNames") or []
    if not names:
        return {}
    attributes = await ctx.call(queue.get_attributes, names)
    return {"Attributes": attributes}  # as AWS: an empty map when none of the names has a value


@action
async def set_queue_attributes(ctx: Context, request: Request) -> dict[str, Any]:
    queue = _queue(ctx, request)
    attributes = request.params.get("Attributes")
    if attributes is None:
        raise missing("Attributes")
    await ctx.call(queue.set_attributes, attributes)
    return {}


@action
async def purge_queue(ctx: Context, request: Request) -> dict[str, Any]:
    await ctx.call(_queue(ctx, request).purge)
    return {}


# -- messages ------------------------------------------------------------------------------------


def _check_trace_header(trace: Any) -> None:
    """AWSTraceHeader: type String, a non-empty value in SQS's character set (checked before
    anything is stored; its MD5 and the query protocol's XML need both)."""
    kind, value = (
        (trace.get("DataType"), trace.get("StringValue"))
        if isinstance(trace, dict)
        else (None, None)
    )
    if kind != "String" or not isinstance(value, str) or not value:
        raise invalid(
            "Message system attribute 'AWSTraceHeader' must be of type String with a StringValue."
        )
    bad = first_bad_char(value)
    if bad is not None:
        raise invalid(
            f"Message system attribute 'AWSTraceHeader' has an invalid character '{bad}'."
        )


def _sender_id(ctx: Context, request: Request) -> str | None:
    """The SenderId to keep with a message: the access key of a verified signature (the daemon
    checks them when it has credentials); None otherwise (receives then show the account)."""
    return request.access_key if ctx.credentials and request.access_key else None


# An entry's send, checked: the arguments of Queue._prepare (and FifoQueue._prepare_fifo) in
# their order, body first and attributes third, and the AWSTraceHeader of its
# MessageSystemAttributes, if any (MD5OfMessageSystemAttributes is of that alone). A tuple, not
# a dict or a class: a SendMessage builds it once and reads it twice (~100 opcodes less).
Send = tuple[tuple[Any, ...], str | None]


def _send_args(entry: dict[str, Any], sender_id: str | None, http_trace: str | None = None) -> Send:
    """An entry's send, checked; ``http_trace`` (the request's X-Amzn-Trace-Id) is the
    AWSTraceHeader of an entry whose MessageSystemAttributes give none (SQS: the system
    attribute overrides the HTTP header)."""
    body = entry.get("MessageBody")
    if type(body) is not str or not body:
        raise missing("MessageBody") if body is None or body == "" else _body_not_text()
    system = entry.get("MessageSystemAttributes")
    system_trace = _system_trace(system) if system else None
    delay = entry.get("DelaySeconds")
    attributes = entry.get("MessageAttributes")
    args = (
        body,
        None if delay is None else _int_param(entry, "DelaySeconds"),
        _message_attributes(attributes) if attributes else None,
        entry.get("MessageGroupId"),
        entry.get("MessageDeduplicationId"),
        system_trace or http_trace,
        sender_id,
    )
    return args, system_trace


def _body_not_text() -> AwsError:
    return invalid("MessageBody must be a string.")


def _system_trace(system: Any) -> str | None:
    """The AWSTraceHeader of an entry's MessageSystemAttributes (None if they give none);
    raises for any other name, or for a value that is not a String in SQS's character set."""
    unknown = set(system) - {"AWSTraceHeader"}
    if unknown:
        raise invalid(f"Message system attribute name '{sorted(unknown)[0]}' is invalid.")
    if "AWSTraceHeader" not in system:
        return None
    _check_trace_header(system["AWSTraceHeader"])  # even null, which is no String value either
    trace: str = system["AWSTraceHeader"]["StringValue"]
    return trace


def _send_result(send: Send, message_id: str, sequence: str | None) -> dict[str, Any]:
    args, system_trace = send
    result: dict[str, Any] = {"MD5OfMessageBody": md5_of_body(args[0]), "MessageId": message_id}
    if args[2]:  # the message attributes
        result["MD5OfMessageAttributes"] = md5_of_message_attributes(args[2])
    if system_trace is not None:
        result["MD5OfMessageSystemAttributes"] = _md5_of_trace_header(system_trace)
    if sequence is not None:
        result["SequenceNumber"] = sequence
    return result


async def _send_prepared(
    ctx: Context, queue: Queue, sends: list[Send]
) -> list[tuple[str, str | None]]:
    """Send checked entries in one write; (message id, sequence number or None) per entry."""
    if isinstance(queue, FifoQueue):
        items = [queue._prepare_fifo(*args) for args, _ in sends]
        return await ctx.drive(queue, queue._send_fifo_steps(items))  # type: ignore[no-any-return]
    bodies, blobs, delays = [], [], []
    for args, _ in sends:
        data, blob, delay_ms = queue._prepare(*args)
        bodies.append(data)
        blobs.append(blob)
        delays.append(delay_ms)
    first = await ctx.write(queue, queue._send_write(bodies, blobs, delays))
    return [(message_id, None) for message_id in queue._sent(first, len(bodies))]


def _check_entry(queue: Queue, send: Send) -> None:
    """Raise what the send of this entry would raise, without sending."""
    if isinstance(queue, FifoQueue):
        queue._prepare_fifo(*send[0])
    else:
        queue._prepare(*send[0])


@action
async def send_message(ctx: Context, request: Request) -> dict[str, Any]:
    queue = _queue(ctx, request)
    send = _send_args(request.params, _sender_id(ctx, request), request.trace_header)
    if isinstance(queue, FifoQueue):
        ((message_id, sequence),) = await _send_prepared(ctx, queue, [send])
        return _send_result(send, message_id, sequence)
    # The usual case, one message to a standard queue: stored with the other SendMessages to
    # that queue read before the next commit, in one core call (server/send_batches.py).
    data, blob, delay_ms = queue._prepare(*send[0])
    seq = await ctx.send(queue, data, blob, delay_ms)
    return _send_result(send, queue._message_id(seq), None)


def _entry_size(entry: dict[str, Any]) -> int:
    """Bytes an entry counts toward the batch limit: its body and its attributes, as SQS counts
    them (an entry whose attributes are malformed counts its body; it fails on its own)."""
    size = len(str(entry.get("MessageBody", "")).encode("utf-8", "surrogatepass"))
    try:  # validated first: the size is only defined for well-formed attributes
        attributes = validate_message_attributes(
            _message_attributes(entry.get("MessageAttributes"))
        )
    except (AwsError, errors.MillpondError):
        return size
    return size + message_attributes_size(attributes)


@action
async def send_message_batch(ctx: Context, request: Request) -> dict[str, Any]:
    queue = _queue(ctx, request)
    sender_id = _sender_id(ctx, request)
    entries = _check_batch(request.params.get("Entries"), "SendMessageBatchRequestEntry")
    total = sum(_entry_size(e) for e in entries)
    if total > 1_048_576:
        raise AwsError(
            "AWS.SimpleQueueService.BatchRequestTooLong",
            f"Batch requests cannot be longer than 1048576 bytes. You have sent {total} bytes.",
            400,
            "BatchRequestTooLong",
        )
    if isinstance(queue, FifoQueue):
        for entry in entries:  # one entry without its FIFO ids fails the whole request
            try:
                queue._check_ids_given(
                    entry.get("MessageGroupId"), entry.get("MessageDeduplicationId")
                )
            except errors.MillpondError as exc:
                raise invalid(str(exc)) from None
    good, failed = [], []
    for entry in entries:
        try:
            send = _send_args(entry, sender_id, request.trace_header)
            _check_entry(queue, send)
            good.append((entry, send))
        except (AwsError, errors.MillpondError) as exc:
            failed.append(_failed(entry["Id"], exc))
    successful = []
    if good:
        sent = await _send_prepared(ctx, queue, [send for _, send in good])
        for (entry, send), (message_id, sequence) in zip(good, sent):
            successful.append({"Id": entry["Id"], **_send_result(send, message_id, sequence)})
    return {"Successful": successful, "Failed": failed}


def _wanted_system_attributes(params: dict[str, Any]) -> set[str]:
    names = set(params.get("AttributeNames") or []) | set(
        params.get("MessageSystemAttributeNames") or []
    )
    if any(isinstance(name, str) and name.lower() == "all" for name in names):  # kombu: "ALL"
        return set(SYSTEM_ATTRIBUTES)
    return names & set(SYSTEM_ATTRIBUTES)


def _wire_body(data: bytes, xml: bool) -> tuple[str, str]:
    """(Body, MD5OfBody) as a client gets them.

    SendMessage stores text in SQS's character set, but the native protocol and the embedded
    API take any bytes: what is not UTF-8 goes out as U+FFFD, and over the query protocol so
    does what XML 1.0 cannot carry (one such character made the whole response unparseable).
    The MD5 is that of the Body sent: the SDKs that check it (JS, Java, Go...) refuse the whole
    receive on a mismatch.
    """
    try:
        body = data.decode("utf-8")
        replaced = False
    except UnicodeDecodeError:
        body = data.decode("utf-8", errors="replace")
        replaced = True
    if xml:
        safe = xml_safe(body)
        replaced = replaced or safe != body
        body = safe
    # the usual case: the stored bytes are the Body's UTF-8, no need to encode it again
    return body, md5_of_body(body if replaced else data)


def _wire_message(
    message: Message, wanted: set[str], attribute_names: list[str], sender_id: str, xml: bool
) -> dict[str, Any]:
    body, md5 = _wire_body(message.body, xml)
    out: dict[str, Any] = {
        "MessageId": message.message_id,
        "ReceiptHandle": message.receipt_handle,
        "MD5OfBody": md5,
        "Body": body,
    }
    if wanted:
        system = {
            "SenderId": sender_id,
            "SentTimestamp": str(message.sent_timestamp),
            "ApproximateReceiveCount": str(message.receive_count),
            "ApproximateFirstReceiveTimestamp": str(message.first_receive_timestamp),
        }
        if message.group_id is not None:
            system["MessageGroupId"] = message.group_id
        if message.deduplication_id is not None:
            system["MessageDeduplicationId"] = message.deduplication_id
        if message.sequence_number is not None:
            system["SequenceNumber"] = message.sequence_number
        if message.dead_letter_source_arn is not None:
            system["DeadLetterQueueSourceArn"] = message.dead_letter_source_arn
        if message.trace_header is not None:
            system["AWSTraceHeader"] = message.trace_header
        system = {k: v for k, v in system.items() if k in wanted}
        if system:
            out["Attributes"] = system
    if attribute_names and message.attributes:
        selected = select_message_attributes(message.attributes, attribute_names)
        if selected:
            out["MD5OfMessageAttributes"] = md5_of_message_attributes(selected)
            out["MessageAttributes"] = _wire_attributes(selected)
    return out


async def long_poll(
    ctx: Context,
    queue: Queue,
    max_messages: int,
    visibility_ms: int,
    wait_s: int,
    attempt_id: str | None,
    parked: Callable[[], AbstractAsyncContextManager[None]] = contextlib.nullcontext,
) -> list[Message]:
    """Receive, waiting on the event loop (not a thread) for up to ``wait_s`` seconds (SQS
    ReceiveMessage and the native protocol's queue.receive). Each wait for a message is in
    ``parked()``: the native protocol's connections count a parked poll apart from their
    running requests (see millpond.native.server)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    broker = queue._broker
    notifier = ctx.notifier
    assert notifier is not None
    key = (id(broker), queue.queue_id)
    # Woken by a notice, this poll owes a look for messages: a notice wakes only as many
    # polls as it has messages (see Notifier), so one that ends without looking passes it on;
    # so does one whose look a notice for nobody parked came during (Notifier.look).
    woken = False
    while True:
        notifier.look(*key)
        generation = broker._wakeups.generation(queue.queue_id)
        attempt = asyncio.ensure_future(
            ctx.drive(queue, queue._receive_steps(max_messages, visibility_ms, attempt_id))
        )
        try:
            messages, next_visible = await asyncio.shield(attempt)
        except BaseException as exc:
            if notifier.look_ended(*key) or woken:  # another poll looks instead
                notifier.pass_on(*key)
            # The client left while this receive ran: give its messages back at once rather
            # than leave them hidden for a visibility timeout nobody will use. Unless it named
            # a ReceiveRequestAttemptId: then it retries after a lost answer, and SQS gives
            # the retry the same messages (given back, they would be received afresh).
            if isinstance(exc, asyncio.CancelledError) and attempt_id is None:
                attempt.add_done_callback(lambda done: _give_back(ctx, queue, done))
            raise
        remaining = deadline - loop.time()
        if messages:
            notifier.look_ended(*key)
            notifier.pass_on(*key)  # there may be more, for a poll still parked
            return messages  # type: ignore[no-any-return]
        if remaining <= 0 or ctx.stopping:
            if notifier.look_ended(*key):
                notifier.pass_on(*key)
            queue.counters["empty_receives"] += 1  # CloudWatch NumberOfEmptyReceives
            return messages  # type: ignore[no-any-return]
        if next_visible:
            due = (next_visible - broker.clock.now_ms()) / 1000
            notifier.wake_at(*key, max(due, 0.001))
        wakeups = broker._wakeups
        woken = parking = False
        try:
            async with parked():
                parking = True  # the wait ends the look (a send while it looked: looks again)
                woken = await notifier.wait(
                    *key,
                    remaining,
                    _doorbell_rung(broker, queue, generation),
                    wakeups if wakeups.cross_process else None,
                    looked=True,
                )
        except BaseException:
            if woken or (not parking and notifier.look_ended(*key)):
                notifier.pass_on(*key)  # woken, then cancelled as it waited for a running place
            raise


def _doorbell_rung(broker: Broker, queue: Queue, generation: int) -> Callable[[], bool]:
    """Whether the queue's doorbell moved since ``generation``: the one way a send of another
    process on the same data directory reaches this daemon's long polls. Without a doorbell
    file (not Linux, or no C extension) always: the poll looks again at every check, as the
    embedded pollers re-check every wakeups.FALLBACK_POLL_S. The polls of a queue parked at
    one generation share one check: the watcher reads it once for all of them."""
    wakeups = broker._wakeups
    if not wakeups.cross_process:
        return _always
    queue_id = queue.queue_id
    key = (id(wakeups), queue_id, generation)  # the check holds wakeups: its id stays its own
    check = _doorbell_checks.get(key)
    if check is None:
        check = _doorbell_checks[key] = _moved_since(wakeups, queue_id, generation)
    return check


def _moved_since(wakeups: Wakeups, queue_id: int, generation: int) -> Callable[[], bool]:
    return lambda: wakeups.generation(queue_id) != generation


# The checks of parked polls, while any poll holds one (see _doorbell_rung).
_doorbell_checks: weakref.WeakValueDictionary[tuple[int, int, int], Callable[[], bool]] = (
    weakref.WeakValueDictionary()
)


def _always() -> bool:
    return True


def _give_back(ctx: Context, queue: Queue, done: asyncio.Future[Any]) -> None:
    if done.cancelled() or done.exception() is not None:
        return
    messages = done.result()[0]
    if messages:
        handles = [(m.receipt_handle, 0) for m in messages]
        ctx.executor.submit(queue.change_visibility_entries, handles)


@action
async def receive_message(ctx: Context, request: Request) -> dict[str, Any]:
    params = request.params
    queue = _queue(ctx, request)
    max_messages = _int_param(params, "MaxNumberOfMessages")
    max_messages = 1 if max_messages is None else max_messages
    if not 1 <= max_messages <= MAX_BATCH:
        raise invalid(
            f"Value {max_messages} for parameter MaxNumberOfMessages is invalid. Reason: Must be "
            "between 1 and 10, if provided."
        )
    visibility = _int_param(params, "VisibilityTimeout")
    if visibility is not None and not 0 <= visibility <= 43_200:
        raise invalid(
            f"Value {visibility} for parameter VisibilityTimeout is invalid. Reason: Must be "
            "between 0 and 43200, if provided."
        )
    wait = _int_param(params, "WaitTimeSeconds")
    if wait is not None and not 0 <= wait <= 20:
        raise invalid(
            f"Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and "
            "<= 20, if provided."
        )
    queue._broker._refresh_definitions()  # another process's attribute changes, read here
    visibility_ms = queue._visibility_ms if visibility is None else visibility * 1000
    wait_s = queue._wait_s if wait is None else wait
    attempt_id = params.get("ReceiveRequestAttemptId")
    if attempt_id is not None:
        check_message_id_field("ReceiveRequestAttemptId", attempt_id)
    messages = await long_poll(ctx, queue, max_messages, visibility_ms, wait_s, attempt_id)
    wanted = _wanted_system_attributes(params)
    names = params.get("MessageAttributeNames") or []
    return (
        {
            "Messages": [
                _wire_message(
                    m, wanted, names, m.sender_id or request.account_id, request.query_protocol
                )
                for m in messages
            ]
        }
        if messages
        else {}
    )


@action
async def delete_message(ctx: Context, request: Request) -> dict[str, Any]:
    queue = _queue(ctx, request)
    handle = request.params.get("ReceiptHandle")
    if not handle:
        raise missing("ReceiptHandle")
    (error,) = await ctx.drive(queue, queue._delete_steps([handle]))
    if error is not None:
        raise error
    return {}


@action
async def delete_message_batch(ctx: Context, request: Request) -> dict[str, Any]:
    queue = _queue(ctx, request)
    entries = _check_batch(request.params.get("Entries"), "DeleteMessageBatchRequestEntry")
    results = await ctx.drive(
        queue, queue._delete_steps([e.get("ReceiptHandle") or "" for e in entries])
    )
    return _batch_result(entries, results)


@action
async def change_message_visibility(ctx: Context, request: Request) -> dict[str, Any]:
    queue = _queue(ctx, request)
    params = request.params
    handle = params.get("ReceiptHandle")
    if not handle:
        raise missing("ReceiptHandle")
    timeout = _int_param(params, "VisibilityTimeout")
    if timeout is None:
        raise missing("VisibilityTimeout")
    (error,) = await ctx.call(queue.change_visibility_entries, [(handle, timeout)])
    if error is not None:
        raise error
    return {}


@action
async def change_message_visibility_batch(ctx: Context, request: Request) -> dict[str, Any]:
    queue = _queue(ctx, request)
    entries = _check_batch(
        request.params.get("Entries"), "ChangeMessageVisibilityBatchRequestEntry"
    )
    pairs = [
        (e.get("ReceiptHandle") or "", _int_param(e, "VisibilityTimeout") or 0) for e in entries
    ]
    results = await ctx.call(queue.change_visibility_entries, pairs)
    return _batch_result(entries, results)


# -- tags, permissions, dead letters ---------------------------------------------------------------


@action
async def tag_queue(ctx: Context, request: Request) -> dict[str, Any]:
    tags = request.params.get("Tags")
    if not tags:
        raise missing("Tags")
    await ctx.call(_queue(ctx, request).tag, tags)
    return {}


@action
async def untag_queue(ctx: Context, request: Request) -> dict[str, Any]:
    keys = request.params.get("TagKeys")
    if not keys:
        raise missing("TagKeys")
    await ctx.call(_queue(ctx, request).untag, keys)
    return {}


@action
async def list_queue_tags(ctx: Context, request: Request) -> dict[str, Any]:
    tags = await ctx.call(_queue(ctx, request).tags)
    return {"Tags": tags}  # as AWS: an empty map when untagged


def _policy(text: str, queue_arn: str) -> dict[str, Any]:
    """A queue's access policy from its text, its Statement as a list (a single statement may
    be an object)."""
    if not text:  # as SQS writes the policy AddPermission starts
        return {"Version": "2008-10-17", "Id": f"{queue_arn}/SQSDefaultPolicy", "Statement": []}
    policy: dict[str, Any] = json.loads(text)  # a JSON object with a Statement (checked when set)
    if not isinstance(policy["Statement"], list):
        policy["Statement"] = [policy["Statement"]]
    return policy


# What AddPermission may grant to other accounts, and what only the queue's owner may do.
_SHAREABLE_ACTIONS = frozenset(
    {
        "*",
        "ChangeMessageVisibility",
        "DeleteMessage",
        "GetQueueAttributes",
        "GetQueueUrl",
        "ListDeadLetterSourceQueues",
        "PurgeQueue",
        "ReceiveMessage",
        "SendMessage",
    }
)
_OWNER_ONLY_ACTIONS = frozenset(
    {
        "AddPermission",
        "CancelMessageMoveTask",
        "CreateQueue",
        "DeleteQueue",
        "ListMessageMoveTasks",
        "ListQueues",
        "ListQueueTags",
        "RemovePermission",
        "SetQueueAttributes",
        "StartMessageMoveTask",
        "TagQueue",
        "UntagQueue",
    }
)
_LABEL = re.compile(r"[A-Za-z0-9_-]{1,80}")


def _check_permission(label: Any, actions: list[Any]) -> None:
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise invalid(
            f"Value {label} for parameter Label is invalid. Reason: Can only include "
            "alphanumeric characters, hyphens, or underscores. 1 to 80 in length."
        )
    if len(actions) > 7:
        raise AwsError(
            "OverLimit", f"{len(actions)} Actions were found, maximum allowed is 7.", 403
        )
    for name in actions:
        if name not in _SHAREABLE_ACTIONS:
            reason = (
                "Only the queue owner is allowed to invoke this action."
                if name in _OWNER_ONLY_ACTIONS
                else "Please refer to the appropriate WSDL for a list of valid actions."
            )
            raise invalid(f"Value SQS:{name} for parameter ActionName is invalid. Reason: {reason}")


def _one_or_list(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values  # as SQS writes them


@action
async def add_permission(ctx: Context, request: Request) -> dict[str, Any]:
    queue = _queue(ctx, request)
    params = request.params
    label = params.get("Label")
    accounts = params.get("AWSAccountIds") or []
    actions = params.get("Actions") or []
    for name, value in (("Label", label), ("AWSAccountIds", accounts), ("Actions", actions)):
        if not value:
            raise missing(name)
    _check_permission(label, actions)
    statement = {
        "Sid": label,
        "Effect": "Allow",
        "Principal": {"AWS": _one_or_list([f"arn:aws:iam::{a}:root" for a in accounts])},
        "Action": _one_or_list([f"SQS:{a}" for a in actions]),
        "Resource": queue.arn,
    }

    def add(text: str) -> str:  # on the stored policy, in the write: see Queue._change_policy
        policy = _policy(text, queue.arn)
        if any(s.get("Sid") == label for s in policy["Statement"]):
            raise errors.InvalidParameterValue(
                f"Value {label} for parameter Label is invalid. Reason: Already exists."
            )
        policy["Statement"].append(statement)
        return json.dumps(policy)

    await ctx.call(queue._change_policy, add)
    return {}


@action
async def remove_permission(ctx: Context, request: Request) -> dict[str, Any]:
    queue = _queue(ctx, request)
    label = request.params.get("Label")
    if not label:
        raise missing("Label")

    def remove(text: str) -> str:  # on the stored policy, in the write: see Queue._change_policy
        policy = _policy(text, queue.arn)
        kept = [s for s in policy["Statement"] if s.get("Sid") != label]
        if len(kept) == len(policy["Statement"]):
            # AWS words it without "on existing policy" when the queue has no policy at all
            where = " on existing policy" if text else ""
            raise errors.InvalidParameterValue(
                f"Value {label} for parameter Label is invalid. Reason: can't find label{where}."
            )
        policy["Statement"] = kept
        return json.dumps(policy) if kept else ""

    await ctx.call(queue._change_policy, remove)
    return {}


@action
async def list_dead_letter_source_queues(ctx: Context, request: Request) -> dict[str, Any]:
    queue = _queue(ctx, request)
    names = await ctx.call(queue._broker.list_dead_letter_source_queues, queue.name)
    max_results = _int_param(request.params, "MaxResults")
    if max_results is not None and not 1 <= max_results <= 1000:
        raise invalid(
            f"Value {max_results} for parameter MaxResults is invalid. Reason: must be between "
            "1 and 1000."
        )
    names = _after_token(names, request.params.get("NextToken"))
    limit = max_results or 1000
    result: dict[str, Any] = {"queueUrls": [queue_url(request, n) for n in names[:limit]]}
    if max_results is not None and len(names) > limit:
        result["NextToken"] = base64.b64encode(names[limit - 1].encode()).decode()
    return result


def _broker_of_arn(ctx: Context, request: Request, arn: Any, parameter: str) -> Any:
    parsed = parse_arn(arn) if isinstance(arn, str) else None
    region = parsed[0] if parsed is not None else None
    broker = None
    if region == request.region:
        broker = ctx.broker(region)
    elif region is not None:
        # another region only if it has data here: an ARN naming a queue that does not exist
        # must not create a region's data directory
        broker = ctx.existing_broker(region)
    if broker is None:
        raise AwsError(
            "ResourceNotFoundException",
            f"The resource that you specified for the {parameter} parameter doesn't exist.",
            404,
        )
    return broker


@action
async def start_message_move_task(ctx: Context, request: Request) -> dict[str, Any]:
    params = request.params
    source = params.get("SourceArn")
    if not source:
        raise missing("SourceArn")
    broker = _broker_of_arn(ctx, request, source, "SourceArn")
    handle = await ctx.call(
        broker.start_message_move_task,
        source,
        params.get("DestinationArn") or None,
        _int_param(params, "MaxNumberOfMessagesPerSecond"),
    )
    return {"TaskHandle": handle}


@action
async def list_message_move_tasks(ctx: Context, request: Request) -> dict[str, Any]:
    params = request.params
    source = params.get("SourceArn")
    if not source:
        raise missing("SourceArn")
    broker = _broker_of_arn(ctx, request, source, "SourceArn")
    max_results = _int_param(params, "MaxResults")
    if max_results is None:  # not `or 1`: a MaxResults of 0 is out of range, not absent
        max_results = 1
    tasks = await ctx.call(broker.list_message_move_tasks, source, max_results)
    return {"Results": tasks}


@action
async def cancel_message_move_task(ctx: Context, request: Request) -> dict[str, Any]:
    handle = request.params.get("TaskHandle")
    if not handle:
        raise missing("TaskHandle")
    last_error: errors.MillpondError | None = None
    source = parse_arn(handle_source(handle) or "")
    for broker in ctx.brokers() or [ctx.broker(request.region)]:
        try:
            moved = await ctx.call(broker.cancel_message_move_task, handle)
            return {"ApproximateNumberOfMessagesMoved": moved}
        except errors.ResourceNotFound as exc:
            # the broker of the region the handle names says why (no such queue, or task)
            if last_error is None or (source and broker.region == source[0]):
                last_error = exc
    assert last_error is not None
    raise last_error
