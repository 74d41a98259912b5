"""Running the daemon, as an operator and an HTTP client meet it: bodies refused before they
are read, the config applied whole or not at all, command-line checks, and stops."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from millpond import cli
from millpond.server import config as config_module
from millpond.server.app import MAX_BODY
from millpond.server.context import Context

from .daemon import Daemon, free_port
from .test_server_operations import serve


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = Daemon(str(tmp_path_factory.mktemp("ops") / "data"))
    yield running
    running.stop()


def _head(target: str, framing: bytes) -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\n"
        b"X-Amz-Target: AmazonSQS." + target.encode() + b"\r\n" + framing + b"\r\n"
    )


def _read_until_closed(sock: socket.socket, seconds: float = 3) -> tuple[bytes, bool]:
    """What the daemon sent, and whether it closed the connection within ``seconds``."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return received, False
    except ConnectionResetError:
        pass
    return received, True


# -- a body refused before it is read: the connection ends with the answer ----------------------


def test_a_body_announced_over_the_cap_after_expect_100_continue_closes_the_connection(
    daemon: Daemon,
) -> None:
    # The client waits for 100 Continue and gets the 413 instead: it never sends the body. Had
    # the connection stayed open, the next request on it would have been read as that body,
    # and that client would hang until its own timeout.
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(
            _head(
                "ListQueues",
                b"Expect: 100-continue\r\nContent-Length: %d\r\n" % (MAX_BODY + 1),
            )
        )
        received, closed = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 413"), received
    assert b"connection: close" in received.lower(), received
    assert closed, f"the connection stayed open after the 413:\n{received!r}"


def test_a_chunked_body_streamed_past_the_cap_is_cut_off_not_read_for_ever(
    daemon: Daemon,
) -> None:
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(_head("ListQueues", b"Transfer-Encoding: chunked\r\n"))
        streamed = 0
        started = time.monotonic()
        try:
            # twice the cap, then some: a daemon that drops the connection stops this early
            while streamed < 4 * MAX_BODY and time.monotonic() - started < 5:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                streamed += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received, closed = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 413"), received
    assert closed, "the daemon kept reading (and dropping) the body past its 413"


def test_a_body_cut_off_by_its_deadline_closes_the_connection(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The client stopped sending its body: the 408 ends the connection, which would otherwise
    # wait (keep-alive) for the rest of a body the daemon no longer reads.
    data = str(tmp_path_factory.mktemp("slow") / "data")
    slow = Daemon(data, env={"MILLPOND_BODY_TIMEOUT_S": "0.5"})
    try:
        with socket.create_connection(("127.0.0.1", slow.port), timeout=5) as sock:
            sock.sendall(_head("ListQueues", b"Content-Length: 100\r\n") + b"{")
            received, closed = _read_until_closed(sock)
    finally:
        slow.stop()
    assert received.startswith(b"HTTP/1.1 408"), received
    assert closed, f"the connection stayed open after the 408:\n{received!r}"


# -- the config: applied whole or not at all ------------------------------------------------------


def _apply(tmp_path: Path, text: str) -> tuple[Context, str | None]:
    """Apply config ``text`` to the data in tmp_path: (the context, the ConfigError if any)."""
    path = tmp_path / "millpond.toml"
    path.write_text(text)
    ctx = Context(str(tmp_path / "data"), durability="os", workers=2)
    try:
        config_module.apply(config_module.load(str(path)), ctx)
    except config_module.ConfigError as exc:
        return ctx, str(exc)
    return ctx, None


def _stored(ctx: Context) -> tuple[list[str], list[str], list[str]]:
    """Queue names, topic names and subscribed queue names of the default region."""
    broker = ctx.broker()
    subscribed = [
        sub.queue_name
        for name in broker.list_topics()
        for sub in broker.topic(name).list_subscriptions()
    ]
    return broker.list_queues(), broker.list_topics(), subscribed


HALF_APPLIED = {
    # a subscription naming a queue the config does not define (a typo, say)
    "subscription_to_an_undefined_queue": (
        '[[queues]]\nname = "orders"\n[[topics]]\nname = "events"\n'
        '[[subscriptions]]\ntopic = "events"\nqueue = "ordres"\n',
        "ordres",
    ),
    "bad_filter_policy": (
        '[[queues]]\nname = "orders"\n[[topics]]\nname = "events"\n'
        '[[subscriptions]]\ntopic = "events"\nqueue = "orders"\nfilter_policy = { kind = "x" }\n',
        "FilterPolicy",
    ),
    "second_queue_refused": (
        '[[queues]]\nname = "orders"\n'
        '[[queues]]\nname = "payments"\nattributes = { VisibilityTimeout = "99999" }\n',
        "payments",
    ),
    "second_subscription_refused": (
        '[[queues]]\nname = "orders"\n[[topics]]\nname = "events"\n'
        '[[subscriptions]]\ntopic = "events"\nqueue = "orders"\n'
        '[[subscriptions]]\ntopic = "events"\nqueue = "nope"\n',
        "nope",
    ),
}


@pytest.mark.parametrize("case", sorted(HALF_APPLIED))
def test_a_config_refused_leaves_nothing_of_itself_behind(tmp_path: Path, case: str) -> None:
    text, named = HALF_APPLIED[case]
    ctx, error = _apply(tmp_path, text)
    try:
        assert error is not None and named in error, error
        # the daemon exits: what the config had created up to its bad part must not stay, to
        # be taken for the operator's on the next start (and "left alone" then)
        assert _stored(ctx) == ([], [], [])
    finally:
        ctx.close()


def test_a_refused_config_leaves_what_was_there_before_it(tmp_path: Path) -> None:
    good = (
        '[[queues]]\nname = "orders"\n[[topics]]\nname = "events"\n'
        '[[subscriptions]]\ntopic = "events"\nqueue = "orders"\n'
    )
    ctx, error = _apply(tmp_path, good)
    ctx.close()
    assert error is None
    ctx, error = _apply(tmp_path, good + '[[queues]]\nname = "bad"\ntags = { a = 1 }\n')
    try:
        assert error is not None and "bad" in error, error
        assert _stored(ctx) == (["orders"], ["events"], ["orders"])
    finally:
        ctx.close()


def _redrive(dlq: str) -> str:
    """A queue definition's attributes line: a RedrivePolicy naming ``dlq``."""
    policy = {
        "maxReceiveCount": 3,
        "deadLetterTargetArn": f"arn:aws:sqs:us-east-1:123456789012:{dlq}",
    }
    return f"attributes = {{ RedrivePolicy = '{json.dumps(policy)}' }}\n"


def test_a_dead_letter_queue_defined_after_its_source_is_made_first(tmp_path: Path) -> None:
    # A config declares queues: "jobs" then its DLQ "jobs-dlq" below it is as natural an order
    # as the other. AWS refuses a RedrivePolicy naming a queue that does not exist yet, so the
    # DLQs the config defines are created before the queues whose RedrivePolicy names them.
    ctx, error = _apply(
        tmp_path,
        f'[[queues]]\nname = "jobs"\n{_redrive("jobs-retry")}'
        f'[[queues]]\nname = "jobs-retry"\n{_redrive("jobs-dlq")}'
        '[[queues]]\nname = "jobs-dlq"\n',
    )
    try:
        assert error is None, error
        broker = ctx.broker()
        assert broker.list_queues() == ["jobs", "jobs-dlq", "jobs-retry"]
        assert "jobs-retry" in broker.queue("jobs").get_attributes()["RedrivePolicy"]
        assert "jobs-dlq" in broker.queue("jobs-retry").get_attributes()["RedrivePolicy"]
    finally:
        ctx.close()


def test_a_dead_letter_queue_defined_nowhere_is_still_refused(tmp_path: Path) -> None:
    ctx, error = _apply(tmp_path, f'[[queues]]\nname = "jobs"\n{_redrive("jobs-dlq")}')
    try:
        assert error is not None and "jobs" in error and "does not exist" in error, error
        assert ctx.broker().list_queues() == []
    finally:
        ctx.close()


def test_a_subscription_or_topic_changed_in_the_config_is_reported_not_silently_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # As for a queue: left as it is (the README's "left alone"), but the operator who edited
    # the filter policy is told it did not take, instead of wondering why messages still come.
    before = (
        '[[queues]]\nname = "orders"\n'
        '[[topics]]\nname = "events"\nattributes = { DisplayName = "Events" }\n'
        '[[subscriptions]]\ntopic = "events"\nqueue = "orders"\n'
        'filter_policy = { kind = ["order"] }\n'
    )
    ctx, error = _apply(tmp_path, before)
    ctx.close()
    assert error is None, error
    with caplog.at_level(logging.WARNING, logger="millpond.server"):
        ctx, error = _apply(tmp_path, before)  # unchanged: not a word
        ctx.close()
        assert error is None and caplog.messages == [], caplog.messages
        after = before.replace('["order"]', '["refund"]').replace('"Events"', '"All events"')
        ctx, error = _apply(tmp_path, after + "raw_message_delivery = true\n")
    try:
        assert error is None, error
        broker = ctx.broker()
        (sub,) = broker.topic("events").list_subscriptions()
        assert sub.get_attributes()["FilterPolicy"] == '{"kind":["order"]}'  # left as it is
        assert broker.topic("events").get_attributes()["DisplayName"] == "Events"
    finally:
        ctx.close()
    warnings = "\n".join(caplog.messages)
    assert "events" in warnings and "DisplayName" in warnings, warnings
    assert "orders" in warnings and "FilterPolicy" in warnings, warnings
    assert "RawMessageDelivery" in warnings, warnings


DEFINED_TWICE = {
    # a copied definition whose name was not changed: the second one was reported as a queue
    # that "exists with other attributes" (made a moment before by the first), and started
    "queue": '[[queues]]\nname = "a"\n[[queues]]\nname = "a"\nattributes = { DelaySeconds = 5 }\n',
    "queue_in_the_default_region_named": (
        '[[queues]]\nname = "a"\n[[queues]]\nname = "a"\nregion = "us-east-1"\n'
    ),
    "topic": '[[topics]]\nname = "t"\n[[topics]]\nname = "t"\n',
    "subscription": (
        '[[queues]]\nname = "a"\n[[topics]]\nname = "t"\n'
        '[[subscriptions]]\ntopic = "t"\nqueue = "a"\n'
        '[[subscriptions]]\ntopic = "t"\nqueue = "a"\nraw_message_delivery = true\n'
    ),
}


@pytest.mark.parametrize("case", sorted(DEFINED_TWICE))
def test_a_definition_given_twice_is_refused(tmp_path: Path, case: str) -> None:
    ctx, error = _apply(tmp_path, DEFINED_TWICE[case])
    try:
        assert error is not None and "defined twice" in error, error
        assert _stored(ctx) == ([], [], [])
    finally:
        ctx.close()


def test_one_name_in_two_regions_is_two_queues(tmp_path: Path) -> None:
    ctx, error = _apply(
        tmp_path, '[[queues]]\nname = "a"\n[[queues]]\nname = "a"\nregion = "eu-west-1"\n'
    )
    try:
        assert error is None, error
        assert ctx.broker("eu-west-1").list_queues() == ctx.broker().list_queues() == ["a"]
    finally:
        ctx.close()


def test_a_queues_tags_changed_in_the_config_are_reported_not_silently_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = '[[queues]]\nname = "orders"\ntags = { team = "shop" }\n'
    ctx, error = _apply(tmp_path, before)
    ctx.close()
    assert error is None, error
    with caplog.at_level(logging.WARNING, logger="millpond.server"):
        ctx, error = _apply(tmp_path, before)  # unchanged: not a word
        ctx.close()
        assert error is None and caplog.messages == [], caplog.messages
        ctx, error = _apply(tmp_path, before.replace('"shop"', '"billing"'))
    try:
        assert error is None, error
        assert ctx.broker().queue("orders").tags() == {"team": "shop"}  # left as they are
    finally:
        ctx.close()
    warnings = "\n".join(caplog.messages)
    assert "orders" in warnings and "tags" in warnings, warnings


def test_an_unchanged_queue_definition_is_not_reported_as_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # SQS writes a RedrivePolicy back in its own form (maxReceiveCount a number, whatever was
    # sent; the AWS docs' examples send "maxReceiveCount": "5"): the stored form differs from
    # the config's text, but the queue is as the config defines it.
    policy = {
        "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq",
        "maxReceiveCount": "5",
    }
    text = (
        '[[queues]]\nname = "dlq"\n'
        f"[[queues]]\nname = \"jobs\"\nattributes = {{ RedrivePolicy = '{json.dumps(policy)}' }}\n"
        '[[queues]]\nname = "jobs.fifo"\n'
        'attributes = { FifoQueue = true, ContentBasedDeduplication = "true", DelaySeconds = 0 }\n'
    )
    ctx, error = _apply(tmp_path, text)
    ctx.close()
    assert error is None, error
    with caplog.at_level(logging.WARNING, logger="millpond.server"):
        ctx, error = _apply(tmp_path, text)
        ctx.close()
    assert error is None, error
    assert caplog.messages == [], caplog.messages


def test_a_bad_attribute_of_a_queue_that_exists_is_still_refused(tmp_path: Path) -> None:
    ctx, error = _apply(tmp_path, '[[queues]]\nname = "jobs"\n')
    ctx.close()
    assert error is None, error
    ctx, error = _apply(
        tmp_path, '[[queues]]\nname = "jobs"\nattributes = { VisibilityTimeot = 60 }\n'
    )
    ctx.close()
    assert error is not None and "jobs" in error and "VisibilityTimeot" in error, error


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--threads", "--messages"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_demo_refuses_a_count_below_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    # --threads 0 was a ZeroDivisionError traceback; --messages -3 printed negative rates
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--data", str(tmp_path / "data"), option, value])
    assert exit_.value.code == 2
    assert f"{value!r} is not a number of at least 1" in capsys.readouterr().err


def test_one_port_for_http_and_the_native_protocol_is_refused_by_name(tmp_path: Path) -> None:
    # It was uvicorn's "[Errno 98] ... address already in use" (exit 3), as if another
    # program held the port: the native protocol, bound first, held it.
    port = str(free_port())
    code, out = serve(tmp_path, "--port", port, "--native-port", port, timeout=10)
    assert code == 1, out
    assert out.startswith("millpond serve: ") and "native" in out and port in out, out


# -- stopping -----------------------------------------------------------------------------------


def test_a_request_whose_body_is_on_its_way_at_sigterm_is_answered_not_refused(
    tmp_path: Path,
) -> None:
    # SDKs write a request's head and its body separately (botocore does): a SIGTERM that
    # falls between the two must not answer the request "408 Request timeout" (the client
    # sent it whole and at once; a graceful stop answers what was sent). Only a body that does
    # not come (test_server_operations: a stalled one) is cut off.
    daemon = Daemon(str(tmp_path / "data"))
    body = b'{"QueueName": "made-during-the-stop"}'
    try:
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
            sock.sendall(_head("CreateQueue", b"Content-Length: %d\r\n" % len(body)))
            time.sleep(0.3)  # the daemon has the head and waits for the body
            daemon.process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            sock.sendall(body)
            received, _ = _read_until_closed(sock, seconds=10)
    finally:
        code = daemon.stop()
    assert received.startswith(b"HTTP/1.1 200"), received
    assert code == 0, daemon.log()


def test_a_long_poll_cancelled_as_a_send_wakes_it_stays_cancelled():
    # Python 3.11's asyncio.wait_for returns normally when the awaited future completes in the
    # same loop iteration as the cancel: the long poll of a client that had just gone away
    # (server/app.py cancels it) went on to take a message for nobody, hidden for its
    # visibility timeout.
    from millpond.server.context import Notifier

    async def scenario() -> bool:
        notifier = Notifier(asyncio.get_running_loop())
        poll = asyncio.ensure_future(notifier.wait(1, 7, 20.0))
        await asyncio.sleep(0)  # the poll waits now
        notifier._wake(1, 7)  # a send wakes it ...
        poll.cancel()  # ... as its client disconnects, in the same iteration
        try:
            await poll
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(scenario()), "the cancelled long poll went on"


# -- a receive its client left, with and without a ReceiveRequestAttemptId ----------------------


@pytest.mark.parametrize("attempt_id", [None, "retry-me"])
def test_a_left_receive_keeps_its_messages_only_for_an_attempt_id(
    tmp_path: Path, attempt_id: str | None
) -> None:
    # The client left while its receive ran. Without an attempt id nobody can come back for the
    # messages: they are given back at once. With one, the client's retry must get the same
    # messages, as SQS promises for a lost answer; given back, the retry received them afresh
    # (new handles, the receive count up by one: closer to the dead-letter queue).
    from millpond.server.sqs import long_poll

    ctx = Context(str(tmp_path / "data"), durability="os", workers=2)
    queue = ctx.broker().create_queue("q.fifo", {"FifoQueue": "true"})
    queue.send(b"m", group_id="g", deduplication_id="d")

    async def main() -> list[int]:
        ctx.bind_loop(asyncio.get_running_loop())
        poll = asyncio.ensure_future(long_poll(ctx, queue, 10, 600_000, 0, attempt_id))
        await asyncio.sleep(0)  # the receive is under way
        poll.cancel()
        with pytest.raises(asyncio.CancelledError):
            await poll
        await asyncio.sleep(0.2)  # the receive finished; a give-back ran in a worker
        retry = await long_poll(ctx, queue, 10, 600_000, 0, attempt_id)
        return [m.receive_count for m in retry]

    counts = asyncio.run(main())
    ctx.close()
    # given back: the retry is a fresh receive (count 2); kept: the same delivery (count 1)
    assert counts == ([2] if attempt_id is None else [1])
