"""What the emulated model answers, deterministically from the request and the config.

- tool calls: when the request offers tools and `tool_choice` forces one, or (mode "auto")
  the last message is a user message whose text contains the word "tool", or the config
  says "always"; arguments come from the config or are sampled from the tool's schema;
- reasoning (`reasoning_content`): when the config sets `reasoning_text` or the request
  sends `reasoning_effort`;
- text: the configured reply, else "Hello from the OpenAI emulator: <first words>" (none
  with tool calls unless configured). `stop` cuts it, and so does the token limit.
Token counts use the Anthropic emulator's estimate (`gateway.emulator.tokens`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.emulator.schemas import sample_from_schema
from gateway.emulator.tokens import (
    BYTES_PER_TOKEN,
    canonical_json,
    estimate_text_tokens,
    tokens_for_bytes,
)
from gateway.emulator_openai.state import EmulatorConfig

GREETING = "Hello from the OpenAI emulator"
ECHO_WORDS = 8
TOOL_WORD = re.compile(r"\btool\b", re.IGNORECASE)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Reply:
    reasoning: str
    text: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    completion_tokens: int
    reasoning_tokens: int


def prompt_units(body: dict[str, Any]) -> list[tuple[bytes, int]]:
    """The prompt as cacheable units with their token counts: model + tools, then messages."""
    head = canonical_json({"model": body.get("model"), "tools": body.get("tools")})
    units = [(head, tokens_for_bytes(len(head)))]
    for message in body.get("messages") or ():
        canonical = canonical_json(message)
        units.append((canonical, tokens_for_bytes(len(canonical))))
    return units


def build_reply(body: dict[str, Any], config: EmulatorConfig, *, request_body: bytes) -> Reply:
    messages = body.get("messages") or []
    user_text = _last_user_text(messages)
    echo = " ".join(user_text.split()[:ECHO_WORDS])
    reasoning = config.reasoning_text or ""
    if not reasoning and body.get("reasoning_effort"):
        reasoning = f"The user wrote: {echo or 'nothing'}. A short answer will do."
    reasoning_tokens = estimate_text_tokens(reasoning) if reasoning else 0
    tools = _chosen_tools(body, config, messages, user_text)
    if tools:
        seed = hashlib.blake2b(request_body, digest_size=8).hexdigest()
        calls = tuple(
            ToolCall(
                id=f"{config.tool_call_id_prefix}{seed}{position}",
                name=tool["name"],
                arguments=orjson.dumps(_arguments(tool, config, echo)).decode(),
            )
            for position, tool in enumerate(tools)
        )
        text = config.reply_text
        tokens = reasoning_tokens + sum(estimate_text_tokens(call.arguments) for call in calls)
        tokens += estimate_text_tokens(text) if text else 0
        return Reply(reasoning, text, calls, "tool_calls", tokens, reasoning_tokens)
    text = config.reply_text or (f"{GREETING}: {echo}" if echo else f"{GREETING}.")
    while len(text) < config.text_fragments:
        text += " emulated"
    finish_reason = "stop"
    text = _cut_at_stop(text, body.get("stop"))
    tokens = reasoning_tokens + estimate_text_tokens(text)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and tokens > limit:
        text = text[: max(1, (limit - reasoning_tokens) * BYTES_PER_TOKEN)]
        tokens, finish_reason = limit, "length"
    return Reply(reasoning, text, (), finish_reason, tokens, reasoning_tokens)


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            texts = [
                part.get("text", "")
                for part in content or ()
                if isinstance(part, dict) and part.get("type") == "text"
            ]
            return texts[-1] if texts else ""
    return ""


def _chosen_tools(
    body: dict[str, Any], config: EmulatorConfig, messages: list[Any], user_text: str
) -> list[dict[str, Any]]:
    tools = [tool["function"] for tool in body.get("tools") or ()]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return []
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        return [tool for tool in tools if tool["name"] == name][:1]
    if choice != "required":
        last_role = messages[-1].get("role") if messages else None
        if config.tool_use == "never":
            return []
        if config.tool_use == "auto" and (last_role != "user" or not TOOL_WORD.search(user_text)):
            return []
    count = 1 if body.get("parallel_tool_calls") is False else config.tool_calls
    return [tools[position % len(tools)] for position in range(count)]


def _arguments(tool: dict[str, Any], config: EmulatorConfig, echo: str) -> dict[str, Any]:
    if config.tool_arguments is not None:
        return config.tool_arguments
    sampled = sample_from_schema(tool.get("parameters"), phrase=echo or "emulated")
    return sampled if isinstance(sampled, dict) else {}


def _cut_at_stop(text: str, stop: Any) -> str:
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    positions = [text.find(sequence) for sequence in sequences if sequence]
    found = [position for position in positions if position >= 0]
    return text[: min(found)] if found else text


def fragments(text: str, count: int) -> list[str]:
    """`text` in `count` contiguous pieces (fewer if it is shorter), none empty."""
    if not text:
        return []
    count = max(1, min(count, len(text)))
    size, extra = divmod(len(text), count)
    pieces, start = [], 0
    for position in range(count):
        end = start + size + (1 if position < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces
