"""The ASGI application: one HTTP port for SQS (JSON 1.0 and query/XML) and SNS (query/XML).

Dispatch is on the ``X-Amz-Target`` header (JSON) or on the API ``Version`` of a form request
(``2012-11-05`` SQS, ``2010-03-31`` SNS), never on the action name alone: AddPermission exists
in both services. The SigV4 credential scope picks the region (and, lacking a Version, the
service). ``GET /health`` and ``GET /metrics`` (Prometheus) sit beside the API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import urllib.parse
from collections.abc import Awaitable
from typing import Any

from millpond import errors
from millpond.message_attributes import md5_of_body, valid_trace_header
from millpond.server import metrics, plain_send, sigv4, sqs, sqs_json
from millpond.server.context import Context
from millpond.server.http_protocol import OVER_LIMIT
from millpond.server.protocol import (
    AwsError,
    Request,
    claimed_scope,
    new_request_id,
    region_of,
)

log = logging.getLogger("millpond.server")

if sys.version_info >= (3, 12):  # the C function asyncio.current_task() wraps since 3.12
    from _asyncio import current_task as _current_task
else:
    _current_task = asyncio.current_task

_SQS_TARGET_PREFIX = sqs_json.TARGET_PREFIX.encode()
UNKNOWN_ACTION = "unknown"  # the metrics label of requests naming no action millpond has
SQS_VERSION = "2012-11-05"
SNS_VERSION = "2010-03-31"
# A 1 MiB message or batch as a client encodes it: JSON escapes non-ASCII text (\u00e9: 6 bytes
# for 2) and form encoding percent-encodes it, so up to ~3x, plus attributes and room. The
# 1 MiB rules themselves are the handlers' (MessageTooLong, BatchRequestTooLong).
MAX_BODY = 6 * 1024 * 1024
# The most a client may take to send a request body (env: tests shorten it).
BODY_TIMEOUT_S = float(os.environ.get("MILLPOND_BODY_TIMEOUT_S", "30"))
# On a stop, how long a request may still take to send the rest of its body: time for a body
# already on its way, not for a client that stalled.
STOP_BODY_GRACE_S = 1.0
# SNS actions a daemon that checks signatures still takes unsigned, as SNS does: the token in a
# SubscribeURL is the proof, and an UnsubscribeURL works unless AuthenticateOnUnsubscribe.
_UNSIGNED_SNS = frozenset(("ConfirmSubscription", "Unsubscribe"))


class App:
    """ASGI 3 application over a :class:`Context`."""

    def __init__(self, ctx: Context, max_body: int = MAX_BODY) -> None:
        self.ctx = ctx
        self.max_body = max_body
        self.metrics = metrics.Metrics()
        self._reading: dict[Any, float] = {}  # request task -> when it began reading its body
        self._expired: set[Any] = set()  # tasks the watchdog cancelled for a slow body
        self._watchdog: asyncio.Future[None] | None = None
        # Set by a forced stop (a second Ctrl-C), which drops the connections and cancels the
        # requests still running: their cancellation is then expected, not an error to log.
        self.cut_off = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        # The request is served here, not in a coroutine of its own: every await level is
        # crossed again each time the request's task resumes.
        try:
            method, path = scope["method"], scope["path"]
            # Raw names and values (ASGI servers send names lower-cased), decoded where read; a
            # repeated header counts with its last value.
            headers: dict[bytes, bytes] = dict(scope["headers"])
            if method in ("GET", "HEAD") and path == "/health":  # load balancers probe with HEAD
                await _respond(send, 200, [(b"content-type", b"text/plain")], b"ok\n")
                return
            if method == "GET" and path == "/metrics":
                text = await self.ctx.call(self.metrics.render, self.ctx)
                await _respond(send, 200, [(b"content-type", metrics.CONTENT_TYPE)], text.encode())
                return
            started = time.perf_counter()
            body = await self._read_body(headers, receive, send, started)
            if body is None:
                return
            target = headers.get(b"x-amz-target", b"")
            if target.startswith(_SQS_TARGET_PREFIX):
                action = target[len(_SQS_TARGET_PREFIX) :].decode("latin-1")
                sending = (
                    plain_send.start(self.ctx, scope, headers, body)
                    if action == plain_send.ACTION
                    else None
                )
                if sending is not None:
                    await _answer_plain_send(sending, send)
                    service, label = "sqs", plain_send.ACTION
                else:
                    service, label = await self._sqs_json(
                        scope, headers, action, body, receive, send
                    )
            else:
                service, label = await self._query(scope, headers, method, body, receive, send)
            self.metrics.observe_request(service, label, time.perf_counter() - started)
        except asyncio.CancelledError:
            if not self.cut_off:
                raise

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.ctx.bind_loop(asyncio.get_running_loop())
                from millpond.server import sns

                sns.start(self.ctx)  # delivers HTTP POSTs left by a previous run
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                from millpond.server import sns

                await sns.stop(self.ctx)
                if self._watchdog is not None:
                    self._watchdog.cancel()
                # Requests have finished (the server waits for them); flush and close.
                await asyncio.get_running_loop().run_in_executor(None, self.ctx.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP ----------------------------------------------------------------------------------

    async def _read_body(
        self, headers: dict[bytes, bytes], receive: Any, send: Any, started: float
    ) -> bytes | None:
        """The whole body, refusing (413) anything over max_body before reading it all;
        ``started``: when the request came (time.perf_counter(), monotonic)."""
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _refuse_body(send, 413, b"Request body too large\n")
            return None
        if getattr(getattr(receive, "__self__", None), "more_body", True) is False:
            # uvicorn's receive (a method of its request cycle) says the whole body is in (the
            # usual case: it came with the head): receive() hands it over without waiting, so
            # there is nothing for the watchdog to watch (no task lookup, no bookkeeping: ~1.7k
            # instructions a SendMessage). Any other server's receive is watched.
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            whole: bytes = message.get("body", b"")
            if len(whole) <= self.max_body:
                return whole
            await _refuse_body(send, 413, b"Request body too large\n")
            return None
        # A client that trickles its body, or stops sending it, is cut off after BODY_TIMEOUT_S
        # by the watchdog (one sweep a second for all requests: no timer per request).
        # The loop named: on Python 3.11 asyncio finds the running one with a getpid() system
        # call each time (a fork check), the one system call a SendMessage made beyond the
        # empty handler's. None (no lifespan ran) or another loop: the running one's task.
        task = _current_task(self.ctx.loop) or _current_task()
        assert task is not None  # ASGI calls the app in a task
        reading = self._reading
        reading[task] = started
        if self._watchdog is None:
            self._watchdog = asyncio.ensure_future(self._watch_bodies())
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk: bytes = message.get("body", b"")
                if not chunks and not message.get("more_body") and len(chunk) <= self.max_body:
                    return chunk  # all of it at once: the usual case
                size += len(chunk)
                if size > self.max_body:
                    reading.pop(task, None)  # answered now: the watchdog must not cancel it
                    await _refuse_body(send, 413, b"Request body too large\n")
                    return None
                chunks.append(chunk)
                if not message.get("more_body"):
                    return b"".join(chunks)
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            reading.pop(task, None)  # before the reply: a later sweep must not cancel it again
            self._expired.discard(task)
            task.uncancel()
            await _refuse_body(send, 408, b"Request timeout\n")
            return None
        finally:
            reading.pop(task, None)

    def cut_off_body_reads(self) -> None:
        """On shutdown: requests still reading their body STOP_BODY_GRACE_S from now end with
        a 408, instead of holding the stop for as long as their client takes (or for good, when
        it stalled). Not at once: SDKs write a request's head and body separately, and a stop
        that falls between the two must not refuse a request its client sent whole."""
        asyncio.get_running_loop().call_later(
            STOP_BODY_GRACE_S, lambda: self._cancel_reads(self._reading)
        )

    def _cancel_reads(self, tasks: Any) -> None:
        for task in list(tasks):
            if task not in self._expired:
                self._expired.add(task)
                task.cancel()

    async def _watch_bodies(self) -> None:
        """Cancel the requests that have been reading their body for over BODY_TIMEOUT_S."""
        while True:
            await asyncio.sleep(min(1.0, BODY_TIMEOUT_S / 4))
            cutoff = time.perf_counter() - BODY_TIMEOUT_S  # the clock of _read_body's start
            self._cancel_reads(task for task, started in self._reading.items() if started < cutoff)

    def _request(
        self,
        scope: dict[str, Any],
        headers: dict[bytes, bytes],
        action: str,
        params: dict[str, Any],
        query: bool,
        request_id: str,
        verified: tuple[str, str] | None = None,
    ) -> Request:
        region, access_key = verified or region_of(claimed_scope(scope, headers), self.ctx.region)
        trace = headers.get(b"x-amzn-trace-id")  # None, the usual case: no check to call
        # Positional: Python 3.11 passes the keywords of a class call through a dict, which
        # costs ~3% of a SendMessage's CPU here (field order: see Request).
        return Request(
            action,
            params,
            region,
            self.ctx.account_id,
            (headers.get(b"host") or b"localhost").decode("latin-1"),  # host
            scope.get("scheme", "http"),  # scheme
            access_key,
            scope["path"],  # path
            request_id,
            query,  # query_protocol
            True,  # authenticated (the caller sets it)
            None if trace is None else _trace_header(trace),  # trace_header
        )

    async def _sqs_json(
        self,
        scope: dict[str, Any],
        headers: dict[bytes, bytes],
        action: str,
        body: bytes,
        receive: Any,
        send: Any,
    ) -> tuple[str, str]:
        request_id = new_request_id()
        id_header = (b"x-amzn-requestid", request_id.encode())
        request = None
        try:
            if scope.get(OVER_LIMIT):
                raise _over_limit()
            if self.ctx.credentials:
                verified = sigv4.check(scope, body, self.ctx.credentials, "sqs")
            else:
                verified = None
            params = sqs_json.parse(body)
            request = self._request(scope, headers, action, params, False, request_id, verified)
            result = await self._run(sqs.HANDLERS, request, receive)
            if result is not None:  # None: the client went away during a long poll
                await _respond(
                    send,
                    200,
                    [(b"content-type", sqs_json.CONTENT_TYPE), id_header],
                    sqs_json.response(result),
                )
        except Exception as exc:
            status, err_headers, err_body = sqs_json.error(_aws_error(exc, action, request))
            await _respond(send, status, err_headers + [id_header], err_body)
        return "sqs", _label(action, sqs.HANDLERS)

    async def _query(
        self,
        scope: dict[str, Any],
        headers: dict[bytes, bytes],
        method: str,
        body: bytes,
        receive: Any,
        send: Any,
    ) -> tuple[str, str]:
        request_id = new_request_id()
        # as in the XML; some SDKs (Go v1) take the request id from the header alone
        id_header = (b"x-amzn-requestid", request_id.encode())
        form = urllib.parse.parse_qs(
            scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        )
        if method == "POST" and body:
            for key, values in urllib.parse.parse_qs(
                body.decode("utf-8", "replace"), keep_blank_values=True
            ).items():
                form.setdefault(key, []).extend(values)
        flat = {k: v[-1] for k, v in form.items()}
        if method == "GET" and not flat:
            # A GET with no parameters is no API call: AWS's front end answers it (a GET of a
            # queue's URL, AWS-validated) 404 <UnknownOperationException/>, in XML whatever the
            # Accept header, with no Content-Type.
            await _respond(send, 404, [id_header], b"<UnknownOperationException/>\n")
            return "sqs", UNKNOWN_ACTION
        version = flat.get("Version", "")
        credential_text = _text(headers, b"authorization") or flat.get("X-Amz-Credential", "")
        scope_service = (credential_text.split("/") + ["", "", "", ""])[3]
        service = {SQS_VERSION: "sqs", SNS_VERSION: "sns"}.get(version, scope_service)
        action = flat.get("Action", "")
        if not service and action in _UNSIGNED_SNS:
            # The URLs in SNS messages carry neither a Version nor a signature; these actions
            # exist in SNS only, so the name alone is not ambiguous here.
            service = "sns"
        # the service that answers (and counts the request): SQS's codec when none is named
        answering = service if service in ("sqs", "sns") else "sqs"
        codec, handlers = _query_codec(answering)
        request = None
        try:
            if scope.get(OVER_LIMIT):
                raise _over_limit()
            if not action:
                raise AwsError("MissingAction", "Missing Action", 400)
            if service not in ("sqs", "sns"):
                # Without the API Version (or a SigV4 scope) the service is unknown, and the
                # action name alone is ambiguous (AddPermission is in both services).
                raise AwsError(
                    "MissingParameter", "The request must contain the parameter Version.", 400
                )
            authenticated = True
            verified = None
            if self.ctx.credentials:
                if service == "sns" and action in _UNSIGNED_SNS and b"authorization" not in headers:
                    authenticated = False  # the URLs in SNS messages are fetched unsigned
                else:
                    verified = sigv4.check(scope, body, self.ctx.credentials, service)
            if service == "sqs":
                codec.check_action(action, handlers, scope["path"], self.ctx.account_id)
            params = codec.parse(
                action, {k: v for k, v in flat.items() if not k.startswith("X-Amz-")}
            )
            request = self._request(scope, headers, action, params, True, request_id, verified)
            request.authenticated = authenticated
            result = await self._run(handlers, request, receive)
            if result is not None:  # None: the client went away during a long poll
                await _respond(
                    send,
                    200,
                    [(b"content-type", b"text/xml"), id_header],
                    codec.response(action, result, request_id),
                )
        except Exception as exc:
            status, err_headers, err_body = codec.error(
                _aws_error(exc, action, request), request_id
            )
            await _respond(send, status, err_headers + [id_header], err_body)
        return answering, _label(action, handlers)

    def _run(
        self, handlers: dict[str, Any], request: Request, receive: Any
    ) -> Awaitable[dict[str, Any] | None]:
        """The handler's work for ``request``, to await (None: the client went away)."""
        handler = handlers.get(request.action)
        if handler is None:
            raise AwsError(
                "InvalidAction",
                f"The action or operation requested is invalid: {request.action}",
                400,
                "InvalidAction",
            )
        if request.action != "ReceiveMessage":
            return handler(self.ctx, request)  # type: ignore[no-any-return]
        return _unless_disconnected(handler(self.ctx, request), receive)


async def _unless_disconnected(
    handling: Awaitable[dict[str, Any]], receive: Any
) -> dict[str, Any] | None:
    """A long poll's result, or None once its client disconnects (the poll is cancelled)."""
    work = asyncio.ensure_future(handling)
    gone = asyncio.ensure_future(_disconnected(receive))
    done, _ = await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    if work in done:
        gone.cancel()
        return work.result()
    work.cancel()
    return None


async def _answer_plain_send(sending: plain_send.PlainSend, send: Any) -> None:
    """Answer a plain SendMessage (server/plain_send.py) once its commit is done, as
    sqs.send_message and App._sqs_json answer any other SendMessage."""
    queue, data, stored = sending
    request_id = new_request_id()
    id_header = (b"x-amzn-requestid", request_id.encode())
    try:
        seq = await stored
        # the body's UTF-8 bytes, encoded once (by Queue._prepare), as MD5OfMessageBody hashes
        result = {"MD5OfMessageBody": md5_of_body(data), "MessageId": queue._message_id(seq)}
    except Exception as exc:  # the commit's error (the queue deleted, a full store)
        status, err_headers, err_body = sqs_json.error(_aws_error(exc, plain_send.ACTION, None))
        await _respond(send, status, err_headers + [id_header], err_body)
        return
    headers = [(b"content-type", sqs_json.CONTENT_TYPE), id_header]
    await _respond(send, 200, headers, sqs_json.response(result))


def _query_codec(service: str) -> tuple[Any, dict[str, Any]]:
    """The query codec and handlers of a service, imported on first use (only that one)."""
    if service == "sns":
        from millpond.server import sns

        return sns, sns.HANDLERS
    from millpond.server import sqs_query

    return sqs_query, sqs.HANDLERS


def _aws_error(exc: Exception, action: str, request: Request | None) -> AwsError:
    """What the client is told for ``exc``: AWS's own error, never a bare 500 page.

    Bad client input is refused by the codecs and handlers with AWS's error for it; anything
    else (a TypeError or KeyError included) is a bug here: InternalError, logged with its
    traceback, never passed off as the client's fault.
    """
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, errors.MillpondError):
        return AwsError.from_millpond(exc, request)
    log.exception("internal error in action %r", action)  # repr: the name is the client's text
    return AwsError(
        "InternalError",
        "We encountered an internal error. Please try again.",
        500,
        "InternalError",
        sender_fault=False,
    )


def _label(action: str, handlers: dict[str, Any]) -> str:
    """The metrics label of a request: its action if there is one by that name, else one label
    for all the rest (a label per name a client makes up would grow without bound)."""
    return action if action in handlers else UNKNOWN_ACTION


def _trace_header(raw: bytes) -> str | None:
    """An X-Amzn-Trace-Id header's value, as SQS and SNS take it for AWSTraceHeader: ignored
    (it is tracing middleware's, not the caller's own input) unless it is text SQS can store."""
    value = raw.decode("latin-1")
    return value if valid_trace_header(value) else None


def _text(headers: dict[bytes, bytes], name: bytes) -> str:
    """A header's value as text ("" when absent)."""
    value = headers.get(name)
    return "" if value is None else value.decode("latin-1")


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _refuse_body(send: Any, status: int, text: bytes) -> None:
    """Answer a request whose body was not read in full, and close its connection (RFC 9110
    10.1.1: a server answering before it has read the whole content says whether it closes).
    Kept open, the unread rest of the body would be read and dropped for as long as the client
    streams it, or, after Expect: 100-continue, the client's next request taken for it."""
    headers = [(b"content-type", b"text/plain"), (b"connection", b"close")]
    await _respond(send, status, headers, text)


def _over_limit() -> AwsError:
    """The refusal of a request whose connection was opened past the daemon's connection limit
    (see millpond.server.http_protocol): AWS's common ServiceUnavailable error (503). SDKs read
    it as an AWS error and retry it (botocore: a 503 in its legacy and standard retry modes),
    on a new connection, as this one closes after the answer."""
    return AwsError(
        "ServiceUnavailable",
        "The request has failed due to a temporary failure of the server: too many HTTP "
        "connections are open (the daemon's max_http_connections).",
        503,
        sender_fault=False,
    )


async def _respond(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers.append((b"content-length", b"%d" % len(body)))  # callers pass a list of their own
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
