"""Which upstream key of a provider serves a request, in the order to try them (pure).

A session sticks to the key it last used while that key has headroom, so the provider's
prompt cache (per key / workspace) stays warm. Otherwise keys are drawn in a weighted random
order where the weight is the configured weight times the headroom the key last reported
(`anthropic-ratelimit-*-remaining` / `-limit`). Keys cooling down after a 429, keys whose
reported budget is exhausted until their reset, and keys taken out for failed auth are
skipped; when none is left the caller answers 429 with the soonest time one frees up.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from gateway.snapshot import UpstreamKeySpec

DEFAULT_COOLDOWN_S = 5.0
MAX_COOLDOWN_S = 3600.0


@dataclass(frozen=True)
class KeyState:
    """What the gateway has learned about one upstream key from its responses."""

    cooldown_until: float = 0.0
    requests_remaining: int | None = None
    requests_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_limit: int | None = None
    reset_at: float | None = None
    unhealthy_reason: str = ""

    def blocked_until(self, now: float) -> float:
        """Epoch seconds until which the key must not be used (0 = usable now)."""
        until = self.cooldown_until if self.cooldown_until > now else 0.0
        exhausted = self.requests_remaining == 0 or self.tokens_remaining == 0
        if exhausted and self.reset_at is not None and self.reset_at > now:
            until = max(until, self.reset_at)
        return until

    def headroom(self) -> float:
        """The reported fraction of budget left, 1.0 when unknown; never 0 for a usable key."""
        fractions = [
            remaining / limit
            for remaining, limit in (
                (self.requests_remaining, self.requests_limit),
                (self.tokens_remaining, self.tokens_limit),
            )
            if remaining is not None and limit
        ]
        return max(min(fractions), 0.01) if fractions else 1.0


UNKNOWN = KeyState()  # a key no response has reported on yet


@dataclass(frozen=True)
class KeyOrder:
    keys: tuple[UpstreamKeySpec, ...]
    soonest_free_at: float | None  # when the first blocked key frees up, if any is blocked


def key_order(
    keys: tuple[UpstreamKeySpec, ...],
    states: Mapping[int, KeyState],
    affinity_key_id: int | None,
    now: float,
    rng: random.Random | None = None,
) -> KeyOrder:
    draw = rng or random
    usable: list[UpstreamKeySpec] = []
    soonest: float | None = None
    for upstream_key in keys:
        state = states.get(upstream_key.upstream_key_id, UNKNOWN)
        if state.unhealthy_reason:
            continue
        blocked = state.blocked_until(now)
        if blocked:
            soonest = blocked if soonest is None else min(soonest, blocked)
            continue
        usable.append(upstream_key)
    if len(usable) < 2:  # nothing to order (a provider with one key: the common case)
        return KeyOrder(keys=tuple(usable), soonest_free_at=soonest)
    sticky = [k for k in usable if k.upstream_key_id == affinity_key_id]
    others = [k for k in usable if k.upstream_key_id != affinity_key_id]

    def sort_key(upstream_key: UpstreamKeySpec) -> float:
        weight = upstream_key.weight * states.get(upstream_key.upstream_key_id, UNKNOWN).headroom()
        return draw.random() ** (1.0 / weight)  # weighted random order (Efraimidis–Spirakis)

    others.sort(key=sort_key, reverse=True)
    return KeyOrder(keys=tuple(sticky + others), soonest_free_at=soonest)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@functools.lru_cache(maxsize=256)  # a window's reset time repeats on every answer within it
def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def cooldown_seconds(headers: Mapping[str, str], now: float) -> float:
    """How long a key that answered 429 rests: retry-after(-ms), else its reset, else 5 s."""
    retry_after_ms = headers.get("retry-after-ms")
    retry_after = headers.get("retry-after")
    seconds: float | None = None
    try:
        if retry_after_ms is not None:
            seconds = float(retry_after_ms) / 1000.0
        elif retry_after is not None:
            seconds = float(retry_after)
    except ValueError:
        seconds = None
    if seconds is None:
        resets = [
            _epoch(headers.get(f"anthropic-ratelimit-{kind}-reset"))
            for kind in ("requests", "tokens", "input-tokens", "output-tokens")
        ]
        future = [reset - now for reset in resets if reset is not None and reset > now]
        seconds = min(future) if future else DEFAULT_COOLDOWN_S
    return min(max(seconds, 0.0), MAX_COOLDOWN_S)


def observed_state(headers: Mapping[str, str], previous: KeyState) -> KeyState:
    """The key's headroom as its latest response reports it (kept as it was when absent)."""
    requests_remaining = _int(headers.get("anthropic-ratelimit-requests-remaining"))
    tokens_remaining = _int(headers.get("anthropic-ratelimit-tokens-remaining"))
    if requests_remaining is None and tokens_remaining is None:
        return previous
    resets = [
        reset
        for reset in (
            _epoch(headers.get("anthropic-ratelimit-requests-reset")),
            _epoch(headers.get("anthropic-ratelimit-tokens-reset")),
        )
        if reset is not None
    ]
    return KeyState(
        cooldown_until=previous.cooldown_until,
        requests_remaining=requests_remaining,
        requests_limit=_int(headers.get("anthropic-ratelimit-requests-limit")),
        tokens_remaining=tokens_remaining,
        tokens_limit=_int(headers.get("anthropic-ratelimit-tokens-limit")),
        reset_at=max(resets) if resets else None,
        unhealthy_reason=previous.unhealthy_reason,
    )
