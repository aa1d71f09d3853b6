"""Prompt and response bodies for cost centers that opt in: captured cheaply, redacted, stored.

The proxy holds a `BodyCapture` only when the key's cost center logs bodies: a reference to
the request bytes it already read and the response bytes it relays, up to
GATEHOUSE_BODY_LOG_MAX_BYTES each. The recorder's writer thread seals each capture — decodes
and redacts it — before the row is written or spooled, so an unredacted body never reaches
the database or the disk, and the event loop never runs a regular expression.

Redacted, each span replaced by `[REDACTED]`: credentials by their shape (Anthropic keys,
Gatehouse keys and management tokens, bearer tokens, AWS access key ids and secret-like
40-character strings, x-api-key values), every upstream secret the gateway holds,
GATEHOUSE_BODY_REDACT_PATTERNS and the cost center's own patterns. A stream is kept as the
SSE bytes relayed, but its deltas are also read joined, so a secret the model wrote in pieces
is found and each piece redacted. A body cut at the size limit loses its last token too, so a
secret cut in half cannot leave its first half behind.

The patterns run on the `regex` engine with a time limit (REDACTION_TIMEOUT_S a pattern,
matching with the GIL released): a staff-written pattern that backtracks without end, such as
`(a|aa)+c`, costs that body — it is not kept, and the log says so — instead of stalling the
writer thread and with it every request's log row.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
import regex
from django.conf import settings
from django.db import Error as DatabaseFailure

from accounts.keys import MANAGEMENT_TOKEN_PREFIX, VIRTUAL_KEY_PREFIX
from gateway.models import RequestBody

logger = logging.getLogger(__name__)

REDACTED = "[REDACTED]"
REDACTION_TIMEOUT_S = 1.0
_B64 = "A-Za-z0-9/+"
CREDENTIAL_PATTERNS: tuple[str, ...] = (
    # Anthropic API, admin and OAuth keys (sk-ant-api03-…, sk-ant-admin01-…, sk-ant-oat01-…).
    r"sk-ant-[A-Za-z0-9_\-]*",
    # Gatehouse virtual keys and management tokens.
    rf"(?:{re.escape(VIRTUAL_KEY_PREFIX)}|{re.escape(MANAGEMENT_TOKEN_PREFIX)})[A-Za-z0-9_\-]*",
    r"(?i)bearer\s+(?:bearer\s+)*[A-Za-z0-9._~+/=\-]+",
    # AWS access key ids, and 40-character strings mixing cases and digits like a secret key.
    r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",
    rf"(?<![{_B64}])(?=[{_B64}]{{0,39}}[A-Z])(?=[{_B64}]{{0,39}}[a-z])(?=[{_B64}]{{0,39}}[0-9])"
    rf"[{_B64}]{{40}}(?![{_B64}])",
    # An x-api-key header or field, whatever the key looks like.
    r"""(?i)x-api-key["']?\s*[:=]\s*["']?[^\s"',;}]+""",
)
# Fields of a JSON credential (Bedrock, Vertex) whose values are secret.
_SECRET_FIELD = re.compile(r"(?i)secret|private|password|token|key")
MIN_SECRET_LENGTH = 8
# Characters a secret is made of; a truncated body loses its trailing run of them.
_TRAILING_TOKEN = re.compile(r"[A-Za-z0-9._~+/=\-]{1,256}\Z")


class BodyCapture:
    """What the proxy keeps of one request's bodies. Appending is all it does on the hot path."""

    __slots__ = (
        "request",
        "is_request_truncated",
        "response",
        "response_size",
        "is_response_truncated",
        "max_bytes",
        "patterns",
    )

    def __init__(self, request: bytes, *, max_bytes: int, patterns: tuple[str, ...]) -> None:
        self.request = request[:max_bytes]  # the same object when it fits: no copy
        self.is_request_truncated = len(request) > max_bytes
        self.response: list[bytes] = []
        self.response_size = 0
        self.is_response_truncated = False
        self.max_bytes = max_bytes
        self.patterns = patterns

    def add_response(self, chunk: bytes) -> None:
        room = self.max_bytes - self.response_size
        if len(chunk) > room:
            self.is_response_truncated = True
            if room <= 0:
                return
            chunk = chunk[:room]
        if chunk:
            self.response.append(chunk)
            self.response_size += len(chunk)

    def __repr__(self) -> str:
        return f"BodyCapture({len(self.request)} + {self.response_size} bytes)"


@dataclass(frozen=True)
class Redactor:
    patterns: tuple[regex.Pattern[str], ...]
    literals: regex.Pattern[str] | None = None

    def redact(self, text: str, *, truncated: bool = False) -> str:
        if self.literals is not None:
            text = self.literals.sub(REDACTED, text, concurrent=True, timeout=REDACTION_TIMEOUT_S)
        for pattern in self.patterns:
            text = pattern.sub(_replacement, text, concurrent=True, timeout=REDACTION_TIMEOUT_S)
        if truncated:
            text = _TRAILING_TOKEN.sub("", text)
        return text

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where in `text` something would be redacted, as merged (start, end) ranges."""
        found = [
            match.span()
            for pattern in (self.literals, *self.patterns)
            if pattern is not None
            for match in pattern.finditer(text, concurrent=True, timeout=REDACTION_TIMEOUT_S)
            if match.end() > match.start()
        ]
        merged: list[tuple[int, int]] = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged


def _replacement(match: regex.Match[str]) -> str:
    """A pattern that matched nothing (a lookahead, `x*`) must not sprinkle markers."""
    return REDACTED if match.group() else ""


def secret_fragments(secret: str) -> set[str]:
    """What of an upstream secret to look for: the value, and for a JSON credential the value
    of each secret field and each line of it; also each as it reads inside a JSON string."""
    fragments = {secret}
    try:
        document = orjson.loads(secret)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        for name, value in document.items():
            if isinstance(value, str) and _SECRET_FIELD.search(name):
                fragments.add(value)
                fragments.update(value.splitlines())
    fragments |= {orjson.dumps(fragment).decode()[1:-1] for fragment in fragments}
    return {
        fragment.strip() for fragment in fragments if len(fragment.strip()) >= MIN_SECRET_LENGTH
    }


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern)


@lru_cache(maxsize=64)
def build_redactor(patterns: tuple[str, ...], secrets: tuple[str, ...] = ()) -> Redactor:
    """Credentials, then the given patterns; `secrets` are matched literally, longest first."""
    fragments = sorted(
        {fragment for secret in secrets for fragment in secret_fragments(secret)},
        key=lambda fragment: (-len(fragment), fragment),
    )
    literals = regex.compile("|".join(map(regex.escape, fragments))) if fragments else None
    return Redactor(
        patterns=tuple(_compiled(pattern) for pattern in (*CREDENTIAL_PATTERNS, *patterns)),
        literals=literals,
    )


def body_text(raw: bytes) -> str:
    """Bytes as storable text: bad UTF-8 replaced, and no NUL (PostgreSQL text refuses it)."""
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def sealed_body(capture: BodyCapture, redactor: Redactor) -> dict[str, Any]:
    """The capture as the redacted, JSON-serialisable part of a recorder row."""
    return {
        "request_text": redactor.redact(
            body_text(capture.request), truncated=capture.is_request_truncated
        ),
        "response_text": redactor.redact(
            redact_split_deltas(body_text(b"".join(capture.response)), redactor),
            truncated=capture.is_response_truncated,
        ),
        "is_request_truncated": capture.is_request_truncated,
        "is_response_truncated": capture.is_response_truncated,
    }


def redact_split_deltas(sse: str, redactor: Redactor) -> str:
    """In an SSE stream a secret the model writes arrives in pieces, one per delta event, that
    no pattern recognises alone. Join each content block's deltas, find what to redact in the
    whole, and rewrite the events that carry a part of it. Anything else passes unchanged."""
    if not sse.startswith("event:"):
        return sse
    lines = sse.split("\n")
    blocks: dict[Any, list[tuple[int, dict[str, Any], str]]] = {}
    for number, line in enumerate(lines):
        if not line.startswith("data:") or "content_block_delta" not in line:
            continue
        try:
            event = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            continue
        delta = event.get("delta") if isinstance(event, dict) else None
        if not isinstance(delta, dict) or event.get("type") != "content_block_delta":
            continue
        for field in _DELTA_TEXT_FIELDS:
            if isinstance(delta.get(field), str):
                blocks.setdefault(event.get("index"), []).append((number, event, field))
                break
    for pieces in blocks.values():
        whole = "".join(event["delta"][field] for _, event, field in pieces)
        spans = redactor.spans(whole)
        if not spans:
            continue
        offset = 0
        for number, event, field in pieces:
            text = event["delta"][field]
            redacted = _blank_spans(text, offset, spans)
            offset += len(text)
            if redacted != text:
                event["delta"][field] = redacted
                lines[number] = "data: " + orjson.dumps(event).decode()
    return "\n".join(lines)


_DELTA_TEXT_FIELDS = ("text", "partial_json", "thinking")


def _blank_spans(text: str, offset: int, spans: list[tuple[int, int]]) -> str:
    """`text` (starting at `offset` of the whole) with each part inside a span replaced."""
    end = offset + len(text)
    kept: list[str] = []
    position = offset
    for start, stop in spans:
        if stop <= position or start >= end:
            continue
        kept.append(text[position - offset : max(start, position) - offset])
        kept.append(REDACTED)
        position = min(stop, end)
    kept.append(text[position - offset :])
    return "".join(kept)


# --- The writer thread's side: knows the upstream secrets and builds RequestBody rows.

_known_secrets: tuple[float, tuple[str, ...]] = (float("-inf"), ())


def known_upstream_secrets() -> tuple[str, ...]:
    """Every upstream secret, reloaded at most every GATEHOUSE_CACHE_TTL seconds; while the
    database is away the last ones known."""
    global _known_secrets
    loaded_at, secrets = _known_secrets
    now = time.monotonic()
    if now - loaded_at < settings.GATEHOUSE["CACHE_TTL_S"]:
        return secrets
    from gateway.selectors import upstream_key_secrets

    try:
        secrets = tuple(sorted(upstream_key_secrets()))
    except (DatabaseFailure, ValueError) as error:
        logger.warning(
            "Upstream secrets unavailable for body redaction (%s); using the last known",
            type(error).__name__,
        )
    _known_secrets = (now, secrets)
    return secrets


def redactor_for(cost_center_patterns: tuple[str, ...]) -> Redactor:
    return build_redactor(
        (*settings.GATEHOUSE["BODY_REDACT_PATTERNS"], *cost_center_patterns),
        known_upstream_secrets(),
    )


def seal_rows(rows: Iterable[dict[str, Any]]) -> None:
    """Replace each row's BodyCapture by its redacted text, before the row is written or spooled."""
    for row in rows:
        capture = row.get("body")
        if isinstance(capture, BodyCapture):
            try:
                row["body"] = sealed_body(capture, redactor_for(capture.patterns))
            except Exception:  # the writer thread must live on; the request row still counts
                logger.exception(
                    "Body of %s could not be redacted; not kept", row.get("request_id")
                )
                del row["body"]


def request_body_row(row: dict[str, Any], body: dict[str, Any] | BodyCapture) -> RequestBody:
    if isinstance(body, BodyCapture):
        body = sealed_body(body, redactor_for(body.patterns))
    return RequestBody(
        request_id=row["request_id"],
        cost_center_id=row.get("cost_center_id"),
        created_at=row["started_at"],
        **body,
    )
