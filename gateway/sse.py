"""A tap on an Anthropic SSE byte stream: reads usage and checks the framing of every event.

The relay hands every chunk to `SSETap.feed` before writing it to the client. The tap keeps
only the unfinished tail of the current event, decodes the events that carry usage
(`message_start`, `message_delta`) or an error, and checks that every event is what the
SDKs can read: only `event:`/`data:`/`id:`/`retry:` fields and `:` comments, a name for any
event with data, and data that is one JSON object. The first event that is not marks the
stream malformed; `feed` then says where in the chunk that event starts, so the relay can
stop in front of it instead of passing garbage on.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.usage import StreamUsage

_INTERESTING = (b"message_start", b"message_delta", b"error")
_FIELDS = (b"event:", b"data:", b"id:", b"retry:", b":")
_MAX_TAIL = 4 * 1024 * 1024
# What every provider sends: one `event:` line, one `data:` line, a blank line. Matched in C,
# so the usual event costs no line-by-line reading in Python.
_USUAL_EVENT = re.compile(rb"event: ([^\n]*)\ndata: ([^\n]*)\n\n")
# A JSON string, exactly as orjson reads one, but for two things checked elsewhere or left to
# orjson: the bytes must be UTF-8 (checked per run below), and `\\u` escapes of surrogates
# (D800-DFFF, valid only in pairs) do not match here, so such a delta takes the general path.
_JSON_STRING = rb'"(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u(?![dD][89a-fA-F])[0-9a-fA-F]{4})*+"'
# Most of a stream is a run of content deltas in the layout Anthropic (and every adapter here)
# writes. A run is matched whole in C: each event in it is then one named event whose data is
# one JSON object, which is all the tap checks of an event that carries no usage.
_DELTA_RUN = re.compile(
    rb'(?:event: content_block_delta\ndata: \{"type":"content_block_delta",'
    rb'"index":(?:0|[1-9][0-9]*),"delta":\{"type":"[a-z_]++","[a-z_]++":'
    + _JSON_STRING
    + rb"\}\}\n\n)++"
)


class SSETap:
    def __init__(self, requested_ttl: str = "5m") -> None:
        self.usage = StreamUsage(requested_ttl=requested_ttl)
        self._tail = b""
        self.events_seen = 0
        self.error: dict[str, Any] | None = None
        self.saw_message_stop = False
        self.malformed: str | None = None  # why the stream is not a valid event stream

    @property
    def at_event_boundary(self) -> bool:
        """True when no event is half-received: a gateway ping may be inserted now."""
        return not self._tail.strip(b"\r\n")

    def feed(self, chunk: bytes) -> int | None:
        """Read `chunk`; None if every event in it is sound, else the offset in `chunk` where
        the first malformed event starts (0 when it began in an earlier chunk)."""
        if self.malformed is not None:
            return 0
        tail_length = len(self._tail)
        data = self._tail + chunk if self._tail else chunk
        # Events end with a blank line. Normalise CRLF only when present (rare).
        has_cr = b"\r" in data
        if has_cr:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        start = 0
        usual = _USUAL_EVENT.match
        deltas = _DELTA_RUN.match
        is_ascii = data.isascii()
        runs = True
        while True:
            run = deltas(data, start) if runs else None
            if run is not None:
                run_end = run.end()
                if is_ascii or _is_utf8(data, start, run_end):
                    # Three line ends per event in a run (none inside its JSON): counting a
                    # single byte is a memchr loop, about twice as fast as counting b"\n\n".
                    self.events_seen += data.count(b"\n", start, run_end) // 3
                    start = run_end
                    continue
                runs = False  # not UTF-8: the general path says which event is bad
            event = usual(data, start)
            if event is not None:
                name, payload = event.groups()
                problem = self._on_fields(name.strip(), payload.lstrip())
                end = event.end() - 2
            else:
                end = data.find(b"\n\n", start)
                if end < 0:
                    break
                problem = self._on_event(data[start:end])
            if problem is not None:
                self.malformed = problem
                self._tail = b""
                offset = max(0, start - tail_length)
                return _raw_offset(chunk, offset) if has_cr else offset
            start = end + 2
        self._tail = data[start:]
        if len(self._tail) > _MAX_TAIL:
            self._tail = b""
        return None

    def _on_event(self, raw: bytes) -> str | None:
        """Take in one event in any other field layout; the reason it is malformed, or None."""
        name = b""
        data = b""
        has_field = False
        for line in raw.split(b"\n"):
            if not line.startswith(_FIELDS):
                if line.strip():
                    return "a line that is not an SSE field"
                continue
            if line.startswith(b":"):
                continue
            has_field = True
            if line.startswith(b"event:"):
                name = line[6:].strip()
            elif line.startswith(b"data:"):
                data = data + b"\n" + line[5:].lstrip() if data else line[5:].lstrip()
        if not has_field:
            return None  # comments (or stray blank lines) only
        return self._on_fields(name, data)

    def _on_fields(self, name: bytes, data: bytes) -> str | None:
        """Check one event's name and data, and read usage or an error from it."""
        self.events_seen += 1
        if data and not name:
            return "an event without a name"
        if name == b"message_stop":
            self.saw_message_stop = True
        if not data:
            return None
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return f"invalid JSON in a {name.decode('utf-8', 'replace')} event"
        if not isinstance(payload, dict):
            return f"a {name.decode('utf-8', 'replace')} event whose data is not an object"
        if name not in _INTERESTING:
            return None
        if name == b"message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                self.usage.on_message_start(message)
        elif name == b"message_delta":
            self.usage.on_message_delta(payload)
        elif name == b"error":
            error = payload.get("error")
            self.error = error if isinstance(error, dict) else {"type": "api_error"}
        return None


def _is_utf8(data: bytes, start: int, end: int) -> bool:
    try:
        data[start:end].decode()
    except UnicodeDecodeError:
        return False
    return True


def _raw_offset(chunk: bytes, normalized_offset: int) -> int:
    """The offset in `chunk` of the byte at `normalized_offset` once CRLF/CR became LF."""
    position = count = 0
    while count < normalized_offset and position < len(chunk):
        if chunk[position : position + 2] == b"\r\n":
            position += 2
        else:
            position += 1
        count += 1
    return position
