"""The ledgers: atomic reservations, rebuilds, settlement, limits, leases, Redis outages.

Every behaviour runs on the in-process ledger, and on Redis too when REDIS_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis

from gateway.admission import redis_ledger as redis_ledger_module
from gateway.admission.budgets import KEY, MONTH, BudgetScope, period_of, units_ceiling
from gateway.admission.ledger import (
    BUDGET,
    LOCAL,
    REDIS,
    BudgetClaim,
    CounterState,
    LocalLedger,
    Refusal,
    Reservation,
)
from gateway.admission.limits import CONCURRENCY, RPM, TPM, RateClaim
from gateway.admission.redis_ledger import RedisLedger
from gateway.redis_client import MAX_CONNECTIONS
from tests.live_servers import free_port
from tests.private_redis import PrivateRedis

# The machine always runs Redis (CI starts it); the default-database run uses db 12.
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12"
LEDGER_KINDS = [
    "local",
    pytest.param("redis"),
]
NOW = datetime.now(UTC)
NO_LIMITS = RateClaim(key_id=1, rpm=None, tpm=None, tokens=0, max_concurrent=None)
TEN_CENTS = units_ceiling(Decimal("0.10"))


def usd_units(amount: str) -> int:
    return units_ceiling(Decimal(amount))


def key_scope(limit: str | None = "1.00", key_id: int = 1) -> BudgetScope:
    return BudgetScope(
        KEY,
        key_id,
        f"key {key_id}",
        period_of(MONTH, NOW),
        None if limit is None else Decimal(limit),
    )


class FakeRebuild:
    """The database's answer for each counter, slow enough for coroutines to interleave."""

    def __init__(self, spent: dict[str, int] | None = None) -> None:
        self.spent = spent or {}
        self.calls: list[str] = []

    async def __call__(self, scope: BudgetScope) -> int:
        self.calls.append(scope.counter_id)
        await asyncio.sleep(0.01)
        return self.spent.get(scope.counter_id, 0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of the test's own on the REDIS_URL server, removed afterwards."""
    prefix = f"test-admission-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for name in client.scan_iter(match=f"{prefix}:*"):
        client.delete(name)
    client.close()


@pytest.fixture(params=LEDGER_KINDS)
def make_ledger(request) -> Iterator:
    """Builds ledgers of one kind; Redis ones get a prefix of their own, removed afterwards."""
    prefixes: list[str] = []

    def make(rebuild: FakeRebuild, **options):
        if request.param == "local":
            return LocalLedger(rebuild, **options)
        prefix = f"test-admission-{uuid.uuid4().hex}"
        prefixes.append(prefix)
        return RedisLedger(REDIS_URL, prefix=prefix, rebuild=rebuild, **options)

    yield make
    if prefixes:
        client = redis.Redis.from_url(REDIS_URL)
        for prefix in prefixes:
            for name in client.scan_iter(match=f"{prefix}:*"):
                client.delete(name)
        client.close()


async def reserve(ledger, request_id: str, scopes, amount: int, rate: RateClaim = NO_LIMITS):
    return await ledger.reserve(request_id, [BudgetClaim(s, amount) for s in scopes], rate)


async def test_concurrent_reservations_never_overbook_a_budget(make_ledger):
    scope = key_scope("1.00")
    rebuild = FakeRebuild({scope.counter_id: usd_units("0.30")})
    ledger = make_ledger(rebuild)

    outcomes = await asyncio.gather(
        *(reserve(ledger, f"req-{n}", [scope], TEN_CENTS) for n in range(100))
    )

    admitted = [o for o in outcomes if isinstance(o, Reservation)]
    refused = [o for o in outcomes if isinstance(o, Refusal)]
    assert (len(admitted), len(refused)) == (7, 93)
    assert {r.kind for r in refused} == {BUDGET}
    assert rebuild.calls == [scope.counter_id]
    assert ledger.read(scope) == CounterState(spent=usd_units("0.30"), reserved=usd_units("0.70"))


async def test_settling_replaces_each_reservation_with_the_true_cost(make_ledger):
    scope = key_scope("1.00")
    ledger = make_ledger(FakeRebuild())
    cheap = await reserve(ledger, "cheap", [scope], TEN_CENTS)
    dear = await reserve(ledger, "dear", [scope], TEN_CENTS)

    assert await ledger.settle(cheap, cost=usd_units("0.04"), tokens=0) == (usd_units("0.04"),)
    assert await ledger.settle(dear, cost=usd_units("0.25"), tokens=0) == (usd_units("0.29"),)

    assert ledger.read(scope) == CounterState(spent=usd_units("0.29"), reserved=0)


async def test_concurrent_settlements_add_up_exactly(make_ledger):
    scope = key_scope(None)
    ledger = make_ledger(FakeRebuild())
    reservations = [await reserve(ledger, f"r{n}", [scope], TEN_CENTS) for n in range(40)]

    await asyncio.gather(*(ledger.settle(r, cost=123_456_789, tokens=0) for r in reservations))

    assert ledger.read(scope) == CounterState(spent=40 * 123_456_789, reserved=0)


async def test_a_counter_is_rebuilt_once_and_then_trusted_over_the_database(make_ledger):
    scope = key_scope("1.00")
    rebuild = FakeRebuild({scope.counter_id: usd_units("0.50")})
    ledger = make_ledger(rebuild)
    first = await reserve(ledger, "first", [scope], TEN_CENTS)
    await ledger.settle(first, cost=usd_units("0.10"), tokens=0)
    # The row is still in the recorder's queue: the database would say 0.50, not 0.60.

    await reserve(ledger, "second", [scope], TEN_CENTS)

    assert rebuild.calls == [scope.counter_id]
    assert ledger.read(scope) == CounterState(spent=usd_units("0.60"), reserved=TEN_CENTS)


async def test_a_refusal_takes_nothing_from_any_budget_or_limit(make_ledger):
    roomy, tight = key_scope("10.00", key_id=1), key_scope("0.05", key_id=2)
    ledger = make_ledger(FakeRebuild())
    rate = RateClaim(key_id=1, rpm=1, tpm=None, tokens=0, max_concurrent=1)

    refused = await reserve(ledger, "too-dear", [roomy, tight], TEN_CENTS, rate)
    admitted = await reserve(ledger, "fits", [roomy, tight], usd_units("0.05"), rate)

    assert (refused.kind, refused.scope) == (BUDGET, tight)
    assert isinstance(admitted, Reservation)
    assert ledger.read(roomy) == CounterState(spent=0, reserved=usd_units("0.05"))


async def test_the_refusal_reports_the_budget_state_it_saw(make_ledger):
    scope = key_scope("0.25")
    ledger = make_ledger(FakeRebuild({scope.counter_id: usd_units("0.10")}))
    await reserve(ledger, "holder", [scope], TEN_CENTS)

    refused = await reserve(ledger, "late", [scope], TEN_CENTS)

    assert refused == Refusal(
        BUDGET,
        scope=scope,
        spent=usd_units("0.10"),
        reserved=TEN_CENTS,
        amount=TEN_CENTS,
    )


async def test_rpm_refuses_the_request_over_the_limit_with_retry_after(make_ledger):
    ledger = make_ledger(FakeRebuild())
    rate = RateClaim(key_id=7, rpm=2, tpm=None, tokens=0, max_concurrent=None)

    outcomes = [await reserve(ledger, f"r{n}", [], 0, rate) for n in range(3)]

    assert [type(o) for o in outcomes] == [Reservation, Reservation, Refusal]
    assert outcomes[2].kind == RPM
    assert outcomes[2].retry_after_s in (29, 30)  # a minute's worth of one request, less elapsed


async def test_max_concurrent_counts_requests_in_flight_until_they_settle(make_ledger):
    ledger = make_ledger(FakeRebuild())
    rate = RateClaim(key_id=8, rpm=None, tpm=None, tokens=0, max_concurrent=2)
    first = await reserve(ledger, "a", [], 0, rate)
    await reserve(ledger, "b", [], 0, rate)

    refused = await reserve(ledger, "c", [], 0, rate)
    await ledger.settle(first, cost=0, tokens=0)
    admitted = await reserve(ledger, "d", [], 0, rate)

    assert (refused.kind, refused.retry_after_s) == (CONCURRENCY, 1)
    assert isinstance(admitted, Reservation)


async def test_tpm_reserves_the_estimate_and_settles_to_the_real_count(make_ledger):
    ledger = make_ledger(FakeRebuild())
    rate = RateClaim(key_id=9, rpm=None, tpm=60_000, tokens=40_000, max_concurrent=None)
    first = await reserve(ledger, "a", [], 0, rate)

    refused = await reserve(ledger, "b", [], 0, rate)
    await ledger.settle(first, cost=0, tokens=1_000)
    admitted = await reserve(ledger, "c", [], 0, rate)

    # 20,000 left of 60,000, 40,000 needed: 20,000 at 1,000 per second.
    assert (refused.kind, refused.retry_after_s) == (TPM, 20)
    assert isinstance(admitted, Reservation)


async def test_limits_of_one_key_leave_other_keys_alone(make_ledger):
    ledger = make_ledger(FakeRebuild())

    first = await reserve(
        ledger, "a", [], 0, RateClaim(10, rpm=1, tpm=None, tokens=0, max_concurrent=1)
    )
    other = await reserve(
        ledger, "b", [], 0, RateClaim(11, rpm=1, tpm=None, tokens=0, max_concurrent=1)
    )

    assert isinstance(first, Reservation)
    assert isinstance(other, Reservation)


async def test_more_reservations_at_once_than_redis_connections_are_all_made_in_redis(
    redis_prefix, caplog
):
    scope = key_scope(None)
    ledger = RedisLedger(REDIS_URL, prefix=redis_prefix, rebuild=FakeRebuild())

    outcomes = await asyncio.gather(
        *(reserve(ledger, f"req-{n}", [scope], TEN_CENTS) for n in range(5 * MAX_CONNECTIONS))
    )

    assert {o.backend for o in outcomes} == {REDIS}
    assert "Redis unavailable" not in caplog.text


async def test_two_processes_rebuild_a_counter_once_and_share_it(redis_prefix):
    scope = key_scope("1.00")
    rebuilds = [FakeRebuild({scope.counter_id: usd_units("0.30")}) for _ in range(2)]
    process_a, process_b = (
        RedisLedger(REDIS_URL, prefix=redis_prefix, rebuild=rebuild) for rebuild in rebuilds
    )

    outcomes = await asyncio.gather(
        *(
            reserve(ledger, f"{name}-{n}", [scope], TEN_CENTS)
            for n in range(30)
            for name, ledger in (("a", process_a), ("b", process_b))
        )
    )

    assert sum(isinstance(o, Reservation) for o in outcomes) == 7
    assert process_b.read(scope) == CounterState(
        spent=usd_units("0.30"), reserved=usd_units("0.70")
    )


async def test_holds_of_a_process_that_died_expire_with_their_lease():
    clock = FakeClock()
    ledger = LocalLedger(FakeRebuild(), clock=clock, lease_s=600)
    scope = key_scope("0.10")
    rate = RateClaim(key_id=3, rpm=None, tpm=None, tokens=0, max_concurrent=1)
    await reserve(ledger, "never-settled", [scope], TEN_CENTS, rate)
    refused = await reserve(ledger, "blocked", [scope], TEN_CENTS, rate)

    clock.now += 600
    admitted = await reserve(ledger, "after-lease", [scope], TEN_CENTS, rate)

    assert refused.kind == BUDGET
    assert isinstance(admitted, Reservation)
    assert ledger.read(scope) == CounterState(spent=0, reserved=TEN_CENTS)


async def test_each_hold_expires_at_its_own_lease_end_whichever_was_settled_first():
    clock = FakeClock()
    ledger = LocalLedger(FakeRebuild(), clock=clock, lease_s=600)
    scope = key_scope("1.00")
    first = await reserve(ledger, "first", [scope], TEN_CENTS)
    clock.now += 100
    await reserve(ledger, "second", [scope], TEN_CENTS)
    clock.now += 100
    await reserve(ledger, "third", [scope], TEN_CENTS)
    await ledger.settle(first, cost=0, tokens=0)

    clock.now += 450  # past the first lease (settled anyway), before the second ends
    held_before = ledger.read(scope)
    clock.now += 100  # past the second lease
    held_between = ledger.read(scope)
    clock.now += 100  # past the third
    held_after = ledger.read(scope)

    assert held_before == CounterState(spent=0, reserved=2 * TEN_CENTS)
    assert held_between == CounterState(spent=0, reserved=TEN_CENTS)
    assert held_after == CounterState(spent=0, reserved=0)


async def test_redis_holds_of_a_process_that_died_expire_with_their_lease(redis_prefix):
    ledger = RedisLedger(REDIS_URL, prefix=redis_prefix, rebuild=FakeRebuild(), lease_s=0.2)
    scope = key_scope("0.10")
    rate = RateClaim(key_id=3, rpm=None, tpm=None, tokens=0, max_concurrent=1)
    await reserve(ledger, "never-settled", [scope], TEN_CENTS, rate)
    refused = await reserve(ledger, "blocked", [scope], TEN_CENTS, rate)

    await asyncio.sleep(0.3)
    admitted = await reserve(ledger, "after-lease", [scope], TEN_CENTS, rate)

    assert refused.kind == BUDGET
    assert isinstance(admitted, Reservation)
    assert ledger.read(scope) == CounterState(spent=0, reserved=TEN_CENTS)


async def test_the_local_ledger_limits_refill_with_time():
    clock = FakeClock()
    ledger = LocalLedger(FakeRebuild(), clock=clock)
    rate = RateClaim(key_id=4, rpm=2, tpm=None, tokens=0, max_concurrent=None)
    for n in range(2):
        await reserve(ledger, f"r{n}", [], 0, rate)
    refused = await reserve(ledger, "r2", [], 0, rate)

    clock.now += 29
    still_refused = await reserve(ledger, "r3", [], 0, rate)
    clock.now += 1
    admitted = await reserve(ledger, "r4", [], 0, rate)

    assert (refused.retry_after_s, still_refused.retry_after_s) == (30, 1)
    assert isinstance(admitted, Reservation)


async def test_an_unreachable_redis_falls_back_to_the_process_with_a_warning(caplog):
    ledger = RedisLedger(
        f"redis://127.0.0.1:{free_port()}/0", prefix="unreachable", rebuild=FakeRebuild()
    )
    scope = key_scope("0.15")
    with caplog.at_level(logging.WARNING, logger="gateway.admission.ledger"):
        first = await reserve(ledger, "a", [scope], TEN_CENTS)
        second = await reserve(ledger, "b", [scope], TEN_CENTS)

    assert first.backend == LOCAL
    assert second.kind == BUDGET
    assert await ledger.settle(first, cost=usd_units("0.01"), tokens=0) == (usd_units("0.01"),)
    assert ledger.read(scope) == CounterState(spent=usd_units("0.01"), reserved=0)
    assert caplog.text.count("Redis unavailable for admission") == 1


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    assert shutil.which("redis-server"), (
        "redis-server is needed (installed on this machine and by CI)"
    )
    server = PrivateRedis(tmp_path, keeps_data=True)
    server.start()
    yield server
    server.stop()


async def test_after_an_outage_the_spend_settled_in_the_process_reaches_redis(
    private_redis, monkeypatch, caplog
):
    monkeypatch.setattr(redis_ledger_module, "REDIS_RETRY_AFTER_S", 0.0)
    scope = key_scope("1.00")
    database = FakeRebuild()
    ledger = RedisLedger(private_redis.url, prefix="outage", rebuild=database)
    before = await reserve(ledger, "before", [scope], TEN_CENTS)
    await ledger.settle(before, cost=usd_units("0.04"), tokens=0)
    database.spent[scope.counter_id] = usd_units("0.04")  # the recorder wrote its row

    private_redis.stop()
    during = await reserve(ledger, "during", [scope], TEN_CENTS)
    await ledger.settle(during, cost=usd_units("0.03"), tokens=0)
    private_redis.start()
    after = await reserve(ledger, "after", [scope], TEN_CENTS)

    assert (before.backend, during.backend, after.backend) == (REDIS, LOCAL, REDIS)
    assert ledger.read(scope) == CounterState(spent=usd_units("0.07"), reserved=TEN_CENTS)
    assert "Redis unavailable for admission" in caplog.text
