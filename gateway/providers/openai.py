"""OpenAI Chat Completions and any compatible server (OpenRouter, vLLM, DeepSeek, …).

`POST {base_url}/chat/completions` with `Authorization: Bearer <upstream key>`, where
`base_url` ends where `/chat/completions` starts (`https://api.openai.com/v1`). The body is
translated (`openai_translate`), and so is everything that comes back: whole responses and
errors here, streams in `openai_stream`.

`Provider.options` (all optional):
  max_tokens_field        "max_tokens" (default) or "max_completion_tokens" (o-series, gpt-5)
  system_role             "system" (default) or "developer"
  supports_cache_control  true to keep `cache_control` markers (e.g. OpenRouter → Claude)
  send_reasoning_effort   true to map `thinking` / `output_config.effort` to
                          `reasoning_effort` (only for models that accept it)
  extra_headers           {"HTTP-Referer": "...", ...}, added to every request

`count_tokens` has no OpenAI equivalent: it is refused with 404 `not_found_error` before
anything is sent, and Claude Code then counts through the inference endpoint instead.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from gateway.providers.base import TranslatedResponse, UpstreamError, UpstreamRequest
from gateway.providers.openai_stream import (
    StreamTranslator,
    ToolNameLookup,
    anthropic_usage,
    error_type_for_status,
    estimated_usage,
    new_message_id,
    response_tool_id,
    stop_reason_for,
    unchanged_name,
)
from gateway.providers.openai_translate import KIND, OpenAIOptions, translate_request
from gateway.snapshot import ProviderSpec, UpstreamKeySpec

MESSAGES_ENDPOINT = "/v1/messages"
COUNT_TOKENS_ENDPOINT = "/v1/messages/count_tokens"
CREDENTIAL_REJECTED = "The provider rejected the gateway's upstream credential."
# Provider headers worth relaying on a translated answer; the rest describe OpenAI's side.
RELAYED_HEADERS = frozenset({b"retry-after", b"retry-after-ms", b"x-request-id"})
TOOL_NAME_BOOK_SIZE = 4096


class ToolNameBook:
    """Shortened tool name → the client's name, for the most recent names (bounded).

    The adapter is shared by every request and its response translators see no request, so
    the names shortened while building requests are remembered here. Shortening is
    deterministic (prefix + hash), so one process-wide map cannot mix two names up; a name
    that has been forgotten comes back shortened, which is still a valid tool name.
    """

    def __init__(self, capacity: int = TOOL_NAME_BOOK_SIZE) -> None:
        self.capacity = capacity
        self._names: OrderedDict[str, str] = OrderedDict()

    def remember(self, names: Mapping[str, str]) -> None:
        for short, original in names.items():
            self._names[short] = original
            self._names.move_to_end(short)
        while len(self._names) > self.capacity:
            self._names.popitem(last=False)

    def original(self, name: str) -> str:
        return self._names.get(name, name)


class OpenAIAdapter:
    passthrough = False

    def __init__(self) -> None:
        self.tool_names = ToolNameBook()

    async def build_request(
        self,
        *,
        provider: ProviderSpec,
        upstream_key: UpstreamKeySpec,
        endpoint: str,
        client_headers: list[tuple[str, str]],
        body: bytes,
    ) -> UpstreamRequest:
        if endpoint == COUNT_TOKENS_ENDPOINT:
            raise UpstreamError(
                "not_found_error",
                f"count_tokens is not supported by provider kind {KIND}",
                status=404,
                retryable=False,
            )
        if endpoint != MESSAGES_ENDPOINT:
            raise UpstreamError(
                "not_found_error",
                f"{endpoint} is not supported by provider kind {KIND}",
                status=404,
                retryable=False,
            )
        try:
            options = OpenAIOptions.from_provider(provider.options)
        except ValueError as error:
            raise UpstreamError(
                "api_error",
                f"Provider '{provider.name}' is misconfigured: {error}.",
                status=500,
                retryable=False,
            ) from None
        translated = translate_request(_json_object(body), options)
        self.tool_names.remember(translated.tool_names)
        headers = [
            ("content-type", "application/json"),
            ("authorization", f"Bearer {upstream_key.secret.reveal()}"),
        ]
        if translated.body.get("stream") is True:
            headers.append(("accept", "text/event-stream"))
        headers.extend(options.extra_headers)
        return UpstreamRequest(
            method="POST",
            url=provider.base_url + "/chat/completions",
            headers=headers,
            body=orjson.dumps(translated.body),
        )

    def translate_response(
        self, *, status: int, headers: list[tuple[bytes, bytes]], body: bytes, requested_model: str
    ) -> TranslatedResponse:
        status, translated = translate_whole_response(
            status, body, requested_model=requested_model, tool_name=self.tool_names.original
        )
        relayed = [
            (name.lower(), value) for name, value in headers if name.lower() in RELAYED_HEADERS
        ]
        return TranslatedResponse(
            status=status,
            headers=[(b"content-type", b"application/json"), *relayed],
            body=translated,
        )

    async def translate_stream(
        self, chunks: AsyncIterator[bytes], *, requested_model: str
    ) -> AsyncIterator[bytes]:
        translator = StreamTranslator(
            requested_model=requested_model, tool_name=self.tool_names.original
        )
        try:
            async for chunk in chunks:
                events = translator.feed(chunk)
                if events:
                    yield events
                if translator.finished:
                    return
        except httpx.HTTPError as error:
            yield translator.fail(f"Upstream stream failed: {type(error).__name__}.")
            return
        events = translator.close()
        if events:
            yield events


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        raise UpstreamError(
            "invalid_request_error",
            "Request body must be a JSON object.",
            status=400,
            retryable=False,
        )
    return payload


# --- whole responses: OpenAI → Anthropic (protocol reference §10.2) --------------------------


class UnreadableResponse(Exception):
    """A 2xx body that is not a chat.completion."""


def translate_whole_response(
    status: int, body: bytes, *, requested_model: str, tool_name: ToolNameLookup = unchanged_name
) -> tuple[int, bytes]:
    """(status, Anthropic JSON) for a whole provider answer: a message or an error."""
    try:
        document = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        document = None
    if 200 <= status < 300:
        error = document.get("error") if isinstance(document, dict) else None
        if not error or (isinstance(document, dict) and document.get("choices")):
            try:
                message = translate_completion(
                    document, requested_model=requested_model, tool_name=tool_name
                )
            except UnreadableResponse:
                return 502, anthropic_error_body(
                    "api_error",
                    "Upstream provider returned a response that is not a chat completion.",
                )
            return status, orjson.dumps(message)
        # Some OpenAI-compatible routers report a failure inside a 200.
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and 400 <= code <= 599 else 502
    error_type = error_type_for_status(status)
    if status in (401, 403):
        # The gateway's own key failed, and the provider's text may echo part of it.
        return status, anthropic_error_body(error_type, CREDENTIAL_REJECTED)
    return status, anthropic_error_body(error_type, _error_message(document, body, status))


def translate_completion(
    document: Any, *, requested_model: str, tool_name: ToolNameLookup = unchanged_name
) -> dict[str, Any]:
    """A `chat.completion` object as an Anthropic `message` (model: what the client asked for)."""
    choices = document.get("choices") if isinstance(document, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UnreadableResponse
    choice = next(
        (c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), choices[0]
    )
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content: list[dict[str, Any]] = []
    characters = 0
    thinking = _reasoning_text(message)
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
        characters += len(thinking)
    text = _message_text(message.get("content"))
    refusal = message.get("refusal")
    shown = text or (refusal if isinstance(refusal, str) else "")
    if shown:
        content.append({"type": "text", "text": shown})
        characters += len(shown)
    tool_calls = message.get("tool_calls")
    for call in tool_calls if isinstance(tool_calls, list) else ():
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = function.get("arguments")
        characters += len(arguments) if isinstance(arguments, str) else 0
        content.append(
            {
                "type": "tool_use",
                "id": response_tool_id(call.get("id")),
                "name": tool_name(str(function.get("name") or "")),
                "input": parse_arguments(arguments),
            }
        )
    has_tool_use = any(block["type"] == "tool_use" for block in content)
    stop_reason = stop_reason_for(choice.get("finish_reason"), has_tool_use=has_tool_use)
    if shown and not text:
        stop_reason = "refusal"
    usage = document.get("usage")
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": requested_model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": anthropic_usage(usage) if isinstance(usage, dict) else estimated_usage(characters),
    }


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Tool call arguments as an input object; anything unparsable or not an object is {}."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments:
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _reasoning_text(message: dict[str, Any]) -> str:
    for field in ("reasoning_content", "reasoning"):
        value = message.get(field)
        if isinstance(value, str) and value:
            return value
    return ""


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        part["text"]
        for part in content
        if isinstance(part, dict)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
    )


def anthropic_error_body(error_type: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})


def _error_message(document: Any, body: bytes, status: int) -> str:
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        return error["message"]
    if isinstance(error, str) and error:
        return error
    snippet = body[:200].decode("utf-8", errors="replace").strip()
    if snippet and not snippet.startswith(("{", "[")):
        return f"Upstream provider answered HTTP {status}: {snippet}"
    return f"Upstream provider answered HTTP {status}."
