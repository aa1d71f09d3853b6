"""An OpenAI `chat.completion.chunk` stream as Anthropic SSE (protocol reference §10.3).

`StreamTranslator` is fed the provider's raw bytes, cut anywhere (mid-line, mid-UTF-8,
between `\\r` and `\\n`), and returns whole Anthropic events, each written as
`event: <name>\\ndata: <json>\\n\\n`:

1. the first chunk opens the message (`message_start`, usage zero: the real numbers come
   with `message_delta`, which the SDK and the gateway's tap both let overwrite them);
2. reasoning, text and each tool call (keyed on the provider's `index`, never on `id`)
   get their own block, at sequential indexes, opened and closed explicitly, so no delta
   ever reaches a closed block or a block of another type;
3. `finish_reason` closes the open block and is held until the usage chunk (or
   `[DONE]`, or the end of the stream), then `message_delta` carries the stop reason and
   the real usage, and `message_stop` follows;
4. a stream that ends, or says `[DONE]`, before any `finish_reason`, an error object in the
   stream, or bytes that are not JSON end in `event: error` — never in a fake `message_stop`.
Pings during upstream silence are the relay's job (it sends them between whole events).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from gateway.providers.openai_translate import sanitize_tool_id

FINISH_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
ERROR_TYPES_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
CHARACTERS_PER_TOKEN_ESTIMATE = 4
_LINE_END = re.compile(rb"\r\n|\r|\n")
DONE = b"[DONE]"


# --- what streams and whole responses share ----------------------------------------------

ToolNameLookup = Callable[[str], str]


def unchanged_name(name: str) -> str:
    return name


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex


def response_tool_id(raw: Any) -> str:
    """A provider's tool call id as a valid Anthropic `tool_use.id` (minted when missing)."""
    if isinstance(raw, str) and raw:
        return sanitize_tool_id(raw)
    return "toolu_" + uuid.uuid4().hex[:24]


def stop_reason_for(finish_reason: Any, *, has_tool_use: bool) -> str:
    """Anthropic's stop_reason; some providers say "stop" after tool calls: that is tool_use."""
    reason = FINISH_REASONS.get(finish_reason, "end_turn")
    return "tool_use" if has_tool_use and reason == "end_turn" else reason


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def anthropic_usage(usage: Mapping[str, Any]) -> dict[str, int]:
    """OpenAI usage → Anthropic usage. `prompt_tokens` includes cached (and written) tokens;
    Anthropic's `input_tokens` excludes them, so they are subtracted, never counted twice."""
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    cache_read = _count(details.get("cached_tokens")) or _count(
        usage.get("prompt_cache_hit_tokens")
    )
    cache_write = (
        _count(details.get("cache_write_tokens"))
        or _count(details.get("cache_creation_tokens"))
        or _count(usage.get("cache_creation_input_tokens"))
    )
    prompt = _count(usage.get("prompt_tokens"))
    return {
        "input_tokens": max(prompt - cache_read - cache_write, 0),
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "output_tokens": _count(usage.get("completion_tokens")),
    }


def estimated_usage(output_characters: int) -> dict[str, int]:
    """Usage when the provider reported none: output at ~4 characters a token; the input
    is unknown to a response translator and stays 0."""
    return {
        "input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": -(-output_characters // CHARACTERS_PER_TOKEN_ESTIMATE),
    }


def error_type_for_status(status: int) -> str:
    if status in ERROR_TYPES_BY_STATUS:
        return ERROR_TYPES_BY_STATUS[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def stream_error_type(error: Mapping[str, Any]) -> str:
    """The Anthropic error type for an error object met inside a stream."""
    for field in ("status", "code"):
        status = error.get(field)
        if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599:
            return error_type_for_status(status)
    words = f"{error.get('code')} {error.get('type')}".lower()
    if "rate_limit" in words:
        return "rate_limit_error"
    if "overloaded" in words:
        return "overloaded_error"
    return "api_error"


# --- SSE in, SSE out -------------------------------------------------------------------------


def sse_event(name: str, payload: Mapping[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class SSEDataReader:
    """Server-sent events → the `data` of each event (several data lines joined by \\n)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[bytes] = []
        start = 0
        # The kept tail holds no line end, except perhaps a last "\r": search from there on.
        position = max(len(self._buffer) - 1, 0)
        while True:
            match = _LINE_END.search(buffer, position)
            if match is None:
                break
            if match.end() == len(buffer) and buffer.endswith(b"\r"):
                break  # a "\r" last: its "\n" may be in the next chunk
            self._line(buffer[start : match.start()], events)
            start = position = match.end()
        self._buffer = buffer[start:]
        return events

    def close(self) -> list[bytes]:
        """The events still pending when the stream ends, even without a final blank line."""
        events: list[bytes] = []
        for line in _LINE_END.split(self._buffer):
            if line:
                self._line(line, events)
        self._buffer = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[bytes]) -> None:
        if not line:
            if self._data:
                events.append(b"\n".join(self._data))
                self._data = []
            return
        if line.startswith(b":"):
            return  # a comment, e.g. ": OPENROUTER PROCESSING"
        field, _, value = line.partition(b":")
        if field == b"data":
            self._data.append(value[1:] if value.startswith(b" ") else value)


class StreamTranslator:
    def __init__(
        self,
        *,
        requested_model: str,
        tool_name: ToolNameLookup = unchanged_name,
        message_id: str | None = None,
    ) -> None:
        self.requested_model = requested_model
        self.message_id = message_id or new_message_id()
        self._tool_name = tool_name
        self._reader = SSEDataReader()
        self.started = False
        self.finished = False
        self._next_index = 0
        self._open_kind: str | None = None
        self._open_index = 0
        self._open_tool_key: int | None = None
        self._tool_blocks: dict[int, int] = {}  # provider tool index → Anthropic block index
        self._tool_keys_by_id: dict[str, int] = {}
        self._unindexed_keys = 0
        self._stop_reason: str | None = None
        self._refused = False
        self._usage: Mapping[str, Any] | None = None
        self._output_characters = 0

    # --- the three ways in ----------------------------------------------------------------

    def feed(self, chunk: bytes) -> bytes:
        """Anthropic events for one piece of the provider's stream (b"" if none yet)."""
        if self.finished:
            return b""
        out: list[bytes] = []
        for data in self._reader.feed(chunk):
            self._on_data(data, out)
            if self.finished:
                break
        return b"".join(out)

    def close(self) -> bytes:
        """The provider's stream ended: finish the message, or report that it was cut short."""
        if self.finished:
            return b""
        out: list[bytes] = []
        for data in self._reader.close():
            self._on_data(data, out)
            if self.finished:
                return b"".join(out)
        if self._stop_reason is not None:
            self._complete(out)
        else:
            self._error(out, "api_error", "Upstream stream ended before the response was complete.")
        return b"".join(out)

    def fail(self, message: str) -> bytes:
        """Reading the provider's stream failed (connection lost, timeout)."""
        if self.finished:
            return b""
        out: list[bytes] = []
        self._error(out, "api_error", message)
        return b"".join(out)

    # --- chunks ---------------------------------------------------------------------------

    def _on_data(self, data: bytes, out: list[bytes]) -> None:
        if data.strip() == DONE:
            if self._stop_reason is not None:
                self._complete(out)
            else:
                self._error(out, "api_error", "Upstream stream ended before a finish_reason.")
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            chunk = None
        if not isinstance(chunk, dict):
            self._error(out, "api_error", "Upstream sent a stream chunk that is not JSON.")
            return
        choices = chunk.get("choices")
        error = chunk.get("error")
        if error and not choices:
            error = error if isinstance(error, Mapping) else {"message": str(error)}
            message = error.get("message") or "Upstream provider reported an error mid-stream."
            self._error(out, stream_error_type(error), str(message))
            return
        self._start(out)
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage = usage
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, Mapping) and choice.get("index", 0) == 0:
                self._on_choice(choice, out)
                if self.finished:
                    return
        if self._stop_reason is not None and isinstance(usage, Mapping) and not choices:
            self._complete(out)

    def _on_choice(self, choice: Mapping[str, Any], out: list[bytes]) -> None:
        if self._stop_reason is not None:
            return  # nothing belongs to the message after its finish_reason
        delta = choice.get("delta")
        delta = delta if isinstance(delta, Mapping) else {}
        for field in ("reasoning_content", "reasoning"):
            reasoning = delta.get(field)
            if isinstance(reasoning, str) and reasoning:
                self._block_delta(
                    "thinking", {"type": "thinking_delta", "thinking": reasoning}, out
                )
                break
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._block_delta("text", {"type": "text_delta", "text": content}, out)
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refused = True
            self._block_delta("text", {"type": "text_delta", "text": refusal}, out)
        tool_calls = delta.get("tool_calls")
        for call in tool_calls if isinstance(tool_calls, list) else ():
            if isinstance(call, Mapping):
                self._on_tool_call(call, out)
                if self.finished:
                    return
        finish_reason = choice.get("finish_reason")
        if finish_reason:
            self._close_block(out)
            self._stop_reason = (
                "refusal"
                if self._refused
                else stop_reason_for(finish_reason, has_tool_use=bool(self._tool_blocks))
            )

    def _on_tool_call(self, call: Mapping[str, Any], out: list[bytes]) -> None:
        key = self._tool_key(call)
        function = call.get("function")
        function = function if isinstance(function, Mapping) else {}
        arguments = function.get("arguments")
        if isinstance(arguments, Mapping):
            arguments = orjson.dumps(arguments).decode()
        if key not in self._tool_blocks:
            self._close_block(out)
            index = self._open_block("tool_use", out, self._tool_start(call, function))
            self._tool_blocks[key] = index
            self._open_tool_key = key
            self._emit_delta(index, {"type": "input_json_delta", "partial_json": ""}, out)
        elif self._open_kind != "tool_use" or self._open_tool_key != key:
            if isinstance(arguments, str) and arguments:
                self._error(
                    out,
                    "api_error",
                    "Upstream interleaved the arguments of parallel tool calls; "
                    "the stream cannot be translated.",
                )
            return  # a repeated id/type with no arguments changes nothing
        if isinstance(arguments, str) and arguments:
            self._output_characters += len(arguments)
            self._emit_delta(
                self._tool_blocks[key], {"type": "input_json_delta", "partial_json": arguments}, out
            )

    def _tool_key(self, call: Mapping[str, Any]) -> int:
        """The provider's tool index; without one, a new id is a new call and no id continues
        the current one."""
        index = call.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            return index
        call_id = call.get("id")
        if isinstance(call_id, str) and call_id:
            if call_id not in self._tool_keys_by_id:
                self._tool_keys_by_id[call_id] = self._unindexed_key()
            return self._tool_keys_by_id[call_id]
        if self._open_tool_key is not None:
            return self._open_tool_key
        return self._unindexed_key()

    def _unindexed_key(self) -> int:
        """Keys for calls without an index are negative, apart from any provider index."""
        self._unindexed_keys -= 1
        return self._unindexed_keys

    def _tool_start(self, call: Mapping[str, Any], function: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "type": "tool_use",
            "id": response_tool_id(call.get("id")),
            "name": self._tool_name(str(function.get("name") or "")),
            "input": {},
        }

    # --- events ---------------------------------------------------------------------------

    def _start(self, out: list[bytes]) -> None:
        if self.started:
            return
        self.started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.requested_model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": estimated_usage(0),
        }
        out.append(sse_event("message_start", {"type": "message_start", "message": message}))

    def _block_delta(self, kind: str, delta: dict[str, Any], out: list[bytes]) -> None:
        if self._open_kind != kind:
            self._close_block(out)
            empty = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            self._open_block(kind, out, empty)
        self._output_characters += len(delta.get("text") or delta.get("thinking") or "")
        self._emit_delta(self._open_index, delta, out)

    def _open_block(self, kind: str, out: list[bytes], content_block: dict[str, Any]) -> int:
        index = self._next_index
        self._next_index += 1
        self._open_kind, self._open_index = kind, index
        out.append(
            sse_event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": content_block},
            )
        )
        return index

    def _emit_delta(self, index: int, delta: dict[str, Any], out: list[bytes]) -> None:
        out.append(
            sse_event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        )

    def _close_block(self, out: list[bytes]) -> None:
        if self._open_kind is None:
            return
        out.append(
            sse_event(
                "content_block_stop", {"type": "content_block_stop", "index": self._open_index}
            )
        )
        self._open_kind = None
        self._open_tool_key = None

    def _complete(self, out: list[bytes]) -> None:
        self._close_block(out)
        usage = (
            anthropic_usage(self._usage)
            if self._usage is not None
            else estimated_usage(self._output_characters)
        )
        out.append(
            sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                    "usage": usage,
                },
            )
        )
        out.append(sse_event("message_stop", {"type": "message_stop"}))
        self.finished = True

    def _error(self, out: list[bytes], error_type: str, message: str) -> None:
        out.append(
            sse_event("error", {"type": "error", "error": {"type": error_type, "message": message}})
        )
        self.finished = True
