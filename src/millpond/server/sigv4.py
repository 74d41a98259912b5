"""AWS Signature Version 4: the daemon checks request signatures when credentials are configured.

Opt-in (``[auth] credentials = { ACCESS_KEY_ID = "secret" }`` in the TOML config): without it
the daemon takes any request, as before, and the credential scope only selects the region.
With it, every SQS and SNS request must carry a valid ``Authorization: AWS4-HMAC-SHA256 ...``
header made with one of the configured key pairs, as boto3, aws-cli and the AWS SDKs send it.
The errors are AWS's common ones (IncompleteSignature, InvalidClientTokenId,
MissingAuthenticationToken, SignatureDoesNotMatch, RequestExpired).

The canonical request follows the SigV4 rules for services other than S3: the path without
empty or dot segments, URI-encoded once more; query parameters decoded, re-encoded (RFC 3986)
and sorted (or, as some clients sign them, sorted as sent); the signed headers with their
whitespace collapsed; the SHA-256 of the body, which an x-amz-content-sha256 header must match.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

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
    as_sent = "&".join(sorted(item if "=" in item else item + "=" for item in items))
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


def check(scope: Mapping[str, Any], body: bytes, credentials: Mapping[str, str]) -> None:
    """Raise the AwsError AWS would answer unless the request is signed with a known key pair.

    ``scope`` is the ASGI HTTP scope (method, raw_path, query_string, headers as sent).
    """
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    authorization = next((v for k, v in headers if k.lower() == b"authorization"), None)
    if authorization is None:
        raise missing_token()
    credential, signed, signature = _parse_authorization(authorization.decode("latin-1"))
    access_key, date, region, service, _ = credential
    secret = credentials.get(access_key)
    if secret is None:
        raise _error(
            "InvalidClientTokenId", "The security token included in the request is invalid.", 403
        )
    amz_date = next((v for k, v in headers if k.lower() == b"x-amz-date"), b"").decode("latin-1")
    try:
        signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise _incomplete("the X-Amz-Date header is missing or malformed") from None
    if not amz_date.startswith(date):
        raise _incomplete("the Credential date differs from the X-Amz-Date day")
    if abs(time.time() - signed_at) > MAX_SKEW_S:
        raise _error(
            "RequestExpired",
            f"Request has expired: it is dated {amz_date}, more than 15 minutes from now.",
            400,
        )
    # The body is always hashed here: a client's x-amz-content-sha256 header must agree with it
    # (else a signed header could vouch for another body).
    payload_hash = hashlib.sha256(body).hexdigest()
    declared = next((v for k, v in headers if k.lower() == b"x-amz-content-sha256"), None)
    if declared is not None and declared.decode("latin-1") != payload_hash:
        raise _error(
            "SignatureDoesNotMatch",
            "The x-amz-content-sha256 header does not match the SHA-256 of the request body.",
            403,
        )
    raw_path = scope.get("raw_path") or scope.get("path", "/").encode("utf-8")
    head = (scope["method"], _canonical_path(raw_path))
    tail = (_canonical_headers(headers, signed), ";".join(signed), payload_hash)
    key = _signing_key(secret, date, region, service)
    scope_text = "/".join(credential[1:])
    for query in _canonical_queries(scope.get("query_string", b"")):
        canonical = "\n".join((*head, query, *tail))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = "\n".join((ALGORITHM, amz_date, scope_text, digest))
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, signature):
            return
    raise _error(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method. Consult the service "
        "documentation for details.",
        403,
    )
