"""Proxy requests in flight in this process, so a graceful shutdown can end the stragglers.

`gateway.serve` drains on SIGTERM: it stops listening, answers new requests with a 503 and
waits for the requests in flight. Those still running at the deadline are cut here: each is
cancelled (which closes its upstream call and settles its budget reservation), then a stream
that has started ends with an SSE `error` event and a request not yet answered gets a 503,
both `overloaded_error`, and its RequestLog row says why.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from gateway.access_log import logged
from gateway.errors import GatewayError, error_event, new_request_id
from gateway.models import RequestOutcome
from gateway.proxy.exchange import Exchange
from gateway.proxy.io import Send, send_error

logger = logging.getLogger(__name__)

SHUTDOWN_MESSAGE = "Gateway is shutting down"
# After the grace period: how long cut requests get to end.
CUT_TIMEOUT_S = 3.0
# How long the request log may take to reach the database (or the spool) at exit.
FLUSH_TIMEOUT_S = 10.0


def shutdown_error() -> GatewayError:
    return GatewayError(
        "overloaded_error", SHUTDOWN_MESSAGE, status=503, headers={"connection": "close"}
    )


class _InFlight:
    """One request: its task, and how far its response has gone (seen through its `send`)."""

    __slots__ = ("exchange", "task", "downstream", "is_started", "is_complete", "is_cut")

    def __init__(self, exchange: Exchange, task: asyncio.Task, downstream: Send) -> None:
        self.exchange = exchange
        self.task = task
        self.downstream = downstream
        self.is_started = False
        self.is_complete = False
        self.is_cut = False

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.is_started = True
        elif not message.get("more_body", False):
            self.is_complete = True
        await self.downstream(message)


class InFlightRequests:
    def __init__(self) -> None:
        self._requests: dict[Exchange, _InFlight] = {}

    def __len__(self) -> int:
        return len(self._requests)

    def enter(self, exchange: Exchange, send: Send) -> Send:
        """Track the current task's request; returns the `send` the request must use."""
        task = asyncio.current_task()
        if task is None:  # not running in a task: nothing that could be cut
            return send
        entry = _InFlight(exchange, task, send)
        self._requests[exchange] = entry
        return entry.send

    async def leave(self, exchange: Exchange) -> None:
        """Stop tracking; a request cut at the deadline gets its ending here. Never raises."""
        entry = self._requests.pop(exchange, None)
        if entry is None or not entry.is_cut:
            return
        try:
            if entry.is_started:
                exchange.row["outcome"] = RequestOutcome.STREAM_ERROR
                exchange.row["error_type"] = "overloaded_error"
                exchange.row["error_message"] = SHUTDOWN_MESSAGE
                await entry.send(
                    {
                        "type": "http.response.body",
                        "body": error_event("overloaded_error", SHUTDOWN_MESSAGE),
                        "more_body": False,
                    }
                )
            else:
                error = shutdown_error()
                exchange.row["status_code"] = None
                exchange.fail(error)
                await send_error(entry.send, error, exchange.request_id)
        except Exception:
            logger.exception("Could not end request %s at shutdown", exchange.request_id)

    async def wait_for_all(self, timeout_s: float) -> None:
        """Wait (bounded) for the requests in flight now to end on their own."""
        tasks = [entry.task for entry in self._requests.values() if not entry.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    async def cut_all(self, timeout_s: float) -> int:
        """Cancel every request whose response is unfinished; wait (bounded) for them to end."""
        entries = [
            entry
            for entry in self._requests.values()
            if not entry.is_complete and not entry.task.done()
        ]
        for entry in entries:
            entry.is_cut = True
            entry.task.cancel()
        if entries:
            await asyncio.wait([entry.task for entry in entries], timeout=timeout_s)
        return len(entries)


in_flight = InFlightRequests()


async def refuse_while_shutting_down(send: Send) -> None:
    """A request arriving during the drain: 503 `overloaded_error`, `connection: close`."""
    await send_error(send, shutdown_error(), new_request_id())


def application_for(application: Any, scope: dict[str, Any], *, draining: bool) -> Any:
    """What either server runs for `scope`: while draining, a refusal for a new HTTP request
    (`refuse_while_shutting_down`). Refusals and WebSockets are access-logged here; every
    other HTTP request goes to `application` as it is (GatewayDispatcher logs it), with no
    wrapper on the proxy's path."""
    if draining and scope["type"] == "http":
        return _logged_refusal
    if scope["type"] == "websocket":
        return functools.partial(logged, application)
    return application


async def _logged_refusal(scope: dict[str, Any], receive: Any, send: Send) -> None:
    await logged(_refuse, scope, receive, send)


async def _refuse(scope: dict[str, Any], receive: Any, send: Send) -> None:
    await refuse_while_shutting_down(send)


async def cut_the_rest() -> None:
    """After the grace period, under either server: end what is still in flight."""
    cut = await in_flight.cut_all(timeout_s=CUT_TIMEOUT_S)
    if cut:
        logger.warning("Shutdown grace period over: ended %d requests in flight", cut)


async def flush_request_log() -> None:
    """Write the recorder's queue out (to the database, or the spool) before the process exits."""
    from gateway.recorder import recorder

    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, lambda: recorder().flush_now(timeout_s=FLUSH_TIMEOUT_S))
