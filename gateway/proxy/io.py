"""Reading requests and writing responses on a raw ASGI connection."""

from __future__ import annotations

import re
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


# RFC 9110: a field name is a token; a value is visible ASCII with inner spaces and tabs. The
# upstream client can send nothing else (and NUL, CR or LF would corrupt the upstream request).
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_HEADER_VALUE = re.compile(rb"[\t\x20-\x7e]*\Z")
# All request header lines together, as Twisted (under Daphne) bounds them; Granian's own
# bound is far larger, and every header but credentials and framing is forwarded upstream.
MAX_REQUEST_HEADER_BYTES = 16384


def check_request_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Refuse (400) a request whose headers cannot be forwarded as they came. A bad value is
    named by its header but never echoed: it may be a credential."""
    size = sum(len(name) + len(value) + 4 for name, value in headers)  # "name: value\r\n"
    if size > MAX_REQUEST_HEADER_BYTES:
        raise GatewayError(
            "invalid_request_error",
            f"Request headers total {size} bytes; the gateway's limit is "
            f"{MAX_REQUEST_HEADER_BYTES}.",
            status=431,
        )
    for name, value in headers:
        if not _HEADER_NAME.match(name):
            raise GatewayError("invalid_request_error", "A header name is not a valid HTTP token.")
        if not _HEADER_VALUE.match(value):
            raise GatewayError(
                "invalid_request_error",
                f"Header '{name.decode('ascii')}' must be printable ASCII text.",
            )


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
