"""Reading requests and writing responses on a raw ASGI connection."""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError, error_body

Send = Any
Receive = Any


async def read_body(receive: Receive, limit: int, declared_length: int | None) -> bytes:
    """The whole request body, refusing (413) past `limit` without buffering the excess."""
    if declared_length is not None and declared_length > limit:
        raise GatewayError(
            "request_too_large", f"Request body exceeds the gateway's limit of {limit} bytes."
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise GatewayError(
                    "request_too_large",
                    f"Request body exceeds the gateway's limit of {limit} bytes.",
                )
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ClientDisconnected(Exception):
    """The client went away before we answered."""


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    head_only: bool = False,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head_only else body})


async def send_error(send: Send, error: GatewayError, request_id: str) -> None:
    headers = [(b"content-type", b"application/json"), (b"request-id", request_id.encode())]
    headers.extend((name.encode(), value.encode()) for name, value in error.headers.items())
    await send_bytes(
        send, error.status, error_body(error.error_type, error.message, request_id), headers
    )
