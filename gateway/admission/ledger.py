"""Where reservations and counters live: in the process, or in Redis for every process.

Both ledgers admit a request in one atomic step — every budget, the in-flight cap and both
per-minute buckets are checked, then all of them are taken, or nothing is — and settle it
in another. `LocalLedger` does it in plain Python with no await inside the step (so
coroutines cannot interleave) under a thread lock (the admin reads it from other threads).
`RedisLedger` does it in a Lua script, so N gateway processes act as one; when Redis is
unreachable it falls back to a `LocalLedger` with a warning and tries Redis again later.

A budget counter that does not exist yet (first use in its period, or Redis lost it) is
rebuilt from the database — the sum of RequestLog.cost_usd in the period — and created only
if still absent (an atomic check-and-set), so two processes never count twice. From then
on the counter, not the database, is the truth: it includes settled requests whose rows
are still in the recorder's queue.

Holds (a request's reservation, its in-flight slot) carry a lease: a process that dies
mid-request leaves its holds behind, and the next admission on the same counter releases
those whose lease ran out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from django.conf import settings

from gateway.admission.budgets import BudgetScope, fits, settled, units_of_cost
from gateway.admission.limits import (
    CONCURRENCY,
    CONCURRENCY_RETRY_AFTER_S,
    RPM,
    TPM,
    RateClaim,
    bucket_level,
    shortfall,
)

logger = logging.getLogger(__name__)

BUDGET = "budget"
LOCAL = "local"
REDIS = "redis"
# Longer than any request should run; a hold older than this belongs to a dead process.
HOLD_LEASE_S = 3600.0
_IDLE_BUCKET_S = 3600.0
_MAX_LOCAL_BUCKETS = 100_000


@dataclass(frozen=True)
class BudgetClaim:
    scope: BudgetScope
    amount: int  # units held until the request settles


@dataclass(frozen=True)
class Reservation:
    """What the ledger holds for one admitted request, and where (LOCAL or REDIS)."""

    request_id: str
    budgets: tuple[BudgetClaim, ...]
    rate: RateClaim
    backend: str


@dataclass(frozen=True)
class Refusal:
    """Why a request was not admitted: a budget (with its state) or a rate limit."""

    kind: str  # BUDGET, RPM, TPM or CONCURRENCY
    scope: BudgetScope | None = None
    spent: int = 0
    reserved: int = 0
    amount: int = 0
    retry_after_s: int = 0


@dataclass(frozen=True)
class CounterState:
    spent: int
    reserved: int


Rebuild = Callable[[BudgetScope], Awaitable[int]]


class Ledger(Protocol):
    async def reserve(
        self, request_id: str, budgets: Sequence[BudgetClaim], rate: RateClaim
    ) -> Reservation | Refusal: ...

    async def settle(
        self, reservation: Reservation, *, cost: int, tokens: int
    ) -> tuple[int | None, ...]:
        """Settle at `cost` units and `tokens` used; each counter's spend after (None: gone)."""
        ...

    def settle_in_process(
        self, reservation: Reservation, *, cost: int, tokens: int
    ) -> tuple[int | None, ...] | None:
        """`settle` done at once when the reservation is held in this process; None (and
        nothing done) when it is held in a shared store, which `settle` must be awaited for."""
        ...

    def read(self, scope: BudgetScope) -> CounterState | None: ...


class SingleFlight:
    """One rebuild per counter at a time; everyone who needs it awaits the same result."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[Any]] = {}

    async def run(self, name: str, factory: Callable[[], Awaitable[Any]]) -> Any:
        future = self._running.get(name)
        if future is None:
            future = asyncio.ensure_future(factory())
            self._running[name] = future

            def forget(done: asyncio.Future[Any], name: str = name) -> None:
                if self._running.get(name) is done:
                    del self._running[name]

            future.add_done_callback(forget)
        return await asyncio.shield(future)


# -- in the process ------------------------------------------------------------------------
@dataclass
class _Counter:
    spent: int
    expires_at: datetime
    reserved: int = 0
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)  # id → (units, lease end)
    # No hold's lease ends before this: until then no request need look through `holds`,
    # which has as many entries as requests in flight.
    first_lease_end: float = math.inf


@dataclass(frozen=True)
class _Missing:
    scopes: tuple[BudgetScope, ...]


class LocalLedger:
    """Counters in this process: exact for one process, the embedded default."""

    def __init__(
        self,
        rebuild: Rebuild,
        *,
        clock: Callable[[], float] = time.monotonic,
        lease_s: float = HOLD_LEASE_S,
    ) -> None:
        self._rebuild = rebuild
        self._clock = clock
        self._lease_s = lease_s
        self._lock = threading.Lock()
        self._counters: dict[str, _Counter] = {}
        self._buckets: dict[tuple[str, int], tuple[float, float]] = {}  # → (level, at)
        self._in_flight: dict[int, dict[str, float]] = {}  # key id → {request id: lease end}
        self._rebuilds = SingleFlight()

    async def reserve(
        self, request_id: str, budgets: Sequence[BudgetClaim], rate: RateClaim
    ) -> Reservation | Refusal:
        while True:
            with self._lock:
                outcome = self._try_reserve(request_id, budgets, rate)
            if not isinstance(outcome, _Missing):
                return outcome
            for scope in outcome.scopes:
                await self._rebuilds.run(scope.counter_id, partial(self._create, scope))

    async def _create(self, scope: BudgetScope) -> None:
        spent = await self._rebuild(scope)
        with self._lock:
            if scope.counter_id not in self._counters:
                self._forget_past_periods()
                self._counters[scope.counter_id] = _Counter(
                    spent=spent, expires_at=scope.period.counter_expires_at
                )

    def _try_reserve(
        self, request_id: str, budgets: Sequence[BudgetClaim], rate: RateClaim
    ) -> Reservation | Refusal | _Missing:
        missing = tuple(c.scope for c in budgets if c.scope.counter_id not in self._counters)
        if missing:
            return _Missing(missing)
        now = self._clock()
        counters = [self._counters[claim.scope.counter_id] for claim in budgets]
        for counter in counters:
            self._release_expired_holds(counter, now)
        for claim, counter in zip(budgets, counters, strict=True):
            if not fits(
                limit=claim.scope.limit_units,
                spent=counter.spent,
                reserved=counter.reserved,
                amount=claim.amount,
            ):
                return Refusal(
                    BUDGET,
                    scope=claim.scope,
                    spent=counter.spent,
                    reserved=counter.reserved,
                    amount=claim.amount,
                )
        in_flight: dict[str, float] | None = None
        if rate.max_concurrent is not None:
            in_flight = {
                held: until
                for held, until in self._in_flight.get(rate.key_id, {}).items()
                if until > now
            }
            if len(in_flight) >= rate.max_concurrent:
                return Refusal(CONCURRENCY, retry_after_s=CONCURRENCY_RETRY_AFTER_S)
        rpm_level = tpm_level = None
        if rate.rpm is not None:
            rpm_level = self._level(RPM, rate.key_id, rate.rpm, now)
            wait = shortfall(rpm_level, 1, rate.rpm)
            if wait is not None:
                return Refusal(RPM, retry_after_s=wait)
        if rate.tpm is not None:
            tpm_level = self._level(TPM, rate.key_id, rate.tpm, now)
            wait = shortfall(tpm_level, rate.tokens, rate.tpm)
            if wait is not None:
                return Refusal(TPM, retry_after_s=wait)

        lease_end = now + self._lease_s
        for claim, counter in zip(budgets, counters, strict=True):
            counter.reserved += claim.amount
            counter.holds[request_id] = (claim.amount, lease_end)
            counter.first_lease_end = min(counter.first_lease_end, lease_end)
        if in_flight is not None:
            in_flight[request_id] = lease_end
            self._in_flight[rate.key_id] = in_flight
        if rpm_level is not None:
            self._buckets[(RPM, rate.key_id)] = (rpm_level - 1, now)
        if tpm_level is not None:
            self._buckets[(TPM, rate.key_id)] = (tpm_level - rate.tokens, now)
        if len(self._buckets) > _MAX_LOCAL_BUCKETS:
            self._forget_idle_buckets(now)
        return Reservation(request_id, tuple(budgets), rate, LOCAL)

    async def settle(
        self, reservation: Reservation, *, cost: int, tokens: int
    ) -> tuple[int | None, ...]:
        with self._lock:
            return self._settle(reservation, cost, tokens)

    def settle_in_process(
        self, reservation: Reservation, *, cost: int, tokens: int
    ) -> tuple[int | None, ...]:
        with self._lock:
            return self._settle(reservation, cost, tokens)

    def _settle(self, reservation: Reservation, cost: int, tokens: int) -> tuple[int | None, ...]:
        now = self._clock()
        spent_after: list[int | None] = []
        for claim in reservation.budgets:
            counter = self._counters.get(claim.scope.counter_id)
            if counter is None:
                spent_after.append(None)
                continue
            held, _ = counter.holds.pop(reservation.request_id, (0, 0.0))
            counter.spent, counter.reserved = settled(
                spent=counter.spent, reserved=counter.reserved, held=held, actual=cost
            )
            spent_after.append(counter.spent)
        rate = reservation.rate
        in_flight = self._in_flight.get(rate.key_id)
        if in_flight is not None:
            in_flight.pop(reservation.request_id, None)
            if not in_flight:
                del self._in_flight[rate.key_id]
        if rate.tpm is not None and rate.tpm > 0 and rate.tokens != tokens:
            level = self._level(TPM, rate.key_id, rate.tpm, now) + rate.tokens - tokens
            self._buckets[(TPM, rate.key_id)] = (min(float(rate.tpm), level), now)
        return tuple(spent_after)

    def read(self, scope: BudgetScope) -> CounterState | None:
        with self._lock:
            counter = self._counters.get(scope.counter_id)
            if counter is None:
                return None
            self._release_expired_holds(counter, self._clock())
            return CounterState(spent=counter.spent, reserved=counter.reserved)

    def _level(self, kind: str, key_id: int, capacity: int, now: float) -> float:
        level, at = self._buckets.get((kind, key_id), (None, None))
        return bucket_level(level, at, now, capacity)

    @staticmethod
    def _release_expired_holds(counter: _Counter, now: float) -> None:
        if now < counter.first_lease_end:
            return
        for request_id in [rid for rid, (_, until) in counter.holds.items() if until <= now]:
            held, _ = counter.holds.pop(request_id)
            counter.reserved -= held
        counter.first_lease_end = min(
            (until for _, until in counter.holds.values()), default=math.inf
        )

    def _forget_past_periods(self) -> None:
        wall_now = datetime.now(UTC)
        for counter_id in [cid for cid, c in self._counters.items() if c.expires_at <= wall_now]:
            del self._counters[counter_id]

    def _forget_idle_buckets(self, now: float) -> None:
        for bucket in [b for b, (_, at) in self._buckets.items() if now - at > _IDLE_BUCKET_S]:
            del self._buckets[bucket]


# -- the process's ledger ------------------------------------------------------------------
async def spend_from_database(scope: BudgetScope) -> int:
    """A counter's starting value: the recorded spend of its scope in its period."""
    from gateway.selectors import request_spend_in_period

    spend = await sync_to_async(request_spend_in_period)(
        scope_type=scope.scope_type,
        scope_id=scope.scope_id,
        start=scope.period.start,
        end=scope.period.end,
    )
    return units_of_cost(spend)


_shared: Ledger | None = None


def shared_ledger() -> Ledger:
    """This process's ledger: Redis when REDIS_URL is set, in-process otherwise."""
    global _shared
    if _shared is None:
        if settings.REDIS_URL:
            from gateway.admission.redis_ledger import RedisLedger

            _shared = RedisLedger(
                settings.REDIS_URL,
                prefix=settings.GATEHOUSE["REDIS_PREFIX"],
                rebuild=spend_from_database,
            )
        else:
            _shared = LocalLedger(spend_from_database)
    return _shared
