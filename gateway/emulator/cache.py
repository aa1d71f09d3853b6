"""The simulated prompt cache: one store of prefix hashes per workspace (API key).

Accounting follows the documented rules: writes happen only at breakpoints; from each
breakpoint the lookup walks back up to 20 blocks for an entry an earlier request wrote;
the longest live hit is read; the tokens between the hit and each later breakpoint are
written with that breakpoint's TTL; tokens after the last breakpoint are plain input.
Prefixes shorter than the minimum cacheable length are neither read nor written. Hits
refresh the entry's TTL. Time comes from the caller, so tests drive it with a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.emulator.prefix import Prefix

LOOKBACK_BLOCKS = 20
SWEEP_THRESHOLD = 100_000


@dataclass(slots=True)
class CacheEntry:
    expires_at: float
    ttl_seconds: float


@dataclass(frozen=True, slots=True)
class CacheUsage:
    input_tokens: int
    cache_read_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0

    @property
    def cache_creation_input_tokens(self) -> int:
        return self.ephemeral_5m_input_tokens + self.ephemeral_1h_input_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """What counts towards input-tokens-per-minute: everything but cache reads."""
        return self.input_tokens + self.cache_creation_input_tokens


class PromptCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, bytes], CacheEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def account(
        self, *, scope: str, prefix: Prefix, now: float, min_cacheable_tokens: int
    ) -> CacheUsage:
        """Read and write the cache for one request and return its usage split."""
        cumulative = prefix.cumulative_tokens
        qualifying = [
            point for point in prefix.breakpoints if cumulative[point.index] >= min_cacheable_tokens
        ]
        if not qualifying:
            return CacheUsage(input_tokens=prefix.total_tokens)
        if len(self._entries) > SWEEP_THRESHOLD:
            self._sweep(now)

        hit_index = -1
        for point in qualifying:
            lowest = max(point.index - LOOKBACK_BLOCKS + 1, 0)
            for index in range(point.index, lowest - 1, -1):
                entry = self._live_entry(scope, prefix.hashes[index], now)
                if entry is not None:
                    entry.expires_at = now + entry.ttl_seconds
                    hit_index = max(hit_index, index)
                    break

        read_tokens = cumulative[hit_index] if hit_index >= 0 else 0
        written = {"5m": 0, "1h": 0}
        covered = read_tokens
        for point in qualifying:
            end = cumulative[point.index]
            if end > covered:
                written[point.ttl] += end - covered
                covered = end
            self._store(scope, prefix.hashes[point.index], point.ttl_seconds, now)
        return CacheUsage(
            input_tokens=prefix.total_tokens - covered,
            cache_read_input_tokens=read_tokens,
            ephemeral_5m_input_tokens=written["5m"],
            ephemeral_1h_input_tokens=written["1h"],
        )

    def _live_entry(self, scope: str, prefix_hash: bytes, now: float) -> CacheEntry | None:
        entry = self._entries.get((scope, prefix_hash))
        if entry is None or entry.expires_at <= now:
            return None
        return entry

    def _store(self, scope: str, prefix_hash: bytes, ttl_seconds: float, now: float) -> None:
        entry = self._entries.get((scope, prefix_hash))
        if entry is None or entry.expires_at <= now:
            self._entries[(scope, prefix_hash)] = CacheEntry(now + ttl_seconds, ttl_seconds)
        else:
            entry.ttl_seconds = max(entry.ttl_seconds, ttl_seconds)
            entry.expires_at = max(entry.expires_at, now + ttl_seconds)

    def _sweep(self, now: float) -> None:
        expired = [key for key, entry in self._entries.items() if entry.expires_at <= now]
        for key in expired:
            del self._entries[key]
