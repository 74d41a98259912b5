"""The daemon checks SigV4 signatures when its config has [auth] credentials, and serves HTTPS
when given a certificate.

A daemon started with two key pairs: boto3 with either works over SQS JSON, SQS query (signed
raw requests, POST form and GET query string) and SNS; a wrong secret, an unknown key, a
missing signature and a stale date get AWS's errors and change nothing; the SNS URLs that SNS
itself hands out stay usable unsigned, as on AWS.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from millpond.server import config as config_module

from .daemon import Daemon, self_signed_certificate

KEYS = {"AKIDALICE": "alice-secret", "AKIDBOB": "bob-secret"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("auth")
    config = root / "millpond.toml"
    pairs = ", ".join(f'{key} = "{secret}"' for key, secret in KEYS.items())
    config.write_text(f"[auth]\ncredentials = {{ {pairs} }}\n")
    d = Daemon(str(root / "data"), config=str(config))
    yield d
    d.stop()


def client(daemon: Daemon, service: str, key: str, secret: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=daemon.url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def refused(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def raw(daemon: Daemon, method: str, params: dict[str, str], sign_with: str | None) -> Any:
    """A query-protocol request (form body for POST, query string for GET), signed or not;
    (status, body text)."""
    encoded = urllib.parse.urlencode(params)
    url = daemon.url + "/" + (f"?{encoded}" if method == "GET" else "")
    body = encoded.encode() if method == "POST" else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    if sign_with is not None:
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        credentials = Credentials(sign_with, KEYS[sign_with])
        SigV4Auth(credentials, "sqs", "us-east-1").add_auth(request)
        headers = dict(request.headers.items())
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers, method=method)) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _refused(sent: urllib.request.Request) -> tuple[int, bytes]:
    """(HTTP status, the <Code> element) of a request the daemon must refuse."""
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(sent)
    code = re.search(rb"<Code>\w+</Code>", caught.value.read())
    return caught.value.code, code.group(0) if code else b""


def test_signed_requests_work_with_each_key_over_every_protocol(daemon: Daemon) -> None:
    alice = client(daemon, "sqs", "AKIDALICE", KEYS["AKIDALICE"])
    url = alice.create_queue(QueueName="signed")["QueueUrl"]
    alice.send_message(QueueUrl=url, MessageBody="from alice: é ☃")
    bob = client(daemon, "sqs", "AKIDBOB", KEYS["AKIDBOB"])
    (message,) = bob.receive_message(QueueUrl=url)["Messages"]
    assert message["Body"] == "from alice: é ☃"
    for method in ("POST", "GET"):
        status, text = raw(
            daemon,
            method,
            {"Action": "GetQueueUrl", "QueueName": "signed", "Version": "2012-11-05"},
            sign_with="AKIDBOB",
        )
        assert status == 200 and "<QueueUrl>" in text and "/signed</QueueUrl>" in text
    sns = client(daemon, "sns", "AKIDALICE", KEYS["AKIDALICE"])
    topic = sns.create_topic(Name="signed")["TopicArn"]
    assert topic in [t["TopicArn"] for t in sns.list_topics()["Topics"]]


def test_bad_credentials_get_aws_errors_and_change_nothing(daemon: Daemon) -> None:
    wrong_secret = client(daemon, "sqs", "AKIDALICE", "not-alice")
    assert refused(wrong_secret.create_queue, QueueName="never") == ("SignatureDoesNotMatch", 403)
    unknown_key = client(daemon, "sqs", "AKIDMALLORY", "whatever")
    assert refused(unknown_key.create_queue, QueueName="never") == ("InvalidClientTokenId", 403)
    sns = client(daemon, "sns", "AKIDBOB", "not-bob")
    assert refused(sns.create_topic, Name="never") == ("SignatureDoesNotMatch", 403)
    status, text = raw(daemon, "POST", {"Action": "ListQueues", "Version": "2012-11-05"}, None)
    assert status == 403 and "<Code>MissingAuthenticationToken</Code>" in text
    alice = client(daemon, "sqs", "AKIDALICE", KEYS["AKIDALICE"])
    assert not any(u.endswith("/never") for u in alice.list_queues().get("QueueUrls", []))
    alice_sns = client(daemon, "sns", "AKIDALICE", KEYS["AKIDALICE"])
    topics = [t["TopicArn"] for t in alice_sns.list_topics()["Topics"]]
    assert not any(t.endswith(":never") for t in topics)


def signed_form(
    daemon: Daemon, params: dict[str, str], service: str = "sqs"
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a query-protocol POST alice signed for ``service`` in us-east-1."""
    body = urllib.parse.urlencode(params).encode()
    request = AWSRequest(
        method="POST",
        url=daemon.url + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    SigV4Auth(Credentials("AKIDALICE", KEYS["AKIDALICE"]), service, "us-east-1").add_auth(request)
    return body, dict(request.headers.items())


def test_a_body_changed_after_signing_is_refused(daemon: Daemon) -> None:
    params = {"Action": "CreateQueue", "QueueName": "tampered", "Version": "2012-11-05"}
    body, headers = signed_form(daemon, params)
    forged = body.replace(b"tampered", b"tampere2")
    sent = urllib.request.Request(daemon.url + "/", forged, headers)
    assert _refused(sent) == (403, b"<Code>SignatureDoesNotMatch</Code>")


def test_a_payload_hash_header_must_match_the_body(daemon: Daemon) -> None:
    params = {"Action": "CreateQueue", "QueueName": "hashed", "Version": "2012-11-05"}
    body = urllib.parse.urlencode(params).encode()
    for declared in ("UNSIGNED-PAYLOAD", "0" * 64):
        request = AWSRequest(
            method="POST",
            url=daemon.url + "/",
            data=body.replace(b"hashed", b"other1"),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Amz-Content-SHA256": declared,
            },
        )
        SigV4Auth(Credentials("AKIDALICE", KEYS["AKIDALICE"]), "sqs", "us-east-1").add_auth(request)
        sent = urllib.request.Request(daemon.url + "/", body, dict(request.headers.items()))
        assert _refused(sent) == (403, b"<Code>SignatureDoesNotMatch</Code>")
    alice = client(daemon, "sqs", "AKIDALICE", KEYS["AKIDALICE"])
    urls = alice.list_queues().get("QueueUrls", [])
    assert not any(u.endswith(("/hashed", "/other1")) for u in urls)


@pytest.mark.parametrize(
    "path, query",
    [
        ("/", "Action=ListQueues&Version=2012-11-05&QueueNamePrefix=a+b"),  # "+" as sent
        ("/", "Action=ListQueues&Version=2012-11-05&QueueNamePrefix=%2fx%FF"),  # odd escapes
        ("//123456789012//", "Action=ListQueues&Version=2012-11-05"),  # empty segments
    ],
)
def test_signed_urls_in_every_encoding_clients_produce(
    daemon: Daemon, path: str, query: str
) -> None:
    url = f"{daemon.url}{path}?{query}"
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials("AKIDBOB", KEYS["AKIDBOB"]), "sqs", "us-east-1").add_auth(request)
    sent = urllib.request.Request(url, headers=dict(request.headers.items()))
    with urllib.request.urlopen(sent) as r:
        assert r.status == 200 and b"ListQueuesResponse" in r.read()


def test_a_stale_date_is_refused_as_expired(daemon: Daemon) -> None:
    body, headers = signed_form(daemon, {"Action": "ListQueues", "Version": "2012-11-05"})
    signed_at = headers["X-Amz-Date"]  # YYYYMMDDTHHMMSSZ
    # the same day (the credential scope's), hours away from now
    stale_hour = "23" if signed_at[9:11] < "12" else "00"
    headers["X-Amz-Date"] = f"{signed_at[:9]}{stale_hour}0000Z"
    sent = urllib.request.Request(daemon.url + "/", body, headers)
    # as SQS and SNS answer it: "Signature expired: ... is now earlier than ..." (403)
    assert _refused(sent) == (403, b"<Code>SignatureDoesNotMatch</Code>")


def test_sns_urls_stay_usable_unsigned_as_on_aws(daemon: Daemon) -> None:
    sns = client(daemon, "sns", "AKIDALICE", KEYS["AKIDALICE"])
    sqs = client(daemon, "sqs", "AKIDALICE", KEYS["AKIDALICE"])
    topic = sns.create_topic(Name="urls")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="urls")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)["SubscriptionArn"]
    version = {"Version": "2010-03-31"}
    # a SubscribeURL is fetched unsigned: the token is the proof (a bad one: SNS's error)
    status, text = raw(
        daemon,
        "GET",
        {"Action": "ConfirmSubscription", "TopicArn": topic, "Token": "0" * 128, **version},
        None,
    )
    assert status == 400 and "Invalid parameter: Token" in text
    # an UnsubscribeURL works unsigned unless the subscription needs authentication to
    # unsubscribe (SQS subscriptions always do)
    status, text = raw(
        daemon, "GET", {"Action": "Unsubscribe", "SubscriptionArn": sub, **version}, None
    )
    assert status == 403 and "<Code>AuthorizationError</Code>" in text
    assert sub in [s["SubscriptionArn"] for s in sns.list_subscriptions()["Subscriptions"]]
    # every other SNS action needs a signature
    status, text = raw(daemon, "GET", {"Action": "ListTopics", **version}, None)
    assert status == 403 and "<Code>MissingAuthenticationToken</Code>" in text
    sns.unsubscribe(SubscriptionArn=sub)  # signed: fine
    assert sub not in [s["SubscriptionArn"] for s in sns.list_subscriptions()["Subscriptions"]]


def test_an_unsigned_confirmation_cannot_demand_signed_unsubscribes(daemon: Daemon) -> None:
    from .test_server_sns import Endpoint

    sns = client(daemon, "sns", "AKIDALICE", KEYS["AKIDALICE"])
    topic = sns.create_topic(Name="hooks")["TopicArn"]
    endpoint = Endpoint()
    try:
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint.url + "/hook")
        _, _, body = endpoint.next()
        subscribe_url = json.loads(body)["SubscribeURL"]
        # fetched unsigned, with the parameter added by whoever holds the URL
        with urllib.request.urlopen(subscribe_url + "&AuthenticateOnUnsubscribe=true") as r:
            assert r.status == 200
        (sub,) = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        arn = sub["SubscriptionArn"]
        attributes = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
        assert attributes["ConfirmationWasAuthenticated"] == "false"
        # so the UnsubscribeURL (unsigned) still works, as on AWS
        unsubscribe = {"Action": "Unsubscribe", "SubscriptionArn": arn, "Version": "2010-03-31"}
        status, _ = raw(daemon, "GET", unsubscribe, None)
        assert status == 200
        assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []
    finally:
        endpoint.close()


def test_health_and_metrics_need_no_signature(daemon: Daemon) -> None:
    for path in ("/health", "/metrics"):
        with urllib.request.urlopen(daemon.url + path) as r:
            assert r.status == 200


@pytest.mark.parametrize(
    "text",
    [
        "[auth]\ncredentials = { AKID = 3 }\n",
        "[auth]\ncredentials = 'AKID:secret'\n",
        "[auth]\nusers = { AKID = 'x' }\n",
    ],
)
def test_malformed_auth_config_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"\[auth\]"):
        config_module.load(str(path))


def test_no_auth_section_means_no_checking(tmp_path: Path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text('[server]\nregion = "us-east-1"\n')
    assert config_module.credentials(config_module.load(str(path))) is None


def _tls_sqs(url: str, cert: str) -> Any:
    """An SQS client of the HTTPS daemon at ``url`` that checks its certificate ``cert``."""
    return boto3.client(
        "sqs",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        verify=cert,
    )


def test_https_with_a_certificate(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    d = Daemon(str(tmp_path / "data"), tls=(cert, key))
    try:
        sqs = _tls_sqs(d.url, cert)
        url = sqs.create_queue(QueueName="secure")["QueueUrl"]
        assert url.startswith("https://127.0.0.1:")  # queue URLs follow the scheme used
        sqs.send_message(QueueUrl=url, MessageBody="over TLS")
        assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "over TLS"
        sqs.close()  # else the stop waits its TLS close grace (1 s) for this connection
        plain = d.url.replace("https://", "http://") + "/health"
        with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
            urllib.request.urlopen(plain, timeout=5)  # plain HTTP is not served on that port
    finally:
        assert d.stop() == 0


def test_sigterm_does_not_wait_for_an_idle_tls_client(tmp_path: Path) -> None:
    # An SDK keeps its connection pooled and never answers the TLS close_notify: the exit
    # waited asyncio's 30 s SSL shutdown timeout for each such client.
    import signal
    import time

    cert, key = self_signed_certificate(tmp_path)
    d = Daemon(str(tmp_path / "data"), tls=(cert, key))
    try:
        sqs = _tls_sqs(d.url, cert)
        url = sqs.create_queue(QueueName="pooled")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="kept")  # the connection stays in the pool
        started = time.monotonic()
        code = d.stop(signal.SIGTERM)
        seconds = time.monotonic() - started
    finally:
        d.stop(signal.SIGKILL)
    assert code == 0, d.log()
    assert seconds < 10, f"SIGTERM took {seconds:.1f} s"
    again = Daemon(str(tmp_path / "data"), tls=(cert, key))  # the acknowledged send is kept
    try:
        client = _tls_sqs(again.url, cert)
        url = client.get_queue_url(QueueName="pooled")["QueueUrl"]
        assert client.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "kept"
        client.close()
    finally:
        again.stop()


ALICE = Credentials("AKIDALICE", KEYS["AKIDALICE"])
SQS_VERSION = "2012-11-05"
SNS_VERSION = "2010-03-31"


def send(
    daemon: Daemon, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b""
) -> tuple[int, str]:
    """Send exactly these headers (repeats allowed); (status, body text)."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body and not any(n.lower() == "content-length" for n, _ in headers):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def code_of(text: str) -> str:
    match = re.search(r"<Code>(\w+)</Code>", text) or re.search(r'"__type":\s*"[^"]*?(\w+)"', text)
    return match.group(1) if match else text[:200]


def signed_headers_of(request: AWSRequest) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.headers.items()]


def alice_sqs(daemon: Daemon, region: str = "us-east-1") -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=daemon.url,
        region_name=region,
        aws_access_key_id="AKIDALICE",
        aws_secret_access_key=KEYS["AKIDALICE"],
    )


# -- the request time, presigned URLs, the service scope, repeated headers -------------------


class _IsoDateSigner(SigV4Auth):
    """Signs with a Date header in ISO 8601 basic format (the form AWS's Common Parameters pages
    name: "If the Date header is specified in the ISO 8601 basic format, X-Amz-Date is not
    required")."""

    def _set_necessary_date_headers(self, request: AWSRequest) -> None:
        for name in ("Date", "X-Amz-Date"):
            if name in request.headers:
                del request.headers[name]
        request.headers["Date"] = request.context["timestamp"]


@pytest.mark.parametrize("signer", [SigV4Auth, _IsoDateSigner], ids=["rfc1123", "iso8601"])
def test_date_header_instead_of_x_amz_date_is_accepted(daemon: Daemon, signer: type) -> None:
    """SigV4 takes the request time from X-Amz-Date *or* Date ("If we can't find x-amz-date,
    we look for date"). botocore itself, given a request with a Date header, sends Date
    (RFC 1123) and no X-Amz-Date (SigV4Auth._set_necessary_date_headers)."""
    body = urllib.parse.urlencode({"Action": "ListQueues", "Version": SQS_VERSION}).encode()
    request = AWSRequest(
        method="POST",
        url=daemon.url + "/",
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Date": "Thu, 01 Jan 1970 00:00:00 GMT",  # replaced by botocore with "now"
        },
    )
    signer(ALICE, "sqs", "us-east-1").add_auth(request)
    headers = signed_headers_of(request)
    assert "X-Amz-Date" not in dict(headers) and "Date" in dict(headers)
    headers.append(("Host", f"127.0.0.1:{daemon.port}"))
    status, text = send(daemon, "POST", "/", headers, body)
    assert status == 200, (status, code_of(text))
    assert "ListQueuesResponse" in text


class _Rfc2822DateSigner(SigV4Auth):
    """Signs with a Date header as email.utils.formatdate() writes it: UTC, as "-0000"."""

    def _set_necessary_date_headers(self, request: AWSRequest) -> None:
        import calendar
        import email.utils
        import time

        for name in ("Date", "X-Amz-Date"):
            if name in request.headers:
                del request.headers[name]
        stamp = time.strptime(request.context["timestamp"], "%Y%m%dT%H%M%SZ")
        request.headers["Date"] = email.utils.formatdate(calendar.timegm(stamp))


def test_a_utc_date_header_is_utc_whatever_the_daemons_time_zone(tmp_path: Path) -> None:
    # "-0000" parses to a naive datetime, which was then read as the daemon's local time: in
    # Tokyo every such request was 9 hours old (RequestExpired).
    config = tmp_path / "millpond.toml"
    config.write_text('[auth]\ncredentials = { AKIDALICE = "alice-secret" }\n')
    d = Daemon(str(tmp_path / "data"), config=str(config), env={"TZ": "Asia/Tokyo"})
    try:
        body = urllib.parse.urlencode({"Action": "ListQueues", "Version": SQS_VERSION}).encode()
        request = AWSRequest(
            method="POST",
            url=d.url + "/",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        _Rfc2822DateSigner(ALICE, "sqs", "us-east-1").add_auth(request)
        headers = signed_headers_of(request)
        assert dict(headers)["Date"].endswith("-0000")
        headers.append(("Host", f"127.0.0.1:{d.port}"))
        status, text = send(d, "POST", "/", headers, body)
        assert status == 200, (status, code_of(text))
    finally:
        d.stop()


def test_presigned_url_is_accepted(daemon: Daemon) -> None:
    """Query-string SigV4 (X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires,
    X-Amz-SignedHeaders, X-Amz-Signature) is the other half of SigV4, accepted by SQS/SNS on
    AWS; botocore's SigV4QueryAuth makes it."""
    url = f"{daemon.url}/?Action=ListQueues&Version={SQS_VERSION}"
    request = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(ALICE, "sqs", "us-east-1", expires=300).add_auth(request)
    split = urllib.parse.urlsplit(request.url)
    assert "X-Amz-Signature=" in split.query
    status, text = send(
        daemon, "GET", f"{split.path}?{split.query}", [("Host", f"127.0.0.1:{daemon.port}")]
    )
    assert status == 200, (status, code_of(text))
    assert "ListQueuesResponse" in text


def test_a_presigned_url_dated_in_the_future_is_refused(daemon: Daemon) -> None:
    """A URL signed with a date a year ahead would otherwise stay valid for that year plus its
    X-Amz-Expires: the 7-day limit on presigned URLs would mean nothing."""
    import datetime
    from unittest import mock

    url = f"{daemon.url}/?Action=ListQueues&Version={SQS_VERSION}"
    request = AWSRequest(method="GET", url=url)
    ahead = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=365)
    with mock.patch("botocore.auth.get_current_datetime", return_value=ahead):
        SigV4QueryAuth(ALICE, "sqs", "us-east-1", expires=60).add_auth(request)
    split = urllib.parse.urlsplit(request.url)
    status, text = send(
        daemon, "GET", f"{split.path}?{split.query}", [("Host", f"127.0.0.1:{daemon.port}")]
    )
    assert (status, code_of(text)) == (400, "RequestExpired")


@pytest.mark.parametrize("signed_for", ["sqs", "s3", "execute-api"])
def test_sns_request_signed_for_another_service_is_refused(daemon: Daemon, signed_for: str) -> None:
    """AWS refuses a signature scoped to another service: SignatureDoesNotMatch (403),
    "Credential should be scoped to correct service: 'sns'." The SNS call below (Version
    2010-03-31) is signed with a .../sqs/aws4_request (or s3...) scope."""
    body, signed = signed_form(daemon, {"Action": "ListTopics", "Version": SNS_VERSION}, signed_for)
    headers = list(signed.items()) + [("Host", f"127.0.0.1:{daemon.port}")]
    status, text = send(daemon, "POST", "/", headers, body)
    assert (status, code_of(text)) == (403, "SignatureDoesNotMatch")


def test_sqs_json_request_signed_for_sns_is_refused(daemon: Daemon) -> None:
    """The same over SQS's JSON protocol: a request signed for 'sns' is taken as SQS."""
    body = b"{}"
    request = AWSRequest(
        method="POST",
        url=daemon.url + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.ListQueues",
        },
    )
    SigV4Auth(ALICE, "sns", "us-east-1").add_auth(request)
    headers = signed_headers_of(request) + [("Host", f"127.0.0.1:{daemon.port}")]
    status, text = send(daemon, "POST", "/", headers, body)
    assert status in (400, 403) and "SignatureDoesNotMatch" in text, (status, text[:300])


def test_scope_date_differing_from_x_amz_date_is_signature_does_not_match(daemon: Daemon) -> None:
    """AWS: SignatureDoesNotMatch (403) "Date in Credential scope does not match YYYYMMDD from
    ISO-8601 version of date from HTTP: ..." (the signature verification step fails, per AWS's
    SigV4 troubleshooting page)."""
    body, signed = signed_form(daemon, {"Action": "ListQueues", "Version": SQS_VERSION}, "sqs")
    headers = list(signed.items())
    auth = dict(headers)["Authorization"]
    scope_date = re.search(r"Credential=AKIDALICE/(\d{8})/", auth).group(1)  # type: ignore[union-attr]
    other_day = "19991231" if scope_date != "19991231" else "20000101"
    headers = [
        (k, v.replace(f"/{scope_date}/", f"/{other_day}/") if k == "Authorization" else v)
        for k, v in headers
    ] + [("Host", f"127.0.0.1:{daemon.port}")]
    status, text = send(daemon, "POST", "/", headers, body)
    assert (status, code_of(text)) == (403, "SignatureDoesNotMatch")


def test_non_ascii_signature_is_signature_does_not_match(daemon: Daemon) -> None:
    """A signature with a non-ASCII byte is a wrong signature (403), not a malformed request."""
    body = urllib.parse.urlencode({"Action": "ListQueues", "Version": SQS_VERSION}).encode()
    request = AWSRequest(
        method="POST",
        url=daemon.url + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    SigV4Auth(ALICE, "sqs", "us-east-1").add_auth(request)
    headers = []
    for k, v in signed_headers_of(request):
        if k == "Authorization":
            v = v[:-1] + "\xe9"  # one Latin-1 byte in place of the last hex digit
        headers.append((k, v))
    headers.append(("Host", f"127.0.0.1:{daemon.port}"))
    status, text = send(daemon, "POST", "/", headers, body)
    assert (status, code_of(text)) == (403, "SignatureDoesNotMatch")


def test_query_as_sent_is_sorted_by_name_then_value(daemon: Daemon) -> None:
    """botocore signs a URL's query as sent, sorted by (name, value) pairs (SigV4: "sort by
    encoded name, then by value"). Sorting whole "name=value" strings would
    differ when a name is a prefix of another (AttributeName.1 / .10: '=' sorts after '0').
    The '+' below is what makes the "as sent" variant needed at all."""
    query = "&".join(
        [
            "Action=ListQueues",
            f"Version={SQS_VERSION}",
            "QueueNamePrefix=a+b",
            "AttributeName.1=All",
            "AttributeName.10=All",
        ]
    )
    url = f"{daemon.url}/?{query}"
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(ALICE, "sqs", "us-east-1").add_auth(request)
    headers = signed_headers_of(request) + [("Host", f"127.0.0.1:{daemon.port}")]
    status, text = send(daemon, "GET", f"/?{query}", headers)
    assert status == 200, (status, code_of(text))


def test_a_second_authorization_header_cannot_move_a_signed_request(daemon: Daemon) -> None:
    """A request alice signed for us-east-1, replayed with a second, unsigned Authorization
    header naming eu-west-1, must not create its queue in eu-west-1: the header that names the
    region is the one that was verified (or the request is refused)."""
    body, signed = signed_form(
        daemon, {"Action": "CreateQueue", "QueueName": "moved", "Version": SQS_VERSION}, "sqs"
    )
    headers = list(signed.items()) + [
        ("Host", f"127.0.0.1:{daemon.port}"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDBOB/20000101/eu-west-1/sqs/aws4_request, "
            "SignedHeaders=host, Signature=00",
        ),
    ]
    send(daemon, "POST", "/", headers, body)  # refused, or done in us-east-1: both fine
    west = alice_sqs(daemon, "eu-west-1").list_queues().get("QueueUrls", [])
    assert not any(u.endswith("/moved") for u in west)


def test_sender_id_is_the_key_the_message_was_sent_with(daemon: Daemon) -> None:
    # SQS's SenderId names the sender: alice's verified key, also when bob receives.
    alice = client(daemon, "sqs", "AKIDALICE", KEYS["AKIDALICE"])
    bob = client(daemon, "sqs", "AKIDBOB", KEYS["AKIDBOB"])
    url = alice.create_queue(QueueName="sender-id")["QueueUrl"]
    alice.send_message(QueueUrl=url, MessageBody="x")
    alice.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "y"}])
    messages = bob.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["SenderId"]
    )["Messages"]
    assert [m["Attributes"]["SenderId"] for m in messages] == ["AKIDALICE", "AKIDALICE"]
