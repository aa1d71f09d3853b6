"""Per-key rate limits over a sliding 60-second window, with Anthropic's headers.

A request is admitted while the key's window is under every limit (requests, input
tokens, output tokens, optionally combined tokens); the request that crosses a token
limit still goes through, the next one gets 429. Input tokens counted are the uncached
ones (input + cache writes), as on the real API. `retry-after` is the whole number of
seconds until the oldest event that keeps the window full leaves it.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from gateway.emulator.errors import EmulatorError

WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int
    itpm: int
    otpm: int
    tpm: int | None = None

    @property
    def combined_tokens(self) -> int:
        """The `tokens-*` headers show the most restrictive token limit in effect."""
        return self.tpm if self.tpm is not None else self.itpm + self.otpm


class SlidingWindow:
    __slots__ = ("events", "total")

    def __init__(self) -> None:
        self.events: deque[tuple[float, int]] = deque()
        self.total = 0

    def prune(self, now: float) -> None:
        horizon = now - WINDOW_SECONDS
        events = self.events
        while events and events[0][0] <= horizon:
            self.total -= events.popleft()[1]

    def add(self, now: float, amount: int) -> None:
        if amount:
            self.events.append((now, amount))
            self.total += amount

    def seconds_until_below(self, limit: int, now: float) -> float:
        """How long until the window's total drops below `limit`."""
        excess = self.total - limit
        for timestamp, amount in self.events:
            excess -= amount
            if excess < 0:
                return timestamp + WINDOW_SECONDS - now
        return 0.0

    def reset_at(self, now: float) -> float:
        """When the window will be empty again (full replenishment)."""
        return self.events[-1][0] + WINDOW_SECONDS if self.events else now


class KeyWindows:
    __slots__ = ("requests", "input_tokens", "output_tokens")

    def __init__(self) -> None:
        self.requests = SlidingWindow()
        self.input_tokens = SlidingWindow()
        self.output_tokens = SlidingWindow()

    def prune(self, now: float) -> None:
        self.requests.prune(now)
        self.input_tokens.prune(now)
        self.output_tokens.prune(now)


@lru_cache(maxsize=1024)
def rfc3339(epoch_seconds: int) -> bytes:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()


class RateLimiter:
    def __init__(self) -> None:
        self._windows: dict[str, KeyWindows] = {}

    def clear(self) -> None:
        self._windows.clear()

    def admit(self, key: str, limits: Limits, now: float) -> None:
        """Count one request, or raise a 429 `rate_limit_error` with `retry-after`."""
        windows = self._windows.get(key)
        if windows is None:
            windows = self._windows[key] = KeyWindows()
        windows.prune(now)
        combined = windows.input_tokens.total + windows.output_tokens.total
        if windows.requests.total >= limits.rpm:
            wait = windows.requests.seconds_until_below(limits.rpm, now)
            message = f"requests per minute ({limits.rpm})"
        elif windows.input_tokens.total >= limits.itpm:
            wait = windows.input_tokens.seconds_until_below(limits.itpm, now)
            message = f"input tokens per minute ({limits.itpm})"
        elif windows.output_tokens.total >= limits.otpm:
            wait = windows.output_tokens.seconds_until_below(limits.otpm, now)
            message = f"output tokens per minute ({limits.otpm})"
        elif limits.tpm is not None and combined >= limits.tpm:
            wait = _seconds_until_combined_below(windows, limits.tpm, now)
            message = f"tokens per minute ({limits.tpm})"
        else:
            windows.requests.add(now, 1)
            return
        retry_after = max(1, math.ceil(wait))
        raise EmulatorError(
            429,
            f"This request would exceed the rate limit for this API key of {message}. "
            "Please reduce the prompt length or the maximum tokens requested, or try again later.",
            headers=[(b"retry-after", str(retry_after).encode()), *self.headers(key, limits, now)],
        )

    def record_tokens(self, key: str, now: float, *, input_tokens: int, output_tokens: int) -> None:
        windows = self._windows.get(key)
        if windows is None:
            windows = self._windows[key] = KeyWindows()
        windows.input_tokens.add(now, input_tokens)
        windows.output_tokens.add(now, output_tokens)

    def headers(self, key: str, limits: Limits, now: float) -> list[tuple[bytes, bytes]]:
        windows = self._windows.get(key) or KeyWindows()
        requests, inputs, outputs = windows.requests, windows.input_tokens, windows.output_tokens
        combined_used = inputs.total + outputs.total
        return [
            *_triple(b"requests", limits.rpm, limits.rpm - requests.total, requests.reset_at(now)),
            *_triple(
                b"tokens",
                limits.combined_tokens,
                limits.combined_tokens - combined_used,
                max(inputs.reset_at(now), outputs.reset_at(now)),
            ),
            *_triple(
                b"input-tokens", limits.itpm, limits.itpm - inputs.total, inputs.reset_at(now)
            ),
            *_triple(
                b"output-tokens", limits.otpm, limits.otpm - outputs.total, outputs.reset_at(now)
            ),
        ]


def _seconds_until_combined_below(windows: KeyWindows, limit: int, now: float) -> float:
    excess = windows.input_tokens.total + windows.output_tokens.total - limit
    merged = heapq.merge(windows.input_tokens.events, windows.output_tokens.events)
    for timestamp, amount in merged:
        excess -= amount
        if excess < 0:
            return timestamp + WINDOW_SECONDS - now
    return 0.0


def _triple(name: bytes, limit: int, remaining: int, reset_at: float) -> list[tuple[bytes, bytes]]:
    prefix = b"anthropic-ratelimit-" + name
    return [
        (prefix + b"-limit", str(limit).encode()),
        (prefix + b"-remaining", str(max(0, remaining)).encode()),
        (prefix + b"-reset", rfc3339(math.ceil(reset_at))),
    ]
