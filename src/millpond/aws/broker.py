"""AwsBroker: the Broker API over Amazon SQS and SNS through boto3.

Every AWS call goes through :meth:`AwsBroker._call`, the one place that turns AWS errors into
millpond's exception classes (:mod:`millpond.aws.errors`) and refuses calls after ``close``.
Nothing is cached that AWS could change behind our back except names that cannot change: the
account id and partition, learnt from the first queue URL or ARN seen.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    ParamValidationError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from millpond.aws.errors import from_client_error, from_param_error
from millpond.aws.messages import system_attribute_parameters
from millpond.aws.queue import AwsFifoQueue, AwsQueue, wire_queue_attributes
from millpond.aws.subscription import AwsSubscription
from millpond.aws.topic import AwsTopic, wire_tags
from millpond.errors import BrokerClosed, ConnectionLost, InvalidParameterValue, TopicNotFound
from millpond.sns_envelope import InvalidParameter
from millpond.topic_attributes import text_value

_OPTIONS = (
    "endpoint_url",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "profile_name",
    "session",
    "config",
    "verify",
    "account_id",
)

# A long poll holds its request open up to 20 s (WaitTimeSeconds, or the queue's
# ReceiveMessageWaitTimeSeconds when none is given). A shorter read timeout would cut every
# poll of an empty queue off and have botocore retry it, and the messages a cut-off poll was
# given would stay hidden until their visibility timeout ran out: receives get a client whose
# read timeout is at least this (s: the longest wait and room for a slow answer).
POLL_READ_TIMEOUT = 30

# millpond.open's options, which have no meaning over AWS
_EMBEDDED_ONLY = frozenset({"clock", "durability", "core", "map_size", "max_map_size", "reserve"})


def _verify(value: bool | str | None) -> bool | str | None:
    """TLS verification from a keyword or a URL's query: "false" turns it off, "true" on,
    anything else is a CA bundle path."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


class AwsBroker:
    """The queues and topics of one AWS account and region (``millpond.connect("sqs://...")``).

    Offers the methods of :class:`millpond.Broker` that SQS and SNS can do, with the same
    arguments, return shapes and exceptions. What only a data directory has (a clock,
    durability modes, the core implementation) is absent.
    """

    def __init__(
        self,
        region: str = "us-east-1",
        *,
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile_name: str | None = None,
        session: boto3.session.Session | None = None,
        config: Any = None,
        verify: bool | str | None = None,
        account_id: str | None = None,
        **unknown: Any,
    ) -> None:
        """Connect to SQS and SNS in ``region``.

        Args:
            region: the AWS region, e.g. "eu-west-1".
            endpoint_url: anything that speaks the SQS and SNS APIs on one URL (a millpond
                daemon, moto, LocalStack); None: AWS's own endpoints.
            aws_access_key_id, aws_secret_access_key, aws_session_token: credentials; None:
                boto3's usual chain (environment, profile, instance role...).
            profile_name: a profile of ~/.aws/config (ignored when ``session`` is given).
            session: a ready boto3 Session to make the clients from.
            config: a botocore.config.Config (timeouts, retries, proxies). Receives use a
                read timeout of at least POLL_READ_TIMEOUT (30 s), longer than a long poll.
            verify: False skips TLS verification, a path names a CA bundle.
            account_id: the 12-digit account, used to make topic ARNs from names; learnt from
                the first queue URL or topic ARN seen when not given.

        Raises:
            InvalidParameterValue: an option this backend does not know.
        """
        if unknown:
            local = sorted(_EMBEDDED_ONLY & unknown.keys())
            raise InvalidParameterValue(
                f"unknown sqs:// option(s) {', '.join(sorted(unknown))}: the options are "
                f"{', '.join(_OPTIONS)}"
                + (
                    f" ({', '.join(local)}: only a data directory has that; AWS keeps time and "
                    "durability itself)"
                    if local
                    else ""
                )
            )
        self.region = region
        self._account_id = account_id
        self._account_lock = threading.Lock()
        # held over the read-modify-write of a queue's Policy (AwsTopic subscribing a queue):
        # SQS has no conditional write, and two topics granting themselves at once would
        # each write the policy it read plus its own statement, dropping the other's
        self._policy_lock = threading.Lock()
        session = session or boto3.session.Session(profile_name=profile_name)
        try:
            self._partition = session.get_partition_for_region(region)
        except Exception:  # a region botocore does not know (a local endpoint's, say)
            self._partition = "aws"
        client_options: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url,
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
            "config": config,
            "verify": _verify(verify),
        }
        self._session, self._client_options = session, client_options  # for STS, if needed
        # X-Ray: a publish's trace_header travels as the X-Amzn-Trace-Id header, as SNS reads it
        self._trace = threading.local()
        self._clients_lock = threading.Lock()
        self._make_clients()
        self._system_attributes = system_attribute_parameters(self._poll_client)  # for receives
        self._closed = False

    def _make_clients(self) -> None:
        """The SQS and SNS clients, for this process: their pooled HTTP connections must not
        be shared with a process forked from it (botocore clients are not fork-safe: both
        would write requests on one connection and read each other's answers)."""
        session, options = self._session, self._client_options
        self._sqs_client = session.client("sqs", **options)
        self._poll_client = self._sqs_client  # for ReceiveMessage (see POLL_READ_TIMEOUT)
        if self._sqs_client.meta.config.read_timeout < POLL_READ_TIMEOUT:
            config = options["config"] or Config()
            poll_config = config.merge(Config(read_timeout=POLL_READ_TIMEOUT))
            self._poll_client = session.client("sqs", **{**options, "config": poll_config})
        self._sns_client = session.client("sns", **options)
        for operation in ("Publish", "PublishBatch"):
            self._sns_client.meta.events.register(
                f"before-sign.sns.{operation}", self._add_trace_header
            )
        self._clients_pid = os.getpid()

    def _clients_of_this_process(self) -> None:
        """In a process forked after the clients were made: make its own (the inherited ones,
        and their connections, are left to the parent: not closed, not used)."""
        with self._clients_lock:
            if self._clients_pid != os.getpid():
                self._make_clients()

    def __repr__(self) -> str:
        return f"AwsBroker({self.region!r})"

    # -- the one way to AWS ---------------------------------------------------------------------

    def _call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """``client.<operation>(**params)`` of "sqs" or "sns"; None params are left out.

        Raises the millpond exception for the AWS error (see millpond.aws.errors), and
        ConnectionLost when no answer came (refused connection, timeout, connection closed),
        after botocore's retries: the call may or may not have been done.
        """
        if self._closed:
            raise BrokerClosed("the broker was closed")
        if self._clients_pid != os.getpid():
            self._clients_of_this_process()
        if service == "sns":
            client = self._sns_client
        else:
            client = self._poll_client if operation == "receive_message" else self._sqs_client
        given = {key: value for key, value in params.items() if value is not None}
        try:
            return getattr(client, operation)(**given)  # type: ignore[no-any-return]
        except ClientError as exc:
            raise from_client_error(service, exc) from exc
        except (HTTPClientError, BotoConnectionError) as exc:
            # no answer came, after botocore's retries: as the native client says it (the
            # call may or may not have been done)
            raise ConnectionLost(f"no answer from {service.upper()}: {exc}") from exc
        except (ParamValidationError, UnicodeEncodeError) as exc:
            # UnicodeEncodeError: text with a lone surrogate, which the query serialiser (SNS)
            # cannot encode; refused as the embedded broker refuses text that is not Unicode
            raise from_param_error(service, exc) from exc

    def _pages(self, service: str, operation: str, key: str, **params: Any) -> Iterator[Any]:
        """The ``key`` items of every page of a listing (NextToken pagination)."""
        while True:
            page = self._call(service, operation, **params)
            yield from page.get(key, [])
            token = page.get("NextToken")
            if not token:
                return
            params["NextToken"] = token

    @contextlib.contextmanager
    def _trace_header(self, header: str | None) -> Iterator[None]:
        """``with broker._trace_header(h):`` the publishes of this thread carry ``h``."""
        self._trace.header = header
        try:
            yield
        finally:
            self._trace.header = None

    def _add_trace_header(self, request: Any, **_: Any) -> None:
        header = getattr(self._trace, "header", None)
        if header:
            request.headers["X-Amzn-Trace-Id"] = header

    # -- names and ARNs -------------------------------------------------------------------------

    @property
    def account_id(self) -> str:
        """The account the queues and topics belong to (learnt, or asked of STS)."""
        # the lock: one STS call however many threads ask at once, and a boto3 Session (which
        # makes the client) is not safe to use from several threads
        with self._account_lock:
            if self._account_id is None:
                sts = self._session.client("sts", **self._client_options)
                try:
                    self._account_id = sts.get_caller_identity()["Account"]
                except (BotoCoreError, ClientError) as exc:
                    raise InvalidParameterValue(
                        f"the AWS account id is not known yet and STS did not tell it ({exc}): "
                        "pass account_id= to connect()"
                    ) from exc
                finally:
                    sts.close()
            return self._account_id

    def arn(self, service: str, name: str) -> str:
        return f"arn:{self._partition}:{service}:{self.region}:{self.account_id}:{name}"

    def _learn_arn(self, arn: str) -> None:
        """Take the partition and account from an ARN AWS returned."""
        parts = arn.split(":")
        if self._account_id is None and len(parts) >= 6 and parts[4].isdigit():
            self._partition, self._account_id = parts[1], parts[4]

    def _queue_arn(self, url: str) -> str | None:
        """A queue's ARN from its URL (``.../<account>/<name>``), or None if not shaped so."""
        path = urlsplit(url).path.strip("/").split("/")
        if len(path) != 2 or not path[0].isdigit():
            return None
        return f"arn:{self._partition}:sqs:{self.region}:{path[0]}:{path[1]}"

    # -- queues ---------------------------------------------------------------------------------

    def _queue_object(self, name: str, url: str) -> AwsQueue:
        """One of our own queues (created, or looked up by name): its URL tells our account.
        (A queue of another account, subscribed by ARN, must not: see AwsTopic.subscribe.)"""
        kind = AwsFifoQueue if name.endswith(".fifo") else AwsQueue
        queue = kind(self, name, url)
        if queue._arn is not None:
            self._learn_arn(queue._arn)
        return queue

    def create_queue(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> AwsQueue:
        """Create a queue, or return the existing one if every given attribute matches.

        As :meth:`millpond.Broker.create_queue`. Unlike the embedded broker, SQS refuses a
        name deleted less than 60 seconds ago (AwsServiceError QueueDeletedRecently).
        """
        answer = self._call(
            "sqs",
            "create_queue",
            QueueName=name,
            Attributes=wire_queue_attributes(attributes),
            tags=dict(tags) if isinstance(tags, Mapping) else tags,
        )
        return self._queue_object(name, answer["QueueUrl"])

    def queue(self, name: str) -> AwsQueue:
        """The existing queue ``name``; raises QueueDoesNotExist."""
        return self._queue_object(name, self._queue_url(name))

    def _queue_url(self, name: str) -> str:
        return self._call("sqs", "get_queue_url", QueueName=name)["QueueUrl"]  # type: ignore[no-any-return]

    def delete_queue(self, name: str) -> None:
        """Delete a queue and every message in it; raises QueueDoesNotExist."""
        self._call("sqs", "delete_queue", QueueUrl=self._queue_url(name))

    def list_queues(self, prefix: str = "") -> list[str]:
        """Names of the queues whose name starts with ``prefix``, sorted."""
        urls = self._pages(
            "sqs", "list_queues", "QueueUrls", QueueNamePrefix=prefix or None, MaxResults=1000
        )
        return sorted(url.rsplit("/", 1)[-1] for url in urls)

    def list_dead_letter_source_queues(self, name: str) -> list[str]:
        """Names of the queues whose RedrivePolicy targets queue ``name``, sorted."""
        urls = self._pages(
            "sqs",
            "list_dead_letter_source_queues",
            "queueUrls",
            QueueUrl=self._queue_url(name),
            MaxResults=1000,
        )
        return sorted(url.rsplit("/", 1)[-1] for url in urls)

    def start_message_move_task(
        self,
        source_arn: str,
        destination_arn: str | None = None,
        max_messages_per_second: int | None = None,
    ) -> str:
        """Move the messages of a dead-letter queue back (SQS StartMessageMoveTask); returns
        the task handle."""
        answer = self._call(
            "sqs",
            "start_message_move_task",
            SourceArn=source_arn,
            DestinationArn=destination_arn,
            MaxNumberOfMessagesPerSecond=max_messages_per_second,
        )
        return answer["TaskHandle"]  # type: ignore[no-any-return]

    def list_message_move_tasks(
        self, source_arn: str, max_results: int = 1
    ) -> list[dict[str, Any]]:
        """The move tasks of a source queue, newest first (SQS ListMessageMoveTasks)."""
        answer = self._call(
            "sqs", "list_message_move_tasks", SourceArn=source_arn, MaxResults=max_results
        )
        return list(answer.get("Results", []))

    def cancel_message_move_task(self, task_handle: str) -> int:
        """Stop a running move task; returns how many messages it had moved."""
        answer = self._call("sqs", "cancel_message_move_task", TaskHandle=task_handle)
        return int(answer.get("ApproximateNumberOfMessagesMoved", 0))

    # -- topics ---------------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> AwsTopic:
        """Create a topic, or return the existing one (as :meth:`millpond.Broker.create_topic`)."""
        given = (
            {key: text_value(value) for key, value in attributes.items()}
            if isinstance(attributes, Mapping)
            else attributes
        )
        answer = self._call(
            "sns", "create_topic", Name=name, Attributes=given, Tags=wire_tags(tags)
        )
        arn: str = answer["TopicArn"]
        self._learn_arn(arn)
        return AwsTopic(self, name, arn)

    def topic(self, name: str) -> AwsTopic:
        """The existing topic ``name`` (or its ARN); raises TopicNotFound."""
        arn = self._topic_arn(name)
        if arn is None:
            raise TopicNotFound("Topic does not exist")
        self._call("sns", "get_topic_attributes", TopicArn=arn)  # TopicNotFound
        return AwsTopic(self, arn.rsplit(":", 1)[-1], arn)

    def _topic_arn(self, name: str) -> str | None:
        """The ARN of topic ``name`` (an ARN is taken as it is); None: no such topic."""
        if not isinstance(name, str) or not name:
            raise InvalidParameter("Invalid parameter: TopicArn")
        if name.startswith("arn:"):
            return name  # SNS judges it
        if self._account_id is not None:
            return self.arn("sns", name)
        for topic in self._pages("sns", "list_topics", "Topics"):  # learns the account
            arn: str = topic["TopicArn"]
            self._learn_arn(arn)
            if arn.rsplit(":", 1)[-1] == name:
                return arn
        return None

    def delete_topic(self, name: str) -> None:
        """Delete a topic and its subscriptions (idempotent, as SNS)."""
        arn = self._topic_arn(name)
        if arn is not None:
            self._call("sns", "delete_topic", TopicArn=arn)

    def list_topics(self) -> list[str]:
        """Names of all topics, sorted."""
        names = []
        for topic in self._pages("sns", "list_topics", "Topics"):
            self._learn_arn(topic["TopicArn"])
            names.append(topic["TopicArn"].rsplit(":", 1)[-1])
        return sorted(names)

    def subscription(self, arn: str) -> AwsSubscription:
        """The subscription with this ARN (of any topic); raises TopicNotFound."""
        answer = self._call("sns", "get_subscription_attributes", SubscriptionArn=arn)
        return AwsSubscription.from_attributes(self, answer.get("Attributes", {}))

    def list_subscriptions(self) -> list[AwsSubscription]:
        """Every subscription of every topic (SNS ListSubscriptions)."""
        return [
            AwsSubscription.from_listing(self, entry)
            for entry in self._pages("sns", "list_subscriptions", "Subscriptions")
        ]

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connections; later calls raise BrokerClosed."""
        self._closed = True
        if self._clients_pid != os.getpid():
            return  # the parent's clients, inherited through fork(): the parent closes them
        self._sqs_client.close()
        self._poll_client.close()  # the same client, unless read_timeout was short
        self._sns_client.close()

    def __enter__(self) -> AwsBroker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
