"""Decide what the emulated model answers: deterministic from the request and the config.

- structured output (`output_config.format` json_schema): the text is a JSON object built
  from the schema;
- `tool_use`: when the request offers custom tools and either `tool_choice` forces one or
  (mode "auto") the last user text contains the word "tool" and is not itself a tool result,
  or the control API sets tool use to "always";
- `thinking` first when `thinking.type` is `enabled` or `adaptive` (text left out with
  `display: "omitted"`, billed all the same);
- otherwise the configured reply text or "Hello from the emulator: <first words>".
`stop_sequences` and `max_tokens` cut the text the way the API does.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.emulator.config import Behaviour
from gateway.emulator.schemas import sample_from_schema
from gateway.emulator.tokens import BYTES_PER_TOKEN, estimate_text_tokens

ECHO_WORDS = 8
DEFAULT_GREETING = "Hello from the emulator"
PADDING_WORD = " emulated"
TOOL_WORD = re.compile(r"\btool\b", re.IGNORECASE)
THINKING_TYPES = frozenset({"enabled", "adaptive"})


@dataclass(frozen=True, slots=True)
class ThinkingBlock:
    thinking: str
    signature: str


@dataclass(frozen=True, slots=True)
class TextBlock:
    text: str


@dataclass(frozen=True, slots=True)
class ToolUseBlock:
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = ThinkingBlock | TextBlock | ToolUseBlock


@dataclass(frozen=True, slots=True)
class Reply:
    blocks: tuple[ContentBlock, ...]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int


def build_reply(body: dict[str, Any], behaviour: Behaviour, *, request_body: bytes) -> Reply:
    """`request_body` (the raw bytes) seeds the tool_use id, so the same request gets the same id."""
    last_user = _last_user_message(body.get("messages") or [])
    user_text = _last_text(last_user)
    echo = " ".join(user_text.split()[:ECHO_WORDS])
    blocks: list[ContentBlock] = []
    output_tokens = 0

    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        thinking = {}
    thinking_type = thinking.get("type")
    if isinstance(thinking_type, str) and thinking_type in THINKING_TYPES:
        thought = f"The user wrote: {echo or 'nothing'}. A short, friendly answer will do."
        output_tokens += estimate_text_tokens(thought)
        shown = "" if thinking.get("display") == "omitted" else thought
        blocks.append(ThinkingBlock(shown, _signature(thought, body.get("model"))))

    tool = _chosen_tool(body, behaviour, last_user, user_text)
    if tool is not None:
        name = str(tool["name"])
        tool_input = behaviour.tool_input
        if tool_input is None:
            tool_input = sample_from_schema(tool.get("input_schema"), phrase=echo)
            if not isinstance(tool_input, dict):
                tool_input = {}
        preface = f"I'll use the {name} tool."
        tool_id = "toolu_emu_" + hashlib.blake2b(request_body, digest_size=12).hexdigest()
        blocks += [TextBlock(preface), ToolUseBlock(tool_id, name, tool_input)]
        output_tokens += estimate_text_tokens(preface)
        output_tokens += estimate_text_tokens(orjson.dumps(tool_input).decode())
        return Reply(tuple(blocks), "tool_use", None, output_tokens)

    schema = _json_schema(body)
    if schema is not None:
        text = orjson.dumps(sample_from_schema(schema, phrase=echo or DEFAULT_GREETING)).decode()
    else:
        text = behaviour.reply_text or (
            f"{DEFAULT_GREETING}: {echo}" if echo else f"{DEFAULT_GREETING}."
        )
        text = _padded(text, behaviour.text_deltas)
    stop_reason, stop_sequence = "end_turn", None
    text, stop_sequence = _cut_at_stop_sequence(text, body.get("stop_sequences"))
    if stop_sequence is not None:
        stop_reason = "stop_sequence"

    thinking_tokens = output_tokens
    output_tokens += estimate_text_tokens(text) if text else 0
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and output_tokens > max_tokens:
        text = text[: max(1, (max_tokens - thinking_tokens) * BYTES_PER_TOKEN)]
        output_tokens, stop_reason, stop_sequence = max_tokens, "max_tokens", None
    blocks.append(TextBlock(text))
    return Reply(tuple(blocks), stop_reason, stop_sequence, max(1, output_tokens))


def _last_user_message(messages: list[Any]) -> dict[str, Any] | None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message
    return None


def _last_text(message: dict[str, Any] | None) -> str:
    """The last text block of a user turn; a tool result's text if that is all there is."""
    if message is None:
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    for block in reversed(content):
        if isinstance(block, dict) and block.get("type") == "text" and block.get("text"):
            return str(block["text"])
    for block in reversed(content):
        if isinstance(block, dict) and block.get("type") == "tool_result":
            return _last_text({"content": block.get("content")})
    return ""


def _has_tool_result(message: dict[str, Any] | None) -> bool:
    content = message.get("content") if message else None
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def _chosen_tool(
    body: dict[str, Any], behaviour: Behaviour, last_user: dict[str, Any] | None, user_text: str
) -> dict[str, Any] | None:
    tools = [
        tool
        for tool in body.get("tools") or ()
        if isinstance(tool, dict) and tool.get("name") and tool.get("type", "custom") == "custom"
    ]
    if not tools:
        return None
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        choice = {}
    choice_type = choice.get("type", "auto")
    if choice_type == "none":
        return None
    if choice_type == "tool":
        named = [tool for tool in tools if tool["name"] == choice.get("name")]
        return named[0] if named else tools[0]
    if choice_type != "any":
        if behaviour.tool_use == "never":
            return None
        if behaviour.tool_use == "auto" and (
            _has_tool_result(last_user) or not TOOL_WORD.search(user_text)
        ):
            return None
    preferred = [tool for tool in tools if tool["name"] == behaviour.tool_name]
    return preferred[0] if preferred else tools[0]


def _json_schema(body: dict[str, Any]) -> Any:
    output_config = body.get("output_config")
    response_format = output_config.get("format") if isinstance(output_config, dict) else None
    if response_format is None:
        response_format = body.get("output_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        return response_format.get("schema") or {}
    return None


def _padded(text: str, pieces: int) -> str:
    """Long enough to give every requested delta at least one character."""
    while len(text) < pieces:
        text += PADDING_WORD
    return text


def _cut_at_stop_sequence(text: str, stop_sequences: Any) -> tuple[str, str | None]:
    if not isinstance(stop_sequences, list):
        return text, None
    first_position, first_sequence = len(text), None
    for sequence in stop_sequences:
        if isinstance(sequence, str) and sequence:
            position = text.find(sequence)
            if 0 <= position < first_position:
                first_position, first_sequence = position, sequence
    return text[:first_position], first_sequence


def _signature(thought: str, model: Any) -> str:
    digest = hashlib.blake2b(f"{model}\x00{thought}".encode(), digest_size=48).digest()
    return "EmuSig" + base64.b64encode(digest).decode()
