"""The native protocol over TLS: a daemon with ``--tls-cert`` serves its native port with TLS,
and the clients (``tls=``, ``millponds://``) speak it; nothing crosses the wire in clear."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import millpond
from millpond import errors
from millpond.native.aio import AsyncClient
from millpond.native.client import Client

from .daemon import Daemon, self_signed_certificate

SECRET = b"a body nobody on the wire may read"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, certificate: tuple[str, str]
) -> Iterator[Daemon]:
    d = Daemon(str(tmp_path_factory.mktemp("native-tls") / "data"), native=True, tls=certificate)
    yield d
    d.stop()


def trusting(certificate: tuple[str, str]) -> ssl.SSLContext:
    """A client context that trusts the test's self-signed certificate."""
    return ssl.create_default_context(cafile=certificate[0])


class Relay:
    """A TCP relay to ``port`` that keeps every byte it passes on, both ways."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.seen = bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                self.seen += chunk
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                sock.close()

    def close(self) -> None:
        self.listener.close()


def test_messages_cross_the_wire_encrypted(daemon: Daemon, certificate: tuple[str, str]) -> None:
    assert daemon.native_port is not None
    relay = Relay(daemon.native_port)
    try:
        with Client("127.0.0.1", relay.port, tls=trusting(certificate)) as client:
            queue = client.create_queue("tls-private-queue")
            queue.send(SECRET)
            (message,) = queue.receive(1, wait_seconds=5)
            assert message.body == SECRET
            queue.delete(message.receipt_handle)
    finally:
        relay.close()
    assert relay.seen  # the relay carried the conversation...
    assert SECRET not in relay.seen and b"tls-private-queue" not in relay.seen  # ...encrypted


def test_millponds_urls_speak_tls(daemon: Daemon, certificate: tuple[str, str]) -> None:
    assert daemon.native_url.startswith("millponds://")
    with millpond.connect(daemon.native_url, tls=trusting(certificate)) as client:
        assert client.create_queue("by-url").send(b"x")


def test_a_certificate_the_client_does_not_trust_is_refused(daemon: Daemon) -> None:
    # millponds:// checks the daemon's certificate against the system's CAs by default
    with pytest.raises(errors.ConnectionLost, match="CERTIFICATE_VERIFY_FAILED"):
        millpond.connect(daemon.native_url)


def test_a_plain_client_is_not_greeted_by_a_tls_port(daemon: Daemon) -> None:
    assert daemon.native_port is not None
    with pytest.raises(errors.ConnectionLost, match="did not greet"):
        Client("127.0.0.1", daemon.native_port, connect_timeout=1)


def test_tls_is_true_false_or_a_context(daemon: Daemon) -> None:
    assert daemon.native_port is not None
    with pytest.raises(errors.InvalidParameterValue, match="tls must be"):
        Client("127.0.0.1", daemon.native_port, tls="yes")  # type: ignore[arg-type]


def test_threads_share_a_tls_client(daemon: Daemon, certificate: tuple[str, str]) -> None:
    # One thread reads (a long poll) while the others send: TLS must not mix their records.
    with Client("127.0.0.1", daemon.native_port or 0, tls=trusting(certificate)) as client:
        queue = client.create_queue("tls-threads")
        received: list[bytes] = []

        def consume() -> None:
            while len(received) < 8 * 40:
                got = queue.receive(10, wait_seconds=5)
                if not got:
                    return
                queue.delete_batch([m.receipt_handle for m in got])
                received.extend(m.body for m in got)

        def produce(n: int) -> None:
            for i in range(40):
                queue.send(f"{n}-{i}".encode() * 50)

        threads = [threading.Thread(target=consume)]
        threads += [threading.Thread(target=produce, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        expected = {f"{n}-{i}".encode() * 50 for n in range(8) for i in range(40)}
        assert sorted(received) == sorted(expected)


def test_an_idle_tls_client_carries_on_after_the_daemon_restarts(
    tmp_path: Path, certificate: tuple[str, str]
) -> None:
    data = str(tmp_path / "data")
    first = Daemon(data, native=True, tls=certificate)
    client = millpond.connect(first.native_url, tls=trusting(certificate))
    queue = client.create_queue("q")
    first.stop()
    again = Daemon(
        data, native=True, tls=certificate, port=first.port, native_port=first.native_port
    )
    try:
        queue.send(b"after the restart")  # the closed TLS connection is found; no error
        assert [m.body for m in queue.receive(1)] == [b"after the restart"]
    finally:
        client.close()
        again.stop()


def test_the_asyncio_client_speaks_tls(daemon: Daemon, certificate: tuple[str, str]) -> None:
    async def main() -> list[bytes]:
        port = daemon.native_port or 0
        async with await AsyncClient.open("127.0.0.1", port, tls=trusting(certificate)) as client:
            queue = await client.create_queue("tls-async")
            poll = asyncio.ensure_future(queue.receive(1, wait_seconds=5))
            await asyncio.sleep(0.1)
            await queue.send(SECRET)
            return [m.body for m in await poll]

    assert asyncio.run(main()) == [SECRET]
