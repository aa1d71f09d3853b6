"""Anthropic usage JSON → `Usage`, for whole messages and for streams. Pure, no ORM.

Rules (anthropic-protocol.md §4, §5):

- A stream's final usage is the `message_start` usage overwritten field by field by each
  `message_delta` usage. Every field is cumulative, so nothing is ever summed.
- Cache writes are split by TTL from `cache_creation`. Without a split, every written token
  is attributed to the TTL the request asked for (5m unless the request asked for 1h).
- When the total `cache_creation_input_tokens` disagrees with the split (a later
  `message_delta` reports a new total; `cache_creation` only ever arrives in
  `message_start`), the total wins and is shared out in the split's proportions: the 1h
  part is rounded down and the 5m part takes the rest, so the parts always add up to the
  total and rounding never moves a token into the dearer class.
- `usage.iterations` (beta) is returned as `(model or None, Usage)` pairs so each one can
  be priced with its own model. Web searches are counted only on the top-level usage:
  iterations carry no `server_tool_use`, and counting them twice would bill them twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from gateway.contracts import Usage

TTL_5M = "5m"
TTL_1H = "1h"
_TTLS = (TTL_5M, TTL_1H)

Iterations = tuple[tuple[str | None, Usage], ...]


class MessageUsage(NamedTuple):
    """A response's usage and, when the response reports them, its per-model iterations."""

    usage: Usage
    iterations: Iterations


def usage_from_message(usage: Mapping[str, Any], requested_ttl: str = TTL_5M) -> MessageUsage:
    """Normalise a non-stream message's `usage` object (also the accumulated stream usage)."""
    ttl = _checked_ttl(requested_ttl)
    return MessageUsage(
        usage=_usage(usage, ttl, with_web_search=True),
        iterations=_iterations(usage.get("iterations"), ttl),
    )


class StreamUsage:
    """Accumulates usage, model and stop reason from a stream's message events."""

    def __init__(self, requested_ttl: str = TTL_5M) -> None:
        self.requested_ttl = _checked_ttl(requested_ttl)
        self.model: str | None = None
        self.stop_reason: str | None = None
        self._fields: dict[str, Any] = {}

    def on_message_start(self, message: Mapping[str, Any]) -> None:
        """Take `message_start.message`: its usage is the starting snapshot."""
        model = message.get("model")
        if isinstance(model, str) and model:
            self.model = model
        usage = message.get("usage")
        self._fields = _present(usage) if isinstance(usage, Mapping) else {}

    def on_message_delta(self, event: Mapping[str, Any]) -> None:
        """Take a whole `message_delta` event: its non-null usage fields replace ours."""
        delta = event.get("delta")
        if isinstance(delta, Mapping):
            stop_reason = delta.get("stop_reason")
            if isinstance(stop_reason, str) and stop_reason:
                self.stop_reason = stop_reason
        usage = event.get("usage")
        if isinstance(usage, Mapping):
            self._fields.update(_present(usage))

    def message_usage(self) -> MessageUsage:
        """The usage and iterations so far, read in one pass."""
        return usage_from_message(self._fields, self.requested_ttl)

    @property
    def usage(self) -> Usage:
        return self.message_usage().usage

    @property
    def iterations(self) -> Iterations:
        return self.message_usage().iterations


def split_cache_writes(
    total: int | None, cache_creation: Mapping[str, Any] | None, requested_ttl: str = TTL_5M
) -> tuple[int, int]:
    """(5m tokens, 1h tokens) written to the cache; see the module docstring for the rule."""
    ttl = _checked_ttl(requested_ttl)
    split_5m = split_1h = 0
    if isinstance(cache_creation, Mapping):
        split_5m = _count(cache_creation.get("ephemeral_5m_input_tokens"))
        split_1h = _count(cache_creation.get("ephemeral_1h_input_tokens"))
    split_total = split_5m + split_1h
    if total is None or total == split_total:
        return split_5m, split_1h
    if split_total == 0:
        return (0, total) if ttl == TTL_1H else (total, 0)
    write_1h = total * split_1h // split_total
    return total - write_1h, write_1h


def _usage(fields: Mapping[str, Any], ttl: str, *, with_web_search: bool) -> Usage:
    total_written = fields.get("cache_creation_input_tokens")
    write_5m, write_1h = split_cache_writes(
        None if total_written is None else _count(total_written),
        fields.get("cache_creation"),
        ttl,
    )
    server_tool_use = fields.get("server_tool_use")
    web_search_requests = 0
    if with_web_search and isinstance(server_tool_use, Mapping):
        web_search_requests = _count(server_tool_use.get("web_search_requests"))
    return Usage(
        input_tokens=_count(fields.get("input_tokens")),
        output_tokens=_count(fields.get("output_tokens")),
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=_count(fields.get("cache_read_input_tokens")),
        web_search_requests=web_search_requests,
    )


def _iterations(raw: Any, ttl: str) -> Iterations:
    if not isinstance(raw, list):
        return ()
    iterations: list[tuple[str | None, Usage]] = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        model = item.get("model")
        iterations.append(
            (
                model if isinstance(model, str) and model else None,
                _usage(_present(item), ttl, with_web_search=False),
            )
        )
    return tuple(iterations)


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Only the fields that carry a value: a null never overwrites a count."""
    return {name: value for name, value in fields.items() if value is not None}


def _count(value: Any) -> int:
    """A token count from JSON; anything that is not a non-negative integer counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def _checked_ttl(ttl: str) -> str:
    if ttl not in _TTLS:
        raise ValueError(f"Unknown cache TTL {ttl!r}; expected one of {', '.join(_TTLS)}.")
    return ttl
