"""The ledger in Redis: one Lua script admits a request, another settles it.

Every gateway process runs the same scripts against the same keys, so N processes act as
one. Redis's own clock (TIME) drives the buckets and leases, so the processes' clocks need
not agree. Amounts travel as decimal strings of integer units and are added with HINCRBY,
exactly; Lua compares them as doubles, exact below 2**53 units (900,000 USD).

Keys, under GATEHOUSE_REDIS_PREFIX:
  budget:<scope>:<id>:<period>:<label>         hash: spent, reserved, h:<request id> holds
  budget:<scope>:<id>:<period>:<label>:leases  sorted set: request id → lease end
  limit:<key id>:rpm | :tpm                    hash: level, at (absent = a full bucket)
  limit:<key id>:in-flight                     sorted set: request id → lease end
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from django.conf import settings
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.admission.budgets import BudgetScope
from gateway.admission.ledger import (
    BUDGET,
    HOLD_LEASE_S,
    LOCAL,
    REDIS,
    BudgetClaim,
    CounterState,
    LocalLedger,
    Rebuild,
    Refusal,
    Reservation,
    SingleFlight,
)
from gateway.admission.limits import CONCURRENCY, RPM, TPM, RateClaim
from gateway.redis_batch import ScriptBatches
from gateway.redis_client import shared_async_client

logger = logging.getLogger(__name__)

REDIS_RETRY_AFTER_S = 5.0
REDIS_FAILURES = (RedisError, OSError, TimeoutError)

_LUA_PRELUDE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local function level_of(bucket, capacity)
  local state = redis.call('HMGET', bucket, 'level', 'at')
  local level, at = tonumber(state[1]), tonumber(state[2])
  if level == nil or at == nil then return capacity end
  return math.min(capacity, level + math.max(0, now - at) * capacity / 60)
end

local function save_level(bucket, level, capacity)
  redis.call('HSET', bucket, 'level', string.format('%.6f', level),
             'at', string.format('%.6f', now))
  redis.call('EXPIRE', bucket, math.ceil((capacity - level) * 60 / capacity) + 1)
end

local function shortfall(level, need, capacity)
  if capacity <= 0 then return 60 end
  if level >= need then return nil end
  return math.max(1, math.ceil((need - level) * 60 / capacity))
end
"""

# KEYS: rpm bucket, tpm bucket, in-flight set, then per budget: counter hash, lease set.
# ARGV: request id, lease (s), rpm, tpm, tokens, max in flight, budget count, then per
#       budget: limit units, amount units, counter expiry (unix s). '' means no limit.
_ADMIT_LUA = (
    _LUA_PRELUDE
    + """
local rid, lease = ARGV[1], tonumber(ARGV[2])
local n = tonumber(ARGV[7])

local missing = {'missing'}
for i = 1, n do
  if redis.call('EXISTS', KEYS[2 + 2 * i]) == 0 then missing[#missing + 1] = i end
end
if #missing > 1 then return missing end

for i = 1, n do
  local counter, leases = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local stale = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  for _, id in ipairs(stale) do
    local held = redis.call('HGET', counter, 'h:' .. id)
    if held and held ~= '0' then redis.call('HINCRBY', counter, 'reserved', '-' .. held) end
    redis.call('HDEL', counter, 'h:' .. id)
  end
  if #stale > 0 then redis.call('ZREMRANGEBYSCORE', leases, '-inf', now) end
end

for i = 1, n do
  local limit = ARGV[5 + 3 * i]
  if limit ~= '' then
    local state = redis.call('HMGET', KEYS[2 + 2 * i], 'spent', 'reserved')
    local committed = (tonumber(state[1]) or 0) + (tonumber(state[2]) or 0)
    local cap = tonumber(limit)
    if committed + tonumber(ARGV[6 + 3 * i]) > cap or committed >= cap then
      return {'budget', i, state[1] or '0', state[2] or '0'}
    end
  end
end

if ARGV[6] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[6]) then return {'concurrency', 1} end
end
local rpm_level, tpm_level
if ARGV[3] ~= '' then
  rpm_level = level_of(KEYS[1], tonumber(ARGV[3]))
  local wait = shortfall(rpm_level, 1, tonumber(ARGV[3]))
  if wait then return {'rpm', wait} end
end
if ARGV[4] ~= '' then
  tpm_level = level_of(KEYS[2], tonumber(ARGV[4]))
  local wait = shortfall(tpm_level, tonumber(ARGV[5]), tonumber(ARGV[4]))
  if wait then return {'tpm', wait} end
end

if rpm_level then save_level(KEYS[1], rpm_level - 1, tonumber(ARGV[3])) end
if tpm_level then save_level(KEYS[2], tpm_level - tonumber(ARGV[5]), tonumber(ARGV[4])) end
local lease_end = string.format('%.6f', now + lease)
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[3], lease_end, rid)
  redis.call('EXPIRE', KEYS[3], math.ceil(lease) + 60)
end
for i = 1, n do
  local counter, leases, amount = KEYS[2 + 2 * i], KEYS[3 + 2 * i], ARGV[6 + 3 * i]
  if amount ~= '0' then redis.call('HINCRBY', counter, 'reserved', amount) end
  redis.call('HSET', counter, 'h:' .. rid, amount)
  redis.call('ZADD', leases, lease_end, rid)
  redis.call('EXPIREAT', leases, ARGV[7 + 3 * i])
end
return {'ok'}
"""
)

# KEYS: tpm bucket, in-flight set, then per budget: counter hash, lease set.
# ARGV: request id, tpm ('' = none), tokens taken, tokens used, budget count, then per
#       budget: cost units. Returns each counter's spend after ('' when it is gone).
_SETTLE_LUA = (
    _LUA_PRELUDE
    + """
local rid = ARGV[1]
local n = tonumber(ARGV[5])
local spent = {}
for i = 1, n do
  local counter, leases = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  if redis.call('EXISTS', counter) == 1 then
    local held = redis.call('HGET', counter, 'h:' .. rid)
    if held then
      if held ~= '0' then redis.call('HINCRBY', counter, 'reserved', '-' .. held) end
      redis.call('HDEL', counter, 'h:' .. rid)
      redis.call('ZREM', leases, rid)
    end
    if ARGV[5 + i] ~= '0' then redis.call('HINCRBY', counter, 'spent', ARGV[5 + i]) end
    spent[i] = redis.call('HGET', counter, 'spent')
  else
    spent[i] = ''
  end
end
redis.call('ZREM', KEYS[2], rid)
if ARGV[2] ~= '' then
  local capacity = tonumber(ARGV[2])
  local refund = tonumber(ARGV[3]) - tonumber(ARGV[4])
  if capacity > 0 and refund ~= 0 then
    save_level(KEYS[1], math.min(capacity, level_of(KEYS[1], capacity) + refund), capacity)
  end
end
return spent
"""
)

# The rebuild's check-and-set: create the counter only if no process created it meanwhile.
_CREATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'reserved', '0')
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return 1
"""

# Spend settled in the process during an outage, added to the counters that still exist.
_CATCH_UP_LUA = """
for i, counter in ipairs(KEYS) do
  if redis.call('EXISTS', counter) == 1 then redis.call('HINCRBY', counter, 'spent', ARGV[i]) end
end
return #KEYS
"""


def _limit_arg(limit: int | None) -> str:
    return "" if limit is None else str(limit)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLedger:
    """Counters in Redis, shared by every gateway process; the process's own as a fallback.

    During an outage each process admits against its own counters (so N processes may
    together overshoot a budget by up to N times what is left), and remembers what it
    settled; when Redis answers again that spend is added to the shared counters and the
    process's counters are dropped. A settlement whose reply was lost is counted again
    then: an outage can over-count, never under-count.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        rebuild: Rebuild,
        lease_s: float = HOLD_LEASE_S,
    ) -> None:
        self._url = url
        self.prefix = prefix
        self._rebuild = rebuild
        self._lease_s = lease_s
        self.fallback = LocalLedger(rebuild, lease_s=lease_s)
        self._client: Any = None
        self._sync_client: Any = None
        self._scripts: dict[str, Any] = {}
        self._batches: ScriptBatches | None = None
        self._down_until = 0.0
        self._was_down = False
        self._unsynced: dict[str, int] = {}
        self._rebuilds = SingleFlight()

    # -- keys ------------------------------------------------------------------------------
    def counter_key(self, scope: BudgetScope) -> str:
        return f"{self.prefix}:budget:{scope.counter_id}"

    def _lease_key(self, scope: BudgetScope) -> str:
        return f"{self.counter_key(scope)}:leases"

    def _limit_key(self, key_id: int, kind: str) -> str:
        return f"{self.prefix}:limit:{key_id}:{kind}"

    # -- connection and outages --------------------------------------------------------------
    def _script(self, name: str, source: str) -> Any:
        if self._client is None:
            from redis.asyncio.retry import Retry

            # No retries: a script whose reply was lost may have run, and running it again
            # would reserve or count twice. A failure falls back to the process instead.
            self._client = shared_async_client(self._url, retry=Retry(NoBackoff(), 0))
        if name not in self._scripts:
            self._scripts[name] = self._client.register_script(source)
        return self._scripts[name]

    async def _batched(self, name: str, source: str, keys: list[str], args: list[str]) -> Any:
        """Admissions and settlements, the two calls every request makes, go in batches."""
        script = self._script(name, source)
        if self._batches is None:
            self._batches = ScriptBatches(self._client)
        return await self._batches.run(script, keys=keys, args=args)

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, error: BaseException) -> None:
        if self._available():
            logger.warning(
                "Redis unavailable for admission (%s); budgets and limits are counted in "
                "this process until it answers again",
                type(error).__name__,
            )
        self._down_until = time.monotonic() + REDIS_RETRY_AFTER_S
        self._was_down = True

    async def _catch_up(self) -> None:
        """After an outage: hand the spend settled locally to Redis, drop local counters."""
        if not self._was_down:
            return
        self._was_down = False
        self.fallback = LocalLedger(self._rebuild, lease_s=self._lease_s)
        pending = dict(self._unsynced)
        if not pending:
            return
        try:
            await self._script("catch_up", _CATCH_UP_LUA)(
                keys=list(pending), args=[str(units) for units in pending.values()]
            )
        except BaseException:
            self._was_down = True
            raise
        for counter, units in pending.items():
            left = self._unsynced.get(counter, 0) - units
            if left:
                self._unsynced[counter] = left
            else:
                self._unsynced.pop(counter, None)
        logger.info("Redis is back; %d budget counters caught up", len(pending))

    def _remember_unsynced(self, reservation: Reservation, cost: int) -> None:
        if cost:
            for claim in reservation.budgets:
                counter = self.counter_key(claim.scope)
                self._unsynced[counter] = self._unsynced.get(counter, 0) + cost

    # -- the ledger --------------------------------------------------------------------------
    async def reserve(
        self, request_id: str, budgets: Sequence[BudgetClaim], rate: RateClaim
    ) -> Reservation | Refusal:
        if self._available():
            try:
                await self._catch_up()
                return await self._reserve_shared(request_id, budgets, rate)
            except REDIS_FAILURES as error:
                self._failed(error)
        return await self.fallback.reserve(request_id, budgets, rate)

    async def _reserve_shared(
        self, request_id: str, budgets: Sequence[BudgetClaim], rate: RateClaim
    ) -> Reservation | Refusal:
        keys = [
            self._limit_key(rate.key_id, RPM),
            self._limit_key(rate.key_id, TPM),
            self._limit_key(rate.key_id, "in-flight"),
        ]
        args = [
            request_id,
            str(self._lease_s),
            _limit_arg(rate.rpm),
            _limit_arg(rate.tpm),
            str(rate.tokens),
            _limit_arg(rate.max_concurrent),
            str(len(budgets)),
        ]
        for claim in budgets:
            keys += [self.counter_key(claim.scope), self._lease_key(claim.scope)]
            args += [
                _limit_arg(claim.scope.limit_units),
                str(claim.amount),
                str(int(claim.scope.period.counter_expires_at.timestamp())),
            ]
        for _attempt in range(3):
            reply = await self._batched("admit", _ADMIT_LUA, keys, args)
            verdict = _text(reply[0])
            if verdict == "ok":
                return Reservation(request_id, tuple(budgets), rate, REDIS)
            if verdict != "missing":
                return _refusal(verdict, reply, budgets)
            for index in reply[1:]:
                scope = budgets[int(index) - 1].scope
                await self._rebuilds.run(scope.counter_id, partial(self._create_shared, scope))
        raise RedisError("budget counters disappear as soon as they are created (eviction?)")

    async def _create_shared(self, scope: BudgetScope) -> None:
        spent = await self._rebuild(scope)
        expires_at = int(scope.period.counter_expires_at.timestamp())
        await self._script("create", _CREATE_LUA)(
            keys=[self.counter_key(scope)], args=[str(spent), str(expires_at)]
        )

    def settle_in_process(
        self, reservation: Reservation, *, cost: int, tokens: int
    ) -> tuple[int | None, ...] | None:
        """A reservation taken during an outage is settled on the fallback's counters."""
        if reservation.backend != LOCAL:
            return None
        self._remember_unsynced(reservation, cost)
        return self.fallback.settle_in_process(reservation, cost=cost, tokens=tokens)

    async def settle(
        self, reservation: Reservation, *, cost: int, tokens: int
    ) -> tuple[int | None, ...]:
        settled_here = self.settle_in_process(reservation, cost=cost, tokens=tokens)
        if settled_here is not None:
            return settled_here
        rate = reservation.rate
        keys = [self._limit_key(rate.key_id, TPM), self._limit_key(rate.key_id, "in-flight")]
        args = [
            reservation.request_id,
            _limit_arg(rate.tpm),
            str(rate.tokens),
            str(tokens),
            str(len(reservation.budgets)),
        ]
        for claim in reservation.budgets:
            keys += [self.counter_key(claim.scope), self._lease_key(claim.scope)]
            args.append(str(cost))
        try:
            reply = await self._batched("settle", _SETTLE_LUA, keys, args)
        except REDIS_FAILURES as error:
            # The holds stay until their lease ends; the spend is handed over on recovery.
            self._failed(error)
            self._remember_unsynced(reservation, cost)
            return (None,) * len(reservation.budgets)
        return tuple(int(value) if value else None for value in reply)

    def read(self, scope: BudgetScope) -> CounterState | None:
        """The counter as Redis holds it now (sync: the admin calls it from its threads)."""
        if self._available():
            try:
                if self._sync_client is None:
                    import redis
                    from redis.retry import Retry

                    self._sync_client = redis.Redis.from_url(
                        self._url,
                        socket_timeout=settings.GATEHOUSE["REDIS_TIMEOUT_S"],
                        socket_connect_timeout=settings.GATEHOUSE["REDIS_TIMEOUT_S"],
                        retry=Retry(NoBackoff(), 0),
                    )
                spent, reserved = self._sync_client.hmget(
                    self.counter_key(scope), "spent", "reserved"
                )
            except REDIS_FAILURES as error:
                self._failed(error)
            else:
                if spent is None:
                    return None
                return CounterState(spent=int(spent), reserved=int(reserved or 0))
        return self.fallback.read(scope)


def _refusal(verdict: str, reply: list[Any], budgets: Sequence[BudgetClaim]) -> Refusal:
    if verdict == BUDGET:
        claim = budgets[int(reply[1]) - 1]
        return Refusal(
            BUDGET,
            scope=claim.scope,
            spent=int(reply[2]),
            reserved=int(reply[3]),
            amount=claim.amount,
        )
    if verdict not in (RPM, TPM, CONCURRENCY):
        raise RedisError(f"unexpected admission verdict {verdict!r}")
    return Refusal(verdict, retry_after_s=int(reply[1]))
