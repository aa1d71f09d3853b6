"""Render a `Reply` as a Messages API JSON body or as the SSE event sequence.

The stream follows the documented order: `message_start` (full usage, incl. the
`cache_creation` TTL split), then per block `content_block_start` → deltas →
`content_block_stop` (a `ping` after the first block start), `message_delta` with
cumulative usage, `message_stop`. Frames are built from byte templates; only the
variable parts go through orjson.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from gateway.emulator.cache import CacheUsage
from gateway.emulator.replies import ContentBlock, Reply, TextBlock, ThinkingBlock, ToolUseBlock

THINKING_DELTAS = 2
TOOL_INPUT_DELTAS = 3


class Frame(NamedTuple):
    """One SSE event; `is_delta` marks the frames the stream is paced on."""

    data: bytes
    is_delta: bool = False


def sse_event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


PING = Frame(sse_event("ping", {"type": "ping"}))
MESSAGE_STOP = Frame(sse_event("message_stop", {"type": "message_stop"}))
OVERLOADED_EVENT = sse_event(
    "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
)
_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'


def usage_object(usage: CacheUsage, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.ephemeral_5m_input_tokens,
            "ephemeral_1h_input_tokens": usage.ephemeral_1h_input_tokens,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def content_object(block: ContentBlock) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ThinkingBlock):
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}


def message_object(
    *, message_id: str, model: str, reply: Reply, usage: CacheUsage
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [content_object(block) for block in reply.blocks],
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": usage_object(usage, reply.output_tokens),
    }


def message_body(*, message_id: str, model: str, reply: Reply, usage: CacheUsage) -> bytes:
    return orjson.dumps(
        message_object(message_id=message_id, model=model, reply=reply, usage=usage)
    )


def split_evenly(text: str, pieces: int) -> list[str]:
    """`pieces` non-empty chunks (fewer if the text is shorter); [""] for empty text."""
    if not text:
        return [""]
    pieces = max(1, min(pieces, len(text)))
    length = len(text)
    return [text[i * length // pieces : (i + 1) * length // pieces] for i in range(pieces)]


def stream_frames(
    *, message_id: str, model: str, reply: Reply, usage: CacheUsage, text_deltas: int
) -> list[Frame]:
    start_usage = usage_object(usage, 1)
    frames = [
        Frame(
            sse_event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": message_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
        )
    ]
    for index, block in enumerate(reply.blocks):
        frames.append(Frame(_block_start(index, block)))
        if index == 0:
            frames.append(PING)
        frames.extend(_block_deltas(index, block, text_deltas))
        frames.append(Frame(_block_stop(index)))
    frames.append(
        Frame(
            sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": reply.stop_reason,
                        "stop_sequence": reply.stop_sequence,
                    },
                    "usage": {
                        "input_tokens": usage.input_tokens,
                        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
                        "cache_read_input_tokens": usage.cache_read_input_tokens,
                        "output_tokens": reply.output_tokens,
                    },
                },
            )
        )
    )
    frames.append(MESSAGE_STOP)
    return frames


def _block_start(index: int, block: ContentBlock) -> bytes:
    if isinstance(block, TextBlock):
        content: dict[str, Any] = {"type": "text", "text": ""}
    elif isinstance(block, ThinkingBlock):
        content = {"type": "thinking", "thinking": "", "signature": ""}
    else:
        content = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
    return sse_event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": content},
    )


def _block_stop(index: int) -> bytes:
    return (
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'
        + str(index).encode()
        + b"}\n\n"
    )


def _delta(index: int, delta_type: bytes, field: bytes, value: str) -> Frame:
    return Frame(
        _DELTA_HEAD
        + str(index).encode()
        + b',"delta":{"type":"'
        + delta_type
        + b'","'
        + field
        + b'":'
        + orjson.dumps(value)
        + b"}}\n\n",
        True,
    )


def _block_deltas(index: int, block: ContentBlock, text_deltas: int) -> list[Frame]:
    if isinstance(block, TextBlock):
        return [
            _delta(index, b"text_delta", b"text", chunk)
            for chunk in split_evenly(block.text, text_deltas)
        ]
    if isinstance(block, ThinkingBlock):
        frames = [
            _delta(index, b"thinking_delta", b"thinking", chunk)
            for chunk in split_evenly(block.thinking, THINKING_DELTAS)
            if chunk
        ]
        frames.append(_delta(index, b"signature_delta", b"signature", block.signature))
        return frames
    assert isinstance(block, ToolUseBlock)
    arguments = orjson.dumps(block.input).decode()
    return [
        _delta(index, b"input_json_delta", b"partial_json", chunk)
        for chunk in ["", *split_evenly(arguments, TOOL_INPUT_DELTAS)]
    ]
