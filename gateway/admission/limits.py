"""Per-key rate limits: requests and tokens per minute, requests in flight. Pure.

Both per-minute limits are token buckets, as Anthropic enforces its own: a bucket holds up
to the limit, refills continuously at limit/60 per second, and a request takes its share
(1 request; its estimated tokens). A bucket nobody touched for a minute is full, so an
absent bucket needs no state. Tokens taken on an estimate are given back (or taken in
addition) when the request settles to its real count. The Lua scripts in `ledger` mirror
these functions line for line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.contracts import Usage

SECONDS_PER_MINUTE = 60.0
RPM = "rpm"
TPM = "tpm"
CONCURRENCY = "concurrency"
# When a slot frees is unknown; a client that honours retry-after polls once a second.
CONCURRENCY_RETRY_AFTER_S = 1


@dataclass(frozen=True)
class RateClaim:
    """What one request takes from its key's limits (None: that limit is not set)."""

    key_id: int
    rpm: int | None
    tpm: int | None
    tokens: int  # tokens taken from the tpm bucket, already capped by `tokens_to_take`
    max_concurrent: int | None


def tokens_to_take(estimate: int, tpm: int | None) -> int:
    """A request larger than the whole bucket waits for a full bucket instead of forever."""
    if tpm is None:
        return 0
    return min(estimate, tpm)


def usage_tokens(usage: Usage | None) -> int:
    """What counts against tokens per minute: input, cache writes and output, not cache reads."""
    if usage is None:
        return 0
    return (
        usage.input_tokens
        + usage.cache_write_5m_tokens
        + usage.cache_write_1h_tokens
        + usage.output_tokens
    )


def bucket_level(level: float | None, updated_at: float | None, now: float, capacity: int) -> float:
    """The bucket's content at `now`: what it held, refilled since, never above capacity."""
    if level is None or updated_at is None:
        return float(capacity)
    refill = max(0.0, now - updated_at) * capacity / SECONDS_PER_MINUTE
    return min(float(capacity), level + refill)


def shortfall(level: float, need: float, capacity: int) -> int | None:
    """None when `need` can be taken now, else the whole seconds until it can (at least 1).

    A limit of 0 admits nothing; its retry-after is a minute.
    """
    if capacity <= 0:
        return int(SECONDS_PER_MINUTE)
    if level >= need:
        return None
    return max(1, math.ceil((need - level) * SECONDS_PER_MINUTE / capacity))


def refused_message(kind: str, claim: RateClaim, retry_after: int) -> str:
    if kind == RPM:
        return (
            f"This key's limit of {claim.rpm} requests per minute is reached; "
            f"retry in {retry_after} s."
        )
    if kind == TPM:
        return (
            f"This key's limit of {claim.tpm} tokens per minute is reached "
            f"(this request may use {claim.tokens}); retry in {retry_after} s."
        )
    return (
        f"This key already has {claim.max_concurrent} requests in flight, its limit; "
        "retry when one of them finishes."
    )
