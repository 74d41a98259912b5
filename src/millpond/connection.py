"""``millpond.connect(url)``: one call that picks the backend from a URL.

- a path or ``file://path``: the embedded broker (:func:`millpond.open`);
- ``millpond://host:port``: a daemon over millpond's native protocol (:mod:`millpond.native`);
  ``millponds://host:port`` the same over TLS (a daemon started with ``--tls-cert``);
- ``sqs://region``: Amazon SQS and SNS through boto3 (:mod:`millpond.aws`); ``?endpoint_url=``
  points it at anything that speaks the AWS APIs (a millpond daemon, moto, LocalStack).

Every backend offers the same Broker, Queue, Topic and Subscription methods and raises the same
:mod:`millpond.errors` classes.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from millpond.broker import open as open_embedded
from millpond.errors import InvalidParameterValue


def connect(url: str | os.PathLike[str], **options: Any) -> Any:
    """A broker for ``url``; ``options`` go to the backend's constructor.

    Raises:
        InvalidParameterValue: the URL names no backend, or lacks what its backend needs.
    """
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url:
        raise InvalidParameterValue(f"connect() needs a path or a URL, not {url!r}")
    scheme, separator, _ = url.partition("://")
    if not separator or os.sep in scheme or "/" in scheme:
        return open_embedded(url, **options)  # a plain path
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if parts.scheme == "file":
        _refuse_unused(parts, takes={"path"})
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost"):
            raise InvalidParameterValue(f"file:// URLs name a local path, not host {parts.netloc}")
        return open_embedded(path, **options)
    if parts.scheme in ("millpond", "millponds"):
        from millpond.native.client import Client

        _refuse_unused(parts, takes={"port"})
        port = _port(parts, url)
        if not parts.hostname or port is None:
            raise InvalidParameterValue(f"{parts.scheme}:// URLs need a host and a port: {url}")
        if parts.scheme == "millponds":  # TLS; tls= may give the SSL context to use
            options.setdefault("tls", True)
        return Client(parts.hostname, port, **options)
    if parts.scheme == "sqs":
        from millpond.aws import AwsBroker

        _refuse_unused(parts, takes={"query"})
        if not parts.hostname:
            raise InvalidParameterValue(f"sqs:// URLs name a region (sqs://us-east-1): {url}")
        return AwsBroker(region=parts.hostname, **{**query, **options})
    raise InvalidParameterValue(
        f"unknown backend {parts.scheme!r} in {url}: use a path, file://, millpond://, "
        "millponds:// or sqs://"
    )


def _port(parts: SplitResult, url: str) -> int | None:
    """The URL's port, None when it names none."""
    try:
        port = parts.port  # a ValueError of urlsplit's own when not a number up to 65535
    except ValueError:
        port = 0
    if port == 0:
        raise InvalidParameterValue(f"the port of {url} is not a number from 1 to 65535")
    return port


def _refuse_unused(parts: SplitResult, takes: set[str]) -> None:
    """Refuse the parts of a URL its backend ``takes`` nothing from: dropped, they would go
    unseen (a region or durability asked for in a query, a daemon's port on sqs://, silently
    not used). Options go in the query of sqs:// URLs only, else in keyword arguments."""
    scheme = parts.scheme
    if parts.username is not None or parts.password is not None:  # not echoed: may be secret
        raise InvalidParameterValue(
            f"{scheme}:// URLs take no user or password: give access keys as keyword "
            "arguments of connect()"
        )
    if "port" not in takes and ":" in parts.netloc:
        raise InvalidParameterValue(f"{scheme}:// URLs take no port (got {parts.netloc})")
    if "path" not in takes and parts.path not in ("", "/"):
        raise InvalidParameterValue(f"{scheme}:// URLs take no path (got {parts.path})")
    if "query" not in takes and parts.query:
        raise InvalidParameterValue(
            f"{scheme}:// URLs take no query ({parts.query}): give the options as keyword "
            "arguments of connect()"
        )
