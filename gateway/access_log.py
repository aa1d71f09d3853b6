"""The access log under either server: a line per request on stdout, written in batches.

Granian's own access log builds each line through `logging` as the request ends (a dict of
fields, a LogRecord, a formatter, a locked handler, a write and a flush): about 18 µs a line
in a loop and 6 % of the gateway's core at c=32 in `make profile`; Daphne's wrote each line
with a write call of its own. Here a line is one f-string appended to a list, and the list
reaches stdout in one write per 0.2 s, as nginx's `access_log … buffer= flush=` does: a line
shows up at most that late, and the last lines are written when the server stops (Granian's
lifespan shutdown, the end of `gateway.serve` under Daphne). A kill -9 loses at most the last
0.2 s of lines; the request log (RequestLog) is the record of every proxied request.

The layout is Granian's default, with the time in UTC and the path as it came on the request
line (still percent-encoded, so no decoded newline can forge a line):
`[2026-11-27 06:40:12 +0000] 10.0.0.7 - "POST /v1/messages HTTP/1.1" 200 1.234`
(the last field: milliseconds from the request to the end of its answer). A request whose
client went away before any answer is logged with 499, nginx's "client closed request".

Writes are at most PIPE_BUF bytes of whole lines each, so the lines of several Granian
workers sharing one stdout pipe never interleave mid-line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import time
from typing import Any

logger = logging.getLogger(__name__)

FLUSH_AFTER_S = 0.2
MAX_BUFFERED_LINES = 1000
CLIENT_CLOSED = 499
_BLOCK = select.PIPE_BUF


class AccessLog:
    def __init__(self, fd: int = 1, flush_after_s: float = FLUSH_AFTER_S) -> None:
        self.fd = fd
        self.flush_after_s = flush_after_s
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""
        self._failed = False

    def add(self, scope: dict[str, Any], status: int | None, started: float) -> None:
        """One request's line; `started` is its `time.perf_counter()` when it arrived."""
        took = time.perf_counter() - started
        at = time.time() - took
        second = int(at)
        if second != self._second:  # one strftime per second, not per line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime(second))
        client = scope.get("client")
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else _printable(scope.get("path", ""))
        self._lines.append(
            f"[{self._stamp}] {client[0] if client else '-'} - "
            f'"{scope.get("method", "GET")} {path} HTTP/{scope.get("http_version", "1.1")}" '
            f"{status or CLIENT_CLOSED} {took * 1000:.3f}\n"
        )
        if len(self._lines) >= MAX_BUFFERED_LINES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_after_s, self.flush)

    def flush(self) -> None:
        """Write every buffered line now. A failed write drops them (said once, on stderr):
        an access log must never stop the requests it describes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines, self._lines = self._lines, []
        if not lines:
            return
        block: list[str] = []
        size = 0
        for line in lines:
            if size + len(line) > _BLOCK and block:
                self._write("".join(block))
                block, size = [], 0
            block.append(line)
            size += len(line)
        self._write("".join(block))

    def _write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8", "replace"))
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            if not self._failed:
                self._failed = True
                logger.warning("The access log could not be written; its lines are dropped")


def _printable(path: str) -> str:
    """A decoded path with control characters escaped (only when a server gives no raw_path)."""
    if path.isprintable():
        return path
    return path.encode("unicode_escape").decode("ascii")


_installed: AccessLog | None = None


def install(access_log: AccessLog | None) -> None:
    """Turn the access log on (or off, with None) for this process."""
    global _installed
    _installed = access_log


def installed() -> AccessLog | None:
    return _installed


def record(scope: dict[str, Any], status: int | None, started: float) -> None:
    """Log one request if this process keeps an access log (`gateway.serve` installs one
    unless `-v 0`)."""
    if _installed is not None:
        _installed.add(scope, status, started)


async def logged(app: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Run `app` on one connection and log it, its status read from what it sends: for the
    requests that are not the proxy's own (Django's pages, the API, WebSockets, /metrics).
    The proxy logs its exchanges itself (`record`), with no wrapper on every chunk sent."""
    log = _installed
    if log is None or scope["type"] not in ("http", "websocket"):
        await app(scope, receive, send)
        return
    started = time.perf_counter()
    status: int | None = None

    async def watched(message: dict[str, Any]) -> None:
        nonlocal status
        kind = message["type"]
        if kind == "http.response.start":
            status = message["status"]
        elif kind == "websocket.accept":
            status = 101
        elif kind == "websocket.close" and status is None:
            status = 403
        await send(message)

    try:
        await app(scope, receive, watched)
    except Exception:
        status = status or 500
        raise
    finally:
        log.add(scope, status, started)
