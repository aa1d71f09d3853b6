"""`python -m gateway.serve --server granian`: Gatehouse under Granian, the faster option.

Granian's HTTP server is written in Rust: a bare pass-through costs half the CPU under it
that it costs under Daphne and Twisted, and Gatehouse about 15 % less (docs/benchmarks.md);
it can also run several worker processes on one port. Daphne stays the default. This
module is the application Granian's worker loads: Gatehouse's ASGI application plus the
lifespan and shutdown behaviour `gateway.serve` gives Daphne:

- SIGTERM or SIGINT: Granian stops accepting connections and waits for open ones to finish.
  We add the bound: requests still in flight after GATEHOUSE["SHUTDOWN_GRACE_S"] are ended in
  Anthropic's shape and recorded (gateway.proxy.lifecycle), requests that still arrive on a
  kept-alive connection get a 503 `overloaded_error` with `connection: close`, and the
  request log is flushed before the worker exits.
- The access log is Gatehouse's own (gateway.access_log): Granian's, built through `logging`
  for every request, cost 6.6 % of the gateway's core; `-v 0` turns it off in the workers
  (GATEHOUSE_ACCESS_LOG=0).
- Backpressure is Granian's own: its `send` waits for the client (tests/gateway/
  test_backpressure.py runs under both servers).

Granian installs its worker's signal handlers on the event loop before the lifespan starts;
ours is chained in front of them (`signal.getsignal` → call the previous handler), so
Granian's own drain starts on the same signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
from types import FrameType
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.asgi import application as gatehouse_application  # noqa: E402
from gateway.access_log import AccessLog, install, installed  # noqa: E402
from gateway.proxy.lifecycle import application_for  # noqa: E402
from gateway.server_tuning import tune_the_serving_process  # noqa: E402

logger = logging.getLogger("gateway.serve")

# `gateway.serve -v 0` sets it to 0: no access log in the workers.
ACCESS_LOG_ENV = "GATEHOUSE_ACCESS_LOG"
# Requests one worker serves at once when the open-files limit is unlimited.
MAX_CONCURRENT = 32768


class GranianLifespan:
    """The ASGI application Granian serves: Gatehouse, draining on SIGTERM."""

    def __init__(self, application: Any, access_log_fd: int = 1) -> None:
        self.application = application
        self.access_log_fd = access_log_fd  # stdout
        self.is_draining = False
        self._drain: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            chosen = application_for(self.application, scope, draining=self.is_draining)
            await chosen(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._chain_signal_handlers(asyncio.get_running_loop())
                if os.environ.get(ACCESS_LOG_ENV, "1") != "0":
                    install(AccessLog(fd=self.access_log_fd))
                tune_the_serving_process()  # in the worker: the process that serves
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                from gateway.proxy.lifecycle import flush_request_log

                if self._drain is not None:
                    await asyncio.gather(self._drain, return_exceptions=True)
                await flush_request_log()
                log = installed()
                if log is not None:
                    log.flush()  # the last lines, before the worker exits
                    install(None)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _chain_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)

            def handler(number: int, frame: FrameType | None, previous: Any = previous) -> None:
                with contextlib.suppress(RuntimeError):  # a closed loop has nothing to drain
                    loop.call_soon_threadsafe(self._on_signal, number)
                if callable(previous):
                    previous(number, frame)

            signal.signal(signum, handler)

    def _on_signal(self, signum: int) -> None:
        if self._drain is not None:
            return
        from django.conf import settings

        grace_s = settings.GATEHOUSE["SHUTDOWN_GRACE_S"]
        logger.info(
            "%s: draining (no new connections; up to %.0f s for requests in flight)",
            signal.Signals(signum).name,
            grace_s,
        )
        self.is_draining = True
        self._drain = asyncio.ensure_future(self._end_stragglers(grace_s))

    async def _end_stragglers(self, grace_s: float) -> None:
        """Wait for the proxy's requests in flight up to the grace period, then end the rest."""
        from gateway.proxy.lifecycle import cut_the_rest, flush_request_log, in_flight

        try:
            await in_flight.wait_for_all(timeout_s=grace_s)
            await cut_the_rest()
            await flush_request_log()
        except Exception:
            logger.exception("Graceful shutdown failed; stopping anyway")


application = GranianLifespan(gatehouse_application)


def run(*, host: str, port: int, workers: int, access_log: bool, backlog: int) -> None:
    """Serve `application` with Granian's process manager (one worker per core asked for)."""
    from django.conf import settings
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    from gateway.proxy.lifecycle import CUT_TIMEOUT_S, FLUSH_TIMEOUT_S

    grace_s = settings.GATEHOUSE["SHUTDOWN_GRACE_S"]
    # Granian serves at most `backpressure` requests at once per worker (by default its
    # backlog, 1024) and leaves the rest waiting unanswered; a gateway holds thousands of
    # long streams, each with two sockets, so the bound is what the open-files limit allows.
    os.environ[ACCESS_LOG_ENV] = "1" if access_log else "0"  # read by each worker
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    concurrent = MAX_CONCURRENT if open_files == resource.RLIM_INFINITY else open_files // 2
    Server(
        "gateway.serve_granian:application",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        backlog=backlog,
        backpressure=max(concurrent, backlog),
        log_access=False,  # Gatehouse writes its own (gateway.access_log), far cheaper
        # a worker that has not ended after the grace period, the cut and the flush is killed
        workers_kill_timeout=int(grace_s + CUT_TIMEOUT_S + FLUSH_TIMEOUT_S + 5),
    ).serve()
