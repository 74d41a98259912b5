"""What every wire protocol shares: the request context, AWS errors, queue URLs and ARNs.

Handlers take parameters in the AWS JSON member shape (``{"QueueUrl": ..., "Attributes":
{...}}``) and return results in the same shape; the codecs (AWS JSON 1.0, SQS query/XML, SNS
query/XML) translate. An error is an :class:`AwsError` carrying everything each codec needs.
"""

from __future__ import annotations

import functools
import itertools
import re
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

from millpond import errors

DEFAULT_ACCOUNT_ID = "123456789012"
_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([a-z0-9-]+)/([a-z0-9]+)/aws4_request")
# Characters XML 1.0 cannot carry, even escaped (C0 controls but tab/LF/CR, lone surrogates,
# U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 cannot carry replaced by U+FFFD: values that echo
    a client's input (error messages, stored names and tags) must not break an XML reply."""
    return _NOT_XML.sub("\ufffd", text)


@dataclass(slots=True)
class Request:
    """One API call as the handlers see it."""

    action: str
    params: dict[str, Any]
    region: str
    account_id: str
    host: str  # the Host the client used: queue URLs are built with it
    scheme: str = "http"
    access_key: str = ""
    path: str = "/"
    request_id: str = field(default_factory=lambda: new_request_id())
    query_protocol: bool = False  # SQS query/XML (the NonExistentQueue text differs)
    # False only for the unsigned SNS requests a daemon with credentials lets through
    # (ConfirmSubscription and Unsubscribe by the URLs in SNS messages)
    authenticated: bool = True
    # the X-Ray trace header (X-Amzn-Trace-Id) the request came with, if it is one SQS can
    # keep as AWSTraceHeader; sends and publishes hand it on to their messages
    trace_header: str | None = None


class AwsError(Exception):
    """An error exactly as AWS reports it.

    Args:
        code: the query-protocol code, also sent in ``x-amzn-query-error``.
        message: the human text.
        status: HTTP status.
        json_type: the JSON 1.0 ``__type`` shape name (defaults to code).
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        json_type: str | None = None,
        sender_fault: bool = True,
    ) -> None:
        # Messages echo the client's values ("Value a\x00b for parameter ..."): a character XML
        # cannot carry would make the query protocol's error (or batch result) unparseable.
        message = xml_safe(message)
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.json_type = json_type or code
        self.sender_fault = sender_fault

    @classmethod
    def from_millpond(cls, exc: errors.MillpondError, request: Request | None = None) -> AwsError:
        message = str(exc)
        if isinstance(exc, errors.QueueDoesNotExist):
            message = "The specified queue does not exist."
            if request is not None and request.query_protocol:
                message = "The specified queue does not exist for this wsdl version."
        return cls(exc.code, message, exc.http_status, exc.json_type, exc.sender_fault)


def missing(name: str) -> AwsError:
    return AwsError(
        "MissingParameter",
        f"The request must contain the parameter {name}.",
        400,
        "MissingRequiredParameterException",
    )


def invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterValue", message, 400, "InvalidParameterValueException")


_REQUEST_ID_PREFIX = str(uuid.uuid4())[:24]  # random per process; a counter makes the rest
_request_numbers = itertools.count()


def new_request_id() -> str:
    """A UUID-shaped request id, unique per daemon run (cheaper than uuid4 per request)."""
    return f"{_REQUEST_ID_PREFIX}{next(_request_numbers) & 0xFFFFFFFFFFFF:012x}"


@functools.lru_cache(maxsize=1024)
def _scope_of(credential: str) -> tuple[str, str] | None:
    match = _CREDENTIAL_SCOPE.search(credential)
    return None if match is None else (match.group(2), match.group(1))


def region_of(authorization: str, default: str) -> tuple[str, str]:
    """(region, access key) from a SigV4 Authorization header's credential scope."""
    start = authorization.find("Credential=") if authorization else -1
    if start < 0:
        return default, ""
    end = authorization.find(",", start)
    scope = _scope_of(authorization[start : end if end > 0 else None])
    return (default, "") if scope is None else scope


def claimed_scope(scope: dict[str, Any], headers: dict[bytes, bytes]) -> str:
    """The text naming the request's SigV4 credential scope, unverified: its Authorization
    header, else a presigned URL's X-Amz-Credential (which names the region just as well)."""
    authorization = headers.get(b"authorization")
    if authorization:  # the usual case first: a signed request
        return authorization.decode("latin-1")
    query_string: bytes = scope.get("query_string", b"")
    if b"X-Amz-Credential=" not in query_string:
        return ""
    query = urllib.parse.parse_qs(query_string.decode("latin-1"))
    return "Credential=" + query.get("X-Amz-Credential", [""])[-1]


def queue_url(request: Request, name: str) -> str:
    return f"{request.scheme}://{request.host}/{request.account_id}/{name}"


@functools.lru_cache(maxsize=4096)
def _path_parts(url: str) -> tuple[str, ...]:
    path = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*", "", url)
    return tuple(p for p in path.split("/") if p)


def queue_name_from_url(request: Request, url: Any) -> str:
    """The queue name in a queue URL, by path (never by host: clients rewrite hosts); a bare
    queue name, as SQS takes in place of its URL, names a queue of the caller's account."""
    if not isinstance(url, str) or not url:
        raise missing("QueueUrl")
    name = queue_name_in(url, request.account_id)
    if name is None:
        raise AwsError(
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist for this wsdl version."
            if request.query_protocol
            else "The specified queue does not exist.",
            400,
            "QueueDoesNotExist",
        )
    return name


def queue_name_in(url: str, account_id: str) -> str | None:
    """The queue name a non-empty QueueUrl names in ``account_id``, None if it names none
    there (a URL of another account, or a path that is no queue's)."""
    if "/" not in url:
        return url
    parts = _path_parts(url)
    return parts[1] if len(parts) == 2 and parts[0] == account_id else None
