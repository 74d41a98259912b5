"""The millpond daemon: ``millpond serve`` speaks the Amazon SQS and SNS APIs over HTTP, and
with a native port millpond's own msgpack protocol (:mod:`millpond.native.server`).

A thin network edge over the same Broker as the embedded API: no storage logic of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import ssl
import sys
from typing import Any

DEFAULT_PORT = 9324
# The native protocol is off unless a port is given: a daemon opens no port it was not asked
# for (and two daemons on one machine would fight over a fixed default). 9325 is the usual one.
SUGGESTED_NATIVE_PORT = 9325
# Exit status after a second Ctrl-C (SIGINT) during shutdown: 128 + SIGINT, as a shell reports a
# process that an interrupt ended. The data is flushed and closed all the same; only requests
# still running were cut off (their clients got no reply). A graceful stop exits 0.
FORCED_EXIT_STATUS = 130
# The HTTP connection limit where the process's file descriptors are unlimited or unknown.
FALLBACK_MAX_HTTP_CONNECTIONS = 4096
# The daemon's youngest-generation threshold of the cyclic garbage collector (Python's: 700).
# A young collection runs when that many more container objects were made than freed; the
# objects of the requests waiting for their commit (~30 each) count, so at 64 connections
# Python's 700 ran one young collection every ~70 SendMessages and a full one every ~6,400.
# At 10,000 it takes ~300 requests in flight at once (or that much cyclic garbage, a few MB).
GC_YOUNG_THRESHOLD = 10_000


def default_max_http_connections() -> int:
    """A quarter of the file descriptors the process may open: the native port may take half
    (millpond.native.server), the data files and outgoing HTTP/S deliveries keep the rest. A
    fixed limit either ran out of descriptors first (a limit of 1024 is usual: accept() then
    fails, and so do the data files) or, with many, refused clients for no reason."""
    try:
        import resource
    except ImportError:  # not POSIX
        return FALLBACK_MAX_HTTP_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return FALLBACK_MAX_HTTP_CONNECTIONS if soft == resource.RLIM_INFINITY else max(16, soft // 4)


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a daemon (~5% of its CPU per SendMessage,
    callgrind): the objects made at start-up (modules, the brokers, the app) are frozen, never
    traversed again, and young collections wait for GC_YOUNG_THRESHOLD objects (see it)."""
    gc.collect()  # start-up's cyclic garbage, before it is frozen for good
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def raise_open_files_limit() -> None:
    """Raise the soft limit of open files to the hard one, as a server holding a connection
    per client should (systemd keeps the soft limit at 1024 for programs that use select();
    the event loop uses epoll/kqueue). Left as it is where that is not allowed."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # macOS refuses above OPEN_MAX
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def build_app(data_dir: str, **options: Any) -> Any:
    """The ASGI app for a data directory (for embedding under another ASGI server)."""
    from millpond.server.app import App
    from millpond.server.context import Context

    return App(Context(data_dir, **options))


def _check_listen_options(host: str, port: int, tls_cert: str | None, tls_key: str | None) -> None:
    """A host name that does not resolve, or TLS files that cannot be loaded, are a wrong
    option (ConfigError naming it), not a bind failure (exit 3) or an OSError naming None."""
    import socket
    import ssl

    from millpond.server.config import ConfigError

    try:
        if host:  # "" listens on every interface, as asyncio takes it
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"host {host!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if tls_cert is not None and tls_key is not None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as exc:
            why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise ConfigError(
                f"TLS certificate {tls_cert} with key {tls_key} cannot be loaded: {why}"
            ) from None


def _server_tls(tls_cert: str | None, tls_key: str | None) -> ssl.SSLContext | None:
    if tls_cert is None or tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_cert, tls_key)
    return context


def serve(
    data_dir: str,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    config: dict[str, Any] | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    native_port: int | None = None,
    max_http_connections: int | None = None,
    **options: Any,
) -> None:
    """Run the daemon until SIGTERM/SIGINT; in-flight requests and commits finish first.

    A second SIGINT during that stop (Ctrl-C again) stops waiting for the requests still running
    (they are cut off), flushes and closes the data all the same, and exits with
    FORCED_EXIT_STATUS (130); a graceful stop exits 0.

    With ``tls_cert`` and ``tls_key`` (PEM files) it serves HTTPS instead of HTTP. With
    ``native_port`` it also serves millpond's native protocol there, on the same host, in the
    same event loop and over the same brokers (plain TCP: no TLS on that port).

    A connection opened past ``max_http_connections`` (default: a quarter of the open-file
    limit, raised to its hard limit) gets ServiceUnavailable (503) for its request, and closed.
    """
    from millpond.server import config as config_module

    if (tls_cert is None) != (tls_key is None):
        raise config_module.ConfigError(
            "TLS needs both a certificate (tls_cert) and its key (tls_key)"
        )
    _check_listen_options(host, port, tls_cert, tls_key)
    import uvicorn

    from millpond.server.app import App
    from millpond.server.context import Context
    from millpond.server.http_protocol import DeadlineHttpProtocol

    raise_open_files_limit()  # before the limits below are taken from it
    ctx = Context(data_dir, **options)
    # the default region's data, opened now (creating --data, synced into its parent in the
    # "fsync" mode): a directory it cannot use stops here
    ctx.broker()
    # and every other region's, so that /metrics, HTTP deliveries and move tasks cover them
    # from the start, not from their first request
    ctx.open_regions()
    created = config_module.apply(config or {}, ctx)
    log = logging.getLogger("millpond.server")
    for item in created:
        log.info("created %s", item)
    app = App(ctx)
    native = None
    if native_port is not None:
        from millpond.native.server import NativeServer

        native = NativeServer(ctx)
    native_tls = _server_tls(tls_cert, tls_key)  # the native port uses TLS when HTTP does
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http=DeadlineHttpProtocol,  # httptools, with a deadline on request heads
        lifespan="on",
        log_level="warning",
        timeout_keep_alive=75,
        timeout_graceful_shutdown=30,
        # the connection limit, applied by DeadlineHttpProtocol
        limit_concurrency=max_http_connections or default_max_http_connections(),
        access_log=False,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )

    class Server(uvicorn.Server):
        forced = False  # a second Ctrl-C came during shutdown: stop now, data closed all the same

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.should_exit and sig == signal.SIGINT and not self.forced:
                # uvicorn's forced quit would skip the lifespan shutdown (brokers left open)
                # and leave tasks to be cancelled with tracebacks: here it only stops waiting.
                self.forced = True
                log.warning(
                    "millpond: second interrupt: stopping now; requests still running are cut "
                    "off, the data is flushed and closed (exit status %d)",
                    FORCED_EXIT_STATUS,
                )
                if ctx.loop is not None:
                    ctx.loop.call_soon_threadsafe(forced.set)
            super().handle_exit(sig, frame)
            ctx.request_shutdown()  # open long polls return now instead of after their wait
            if ctx.loop is not None:  # requests still sending their body get 408 now
                ctx.loop.call_soon_threadsafe(app.cut_off_body_reads)

        async def startup(self, sockets: Any = None) -> None:
            native_bound = None
            if native is not None:
                # Bound before the HTTP port, so that a daemon that answers /health takes
                # native connections too; their hello waits until start-up is complete.
                try:
                    native_bound = await native.listen(
                        host,
                        native_port,  # type: ignore[arg-type]
                        native_tls,
                    )
                except OSError as exc:
                    log.error("native port %s: %s", native_port, exc.strerror or exc)
                    sys.exit(3)  # as uvicorn exits when the HTTP port is taken
            await super().startup(sockets=sockets)
            if self.started:  # listening now (not if the port was taken): say where
                bound = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
                shown = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
                print(
                    f"millpond serving SQS and SNS on {'https' if tls_cert else 'http'}://"
                    f"{shown}:{bound} (data {os.path.abspath(data_dir)})",
                    flush=True,
                )
                if native is not None:
                    native.ready()
                    print(
                        "millpond serving the native protocol on "
                        f"{'millponds' if tls_cert else 'millpond'}://{shown}:{native_bound}",
                        flush=True,
                    )

        async def shutdown(self, sockets: Any = None) -> None:
            if native is not None:  # its requests are answered before the brokers close
                await _unless_forced(
                    native.stop(timeout=uv_config.timeout_graceful_shutdown or 30), forced
                )
            await super().shutdown(sockets=sockets)
            if self.forced:
                await self._cut_off()
                if not self.lifespan.shutdown_event.is_set():  # uvicorn skipped it: forced
                    await self.lifespan.shutdown()  # flush and close the brokers

        async def _cut_off(self) -> None:
            """Drop every connection and end the requests still running (forced stop)."""
            app.cut_off = True
            for connection in list(self.server_state.connections):
                connection.transport.abort()
            if native is not None:
                for native_connection in list(native.connections):
                    if native_connection.transport is not None:
                        native_connection.transport.abort()
            tasks = list(self.server_state.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    forced = asyncio.Event()
    server = Server(uv_config)
    # uvicorn re-raises the signal(s) it stopped on once it has shut down (requests answered,
    # commits flushed, brokers closed); exit 0 then, as a graceful stop should, or
    # FORCED_EXIT_STATUS after a second Ctrl-C.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(FORCED_EXIT_STATUS if server.forced else 0))
    tune_gc()
    server.run()


async def _unless_forced(work: Any, forced: asyncio.Event) -> None:
    """Await ``work``, unless ``forced`` is set first (then ``work`` is cancelled)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(forced.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, waiter):
        pending.cancel()
    await asyncio.gather(task, waiter, return_exceptions=True)
