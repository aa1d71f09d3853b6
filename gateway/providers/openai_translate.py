"""Anthropic Messages request → OpenAI Chat Completions request (protocol reference §10.1).

The pure request half of the `openai` adapter; responses are translated in `openai`
(whole bodies) and `openai_stream` (SSE). Decisions worth knowing (pitfalls, §10.4):
- Tool names longer than 64 characters become `prefix55 + "_" + sha256[:8]`; the returned
  short → original map lets the response translators put the client's name back.
- Tool ids are sanitised to `^[a-zA-Z0-9_-]+$` by replacing every other character with `_`,
  the same function for `tool_use.id` and `tool_result.tool_use_id`, so pairs stay pairs.
- `thinking`/`redacted_thinking` blocks are dropped (their signatures mean nothing here).
- `cache_control` markers are stripped unless the provider supports them
  (`supports_cache_control`, e.g. OpenRouter in front of Claude); then every marker stays
  where the target reads it: on the content part, the tool entry, the top level, or the
  message for a `tool_use` (which has no content part of its own). None is dropped.
- Only what OpenAI understands is sent: Anthropic-only fields (`thinking`, `metadata`,
  `container`, `context_management`, `top_k`, …) never reach the provider.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.providers.base import UpstreamError

KIND = "openai"
MAX_TOOL_NAME_LENGTH = 64
TOOL_NAME_PREFIX_LENGTH = 55
MAX_STOP_SEQUENCES = 4
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")
SYSTEM_ROLES = ("system", "developer")
DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
CUSTOM_TOOL_TYPES = (None, "custom")
BLOCK_SEPARATOR = "\n\n"

_TOOL_ID_DISALLOWED = re.compile(r"[^a-zA-Z0-9_-]")


# --- names, ids, options -----------------------------------------------------------------


def short_tool_name(name: str) -> str:
    """The name OpenAI accepts: unchanged up to 64 characters, else a stable 64-char form."""
    if len(name) <= MAX_TOOL_NAME_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:TOOL_NAME_PREFIX_LENGTH]}_{digest}"


def sanitize_tool_id(tool_id: str) -> str:
    return _TOOL_ID_DISALLOWED.sub("_", tool_id)


@dataclass(frozen=True)
class OpenAIOptions:
    """`Provider.options` for kind `openai`; unknown keys are ignored."""

    max_tokens_field: str = "max_tokens"
    system_role: str = "system"
    supports_cache_control: bool = False
    send_reasoning_effort: bool = False
    extra_headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_provider(cls, options: Mapping[str, Any]) -> OpenAIOptions:
        """Raises ValueError naming the option that is wrong."""
        max_tokens_field = options.get("max_tokens_field", "max_tokens")
        if max_tokens_field not in MAX_TOKENS_FIELDS:
            raise ValueError(f"max_tokens_field must be one of {', '.join(MAX_TOKENS_FIELDS)}")
        system_role = options.get("system_role", "system")
        if system_role not in SYSTEM_ROLES:
            raise ValueError(f"system_role must be one of {', '.join(SYSTEM_ROLES)}")
        flags = {}
        for name in ("supports_cache_control", "send_reasoning_effort"):
            value = options.get(name, False)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false")
            flags[name] = value
        raw_headers = options.get("extra_headers") or {}
        if not isinstance(raw_headers, Mapping) or not all(
            isinstance(name, str) and isinstance(value, str) for name, value in raw_headers.items()
        ):
            raise ValueError("extra_headers must map header names to string values")
        reserved = {"authorization", "content-type", "content-length", "host"}
        extra_headers = tuple(
            (name, value) for name, value in raw_headers.items() if name.lower() not in reserved
        )
        return cls(
            max_tokens_field=max_tokens_field,
            system_role=system_role,
            extra_headers=extra_headers,
            **flags,
        )


def invalid_request(message: str) -> UpstreamError:
    return UpstreamError("invalid_request_error", message, status=400, retryable=False)


# --- request: Anthropic → OpenAI ---------------------------------------------------------


@dataclass(frozen=True)
class TranslatedRequest:
    body: dict[str, Any]
    # short → original, for every tool name that had to be shortened.
    tool_names: dict[str, str]


def translate_request(payload: Mapping[str, Any], options: OpenAIOptions) -> TranslatedRequest:
    """The chat.completions body for an Anthropic Messages body; UpstreamError(400) if it
    asks for something the provider cannot do (server tools, too many stop sequences)."""
    converter = _RequestConverter(options)
    return TranslatedRequest(body=converter.body(payload), tool_names=converter.tool_names)


class _RequestConverter:
    def __init__(self, options: OpenAIOptions) -> None:
        self.options = options
        self.keeps_markers = options.supports_cache_control
        self.tool_names: dict[str, str] = {}

    def body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        if payload.get("mcp_servers"):
            raise invalid_request(
                f"mcp_servers: MCP servers are not supported by provider kind {KIND}."
            )
        body: dict[str, Any] = {"model": payload.get("model"), "messages": self.messages(payload)}
        if payload.get("max_tokens") is not None:
            body[self.options.max_tokens_field] = payload["max_tokens"]
        for knob in ("temperature", "top_p"):
            if payload.get(knob) is not None:
                body[knob] = payload[knob]
        stop = _stop_sequences(payload.get("stop_sequences"))
        if stop:
            body["stop"] = stop
        tools = self.tools(payload.get("tools"))
        if tools:
            body["tools"] = tools
            body.update(self.tool_choice(payload.get("tool_choice")))
        metadata = payload.get("metadata")
        user_id = metadata.get("user_id") if isinstance(metadata, Mapping) else None
        if isinstance(user_id, str) and user_id:
            body["user"] = user_id
        if self.options.send_reasoning_effort:
            effort = reasoning_effort(payload)
            if effort is not None:
                body["reasoning_effort"] = effort
        response_format = _response_format(payload.get("output_config"))
        if response_format is not None:
            body["response_format"] = response_format
        if payload.get("stream") is True:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if self.keeps_markers and isinstance(payload.get("cache_control"), Mapping):
            body["cache_control"] = payload["cache_control"]
        return body

    # -- names and markers --

    def tool_name(self, name: Any) -> str:
        original = name if isinstance(name, str) else ""
        short = short_tool_name(original)
        if short != original:
            self.tool_names[short] = original
        return short

    def marker(self, block: Mapping[str, Any]) -> Any:
        """The block's cache_control marker if this provider keeps markers, else None."""
        marker = block.get("cache_control")
        return marker if self.keeps_markers and isinstance(marker, Mapping) else None

    def with_marker(self, part: dict[str, Any], block: Mapping[str, Any]) -> dict[str, Any]:
        marker = self.marker(block)
        if marker is not None:
            part["cache_control"] = marker
        return part

    def collapse(self, parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        """Plain text when nothing but unmarked text (widest compatibility), else the parts."""
        if all(part["type"] == "text" and "cache_control" not in part for part in parts):
            return BLOCK_SEPARATOR.join(part["text"] for part in parts)
        return parts

    # -- messages --

    def messages(self, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        converted: list[dict[str, Any]] = []
        system = payload.get("system")
        if system:
            message = self.system_message(system, "system")
            if message is not None:
                converted.append(message)
        messages = payload.get("messages")
        if not isinstance(messages, list):
            raise invalid_request("messages: Field required")
        for position, message in enumerate(messages):
            where = f"messages.{position}"
            if not isinstance(message, Mapping):
                raise invalid_request(f"{where}: Input should be an object")
            role, content = message.get("role"), message.get("content")
            if role == "user":
                converted.extend(self.user_messages(content, where))
            elif role == "assistant":
                assistant = self.assistant_message(content, where)
                if assistant is not None:
                    converted.append(assistant)
            elif role == "system":
                mid_system = self.system_message(content, f"{where}.content")
                if mid_system is not None:
                    converted.append(mid_system)
            else:
                raise invalid_request(
                    f"{where}.role: Input should be 'user', 'assistant' or 'system'"
                )
        return converted

    def system_message(self, content: Any, where: str) -> dict[str, Any] | None:
        parts = []
        for index, block in enumerate(_blocks(content, where)):
            if block.get("type") != "text":
                raise invalid_request(f"{where}.{index}.type: system content must be text blocks")
            part = self.text_part(block)
            if part is not None:
                parts.append(part)
        if not parts:
            return None
        return {"role": self.options.system_role, "content": self.collapse(parts)}

    def user_messages(self, content: Any, where: str) -> list[dict[str, Any]]:
        if isinstance(content, str):
            return [{"role": "user", "content": content}]
        tool_messages: list[dict[str, Any]] = []
        result_parts: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for index, block in enumerate(_blocks(content, f"{where}.content")):
            block_where = f"{where}.content.{index}"
            kind = block.get("type")
            if kind == "tool_result":
                tool_message, images = self.tool_result(block, block_where)
                tool_messages.append(tool_message)
                if images:
                    note = f"Images from the result of tool call {tool_message['tool_call_id']}:"
                    result_parts.append({"type": "text", "text": note})
                    result_parts.extend(images)
            elif kind not in DROPPED_BLOCKS:
                parts.extend(self.content_parts(block, block_where))
        # Tool answers come first, straight after the assistant's tool calls (OpenAI
        # rejects anything in between); images they returned and the user's own words follow.
        user_parts = result_parts + parts
        if user_parts:
            return [*tool_messages, {"role": "user", "content": self.collapse(user_parts)}]
        return tool_messages

    def assistant_message(self, content: Any, where: str) -> dict[str, Any] | None:
        if isinstance(content, str):
            return {"role": "assistant", "content": content} if content else None
        parts: list[dict[str, Any]] = []
        tool_calls: list[dict[str, Any]] = []
        marker = None
        for index, block in enumerate(_blocks(content, f"{where}.content")):
            kind = block.get("type")
            if kind == "text":
                part = self.text_part(block)
                if part is not None:
                    parts.append(part)
            elif kind == "tool_use":
                tool_calls.append(self.tool_call(block, f"{where}.content.{index}"))
                marker = self.marker(block) or marker
            elif kind not in DROPPED_BLOCKS:
                raise _unsupported_block(kind, f"{where}.content.{index}")
        if not parts and not tool_calls:
            return None
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.collapse(parts) if parts else None,
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        if marker is not None:
            # A tool call has no content part to carry a marker; the message carries it.
            message["cache_control"] = marker
        return message

    def tool_call(self, block: Mapping[str, Any], where: str) -> dict[str, Any]:
        tool_id = block.get("id")
        if not isinstance(tool_id, str) or not tool_id:
            raise invalid_request(f"{where}.id: Field required")
        arguments = orjson.dumps(block.get("input", {})).decode()
        return {
            "id": sanitize_tool_id(tool_id),
            "type": "function",
            "function": {"name": self.tool_name(block.get("name")), "arguments": arguments},
        }

    def tool_result(
        self, block: Mapping[str, Any], where: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        tool_use_id = block.get("tool_use_id")
        if not isinstance(tool_use_id, str) or not tool_use_id:
            raise invalid_request(f"{where}.tool_use_id: Field required")
        texts: list[str] = []
        images: list[dict[str, Any]] = []
        marker = self.marker(block)
        content = block.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif content is not None:
            for index, inner in enumerate(_blocks(content, f"{where}.content")):
                for part in self.content_parts(inner, f"{where}.content.{index}"):
                    if part["type"] == "text":
                        texts.append(part["text"])
                        marker = part.get("cache_control") or marker
                    else:
                        images.append(part)
        text = BLOCK_SEPARATOR.join(text for text in texts if text)
        if block.get("is_error"):
            text = f"Error: {text}" if text else "Error"
        message: dict[str, Any] = {
            "role": "tool",
            "tool_call_id": sanitize_tool_id(tool_use_id),
            "content": text,
        }
        if marker is not None:
            if text:
                message["content"] = [{"type": "text", "text": text, "cache_control": marker}]
            else:
                message["cache_control"] = marker
        return message, images

    # -- content blocks --

    def content_parts(self, block: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "text":
            part = self.text_part(block)
            return [part] if part is not None else []
        if kind == "image":
            return [self.with_marker(_image_part(block, where), block)]
        if kind == "document":
            return [self.with_marker({"type": "text", "text": _document_text(block)}, block)]
        if kind == "search_result":
            return [self.with_marker({"type": "text", "text": _search_result_text(block)}, block)]
        if kind in DROPPED_BLOCKS:
            return []
        raise _unsupported_block(kind, where)

    def text_part(self, block: Mapping[str, Any]) -> dict[str, Any] | None:
        text = block.get("text")
        if not isinstance(text, str) or not text:
            return None
        return self.with_marker({"type": "text", "text": text}, block)

    # -- tools --

    def tools(self, tools: Any) -> list[dict[str, Any]]:
        if not isinstance(tools, list):
            return []
        converted = []
        for index, tool in enumerate(tools):
            if not isinstance(tool, Mapping):
                raise invalid_request(f"tools.{index}: Input should be an object")
            kind, name = tool.get("type"), tool.get("name")
            if kind not in CUSTOM_TOOL_TYPES:
                raise invalid_request(
                    f"tools.{index}: tool '{name}' of type '{kind}' is not supported by provider "
                    f"kind {KIND}; only custom tools (name, description, input_schema) translate."
                )
            function: dict[str, Any] = {"name": self.tool_name(name)}
            if isinstance(tool.get("description"), str):
                function["description"] = tool["description"]
            schema = tool.get("input_schema")
            function["parameters"] = (
                schema if isinstance(schema, Mapping) else {"type": "object", "properties": {}}
            )
            converted.append(self.with_marker({"type": "function", "function": function}, tool))
        return converted

    def tool_choice(self, choice: Any) -> dict[str, Any]:
        if not isinstance(choice, Mapping):
            return {}
        kind = choice.get("type")
        translated: dict[str, Any] = {}
        if kind == "auto":
            translated["tool_choice"] = "auto"
        elif kind == "any":
            translated["tool_choice"] = "required"
        elif kind == "none":
            translated["tool_choice"] = "none"
        elif kind == "tool":
            translated["tool_choice"] = {
                "type": "function",
                "function": {"name": self.tool_name(choice.get("name"))},
            }
        if choice.get("disable_parallel_tool_use") is True:
            translated["parallel_tool_calls"] = False
        return translated


def _blocks(content: Any, where: str) -> list[Mapping[str, Any]]:
    """Content as a list of blocks (a string is one text block); 400 on any other shape."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise invalid_request(f"{where}: Input should be a string or a list of content blocks")
    for index, block in enumerate(content):
        if not isinstance(block, Mapping):
            raise invalid_request(f"{where}.{index}: Input should be an object")
    return content


def _unsupported_block(kind: Any, where: str) -> UpstreamError:
    return invalid_request(
        f"{where}.type: content block type '{kind}' is not supported by provider kind {KIND}."
    )


def _image_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    source = source if isinstance(source, Mapping) else {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise invalid_request(
            f"{where}.source.type: image source '{source.get('type')}' is not supported by "
            f"provider kind {KIND}; send base64 data or a URL."
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _document_text(block: Mapping[str, Any]) -> str:
    """A document's text when it has any (text or content sources), else a note saying it
    was left out: PDFs, URLs and uploaded files cannot be read by a chat.completions model."""
    source = block.get("source")
    source = source if isinstance(source, Mapping) else {}
    title = block.get("title") if isinstance(block.get("title"), str) else ""
    kind = source.get("type")
    text: str | None = None
    if kind == "text" and isinstance(source.get("data"), str):
        text = source["data"]
    elif kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            text = inner
        elif isinstance(inner, list):
            text = BLOCK_SEPARATOR.join(
                item["text"]
                for item in inner
                if isinstance(item, Mapping) and isinstance(item.get("text"), str)
            )
    if text is None:
        label = f'Document "{title}"' if title else "A document"
        media = source.get("media_type") or kind or "unknown"
        return f"[{label} was omitted: {media} documents cannot be sent to this model provider.]"
    return f"{title}{BLOCK_SEPARATOR}{text}" if title else text


def _search_result_text(block: Mapping[str, Any]) -> str:
    lines = [value for value in (block.get("title"), block.get("source")) if isinstance(value, str)]
    content = block.get("content")
    if isinstance(content, list):
        lines.extend(
            item["text"]
            for item in content
            if isinstance(item, Mapping) and isinstance(item.get("text"), str)
        )
    return "\n".join(lines)


def _stop_sequences(stop_sequences: Any) -> list[str]:
    if not isinstance(stop_sequences, list):
        return []
    if len(stop_sequences) > MAX_STOP_SEQUENCES:
        raise invalid_request(
            f"stop_sequences: provider kind {KIND} accepts at most {MAX_STOP_SEQUENCES} stop "
            f"sequences; got {len(stop_sequences)}."
        )
    return list(stop_sequences)


def reasoning_effort(payload: Mapping[str, Any]) -> str | None:
    """`reasoning_effort` for a request that asks for thinking: the effort it names, else
    the `budget_tokens` bucket; None when thinking is off or adaptive with no effort."""
    thinking = payload.get("thinking")
    if not isinstance(thinking, Mapping) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    output_config = payload.get("output_config")
    effort = output_config.get("effort") if isinstance(output_config, Mapping) else None
    if effort in ("low", "medium", "high"):
        return effort
    if effort in ("xhigh", "max"):
        return "high"
    budget = thinking.get("budget_tokens")
    if thinking.get("type") != "enabled" or not isinstance(budget, int):
        return None
    if budget < 4096:
        return "low"
    return "medium" if budget < 16384 else "high"


def _response_format(output_config: Any) -> dict[str, Any] | None:
    if not isinstance(output_config, Mapping):
        return None
    output_format = output_config.get("format")
    if not isinstance(output_format, Mapping) or output_format.get("type") != "json_schema":
        return None
    schema = output_format.get("schema")
    if not isinstance(schema, Mapping):
        return None
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
