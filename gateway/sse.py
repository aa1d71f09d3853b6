"""A tap on an Anthropic SSE byte stream: reads usage without touching or delaying bytes.

The relay hands every chunk to `SSETap.feed` after writing it to the client. The tap keeps
only the unfinished tail of the current event and decodes JSON for the few events that
carry usage (`message_start`, `message_delta`) or an error; text deltas are skipped by a
byte-prefix check, never parsed.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.usage import StreamUsage

_INTERESTING = (b"message_start", b"message_delta", b"error")
_MAX_TAIL = 4 * 1024 * 1024


class SSETap:
    def __init__(self, requested_ttl: str = "5m") -> None:
        self.usage = StreamUsage(requested_ttl=requested_ttl)
        self._tail = b""
        self.events_seen = 0
        self.error: dict[str, Any] | None = None
        self.saw_message_stop = False

    @property
    def at_event_boundary(self) -> bool:
        """True when no event is half-received: a gateway ping may be inserted now."""
        return not self._tail.strip(b"\r\n")

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        # Events end with a blank line. Normalise CRLF only when present (rare).
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        start = 0
        while True:
            end = data.find(b"\n\n", start)
            if end < 0:
                break
            self._on_event(data[start:end])
            start = end + 2
        self._tail = data[start:]
        if len(self._tail) > _MAX_TAIL:
            self._tail = b""

    def _on_event(self, raw: bytes) -> None:
        if not raw:
            return
        self.events_seen += 1
        name = b""
        data = b""
        for line in raw.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip()
            elif line.startswith(b"data:"):
                data = data + line[5:].lstrip() if data else line[5:].lstrip()
        if name == b"message_stop":
            self.saw_message_stop = True
            return
        if name not in _INTERESTING or not data:
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict):
            return
        if name == b"message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                self.usage.on_message_start(message)
        elif name == b"message_delta":
            self.usage.on_message_delta(payload)
        elif name == b"error":
            error = payload.get("error")
            self.error = error if isinstance(error, dict) else {"type": "api_error"}
