"""The daemon as an operator runs it: start-up errors, the port, predefinitions, health and
metrics across restarts. Each test starts its own `millpond serve` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .daemon import SERVE, Daemon, free_port


def serve(
    tmp_path: Path, *args: str, timeout: float = 20, port: bool = True
) -> tuple[int | None, str]:
    """Run `millpond serve` with ``args``; (exit code or None if still running, stderr+stdout)."""
    command = SERVE + ["--data", str(tmp_path / "data"), *args]
    if port and "--port" not in args:
        command += ["--port", str(free_port())]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = process.communicate(timeout=timeout)
        return process.returncode, out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        return None, out.decode("utf-8", "replace")


# -- start-up: a wrong option or config is one line naming it, exit 1 ----------------------------

BAD_CONFIGS = {
    "unknown_server_key": "[server]\nbogus = 1\n",
    "toml_syntax_error": "[server\n",
    "port_not_a_number": '[server]\nport = "abc"\n',
    "durability_unknown": '[server]\ndurability = "never"\n',
    "queue_without_name": '[[queues]]\nattributes = { VisibilityTimeout = "60" }\n',
    "queues_not_an_array": 'queues = { name = "a" }\n',
    "tags_not_a_table": '[[queues]]\nname = "a"\ntags = "team"\n',
    "subscription_without_queue": (
        '[[topics]]\nname = "t"\n[[queues]]\nname = "q"\n[[subscriptions]]\ntopic = "t"\n'
    ),
    # a misspelt section would leave its queue uncreated (or its settings unused) silently
    "unknown_section": '[[queue]]\nname = "jobs"\n',
    # an [auth] that names no key pair would run a daemon that checks no signatures
    "auth_without_credentials": "[auth]\ncredentials = {}\n",
    # the account id is a queue URL's first path segment and an ARN field
    "account_id_with_a_slash": '[server]\naccount_id = "team/a"\n',
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_a_bad_config_is_a_clear_message_not_a_traceback(tmp_path: Path, case: str) -> None:
    config = tmp_path / "millpond.toml"
    config.write_text(BAD_CONFIGS[case])
    # (the port case must not get a --port on the command line: it would win over the file's)
    code, out = serve(tmp_path, "--config", str(config), port=case != "port_not_a_number")
    assert code not in (None, 0), out
    assert "Traceback" not in out, out
    assert out.startswith("millpond serve: "), out


@pytest.mark.parametrize("case", ["missing_config_file", "tls_cert_without_key", "data_is_a_file"])
def test_bad_options_are_a_clear_message_not_a_traceback(tmp_path: Path, case: str) -> None:
    (tmp_path / "plain-file").write_text("x")
    args = {
        "missing_config_file": ["--config", str(tmp_path / "nope.toml")],
        "tls_cert_without_key": ["--tls-cert", str(tmp_path / "cert.pem")],
        "data_is_a_file": ["--data", str(tmp_path / "plain-file" / "data")],
    }[case]
    code, out = serve(tmp_path, *args)
    assert code not in (None, 0), out
    assert "Traceback" not in out, out
    assert out.startswith("millpond serve: "), out


def test_a_region_that_is_no_region_is_refused(tmp_path: Path) -> None:
    # (it would name a data directory and appear in every ARN)
    code, out = serve(tmp_path, "--region", "Bad Region", timeout=5)
    assert code == 2 and "is not a region name" in out, out
    assert not (tmp_path / "data" / "Bad Region").exists()


@pytest.mark.parametrize("account", ["", "team/a", "12:34", "abc"])
def test_an_account_id_that_is_no_account_id_is_refused(tmp_path: Path, account: str) -> None:
    # ("team/a" or "" made every queue URL unusable: QueueDoesNotExist for each request)
    code, out = serve(tmp_path, "--account-id", account, timeout=5)
    assert code == 2 and "is not an account id" in out, out


@pytest.mark.parametrize("case", ["missing", "not_pem"])
def test_tls_files_that_cannot_be_loaded_are_named(tmp_path: Path, case: str) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    if case == "not_pem":
        cert.write_text("not a certificate")
        key.write_text("not a key")
    code, out = serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), timeout=10)
    assert code == 1, out
    assert out.startswith("millpond serve: ") and str(cert) in out, out  # not "...: None"


def test_a_host_that_does_not_resolve_is_named(tmp_path: Path) -> None:
    code, out = serve(tmp_path, "--host", "no-such-host.invalid", timeout=10)
    assert code == 1, out  # a wrong option value, not exit 3 as a port in use
    assert out.startswith("millpond serve: ") and "no-such-host.invalid" in out, out


def test_the_banner_of_an_ipv6_address_is_a_usable_url(tmp_path: Path) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    code, out = serve(tmp_path, "--host", "::1", "--port", "0", timeout=3)
    assert code is None, out
    assert "http://[::1]:" in out, out


def test_an_empty_millpond_data_means_the_default_directory(tmp_path: Path) -> None:
    # (MILLPOND_DATA= is how a shell or compose file unsets it; it was taken as the path "")
    command = SERVE + ["--port", str(free_port())]
    env = {**os.environ, "MILLPOND_DATA": ""}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out, _ = process.communicate(timeout=3)
    except subprocess.TimeoutExpired:  # still serving: as it should
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert "millpond serving" in out.decode(), out
    assert (tmp_path / "millpond-data").is_dir()


def test_a_port_out_of_range_is_refused(tmp_path: Path) -> None:
    # (the OS would take 99999 modulo 65536 and listen on 34463)
    code, out = serve(tmp_path, "--port", "99999", timeout=5)
    assert code not in (None, 0), f"still serving (exit {code}):\n{out}"


def test_a_predefined_queue_in_a_malformed_region_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "millpond.toml"
    config.write_text('[[queues]]\nname = "jobs"\nregion = "europe"\n')
    code, out = serve(tmp_path, "--config", str(config), timeout=5)
    assert code not in (None, 0), f"started (the queue would be in the default region):\n{out}"
    assert "europe" in out, out


def test_a_failing_predefinition_names_its_queue(tmp_path: Path) -> None:
    config = tmp_path / "millpond.toml"
    config.write_text(
        '[[queues]]\nname = "orders"\n'
        '[[queues]]\nname = "payments"\nattributes = { VisibilityTimeout = "99999" }\n'
    )
    code, out = serve(tmp_path, "--config", str(config))
    assert code == 1, out
    assert "payments" in out, out


def test_a_predefined_queue_changed_in_the_config_is_reported_not_silently_kept(
    tmp_path: Path,
) -> None:
    config = tmp_path / "millpond.toml"
    config.write_text('[[queues]]\nname = "jobs"\nattributes = { VisibilityTimeout = 60 }\n')
    Daemon(str(tmp_path / "data"), config=str(config)).stop()
    config.write_text('[[queues]]\nname = "jobs"\nattributes = { VisibilityTimeout = 90 }\n')
    daemon = Daemon(str(tmp_path / "data"), config=str(config))
    try:
        sqs = daemon.client()
        url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
        assert attributes["Attributes"]["VisibilityTimeout"] == "60"  # left as it is (README)
    finally:
        assert daemon.stop() == 0
    assert "jobs" in daemon.log() and "VisibilityTimeout" in daemon.log(), daemon.log()


def _series(url: str, region: str) -> list[str]:
    with urllib.request.urlopen(url + "/metrics") as r:
        text = r.read().decode()
    return [
        line
        for line in text.splitlines()
        if line.startswith("millpond_sqs_approximate_number_of_messages_visible{")
        and f'region="{region}"' in line
    ]


def test_metrics_show_every_regions_queues_after_a_restart(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    first = Daemon(data)
    try:
        west = first.client("sqs", region="eu-west-1")
        url = west.create_queue(QueueName="west")["QueueUrl"]
        for _ in range(3):
            west.send_message(QueueUrl=url, MessageBody="x")
        assert _series(first.url, "eu-west-1") == [
            'millpond_sqs_approximate_number_of_messages_visible{region="eu-west-1",queue="west"} 3'
        ]
    finally:
        assert first.stop() == 0
    second = Daemon(data)
    try:
        # every region with data is open from the start, not from its first request
        assert _series(second.url, "eu-west-1") == [
            'millpond_sqs_approximate_number_of_messages_visible{region="eu-west-1",queue="west"} 3'
        ]
    finally:
        second.stop()


def test_head_health_is_ok(tmp_path: Path) -> None:
    daemon = Daemon(str(tmp_path / "data"))
    try:
        request = urllib.request.Request(daemon.url + "/health", method="HEAD")
        try:
            with urllib.request.urlopen(request) as r:
                status = r.status
        except urllib.error.HTTPError as error:
            status = error.code
        assert status == 200
    finally:
        daemon.stop()


def test_no_serving_banner_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = serve(tmp_path, "--port", str(port))
    assert code not in (None, 0), out
    assert "millpond serving" not in out, out  # said only once listening


# -- slow and idle clients, shutdown -----------------------------------------------------------


@pytest.mark.parametrize("first_bytes", [b"", b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
def test_a_connection_without_a_complete_request_head_is_closed(
    tmp_path: Path, first_bytes: bytes
) -> None:
    # Silent from the start, or headers never finished: closed after MILLPOND_HEAD_TIMEOUT_S
    # (each such connection would otherwise count toward the connection limit for good).
    daemon = Daemon(str(tmp_path / "data"), env={"MILLPOND_HEAD_TIMEOUT_S": "1"})
    try:
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
            if first_bytes:
                sock.sendall(first_bytes)
            started = time.monotonic()
            assert sock.recv(4096) == b""  # closed by the daemon, not by this timeout
            assert 0.5 < time.monotonic() - started < 8
        # a client that sends its request in time is served
        with urllib.request.urlopen(daemon.url + "/health") as r:
            assert r.status == 200
    finally:
        daemon.stop()


def test_sigterm_does_not_wait_for_a_stalled_request_body(tmp_path: Path) -> None:
    daemon = Daemon(str(tmp_path / "data"))  # MILLPOND_BODY_TIMEOUT_S: the default 30 s
    try:
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=60) as sock:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-amz-json-1.0\r\n"
                b"X-Amz-Target: AmazonSQS.ListQueues\r\nContent-Length: 100\r\n\r\n{"
            )
            time.sleep(0.5)
            started = time.monotonic()
            code = daemon.stop(signal.SIGTERM)
            seconds = time.monotonic() - started
            reply = sock.recv(4096)
    finally:
        daemon.stop(signal.SIGKILL)
    log = daemon.log()
    assert code == 0, log
    assert "Traceback" not in log and "ERROR" not in log, log
    assert reply.startswith(b"HTTP/1.1 408"), reply  # told, not dropped
    assert seconds < 10, f"SIGTERM took {seconds:.1f} s"
