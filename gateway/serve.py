"""`python -m gateway.serve`: Gatehouse under Daphne, with backpressure and a graceful shutdown.

Daphne's own command stops the reactor on SIGTERM, which cuts every stream in flight, and
its `send` never waits for the client, so a slow reader makes the gateway hold the rest of
the response in memory. This entry point runs Daphne's `Server` with these changes:

- Backpressure: `send` of a response body returns only once the connection's write buffer
  is back under Twisted's high-water mark (64 KiB per connection), so the proxy reads
  upstream no faster than the client reads and a slow reader costs bounded memory.
- SIGTERM or SIGINT: stop listening at once (new connections are refused); answer requests
  arriving on kept-alive connections with a 503 `overloaded_error` and `connection: close`;
  let requests in flight finish for up to GATEHOUSE["SHUTDOWN_GRACE_S"]; end the rest
  (gateway.proxy.lifecycle); flush the request log; exit 0. A second signal stops at once.
- Bookkeeping per request, not per second: Daphne keeps every request (each one is a
  "protocol") in `connections` until a once-a-second sweep reaps it, and Twisted formats a
  combined-log line for each that Daphne then throws away (below verbosity 2). At 1,000
  requests/s the sweep handled a thousand entries in one go, a stall of milliseconds for
  every request in flight, and the entries lived through the garbage collector's young
  generations. Here a request that finished cleanly leaves `connections` as soon as both
  its response and its application are done, and Twisted's line is not made. Applications
  that failed or were cancelled are still left to Daphne's sweep, which logs them.
- uvloop: Twisted's reactor, and with it the whole gateway, runs on uvloop's event loop
  instead of the standard library's (gateway/daphne_reactor.py).
- The access log is Gatehouse's (gateway/access_log.py), as under Granian: one layout under
  either server, written in batches; Daphne's wrote each line with a write call of its own.
"""

from __future__ import annotations

# Daphne installs Twisted's asyncio reactor when daphne.server is imported: first, always,
# and on uvloop (gateway/daphne_reactor.py).
from gateway.daphne_reactor import Server

# isort: split
import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
import weakref
from typing import Any

from daphne.endpoints import build_endpoint_description_strings
from daphne.http_protocol import WebRequest
from twisted.internet import defer, reactor
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from gateway.access_log import AccessLog
from gateway.access_log import install as install_access_log
from gateway.access_log import installed as installed_access_log
from gateway.server_tuning import lean_log_records, tune_the_serving_process

# Modules that need Django are imported inside functions: this one loads before Django is set up.

logger = logging.getLogger("gateway.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Twisted's default of 50 drops connections when hundreds of clients connect at once.
LISTEN_BACKLOG = 1024
# The open-files limit to raise to when the hard limit is unlimited.
OPEN_FILES_WANTED = 65536
POLL_INTERVAL_S = 0.05
SERVERS = ("daphne", "granian")
# After the grace period and the cut: how long connections get to send what they hold.
CLOSE_TIMEOUT_S = 3.0


@implementer(IPushProducer)
class _ResumeWhenDrained:
    """Registered on a response while its connection's write buffer is full: Twisted calls
    `resumeProducing` once the buffer has drained, or `stopProducing` if the client is gone."""

    def __init__(self, resumed: asyncio.Future[None]) -> None:
        self.resumed = resumed

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        if not self.resumed.done():
            self.resumed.set_result(None)

    stopProducing = resumeProducing


async def _until_writable(request: Any) -> None:
    """Wait while the response's connection holds more unsent bytes than its high-water mark.

    Twisted's HTTP channel is the transport's push producer; the transport pauses it when its
    buffer passes `bufferSize` and resumes it once everything is written, passing both on to
    the producer registered on the current request (`_waitingForTransport` is the channel's
    record of that pause, kept for TLS transports too).
    """
    channel = request.channel
    if channel is None or not channel._waitingForTransport:
        return
    gate = _ResumeWhenDrained(asyncio.get_running_loop().create_future())
    request.registerProducer(gate, True)
    try:
        await gate.resumed
    finally:
        # Unregistered before the response finishes (Twisted logs a leftover producer).
        if request.channel is not None and request.producer is gate:
            request.unregisterProducer()


def _no_request_log(request: Any) -> None:
    """Twisted's HTTPFactory.log, for a log nobody reads."""


class GatehouseServer(Server):
    def __init__(self, application: Any, *, shutdown_grace_s: float, **options: Any) -> None:
        super().__init__(application=self._serve_or_refuse, signal_handlers=False, **options)
        from gateway.proxy.lifecycle import application_for  # needs Django set up

        self.gatehouse_application = application
        self._application_for = application_for
        self.shutdown_grace_s = shutdown_grace_s
        self.is_draining = False
        self._ports: list[Any] = []
        self._channels: weakref.WeakSet[Any] = weakref.WeakSet()
        self._shutdown: asyncio.Future[None] | None = None
        self._is_stopping = False

    # -- serving -----------------------------------------------------------------------
    def run(self) -> None:
        reactor.callWhenRunning(self._install_signal_handlers)
        super().run()

    def listen_success(self, port: Any) -> None:
        super().listen_success(port)
        self._ports.append(port)
        if self.verbosity < 2:  # Daphne sends Twisted's log nowhere then: skip making it
            self.http_factory.log = _no_request_log
        if self.is_draining:
            port.stopListening()

    def protocol_connected(self, protocol: Any) -> None:
        super().protocol_connected(protocol)
        channel = getattr(protocol, "channel", None)
        if channel is not None:
            self._channels.add(channel)

    def protocol_disconnected(self, protocol: Any) -> None:
        details = self.connections.get(protocol)
        if details is None:  # reaped already: its application had finished
            return
        super().protocol_disconnected(protocol)
        self._reap_if_finished(protocol, details.get("application_instance"))

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        queue = super().create_application(protocol, scope)
        instance = self.connections.get(protocol, {}).get("application_instance")
        if instance is not None:
            instance.add_done_callback(lambda done: self._reap_if_finished(protocol, done))
        return queue

    def _reap_if_finished(self, protocol: Any, instance: asyncio.Future[None] | None) -> None:
        """Forget a request whose response is over and whose application returned (in either
        order). A failure or a cancellation stays for Daphne's sweep to log."""
        details = self.connections.get(protocol)
        if (
            details is not None
            and instance is not None
            and details.get("application_instance") is instance
            and "disconnected" in details
            and instance.done()
            and not instance.cancelled()
            and instance.exception() is None
        ):
            del self.connections[protocol]

    async def _serve_or_refuse(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        chosen = self._application_for(self.gatehouse_application, scope, draining=self.is_draining)
        await chosen(scope, receive, send)

    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        draining = self.is_draining
        if draining and getattr(protocol, "channel", None) is not None:
            protocol.channel.persistent = False  # close the connection after this response
        await super().handle_reply(protocol, message)
        if message["type"] == "http.response.start":
            if draining and isinstance(protocol, WebRequest):
                protocol.responseHeaders.setRawHeaders(b"connection", [b"close"])
        elif message["type"] == "http.response.body" and message.get("more_body", False):
            await _until_writable(protocol)

    # -- shutting down -----------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        if self._shutdown is None:
            logger.info(
                "%s: draining (no new connections; up to %.0f s for requests in flight)",
                signal.Signals(signum).name,
                self.shutdown_grace_s,
            )
            self._shutdown = asyncio.ensure_future(self._drain_and_stop())
        else:
            logger.warning("%s again: stopping now", signal.Signals(signum).name)
            self._stop_reactor()

    async def _drain_and_stop(self) -> None:
        from gateway.proxy.lifecycle import cut_the_rest, flush_request_log

        loop = asyncio.get_running_loop()
        try:
            self.is_draining = True
            deadline = loop.time() + self.shutdown_grace_s
            await self._stop_listening()
            while (running := self._running_http_applications()) and (
                remaining := deadline - loop.time()
            ) > 0:
                await asyncio.wait(running, timeout=min(remaining, POLL_INTERVAL_S * 20))
            await cut_the_rest()
            await self._close_connections(timeout_s=CLOSE_TIMEOUT_S)
            await flush_request_log()
        except Exception:
            logger.exception("Graceful shutdown failed; stopping anyway")
        finally:
            self._stop_reactor()

    async def _stop_listening(self) -> None:
        stopped = [defer.maybeDeferred(port.stopListening) for port in self._ports]
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(deferred.asFuture(loop) for deferred in stopped))

    def _running_http_applications(self) -> list[asyncio.Future[None]]:
        """Application instances of HTTP requests still running (WebSockets do not count)."""
        return [
            instance
            for protocol, details in list(self.connections.items())
            if isinstance(protocol, WebRequest)
            and (instance := details.get("application_instance")) is not None
            and not instance.done()
        ]

    async def _close_connections(self, timeout_s: float) -> None:
        """Close every connection once what was written to it is sent (idle ones at once)."""
        open_channels = [
            channel
            for channel in list(self._channels)
            if channel.transport is not None and channel.transport.connected
        ]
        for channel in open_channels:
            channel.loseConnection()
        for _ in range(round(timeout_s / POLL_INTERVAL_S)):
            if not any(channel.transport.connected for channel in open_channels):
                return
            await asyncio.sleep(POLL_INTERVAL_S)

    def _stop_reactor(self) -> None:
        if not self._is_stopping:
            self._is_stopping = True
            self.stop()


def raise_open_files_limit() -> None:
    """Each stream holds two sockets (client and provider): allow as many as the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.serve",
        description="Serve Gatehouse (config.asgi) under Daphne or Granian, draining on SIGTERM.",
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=os.environ.get("GATEHOUSE_SERVER", "daphne"),
        help="daphne (default) or granian (faster: docs/benchmarks.md); env GATEHOUSE_SERVER",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("GATEHOUSE_WORKERS", "1")),
        help="granian only: worker processes, one per core (use Redis with more than one)",
    )
    parser.add_argument("-b", "--bind", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("-p", "--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        help="take the client address and scheme from X-Forwarded-For/-Port/-Proto",
    )
    parser.add_argument(
        "-v",
        "--verbosity",
        type=int,
        default=1,
        help="0: no access log; 1 (default): access log on stdout; 2: also Twisted's log",
    )
    options = parser.parse_args(argv)

    if options.server not in SERVERS:
        parser.error(f"GATEHOUSE_SERVER must be one of {', '.join(SERVERS)}")
    if options.workers < 1 or (options.workers > 1 and options.server != "granian"):
        parser.error("--workers must be 1 under daphne, and at least 1 under granian")
    raise_open_files_limit()
    lean_log_records()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    if options.server == "granian":
        if options.proxy_headers:
            parser.error("--proxy-headers is Daphne's; use GATEHOUSE_TRUSTED_PROXY_COUNT")
        from gateway.serve_granian import run

        run(
            host=options.bind,
            port=options.port,
            workers=options.workers,
            access_log=options.verbosity >= 1,
            backlog=LISTEN_BACKLOG,
        )
        return

    from config.asgi import application

    # Gatehouse's own access log, batched, as under Granian: Daphne's wrote a line to stdout
    # through a write call of its own for every request.
    install_access_log(AccessLog() if options.verbosity >= 1 else None)
    server = GatehouseServer(
        application,
        shutdown_grace_s=settings.GATEHOUSE["SHUTDOWN_GRACE_S"],
        endpoints=[
            endpoint + f":backlog={LISTEN_BACKLOG}"
            for endpoint in build_endpoint_description_strings(host=options.bind, port=options.port)
        ],
        action_logger=None,  # the access log is Gatehouse's (installed above)
        verbosity=options.verbosity,
        proxy_forwarded_address_header="X-Forwarded-For" if options.proxy_headers else None,
        proxy_forwarded_port_header="X-Forwarded-Port" if options.proxy_headers else None,
        proxy_forwarded_proto_header="X-Forwarded-Proto" if options.proxy_headers else None,
    )
    tune_the_serving_process()
    server.run()
    written = installed_access_log()
    if written is not None:
        written.flush()  # the lines of the last fraction of a second
    if server.abort_start or not server.listening_addresses:
        sys.exit(1)


if __name__ == "__main__":
    main()
