"""A reply on the wire: a `chat.completion` body, or `chat.completion.chunk` SSE steps.

A stream sends the role first, then reasoning, text and each tool call in fragments (a
tool call's first fragment carries its id, type and name, the rest only arguments), then
the finish chunk, the usage chunk (only with `stream_options.include_usage`, and then every
other chunk carries `"usage": null`, as OpenAI does) and `data: [DONE]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.emulator.faults import Drop, Pause, Step
from gateway.emulator_openai.replies import Reply, fragments
from gateway.emulator_openai.state import EmulatorConfig, Fault

DONE = b"data: [DONE]\n\n"
OVERLOADED_CHUNK = orjson.dumps(
    {
        "error": {
            "message": "The server is overloaded, try again later.",
            "type": "server_error",
            "param": None,
            "code": "server_is_overloaded",
        }
    }
)


@dataclass(frozen=True)
class Completion:
    """What every body and chunk of one answer shares."""

    completion_id: str
    created: int
    model: str

    def head(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_emulator",
        }


def usage_body(
    reply: Reply, *, prompt_tokens: int, cached_tokens: int, style: str
) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": prompt_tokens + reply.completion_tokens,
    }
    if style == "deepseek":
        usage["prompt_cache_hit_tokens"] = cached_tokens
        usage["prompt_cache_miss_tokens"] = prompt_tokens - cached_tokens
    else:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens, "audio_tokens": 0}
    usage["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens}
    return usage


def completion_body(completion: Completion, reply: Reply, usage: dict[str, Any] | None) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in reply.tool_calls
        ]
    body = {
        **completion.head("chat.completion"),
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return orjson.dumps(body)


def stream_steps(
    completion: Completion,
    reply: Reply,
    usage: dict[str, Any] | None,
    *,
    config: EmulatorConfig,
    fault: Fault | None,
) -> list[Step]:
    """The bytes to send (and pauses between them) with the fault, if any, applied."""
    kind = fault.kind if fault is not None else None
    with_usage = usage is not None

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        body = {
            **completion.head("chat.completion.chunk"),
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if with_usage:
            body["usage"] = None
        return body

    deltas = [chunk({"role": "assistant", "content": "", "refusal": None})]
    deltas += [
        chunk({"reasoning_content": piece})
        for piece in fragments(reply.reasoning, config.text_fragments)
    ]
    deltas += [
        chunk({"content": piece}) for piece in fragments(reply.text or "", config.text_fragments)
    ]
    for index, call in enumerate(reply.tool_calls):
        first = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        deltas.append(chunk({"tool_calls": [first]}))
        for piece in fragments(call.arguments, config.argument_fragments):
            fragment: dict[str, Any] = {"index": index, "function": {"arguments": piece}}
            if config.repeat_tool_call_id:
                fragment = {"index": index, "id": call.id, "type": "function", **fragment}
                fragment["function"] = {"name": call.name, "arguments": piece}
            deltas.append(chunk({"tool_calls": [fragment]}))
    if config.finish_with_content and len(deltas) > 1:
        deltas[-1]["choices"][0]["finish_reason"] = reply.finish_reason
        closing = []
    else:
        closing = [chunk({}, reply.finish_reason)]
    if with_usage and kind != "no_usage":
        closing.append({**completion.head("chat.completion.chunk"), "choices": [], "usage": usage})

    frames = [_frame(body) for body in deltas]
    delay = config.delta_delay_ms / 1000
    steps: list[Step] = []
    for position, frame in enumerate(frames):
        if position > 1 and delay > 0:
            steps.append(Pause(delay))
        if position == 1 and kind == "malformed_json":
            steps.append(frame[: len(frame) // 2] + b"\n\n")
            continue
        steps.append(frame)
        if position == 1 and kind == "drop_mid_stream":
            steps.append(Drop())
            return steps
        if position == 1 and kind == "error_chunk_mid_stream":
            steps.append(b"data: " + OVERLOADED_CHUNK + b"\n\n")
            return steps
    if kind == "eof_before_finish":
        return steps
    steps.extend(_frame(body) for body in closing)
    if kind != "no_done":
        steps.append(DONE)
    return steps


def _frame(body: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"
