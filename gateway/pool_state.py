"""Where pool state lives: cooldowns, reported headroom and session affinity.

In Redis when `REDIS_URL` is set, so every gateway process steers by what any of them
learned; in the process otherwise. A Redis outage falls back to the in-process store (with
a warning) and Redis is tried again a few seconds later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

import orjson
from django.conf import settings
from redis.exceptions import RedisError

from gateway.pool import KeyState
from gateway.redis_client import shared_async_client

logger = logging.getLogger(__name__)

STATE_TTL_S = 3600
AFFINITY_TTL_S = 3600
MAX_SESSIONS = 100_000
REDIS_RETRY_AFTER_S = 5.0
# Every Anthropic response reports a new headroom; other processes need it only to spread load,
# so a change of headroom alone goes to Redis at most this often per key and process.
HEADROOM_WRITE_INTERVAL_S = 1.0
# How long a process steers by pool state it read from Redis before reading it again: what
# another process learned (a cooldown, a session's key) reaches this one within that time,
# what this one learned at once. A read per request would be a round trip per request.
READ_TTL_S = 0.25
REDIS_FAILURES = (RedisError, OSError, TimeoutError)


class PoolState(Protocol):
    async def load(
        self, key_ids: Iterable[int], session_id: str
    ) -> tuple[dict[int, KeyState], int | None]: ...

    async def save(self, key_id: int, state: KeyState) -> None: ...

    async def set_affinity(self, session_id: str, key_id: int) -> None: ...


class LocalPoolState:
    def __init__(self) -> None:
        self.states: dict[int, KeyState] = {}
        self.affinity: OrderedDict[str, tuple[int, float]] = OrderedDict()

    async def load(
        self, key_ids: Iterable[int], session_id: str
    ) -> tuple[dict[int, KeyState], int | None]:
        states = {key_id: self.states[key_id] for key_id in key_ids if key_id in self.states}
        affinity = None
        if session_id and session_id in self.affinity:
            key_id, expires = self.affinity[session_id]
            if expires > time.monotonic():
                affinity = key_id
            else:
                del self.affinity[session_id]
        return states, affinity

    async def save(self, key_id: int, state: KeyState) -> None:
        self.states[key_id] = state

    async def set_affinity(self, session_id: str, key_id: int) -> None:
        if not session_id:
            return
        self.affinity[session_id] = (key_id, time.monotonic() + AFFINITY_TTL_S)
        self.affinity.move_to_end(session_id)
        while len(self.affinity) > MAX_SESSIONS:
            self.affinity.popitem(last=False)


def _state_key(key_id: int) -> str:
    return f"{settings.GATEHOUSE['REDIS_PREFIX']}:pool:key:{key_id}"


def _affinity_key(session_id: str) -> str:
    return f"{settings.GATEHOUSE['REDIS_PREFIX']}:pool:session:{session_id}"


class RedisPoolState:
    """Pool state shared by every process through Redis, with an in-process fallback.

    A process reads it at most every READ_TTL_S (and steers by its own updates meanwhile);
    it writes a change that decides which keys may be used at once, headroom alone at most
    every HEADROOM_WRITE_INTERVAL_S."""

    def __init__(self, url: str) -> None:
        self._client = shared_async_client(url)
        self.fallback = LocalPoolState()
        self._down_until = 0.0
        # per key: the state this process last wrote, and when (monotonic)
        self._written: dict[int, tuple[KeyState, float]] = {}
        # per key and per session: what this process last read or learned, and when (monotonic)
        self._states: dict[int, tuple[KeyState | None, float]] = {}
        self._affinity: dict[str, tuple[int | None, float]] = {}
        # reads from Redis in flight, by (key ids, session): joined, not repeated
        self._reading: dict[
            tuple[tuple[int, ...], str], asyncio.Future[tuple[dict[int, KeyState], int | None]]
        ] = {}

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, error: Exception) -> None:
        if self._available():
            logger.warning(
                "Redis unavailable for pool state (%s); using in-process state",
                type(error).__name__,
            )
        self._down_until = time.monotonic() + REDIS_RETRY_AFTER_S

    async def load(
        self, key_ids: Iterable[int], session_id: str
    ) -> tuple[dict[int, KeyState], int | None]:
        ids = list(key_ids)
        if not self._available():
            return await self.fallback.load(ids, session_id)
        now = time.monotonic()
        known = self._known(ids, session_id, now - READ_TTL_S)
        if known is not None:
            return known
        # When the read interval lapses, every request in flight finds the state stale at
        # once: one read answers them all instead of a round trip each.
        flight = (tuple(ids), session_id)
        reading = self._reading.get(flight)
        if reading is None or reading.get_loop() is not asyncio.get_running_loop():
            reading = asyncio.ensure_future(self._read(ids, session_id, now))
            self._reading[flight] = reading
            reading.add_done_callback(lambda _: self._reading.pop(flight, None))
        states, affinity = await asyncio.shield(reading)
        return dict(states), affinity

    async def _read(
        self, ids: list[int], session_id: str, now: float
    ) -> tuple[dict[int, KeyState], int | None]:
        names = [_state_key(key_id) for key_id in ids]
        if session_id:
            names.append(_affinity_key(session_id))
        try:
            values = await self._client.mget(names) if names else []
        except REDIS_FAILURES as error:
            self._failed(error)
            return await self.fallback.load(ids, session_id)
        states = {
            key_id: KeyState(**orjson.loads(raw))
            for key_id, raw in zip(ids, values, strict=False)
            if raw is not None
        }
        affinity = int(values[-1]) if session_id and values and values[-1] is not None else None
        for key_id in ids:
            self._states[key_id] = (states.get(key_id), now)
        if session_id:
            self._remember_affinity(session_id, affinity, now)
        return states, affinity

    def _known(
        self, ids: list[int], session_id: str, fresh_after: float
    ) -> tuple[dict[int, KeyState], int | None] | None:
        """The pool state as this process read or learned it since `fresh_after`; None when
        any of it is older (or was never read)."""
        states: dict[int, KeyState] = {}
        for key_id in ids:
            entry = self._states.get(key_id)
            if entry is None or entry[1] <= fresh_after:
                return None
            if entry[0] is not None:
                states[key_id] = entry[0]
        if not session_id:
            return states, None
        affinity = self._affinity.get(session_id)
        if affinity is None or affinity[1] <= fresh_after:
            return None
        return states, affinity[0]

    def _learned_state(self, key_id: int, state: KeyState) -> None:
        """What this process learned replaces what it read, but does not make it younger:
        the next read from Redis comes as soon as it would have, so a busy process still
        sees what the others learned within READ_TTL_S."""
        read = self._states.get(key_id)
        if read is not None:
            self._states[key_id] = (state, read[1])

    def _remember_affinity(self, session_id: str, key_id: int | None, now: float) -> None:
        if len(self._affinity) >= MAX_SESSIONS:
            self._affinity.clear()  # entries live a fraction of a second: none is worth keeping
        self._affinity[session_id] = (key_id, now)

    async def save(self, key_id: int, state: KeyState) -> None:
        """Written to Redis at once when it changes which keys may be used; when only the
        reported headroom moved, at most every HEADROOM_WRITE_INTERVAL_S (a round trip per
        request otherwise, for a number that only spreads the load)."""
        await self.fallback.save(key_id, state)
        if not self._available():
            return
        self._learned_state(key_id, state)
        now = time.monotonic()
        written = self._written.get(key_id)
        if (
            written is not None
            and now - written[1] < HEADROOM_WRITE_INTERVAL_S
            and only_headroom_moved(written[0], state, time.time())
        ):
            return
        ttl = max(STATE_TTL_S, int(state.cooldown_until - time.time()) + 1)
        # Counted as written from the moment it is sent: the requests that end while the
        # write is on its way would otherwise each send their own headroom too.
        self._written[key_id] = (state, now)
        try:
            await self._client.set(
                _state_key(key_id), orjson.dumps(dataclasses.asdict(state)), ex=ttl
            )
        except REDIS_FAILURES as error:
            self._written.pop(key_id, None)
            self._failed(error)

    async def set_affinity(self, session_id: str, key_id: int) -> None:
        await self.fallback.set_affinity(session_id, key_id)
        if not session_id or not self._available():
            return
        read = self._affinity.get(session_id)
        if read is not None:
            self._affinity[session_id] = (key_id, read[1])
        try:
            await self._client.set(_affinity_key(session_id), str(key_id), ex=AFFINITY_TTL_S)
        except REDIS_FAILURES as error:
            self._failed(error)


def only_headroom_moved(before: KeyState, after: KeyState, now: float) -> bool:
    """True when `after` differs from `before` only in numbers that rank usable keys: the
    same cooldown and health, and the key usable now under both."""
    return (
        after.cooldown_until == before.cooldown_until
        and after.unhealthy_reason == before.unhealthy_reason
        and not before.blocked_until(now)
        and not after.blocked_until(now)
    )


def pool_state_for_settings() -> PoolState:
    return RedisPoolState(settings.REDIS_URL) if settings.REDIS_URL else LocalPoolState()
