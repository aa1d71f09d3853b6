"""Thin ASGI plumbing: the parsed request and a responder that tracks what was sent."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from gateway.emulator.faults import Drop, Pause, Step

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_CONTENT_TYPE = (b"content-type", b"application/json")
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


class ConnectionDroppedError(Exception):
    """Raised when the server gives no way to close the socket; ASGI servers then abort."""


class Request:
    __slots__ = ("method", "path", "query_string", "raw_headers", "headers", "body", "_query")

    def __init__(self, scope: Scope, body: bytes) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query_string: bytes = scope.get("query_string", b"")
        self.raw_headers: Headers = list(scope.get("headers", ()))
        self.headers: dict[str, str] = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in self.raw_headers
        }
        self.body = body
        self._query: dict[str, str] | None = None

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = dict(
                parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True)
            )
        return self._query


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Responder:
    """Wraps ASGI `send`; every response carries the same `request-id` header."""

    def __init__(self, send: Send, request_id: str) -> None:
        self.send = send
        self.request_id = request_id
        self.request_id_header = (b"request-id", request_id.encode())
        self.started = False
        self.status: int | None = None

    async def start(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.started = True
        self.status = status
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [self.request_id_header, *headers],
            }
        )

    async def complete(
        self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> None:
        await self.start(status, [*headers, (b"content-length", str(len(body)).encode())])
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def json(
        self, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        await self.complete(status, [JSON_CONTENT_TYPE, *headers], body)

    async def play(self, steps: Iterable[Step]) -> None:
        """Send a started response's body: bytes coalesced between pauses, then the end."""
        pending: list[bytes] = []
        for step in steps:
            if isinstance(step, bytes):
                pending.append(step)
                continue
            if pending:
                await self.send(
                    {"type": "http.response.body", "body": b"".join(pending), "more_body": True}
                )
                pending = []
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, Drop):
                drop_connection(self.send, reset=step.reset)
                return
        await self.send(
            {"type": "http.response.body", "body": b"".join(pending), "more_body": False}
        )

    def drop(self) -> None:
        drop_connection(self.send)


def drop_connection(send: Send, *, reset: bool = False) -> None:
    """Close the TCP connection mid-response, after flushing what was already written; with
    `reset`, abort it instead (unsent bytes dropped, the peer gets a TCP RST).

    ASGI has no "abort" message. Under Daphne, `send` is `partial(server.handle_reply,
    protocol)`, and the protocol (a Twisted request) owns the transport; closing it leaves
    a chunked body without its terminator, which clients see as a broken connection.
    """
    protocol = send.args[0] if isinstance(send, functools.partial) and send.args else None
    transport = getattr(protocol, "transport", None)
    if transport is None:
        raise ConnectionDroppedError
    if reset:
        transport.abortConnection()
    else:
        transport.loseConnection()
