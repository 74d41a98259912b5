"""Identity, authentication and addressing on the daemon, against what AWS does.

One daemon without credentials (``daemon``, from conftest: any request is taken, the SigV4
credential scope picks the region) and one with a key pair (``signing``: every request must be
signed).
"""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .daemon import Daemon

SQS_VERSION = "2012-11-05"
SNS_VERSION = "2010-03-31"
ALICE = Credentials("AKIDALICE", "alice-secret")


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("signing")
    config = root / "millpond.toml"
    config.write_text(f'[auth]\ncredentials = {{ {ALICE.access_key} = "{ALICE.secret_key}" }}\n')
    d = Daemon(str(root / "data"), config=str(config))
    yield d
    d.stop()


def send(
    daemon: Daemon, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b""
) -> tuple[int, str]:
    """Send exactly these headers (plus Host); (status, body text)."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{daemon.port}")
        for name, value in headers:
            conn.putheader(name, value)
        if body:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def presigned(daemon: Daemon, params: dict[str, str], service: str, region: str) -> str:
    """The path and query of a GET presigned by alice (botocore's SigV4QueryAuth)."""
    request = AWSRequest(method="GET", url=f"{daemon.url}/?{urllib.parse.urlencode(params)}")
    SigV4QueryAuth(ALICE, service, region, expires=300).add_auth(request)
    split = urllib.parse.urlsplit(request.url)
    return f"{split.path}?{split.query}"


def client(daemon: Daemon, service: str, region: str, **kwargs: Any) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=daemon.url,
        region_name=region,
        aws_access_key_id=ALICE.access_key,
        aws_secret_access_key=ALICE.secret_key,
        **kwargs,
    )


# -- the region of a request ------------------------------------------------------------------


def test_a_presigned_url_acts_in_the_region_of_its_scope_without_credentials_too(
    daemon: Daemon,
) -> None:
    # The daemon without credentials takes its region from the credential scope: a presigned
    # URL names it in X-Amz-Credential (.../eu-west-1/sqs/aws4_request), as the daemon with
    # credentials already used. Without credentials it was ignored: the queue landed in the
    # default region.
    query = {"Action": "CreateQueue", "QueueName": "presigned-west", "Version": SQS_VERSION}
    status, _ = send(daemon, "GET", presigned(daemon, query, "sqs", "eu-west-1"), [])
    assert status == 200
    west = client(daemon, "sqs", "eu-west-1").list_queues(QueueNamePrefix="presigned-west")
    east = client(daemon, "sqs", "us-east-1").list_queues(QueueNamePrefix="presigned-west")
    assert len(west.get("QueueUrls", [])) == 1 and "QueueUrls" not in east
    topic = {"Action": "CreateTopic", "Name": "presigned-west", "Version": SNS_VERSION}
    status, text = send(daemon, "GET", presigned(daemon, topic, "sns", "eu-west-1"), [])
    assert status == 200 and "arn:aws:sns:eu-west-1:" in text, text


# -- clock skew -------------------------------------------------------------------------------


def signed_at(daemon: Daemon, body: bytes, service: str, when: Any) -> list[tuple[str, str]]:
    """The headers of a form POST alice signed for ``service`` with her clock at ``when``."""
    from unittest import mock

    from botocore.auth import SigV4Auth

    request = AWSRequest(
        method="POST",
        url=daemon.url + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(ALICE, service, "us-east-1").add_auth(request)
    return list(request.headers.items())


@pytest.mark.parametrize(
    "service, version, action",
    [("sqs", SQS_VERSION, "ListQueues"), ("sns", SNS_VERSION, "ListTopics")],
)
@pytest.mark.parametrize("hours", [-1, 1])
def test_a_request_signed_by_a_skewed_clock_is_signature_does_not_match(
    signing: Daemon, service: str, version: str, action: str, hours: int
) -> None:
    # SQS and SNS answer a signed request dated over 15 minutes from their clock with
    # SignatureDoesNotMatch (403) and both times, e.g. (aws/aws-sdk-php#642, SQS's own XML):
    # <Code>SignatureDoesNotMatch</Code><Message>Signature expired: 20150619T100249Z is now
    # earlier than 20150619T100713Z (20150619T102213Z - 15 min.)</Message>; a date ahead:
    # "Signature not yet current: X is still later than Y (Z + 15 min.)". The daemon
    # answered RequestExpired (400), which names no time a client can correct its clock by.
    import datetime
    import re

    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=hours)
    body = urllib.parse.urlencode({"Action": action, "Version": version}).encode()
    status, text = send(signing, "POST", "/", signed_at(signing, body, service, when), body)
    date = when.strftime("%Y%m%dT%H%M%SZ")
    stamp = r"\d{8}T\d{6}Z"
    if hours < 0:
        wanted = rf"Signature expired: {date} is now earlier than {stamp} \({stamp} - 15 min\.\)"
    else:
        wanted = (
            rf"Signature not yet current: {date} is still later than {stamp} "
            rf"\({stamp} \+ 15 min\.\)"
        )
    assert status == 403 and "<Code>SignatureDoesNotMatch</Code>" in text, (status, text)
    assert re.search(f"<Message>{wanted}</Message>", text), text


def test_a_skewed_request_over_json_is_signature_does_not_match(signing: Daemon) -> None:
    import datetime
    from unittest import mock

    from botocore.auth import SigV4Auth

    body = b"{}"
    request = AWSRequest(
        method="POST",
        url=signing.url + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.ListQueues",
        },
    )
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(ALICE, "sqs", "us-east-1").add_auth(request)
    conn = http.client.HTTPConnection("127.0.0.1", signing.port, timeout=30)
    try:
        conn.request("POST", "/", body=body, headers=dict(request.headers.items()))
        response = conn.getresponse()
        text = response.read().decode()
        query_error = response.getheader("x-amzn-query-error")
    finally:
        conn.close()
    assert response.status == 403 and query_error == "SignatureDoesNotMatch;Sender", text
    assert "Signature expired: " in text


# -- queue URLs -------------------------------------------------------------------------------


def test_a_queue_name_is_taken_where_a_queue_url_is_expected(daemon: Daemon) -> None:
    # SQS takes a bare queue name as QueueUrl (in the caller's account): Java SDK v1 code doing
    # sendMessage(queueName, ...) "works in production" (localstack/localstack#8545); moto
    # accepts names since "this validation does not appear in AWS" (getmoto/moto#5073); the JS
    # SDK v3 documents useQueueUrlAsEndpoint: false for passing names (aws/aws-sdk-js-v3#6337).
    # The daemon answered NonExistentQueue for a queue that exists.
    import botocore.exceptions

    sqs = client(daemon, "sqs", "us-east-1")
    url = sqs.create_queue(QueueName="by-name_1")["QueueUrl"]
    sqs.send_message(QueueUrl="by-name_1", MessageBody="sent by name")
    (message,) = sqs.receive_message(QueueUrl="by-name_1")["Messages"]
    assert message["Body"] == "sent by name"
    sqs.delete_message(QueueUrl="by-name_1", ReceiptHandle=message["ReceiptHandle"])
    arn = sqs.get_queue_attributes(QueueUrl="by-name_1", AttributeNames=["QueueArn"])
    assert arn["Attributes"]["QueueArn"].endswith(":by-name_1")
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        sqs.get_queue_attributes(QueueUrl="no-such-queue", AttributeNames=["All"])
    assert missing.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    sqs.delete_queue(QueueUrl="by-name_1")
    assert url not in sqs.list_queues().get("QueueUrls", [])
