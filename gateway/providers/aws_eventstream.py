"""Decode Amazon Bedrock's response stream (AWS event-stream framing) into its items.

Framing is botocore's job (`EventStreamBuffer`: prelude, headers, payload, both CRCs).
What is left here is Bedrock's use of it: an `event` message with `:event-type: chunk`
carries JSON `{"bytes": "<base64>"}` (plus random `"p"` padding) whose decoded bytes are
one provider event; an `exception` message names its `:exception-type` and carries
`{"message": ...}`; an `error` message carries `:error-code` / `:error-message` headers.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError


@dataclass(frozen=True)
class Chunk:
    """The decoded payload of one `chunk` event (for Claude: one Anthropic event's JSON)."""

    data: bytes


@dataclass(frozen=True)
class StreamException:
    """An exception (or error) message; the stream ends after it."""

    exception_type: str
    message: str


class EventStreamDecodeError(Exception):
    """The bytes are not a valid event stream, or a chunk's payload is not what Bedrock sends."""


StreamItem = Chunk | StreamException


async def decoded_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[StreamItem]]:
    """The stream's items, one list per network chunk (empty lists are skipped)."""
    buffer = EventStreamBuffer()
    async for raw in chunks:
        buffer.add_data(raw)
        batch: list[StreamItem] = []
        try:
            for message in buffer:
                item = _item(message)
                if item is not None:
                    batch.append(item)
        except ParserError as error:
            raise EventStreamDecodeError(f"{type(error).__name__}: {error}") from None
        if batch:
            yield batch


def _item(message: EventStreamMessage) -> StreamItem | None:
    headers = message.headers
    message_type = headers.get(":message-type")
    if message_type == "event":
        if headers.get(":event-type") != "chunk":
            return None
        return Chunk(_chunk_bytes(message.payload))
    if message_type == "exception":
        return StreamException(
            exception_type=str(headers.get(":exception-type") or "internalServerException"),
            message=_exception_message(message.payload),
        )
    if message_type == "error":
        return StreamException(
            exception_type=str(headers.get(":error-code") or "internalServerException"),
            message=str(headers.get(":error-message") or ""),
        )
    return None


def _chunk_bytes(payload: bytes) -> bytes:
    try:
        document = orjson.loads(payload)
        encoded = document["bytes"]
        return base64.b64decode(encoded, validate=True)
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error, ValueError):
        raise EventStreamDecodeError("A chunk event carries no base64 `bytes` field.") from None


def _exception_message(payload: bytes) -> str:
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", "replace")
    if isinstance(document, dict):
        message = document.get("message") or document.get("Message")
        if isinstance(message, str):
            return message
    return ""
