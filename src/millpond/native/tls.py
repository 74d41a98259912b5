"""TLS for the synchronous native client, shared safely between threads.

The sync :class:`~millpond.native.client.Client` lets one thread read the socket (for a long
poll, for as long as it takes) while others send. An ``ssl.SSLSocket`` cannot be used so:
OpenSSL does not allow a read and a write on one connection at the same time from two
threads. Here TLS runs on memory buffers instead (``SSLContext.wrap_bio``): the socket is read
and written as plain bytes, as without TLS, and only the short, non-blocking encrypt and
decrypt steps take a lock. The reader never sends: what TLS has to answer during a read (rare:
a key update) leaves with the next request.

:class:`TlsSocket` has the few socket methods the client uses.
"""

from __future__ import annotations

import socket
import ssl
import threading

_CHUNK = 262144
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


class TlsSocket:
    """A connected socket with TLS over it; :meth:`handshake` before use."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )
        self._lock = threading.Lock()  # the SSL object's: held only for in-memory steps
        self._reading = threading.Lock()  # held while a thread reads the socket into _incoming
        self._plain = b""  # decrypted while idle (see closed_while_idle), not read yet

    def handshake(self) -> None:
        """Run the TLS handshake (within the socket's timeout; raises OSError, ssl.SSLError
        included, when it fails, as for a certificate that does not verify)."""
        while True:
            try:
                with self._lock:
                    self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass  # the peer's next handshake message is due
            self._send_outgoing()
            if not self._receive():
                raise ConnectionResetError("the peer closed the connection in the handshake")
        self._send_outgoing()

    def sendall(self, data: bytes) -> None:
        """Encrypt and send ``data``. Callers serialise their sends (the client's send lock),
        so that records leave in the order they were made."""
        with self._lock:
            self._tls.write(data)
            records = self._outgoing.read()
        self._sock.sendall(records)

    def recv(self, size: int) -> bytes:
        """Up to ``size`` decrypted bytes; b"" once the peer closed (with or without TLS's
        close_notify)."""
        while True:
            with self._lock:
                if self._plain:
                    data, self._plain = self._plain[:size], self._plain[size:]
                    return data
                try:
                    return self._tls.read(size)
                except ssl.SSLWantReadError:
                    pass  # a record is not complete yet
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return b""
            with self._reading:
                if not self._receive():
                    with self._lock:
                        self._incoming.write_eof()

    def closed_while_idle(self) -> bool:
        """With no call in flight (the daemon then sends nothing but its close): whether the
        daemon closed the connection. Never blocks; False while another thread reads."""
        if not self._reading.acquire(blocking=False):
            return False
        try:
            try:
                raw = self._sock.recv(_CHUNK, _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return False  # open, nothing to read
            except OSError:
                return True  # reset by the peer
            with self._lock:
                if not raw:
                    return True
                self._incoming.write(raw)
                try:
                    data = self._tls.read(_CHUNK)
                except ssl.SSLWantReadError:
                    return False  # TLS's own messages (session tickets), or a partial record
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return True
                if not data:
                    return True  # the daemon's close_notify
                self._plain += data  # kept for the next read
                return False
        finally:
            self._reading.release()

    def _receive(self) -> bool:
        """Read what the socket has into the TLS buffer; False at the end of the stream."""
        raw = self._sock.recv(_CHUNK)
        if not raw:
            return False
        with self._lock:
            self._incoming.write(raw)
        return True

    def _send_outgoing(self) -> None:
        with self._lock:
            records = self._outgoing.read()
        if records:
            self._sock.sendall(records)

    # -- the plain socket's methods ---------------------------------------------------------------

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()
