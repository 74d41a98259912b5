"""Start `millpond serve` for a test: a real process on an ephemeral port, stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SERVE = [sys.executable, "-m", "millpond.cli", "serve"]  # the daemon's command line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """A running daemon: ``url``, ``port``, ``data_dir``; ``stop()`` sends SIGTERM and waits.

    ``native=True`` also serves the native protocol, on ``native_port`` (``native_url``).
    """

    def __init__(
        self,
        data_dir: str,
        *,
        config: str | None = None,
        durability: str = "os",
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        tls: tuple[str, str] | None = None,
        native: bool = False,
        port: int | None = None,
        native_port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.native_port = (native_port or free_port()) if native else None
        self.native_url = f"{'millponds' if tls else 'millpond'}://127.0.0.1:{self.native_port}"
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        # a test certificate is self-signed: the health check trusts it as its own CA
        self._ssl = ssl.create_default_context(cafile=tls[0]) if tls else None
        command = SERVE + ["--data", data_dir, "--port", str(self.port)]
        command += ["--durability", durability, *(extra or [])]
        if self.native_port is not None:
            command += ["--native-port", str(self.native_port)]
        if config:
            command += ["--config", config]
        if tls:
            command += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.log_path = os.path.join(os.path.dirname(data_dir) or ".", f"daemon-{self.port}.log")
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(
                    self.url + "/health", timeout=1, context=self._ssl
                ) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"daemon not healthy after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def client(self, service: str = "sqs", region: str = "us-east-1", **kwargs: Any) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret",
            **kwargs,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture(scope="module", name="daemon")
def native_daemon_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with its native port open too, shared by a module: the ``daemon`` fixture of
    a module that imports this (it replaces conftest's, which serves HTTP only)."""
    d = Daemon(str(tmp_path_factory.mktemp("native") / "data"), native=True)
    try:
        yield d
    finally:
        d.stop()


def self_signed_certificate(directory: Path) -> tuple[str, str]:
    """(certificate, key) PEM files for 127.0.0.1, self-signed."""
    x509 = pytest.importorskip("cryptography.x509")
    import datetime
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)
