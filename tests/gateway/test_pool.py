"""Key selection, cooldowns and headroom (pure), and the shared pool state stores."""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter

import pytest
import redis

from gateway import pool_state
from gateway.pool import KeyState, cooldown_seconds, key_order, observed_state
from gateway.pool_state import LocalPoolState, RedisPoolState, only_headroom_moved
from gateway.redis_client import MAX_CONNECTIONS
from gateway.secrets import Secret
from gateway.snapshot import UpstreamKeySpec

NOW = 1_800_000_000.0


def spec(key_id: int, weight: int = 1) -> UpstreamKeySpec:
    return UpstreamKeySpec(
        upstream_key_id=key_id,
        provider_id=1,
        label=f"k{key_id}",
        secret=Secret(f"s{key_id}"),
        weight=weight,
    )


KEYS = (spec(1), spec(2), spec(3))


def test_every_usable_key_is_offered_once():
    order = key_order(KEYS, {}, None, NOW, random.Random(1))
    assert sorted(k.upstream_key_id for k in order.keys) == [1, 2, 3]
    assert order.soonest_free_at is None


def test_the_sessions_key_comes_first_while_it_has_headroom():
    for seed in range(20):
        assert key_order(KEYS, {}, 2, NOW, random.Random(seed)).keys[0].upstream_key_id == 2


def test_keys_in_cooldown_are_skipped_and_the_soonest_free_time_is_reported():
    states = {1: KeyState(cooldown_until=NOW + 30), 2: KeyState(cooldown_until=NOW + 10)}
    order = key_order(KEYS, states, 1, NOW, random.Random(1))
    assert [k.upstream_key_id for k in order.keys] == [3]
    assert order.soonest_free_at == NOW + 10


def test_a_key_reporting_no_requests_left_rests_until_its_reset():
    states = {3: KeyState(requests_remaining=0, requests_limit=50, reset_at=NOW + 42)}
    order = key_order(KEYS, states, None, NOW, random.Random(1))
    assert 3 not in [k.upstream_key_id for k in order.keys]
    assert order.soonest_free_at == NOW + 42
    assert key_order(KEYS, states, None, NOW + 43, random.Random(1)).soonest_free_at is None


def test_unhealthy_keys_are_never_offered():
    order = key_order(
        KEYS, {2: KeyState(unhealthy_reason="upstream 401")}, 2, NOW, random.Random(1)
    )
    assert [k.upstream_key_id for k in order.keys if k.upstream_key_id == 2] == []


def test_load_spreads_by_weight_and_reported_headroom():
    rng = random.Random(7)
    keys = (spec(1, weight=3), spec(2, weight=1), spec(3, weight=1))
    states = {3: KeyState(requests_remaining=5, requests_limit=100)}
    firsts = Counter(
        key_order(keys, states, None, NOW, rng).keys[0].upstream_key_id for _ in range(4000)
    )
    assert firsts[1] > firsts[2] * 2
    assert firsts[2] > firsts[3] * 5


def test_cooldown_comes_from_retry_after_then_retry_after_ms_then_reset_then_a_default():
    assert cooldown_seconds({"retry-after": "7"}, NOW) == 7.0
    assert cooldown_seconds({"retry-after-ms": "1500", "retry-after": "7"}, NOW) == 1.5
    reset = "2027-01-15T08:00:20Z"
    from datetime import datetime

    now = datetime.fromisoformat("2027-01-15T08:00:00+00:00").timestamp()
    assert cooldown_seconds({"anthropic-ratelimit-requests-reset": reset}, now) == 20.0
    assert cooldown_seconds({}, NOW) == 5.0
    assert cooldown_seconds({"retry-after": "999999"}, NOW) == 3600.0


def test_headroom_is_read_from_rate_limit_headers():
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "10",
        "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:20Z",
        "anthropic-ratelimit-tokens-limit": "1000",
        "anthropic-ratelimit-tokens-remaining": "900",
    }
    state = observed_state(headers, KeyState(cooldown_until=5.0))
    assert (state.requests_remaining, state.requests_limit, state.tokens_remaining) == (10, 50, 900)
    assert state.cooldown_until == 5.0
    assert state.headroom() == pytest.approx(0.2)
    assert observed_state({}, state) is state


async def test_local_pool_state_keeps_states_and_session_affinity():
    store = LocalPoolState()
    await store.save(1, KeyState(cooldown_until=NOW))
    await store.set_affinity("session-a", 1)

    states, affinity = await store.load([1, 2], "session-a")

    assert states == {1: KeyState(cooldown_until=NOW)}
    assert affinity == 1
    assert (await store.load([1], "session-b"))[1] is None


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/14"


class CountingCalls:
    """A Redis command of a real client, counted."""

    def __init__(self, command):
        self.command = command
        self.calls = 0

    async def __call__(self, *args, **kwargs):
        self.calls += 1
        return await self.command(*args, **kwargs)


async def test_redis_pool_state_is_shared_between_processes():
    writer, reader = RedisPoolState(redis_url()), RedisPoolState(redis_url())
    session = f"session-{random.random()}"
    key_id = random.randint(10_000, 10_000_000)
    await writer.save(
        key_id, KeyState(cooldown_until=NOW + 60, requests_remaining=3, requests_limit=10)
    )
    await writer.set_affinity(session, key_id)

    states, affinity = await reader.load([key_id], session)

    assert states[key_id] == KeyState(
        cooldown_until=NOW + 60, requests_remaining=3, requests_limit=10
    )
    assert affinity == key_id


def headroom(requests_remaining: int, *, reset_at: float | None = None) -> KeyState:
    return KeyState(requests_remaining=requests_remaining, requests_limit=100, reset_at=reset_at)


async def shared_state(key_id: int) -> KeyState | None:
    states, _ = await RedisPoolState(redis_url()).load([key_id], "")
    return states.get(key_id)


async def test_headroom_alone_reaches_redis_at_most_once_an_interval_per_key():
    writer = RedisPoolState(redis_url())
    key_id = random.randint(10_000, 10_000_000)

    await writer.save(key_id, headroom(90))
    await writer.save(key_id, headroom(89))
    await writer.save(key_id, headroom(88))

    assert await shared_state(key_id) == headroom(90)
    # this process steers by what it saw last, whether or not it was written
    assert writer.fallback.states[key_id] == headroom(88)


async def test_headroom_of_requests_ending_together_reaches_redis_once(monkeypatch):
    writer = RedisPoolState(redis_url())
    key_id = random.randint(10_000, 10_000_000)
    writes = CountingCalls(writer._client.set)
    monkeypatch.setattr(writer._client, "set", writes)

    await asyncio.gather(*(writer.save(key_id, headroom(90 - n)) for n in range(32)))

    assert writes.calls == 1
    assert await shared_state(key_id) == headroom(90)
    assert writer.fallback.states[key_id] == headroom(90 - 31)


async def test_a_headroom_write_that_failed_is_not_counted_as_written(monkeypatch):
    writer = RedisPoolState(redis_url())
    key_id = random.randint(10_000, 10_000_000)
    real_set = writer._client.set

    async def failing_set(*args, **kwargs):
        raise redis.ConnectionError("connection reset")

    monkeypatch.setattr(writer._client, "set", failing_set)
    await writer.save(key_id, headroom(90))
    monkeypatch.setattr(writer._client, "set", real_set)
    writer._down_until = 0.0  # Redis is back

    await writer.save(key_id, headroom(89))

    assert await shared_state(key_id) == headroom(89)


async def test_headroom_reaches_redis_once_the_interval_has_passed(monkeypatch):
    writer = RedisPoolState(redis_url())
    key_id = random.randint(10_000, 10_000_000)
    await writer.save(key_id, headroom(90))
    monkeypatch.setattr(pool_state, "HEADROOM_WRITE_INTERVAL_S", 0.0)

    await writer.save(key_id, headroom(89))

    assert await shared_state(key_id) == headroom(89)


async def test_a_cooldown_an_exhausted_key_and_an_unhealthy_key_reach_redis_at_once():
    writer = RedisPoolState(redis_url())
    key_id = random.randint(10_000, 10_000_000)
    await writer.save(key_id, headroom(90))

    exhausted = headroom(0, reset_at=NOW + 30)
    await writer.save(key_id, exhausted)
    assert await shared_state(key_id) == exhausted

    recovered = headroom(100)
    await writer.save(key_id, recovered)
    assert await shared_state(key_id) == recovered

    cooling = KeyState(cooldown_until=NOW + 60, requests_remaining=99, requests_limit=100)
    await writer.save(key_id, cooling)
    assert await shared_state(key_id) == cooling

    unhealthy = KeyState(unhealthy_reason="upstream 401")
    await writer.save(key_id, unhealthy)
    assert await shared_state(key_id) == unhealthy


async def test_what_another_process_learned_is_read_from_redis_once_the_read_interval_passed(
    monkeypatch,
):
    writer, reader = RedisPoolState(redis_url()), RedisPoolState(redis_url())
    key_id = random.randint(10_000, 10_000_000)
    session = f"session-{random.random()}"
    assert await reader.load([key_id], session) == ({}, None)

    cooling = KeyState(cooldown_until=NOW + 60)
    await writer.save(key_id, cooling)
    await writer.set_affinity(session, key_id)

    # within the interval the reader steers by what it read: no round trip per request
    assert await reader.load([key_id], session) == ({}, None)
    monkeypatch.setattr(pool_state, "READ_TTL_S", 0.0)
    assert await reader.load([key_id], session) == ({key_id: cooling}, key_id)


async def test_what_a_process_learned_itself_steers_it_at_once():
    store = RedisPoolState(redis_url())
    key_id, other_id = random.sample(range(10_000, 10_000_000), 2)
    session = f"session-{random.random()}"
    assert await store.load([key_id, other_id], session) == ({}, None)

    await store.save(key_id, KeyState(cooldown_until=NOW + 60))
    await store.set_affinity(session, other_id)

    assert await store.load([key_id, other_id], session) == (
        {key_id: KeyState(cooldown_until=NOW + 60)},
        other_id,
    )


async def test_a_process_busy_with_a_key_still_reads_what_others_learned(monkeypatch):
    monkeypatch.setattr(pool_state, "READ_TTL_S", 0.05)
    writer, reader = RedisPoolState(redis_url()), RedisPoolState(redis_url())
    key_id = random.randint(10_000, 10_000_000)
    await reader.load([key_id], "")
    await asyncio.sleep(0.06)

    # the reader keeps learning about the key (a response per request) …
    await reader.save(key_id, headroom(50))
    await writer.save(key_id, KeyState(cooldown_until=NOW + 60))

    # … which does not make what it read from Redis any younger
    states, _ = await reader.load([key_id], "")
    assert states[key_id].cooldown_until == NOW + 60


async def test_a_process_busy_with_a_session_still_reads_where_others_moved_it(monkeypatch):
    monkeypatch.setattr(pool_state, "READ_TTL_S", 0.05)
    writer, reader = RedisPoolState(redis_url()), RedisPoolState(redis_url())
    key_id, other_id = random.sample(range(10_000, 10_000_000), 2)
    session = f"session-{random.random()}"
    await reader.load([], session)
    await asyncio.sleep(0.06)

    await reader.set_affinity(session, key_id)
    await writer.set_affinity(session, other_id)

    assert await reader.load([], session) == ({}, other_id)


async def test_a_key_or_session_not_read_yet_is_read_from_redis():
    writer, reader = RedisPoolState(redis_url()), RedisPoolState(redis_url())
    key_id, new_id = random.sample(range(10_000, 10_000_000), 2)
    await reader.load([key_id], "")
    await writer.save(new_id, KeyState(cooldown_until=NOW + 60))
    session = f"session-{random.random()}"
    await writer.set_affinity(session, new_id)

    states, affinity = await reader.load([key_id, new_id], session)

    assert states == {new_id: KeyState(cooldown_until=NOW + 60)}
    assert affinity == new_id


def test_only_a_change_of_headroom_on_a_usable_key_may_wait():
    now = NOW
    assert only_headroom_moved(headroom(90), headroom(10), now)
    assert only_headroom_moved(headroom(90), KeyState(tokens_remaining=5, tokens_limit=9), now)
    assert not only_headroom_moved(headroom(90), headroom(0, reset_at=now + 5), now)
    assert not only_headroom_moved(headroom(0, reset_at=now + 5), headroom(90), now)
    assert not only_headroom_moved(headroom(90), KeyState(cooldown_until=now + 5), now)
    assert not only_headroom_moved(KeyState(), KeyState(unhealthy_reason="upstream 403"), now)


async def test_more_lookups_at_once_than_redis_connections_are_all_answered_by_redis(caplog):
    writer, reader = RedisPoolState(redis_url()), RedisPoolState(redis_url())
    key_id = random.randint(10_000, 10_000_000)
    await writer.save(key_id, KeyState(cooldown_until=NOW + 60))

    # a pool of two keys each: every lookup a read of its own
    answers = await asyncio.gather(
        *(reader.load([key_id, -n], "") for n in range(1, 5 * MAX_CONNECTIONS + 1))
    )

    # The reader's own process knows nothing: every state came from Redis.
    assert all(states == {key_id: KeyState(cooldown_until=NOW + 60)} for states, _ in answers)
    assert "Redis unavailable" not in caplog.text


async def test_lookups_in_flight_when_the_read_interval_lapses_share_one_read(monkeypatch):
    writer, reader = RedisPoolState(redis_url()), RedisPoolState(redis_url())
    key_id = random.randint(10_000, 10_000_000)
    session = f"session-{random.random()}"
    await writer.save(key_id, KeyState(cooldown_until=NOW + 60))
    await writer.set_affinity(session, key_id)
    reads = CountingCalls(reader._client.mget)
    monkeypatch.setattr(reader._client, "mget", reads)

    answers = await asyncio.gather(*(reader.load([key_id], session) for _ in range(32)))
    other_session = await reader.load([key_id], f"{session}-other")

    assert answers == [({key_id: KeyState(cooldown_until=NOW + 60)}, key_id)] * 32
    assert other_session == ({key_id: KeyState(cooldown_until=NOW + 60)}, None)
    assert reads.calls == 2  # one for the 32 lookups, one for the other session
    answers[0][0].clear()  # each caller has a dict of its own
    assert answers[1][0] == {key_id: KeyState(cooldown_until=NOW + 60)}


async def test_a_lookup_cancelled_while_it_shares_a_read_leaves_the_others_their_answer():
    writer, reader = RedisPoolState(redis_url()), RedisPoolState(redis_url())
    key_id = random.randint(10_000, 10_000_000)
    await writer.save(key_id, KeyState(cooldown_until=NOW + 60))

    first = asyncio.ensure_future(reader.load([key_id], ""))
    second = asyncio.ensure_future(reader.load([key_id], ""))
    await asyncio.sleep(0)
    first.cancel()

    assert await second == ({key_id: KeyState(cooldown_until=NOW + 60)}, None)
    assert first.cancelled()


async def test_redis_pool_state_falls_back_to_the_process_when_redis_is_unreachable(caplog):
    store = RedisPoolState("redis://127.0.0.1:1/0")
    await store.save(5, KeyState(cooldown_until=NOW))
    await store.set_affinity("s", 5)

    states, affinity = await store.load([5], "s")

    assert states == {5: KeyState(cooldown_until=NOW)}
    assert affinity == 5
    assert "Redis unavailable for pool state" in caplog.text
