"""A plain SendMessage, taken in one step: AWS JSON 1.0, a QueueUrl and a MessageBody, nothing else.

Most requests a busy daemon serves are SendMessages, and most of those name a queue and carry a
body and nothing more. The general path (``App._sqs_json`` -> ``sqs.send_message``) builds a
Request, looks up the handler, reads each optional member of the entry and checks the member
types any request may hold: about 450 of the ~1,100 Python opcodes a SendMessage costs above the
HTTP stack's own. Here a request of exactly that shape, to a standard queue, goes from its body
to the queue's send batch (server/send_batches.py) directly (64 connections in-process: 2,564 ->
2,321 opcodes, 251.7k -> 233.9k instructions a request; the empty handler 155k).

The answers are the general path's by construction. Whatever is not the plain case (another
member, a value that is not a string, a trace header, a FIFO queue) and whatever the general path
would refuse (a signature, an unknown queue, a body SQS does not take) makes :func:`start`
return None before anything happened, and the general path serves the request from the start.
Once the message is in a send batch, the caller answers: the result, or the error the commit
gave, in the JSON codec the general path uses.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from millpond.queue import Queue
from millpond.server import sigv4
from millpond.server.context import Context
from millpond.server.http_protocol import OVER_LIMIT
from millpond.server.protocol import claimed_scope, queue_name_in, region_of

ACTION = "SendMessage"

# The queue, the body as stored (UTF-8), and the future of the message's seq (Context.send).
PlainSend = tuple[Queue, bytes, "asyncio.Future[int]"]


def start(
    ctx: Context, scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes
) -> PlainSend | None:
    """Hand a plain SendMessage's message to its queue's next commit; None, having done
    nothing, for any other request (the general path serves it)."""
    if b"x-amzn-trace-id" in headers or scope.get(OVER_LIMIT):
        return None
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(params) is not dict or len(params) != 2:
        return None
    url = params.get("QueueUrl")
    text = params.get("MessageBody")
    if type(url) is not str or type(text) is not str or not url:
        return None
    credentials = ctx.credentials
    try:
        if credentials:
            region, access_key = sigv4.check(scope, body, credentials, "sqs")
        else:
            region, access_key = region_of(claimed_scope(scope, headers), ctx.region)
        name = queue_name_in(url, ctx.account_id)
        if name is None:
            return None
        queue = ctx.broker(region).queue(name)
        if type(queue) is not Queue:  # a FIFO queue: its sends are not batched this way
            return None
        sender_id = access_key if credentials and access_key else None
        data, blob, delay_ms = queue._prepare(text, None, None, None, None, None, sender_id)
    except Exception:
        # Refused, or a bug: the general path does the same again and answers as it always
        # has (AWS's error, or an InternalError it logs). Nothing was stored or queued.
        return None
    return queue, data, ctx.send(queue, data, blob, delay_ms)
