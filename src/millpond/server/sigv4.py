"""AWS Signature Version 4: the daemon checks request signatures when credentials are configured.

Opt-in (``[auth] credentials = { ACCESS_KEY_ID = "secret" }`` in the TOML config): without it
the daemon takes any request, as before, and the credential scope only selects the region.
With it, every SQS and SNS request must carry a valid ``Authorization: AWS4-HMAC-SHA256 ...``
header made with one of the configured key pairs, as boto3, aws-cli and the AWS SDKs send it
(or be a presigned URL: the same signature in X-Amz-* query parameters), scoped to the service
it calls; the request time is X-Amz-Date, else the Date header.
The errors are AWS's common ones (IncompleteSignature, InvalidClientTokenId,
MissingAuthenticationToken, SignatureDoesNotMatch, RequestExpired for presigned URLs), with the
texts SQS and SNS answer.

The canonical request follows the SigV4 rules for services other than S3: the path without
empty or dot segments, URI-encoded once more; query parameters decoded, re-encoded (RFC 3986)
and sorted (or, as some clients sign them, sorted as sent); the signed headers with their
whitespace collapsed; the SHA-256 of the body, which an x-amz-content-sha256 header must match.
"""

from __future__ import annotations

import calendar
import datetime
import email.utils
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from millpond.server.protocol import AwsError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60  # AWS refuses requests dated more than 15 minutes off


def _error(code: str, message: str, status: int) -> AwsError:
    return AwsError(code, message, status, code)


def missing_token() -> AwsError:
    return _error(
        "MissingAuthenticationToken",
        "The request must contain either a valid (registered) AWS access key ID or X.509 "
        "certificate.",
        403,
    )


def _incomplete(why: str) -> AwsError:
    message = f"The request signature does not conform to AWS standards: {why}"
    return _error("IncompleteSignature", message, 400)


def _parse_authorization(value: str) -> tuple[list[str], list[str], str]:
    """(credential scope parts, signed header names, signature) of an Authorization header."""
    algorithm, _, rest = value.partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"the algorithm must be {ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, equals, text = part.strip().partition("=")
        if equals:
            fields[name] = text
    try:
        credential = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except KeyError as missing:
        raise _incomplete(f"{missing.args[0]} is missing") from None
    if len(credential) != 5 or credential[4] != "aws4_request" or not all(credential):
        raise _incomplete("the Credential must be KEY/DATE/REGION/SERVICE/aws4_request")
    if "host" not in signed:
        raise _incomplete("the host header must be signed")
    return credential, signed, signature


def _canonical_queries(query_string: bytes) -> list[str]:
    """The canonical query string: every name and value decoded, encoded again (RFC 3986, upper-
    case escapes) and sorted, as SigV4 specifies; and the query as sent, only sorted, which is
    what a client signs when it takes its URL's query as already encoded (botocore does)."""
    items = [item for item in query_string.decode("latin-1").split("&") if item]
    pairs = []
    for item in items:
        key, _, value = item.partition("=")
        pairs.append(
            (
                urllib.parse.quote_from_bytes(urllib.parse.unquote_to_bytes(key), safe="-_.~"),
                urllib.parse.quote_from_bytes(urllib.parse.unquote_to_bytes(value), safe="-_.~"),
            )
        )
    normalized = "&".join(f"{key}={value}" for key, value in sorted(pairs))
    as_sent = "&".join(
        f"{key}={value}" for key, value in sorted(item.partition("=")[::2] for item in items)
    )
    return [normalized] if as_sent == normalized else [normalized, as_sent]


def _canonical_path(path: bytes) -> str:
    """The path with empty and dot segments removed (as SigV4 wants for services other than
    S3), then URI-encoded once more."""
    segments: list[bytes] = []
    for segment in path.split(b"/"):
        if segment == b"..":
            if segments:
                segments.pop()
        elif segment and segment != b".":
            segments.append(segment)
    trailing = b"/" if path.endswith(b"/") and segments else b""
    return urllib.parse.quote_from_bytes(b"/" + b"/".join(segments) + trailing, safe="/~")


def _canonical_headers(headers: Iterable[tuple[bytes, bytes]], signed: list[str]) -> str:
    values: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        values.setdefault(raw_name.decode("latin-1").lower(), []).append(
            " ".join(raw_value.decode("latin-1").split())
        )
    lines = []
    for name in signed:
        if name not in values:
            raise _incomplete(f"the signed header {name} is not in the request")
        lines.append(f"{name}:{','.join(values[name])}\n")
    return "".join(lines)


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _first(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((v for k, v in headers if k.lower() == name), None)


def _request_time(headers: list[tuple[bytes, bytes]], query_date: str | None) -> tuple[str, int]:
    """The request time as YYYYMMDDTHHMMSSZ and as epoch seconds: X-Amz-Date (query or
    header), else Date."""
    amz_date = query_date
    if amz_date is None:
        raw = _first(headers, b"x-amz-date")
        amz_date = None if raw is None else raw.decode("latin-1")
    if amz_date is None:
        raw = _first(headers, b"date")
        if raw is None:
            raise _incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                "header."
            )
        text = raw.decode("latin-1")
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            parsed = None
        if parsed is not None:
            # "-0000" (or no zone) parses naive: UTC, not the daemon's local time
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=datetime.timezone.utc)
            parsed = parsed.astimezone(datetime.timezone.utc)
            return parsed.strftime("%Y%m%dT%H%M%SZ"), int(parsed.timestamp())
        amz_date = text
    try:
        signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise _incomplete(f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.") from None
    return amz_date, signed_at


def _skewed(amz_date: str, signed_at: int, now: float) -> AwsError:
    """AWS's answer to a request signed in its headers and dated more than 15 minutes from its
    clock, as SQS and SNS write it: SignatureDoesNotMatch (403, not the RequestExpired of their
    Common Errors pages), naming the bound it missed and the server's time, by which an SDK
    corrects its clock."""

    def stamp(seconds: float) -> str:
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))

    if signed_at < now:
        message = (
            f"Signature expired: {amz_date} is now earlier than {stamp(now - MAX_SKEW_S)} "
            f"({stamp(now)} - 15 min.)"
        )
    else:
        message = (
            f"Signature not yet current: {amz_date} is still later than "
            f"{stamp(now + MAX_SKEW_S)} ({stamp(now)} + 15 min.)"
        )
    return _error("SignatureDoesNotMatch", message, 403)


class _Claim(NamedTuple):
    """What a request says about its signature: from its Authorization header, or from the
    X-Amz-* parameters of a presigned URL."""

    credential: list[str]  # access key, date, region, service, "aws4_request"
    signed_headers: list[str]
    signature: str
    query_string: bytes  # the query the signature covers (a presigned URL's, without it)
    amz_date: str | None = None  # a presigned URL's X-Amz-Date (else the headers')
    expires_s: int | None = None  # a presigned URL's X-Amz-Expires


MAX_EXPIRES_S = 7 * 24 * 3600  # the longest a presigned URL may be valid


def _claim(scope: Mapping[str, Any]) -> _Claim:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    authorizations = [v for k, v in headers if k.lower() == b"authorization"]
    query_string: bytes = scope.get("query_string", b"")
    query = urllib.parse.parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    if authorizations or "X-Amz-Algorithm" not in query:
        if not authorizations:
            raise missing_token()
        if len(authorizations) > 1:  # the one checked must be the one that names the region
            raise _incomplete("the request has more than one Authorization header")
        credential, signed, signature = _parse_authorization(authorizations[0].decode("latin-1"))
        return _Claim(credential, signed, signature, query_string)
    if query["X-Amz-Algorithm"][0] != ALGORITHM:
        raise _incomplete(f"the algorithm must be {ALGORITHM}")
    try:
        credential = query["X-Amz-Credential"][0].split("/")
        signed = query["X-Amz-SignedHeaders"][0].split(";")
        signature = query["X-Amz-Signature"][0]
        amz_date = query["X-Amz-Date"][0]
        expires_s = int(query.get("X-Amz-Expires", [str(MAX_EXPIRES_S)])[0])
    except (KeyError, ValueError) as missing:
        raise _incomplete(f"{missing.args[0]} is missing or malformed") from None
    if len(credential) != 5 or credential[4] != "aws4_request" or not all(credential):
        raise _incomplete("the Credential must be KEY/DATE/REGION/SERVICE/aws4_request")
    if not 1 <= expires_s <= MAX_EXPIRES_S:
        raise _incomplete(f"X-Amz-Expires must be from 1 to {MAX_EXPIRES_S} seconds")
    covered = b"&".join(
        item for item in query_string.split(b"&") if not item.startswith(b"X-Amz-Signature=")
    )
    return _Claim(credential, signed, signature, covered, amz_date, expires_s)


def check(
    scope: Mapping[str, Any], body: bytes, credentials: Mapping[str, str], service: str
) -> tuple[str, str]:
    """Raise the AwsError AWS would answer unless the request is signed for ``service`` ("sqs"
    or "sns") with a known key pair; else (region, access key) of the verified scope.

    ``scope`` is the ASGI HTTP scope (method, raw_path, query_string, headers as sent).
    """
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    claim = _claim(scope)
    credential, signed, signature = claim.credential, claim.signed_headers, claim.signature
    access_key, date, region, scope_service, _ = credential
    secret = credentials.get(access_key)
    if secret is None:
        raise _error(
            "InvalidClientTokenId", "The security token included in the request is invalid.", 403
        )
    amz_date, signed_at = _request_time(headers, claim.amz_date)
    if scope_service != service:
        raise _error(
            "SignatureDoesNotMatch",
            f"Credential should be scoped to correct service: '{service}'. ",
            403,
        )
    if not amz_date.startswith(date):
        raise _error(
            "SignatureDoesNotMatch",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{date}' != '{amz_date[:8]}', from '{amz_date}'.",
            403,
        )
    now = time.time()
    if claim.expires_s is not None:
        if now > signed_at + claim.expires_s:
            raise _error("RequestExpired", "Request has expired.", 400)
        # A URL dated ahead would be good until then plus X-Amz-Expires, past MAX_EXPIRES_S:
        # refuse it beyond the skew allowed to signed headers.
        if signed_at > now + MAX_SKEW_S:
            raise _error(
                "RequestExpired",
                f"Request is not yet valid: it is dated {amz_date}, over 15 minutes ahead.",
                400,
            )
    elif abs(now - signed_at) > MAX_SKEW_S:
        raise _skewed(amz_date, signed_at, now)
    payload_hash = hashlib.sha256(body).hexdigest()
    declared = _first(headers, b"x-amz-content-sha256")
    if declared is not None and declared.decode("latin-1") != payload_hash:
        raise _error(
            "SignatureDoesNotMatch",
            "The x-amz-content-sha256 header does not match the SHA-256 of the request body.",
            403,
        )
    raw_path = scope.get("raw_path") or scope.get("path", "/").encode("utf-8")
    head = (scope["method"], _canonical_path(raw_path))
    tail = (_canonical_headers(headers, signed), ";".join(signed), payload_hash)
    key = _signing_key(secret, date, region, scope_service)
    scope_text = "/".join(credential[1:])
    for canonical_query in _canonical_queries(claim.query_string):
        canonical = "\n".join((*head, canonical_query, *tail))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = "\n".join((ALGORITHM, amz_date, scope_text, digest))
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogateescape")):
            return region, access_key
    raise _error(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method. Consult the service "
        "documentation for details.",
        403,
    )
