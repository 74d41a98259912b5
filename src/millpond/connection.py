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
from urllib.parse import parse_qs, unquote, urlsplit

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
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost"):
            raise InvalidParameterValue(f"file:// URLs name a local path, not host {parts.netloc}")
        return open_embedded(path, **options)
    if parts.scheme in ("millpond", "millponds"):
        from millpond.native.client import Client

        if not parts.hostname or parts.port is None:
            raise InvalidParameterValue(f"{parts.scheme}:// URLs need a host and a port: {url}")
        if parts.scheme == "millponds":  # TLS; tls= may give the SSL context to use
            options.setdefault("tls", True)
        return Client(parts.hostname, parts.port, **options)
    if parts.scheme == "sqs":
        from millpond.aws import AwsBroker

        if not parts.hostname:
            raise InvalidParameterValue(f"sqs:// URLs name a region (sqs://us-east-1): {url}")
        return AwsBroker(region=parts.hostname, **{**query, **options})
    raise InvalidParameterValue(
        f"unknown backend {parts.scheme!r} in {url}: use a path, file://, millpond://, "
        "millponds:// or sqs://"
    )
