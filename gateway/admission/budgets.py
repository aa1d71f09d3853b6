"""Which budgets a request counts against, their periods, and the money arithmetic. Pure.

Budgets: the key's month (and its optional day), the user's month and the cost center's
month, in calendar UTC periods; a None limit is unlimited but still counted, so a limit set
later in the period starts from the true spend.

Amounts cross into the ledger as integer "units" of 1e-10 USD, the last digit
`RequestLog.cost_usd` keeps: Redis adds them exactly (HINCRBY) and a settled request adds
to its counter exactly what its row will add to the database sum used for rebuilds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from functools import cached_property, lru_cache
from typing import Any

from accounts.contracts import KeyContext
from gateway.contracts import PriceRow, Usage
from gateway.pricing import cost_of, quantize_cost

UNITS_PER_USD = 10**10
BYTES_PER_TOKEN = 4
THRESHOLDS = (80, 100)
# Counters outlive their period by this much, so requests still running at the turn of the
# period settle into the counter they reserved in.
COUNTER_MARGIN = timedelta(days=1)

KEY = "key"
USER = "user"
COST_CENTER = "cost_center"
SCOPE_TYPES = (KEY, USER, COST_CENTER)
MONTH = "month"
DAY = "day"

_SCOPE_NOUNS = {KEY: "key", USER: "user", COST_CENTER: "cost center"}
_PERIOD_ADJECTIVES = {MONTH: "Monthly", DAY: "Daily"}
_SHOWN = Decimal("0.0001")


@dataclass(frozen=True)
class Period:
    kind: str  # MONTH or DAY
    start: datetime
    end: datetime

    @cached_property
    def label(self) -> str:
        return self.start.strftime("%Y-%m" if self.kind == MONTH else "%Y-%m-%d")

    @property
    def counter_expires_at(self) -> datetime:
        return self.end + COUNTER_MARGIN


def period_of(kind: str, at: datetime) -> Period:
    """The calendar month or day (UTC) that contains `at`."""
    at = at.astimezone(UTC)
    return _period(kind, at.year, at.month, at.day if kind == DAY else 1)


@lru_cache(maxsize=64)
def _period(kind: str, year: int, month: int, day: int) -> Period:
    """Shared per period, so every request of a month reuses one object and its label."""
    if kind == DAY:
        start = datetime(year, month, day, tzinfo=UTC)
        return Period(kind, start, start + timedelta(days=1))
    if kind != MONTH:
        raise ValueError(f"Unknown budget period {kind!r}.")
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return Period(kind, start, end)


def reset_text(period: Period) -> str:
    return period.end.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class BudgetScope:
    """One budget counter: a scope (key, user, cost center) over one period."""

    scope_type: str
    scope_id: int
    name: str  # how messages name it: the key's name, the username, the cost center code
    period: Period
    limit: Decimal | None

    @cached_property  # read several times per request; the scope itself is reused (below)
    def counter_id(self) -> str:
        return f"{self.scope_type}:{self.scope_id}:{self.period.kind}:{self.period.label}"

    @cached_property
    def limit_units(self) -> int | None:
        return None if self.limit is None else units_floor(self.limit)

    @property
    def title(self) -> str:
        noun = _SCOPE_NOUNS[self.scope_type]
        return f"{_PERIOD_ADJECTIVES[self.period.kind]} budget of {noun} '{self.name}'"


# (id of the key, day) → (the key, its scopes). The key is kept so its id cannot be reused by
# another object while the entry lives; a key the key cache refreshes is a new object.
_scopes_by_key: dict[tuple[int, Period], tuple[KeyContext, tuple[BudgetScope, ...]]] = {}
_MAX_CACHED_SCOPES = 4096


def budget_scopes(key: KeyContext, at: datetime) -> tuple[BudgetScope, ...]:
    """Every budget a request by `key` starting at `at` counts against; the same objects for
    every request of that key in that day, so what they compute once stays computed."""
    month, day = period_of(MONTH, at), period_of(DAY, at)
    cached = _scopes_by_key.get((id(key), day))
    if cached is not None and cached[0] is key:
        return cached[1]
    scopes = _scopes_of(key, month, day)
    if len(_scopes_by_key) >= _MAX_CACHED_SCOPES:
        _scopes_by_key.clear()
    _scopes_by_key[(id(key), day)] = (key, scopes)
    return scopes


def _scopes_of(key: KeyContext, month: Period, day: Period) -> tuple[BudgetScope, ...]:
    scopes = [
        BudgetScope(KEY, key.key_id, key.key_name, month, key.key_monthly_budget_usd),
        BudgetScope(KEY, key.key_id, key.key_name, day, key.key_daily_budget_usd),
        BudgetScope(USER, key.user_id, key.username, month, key.user_monthly_budget_usd),
    ]
    if key.cost_center_id is not None:
        scopes.append(
            BudgetScope(
                COST_CENTER,
                key.cost_center_id,
                key.cost_center_code or str(key.cost_center_id),
                month,
                key.cost_center_monthly_budget_usd,
            )
        )
    return tuple(scopes)


# -- the worst case ----------------------------------------------------------------------
def estimate_input_tokens(body_size: int) -> int:
    """Every byte of the body could be prompt: bytes / 4, rounded up."""
    return -(-body_size // BYTES_PER_TOKEN)


def max_tokens_of(payload: dict[str, Any]) -> int:
    """The output the request may produce; a missing or invalid value is the upstream's 400."""
    value = payload.get("max_tokens")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def worst_case_usage(*, body_size: int, max_tokens: int) -> Usage:
    """The input estimated from the body, priced as plain input, plus every output token.

    Cache writes (1.25x or 2x input) are not assumed: the body-size estimate usually
    overstates the prompt by more than that, and a request that does cost more than its
    reservation is still settled at its true cost.
    """
    return Usage(input_tokens=estimate_input_tokens(body_size), output_tokens=max_tokens)


def worst_case_cost(*, body_size: int, max_tokens: int, price: PriceRow) -> Decimal:
    return cost_of(worst_case_usage(body_size=body_size, max_tokens=max_tokens), price)


# -- units and the counter arithmetic ------------------------------------------------------
def units_ceiling(usd: Decimal) -> int:
    """A reservation: rounded up, so it never falls short of the amount by a rounding."""
    return int((usd * UNITS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def units_floor(usd: Decimal) -> int:
    return int((usd * UNITS_PER_USD).to_integral_value(rounding=ROUND_FLOOR))


def units_of_cost(cost: Decimal) -> int:
    """A settled cost: rounded exactly as the recorder stores it in RequestLog.cost_usd."""
    return int(quantize_cost(cost) * UNITS_PER_USD)


def usd(units: int) -> Decimal:
    return Decimal(units) / UNITS_PER_USD


def fits(*, limit: int | None, spent: int, reserved: int, amount: int) -> bool:
    """Whether a reservation of `amount` fits; an unpriced request (0) needs some budget left."""
    if limit is None:
        return True
    committed = spent + reserved
    return committed + amount <= limit and committed < limit


def settled(*, spent: int, reserved: int, held: int, actual: int) -> tuple[int, int]:
    """(spent, reserved) after a request that held `held` turned out to cost `actual`.

    The whole hold is released whatever the true cost; a request dearer than its hold
    adds its full cost to the spend (the overshoot DESIGN.md §4 bounds by what is in flight).
    """
    return spent + actual, reserved - held


def crossed_thresholds(*, limit: int, before: int, after: int) -> tuple[int, ...]:
    """The alert thresholds (percent of `limit`) that the spend passed going from before to after."""
    return tuple(
        percent
        for percent in THRESHOLDS
        if before < (threshold := math.ceil(limit * percent / 100)) <= after and threshold > 0
    )


def refusal_message(scope: BudgetScope, *, spent: int, reserved: int, amount: int) -> str:
    """Why a request does not fit `scope`, and when the budget resets."""
    head = f"{scope.title} ({scope.limit or 0:.2f} USD)"
    reset = reset_text(scope.period)
    limit = scope.limit_units or 0
    if spent >= limit:
        return f"{head} is exhausted; it resets at {reset}."
    left = usd(max(0, limit - spent - reserved)).quantize(_SHOWN, rounding=ROUND_FLOOR)
    worst = usd(amount).quantize(_SHOWN, rounding=ROUND_CEILING)
    return (
        f"{head} cannot cover this request: its worst-case cost is {worst} USD and "
        f"{left} USD is left (requests in flight included); lower max_tokens or wait "
        f"until it resets at {reset}."
    )


@dataclass(frozen=True)
class BudgetStatus:
    """A budget as the admin shows it; `limit` and `remaining` are None when unlimited."""

    limit: Decimal | None
    spent: Decimal
    reserved: Decimal
    remaining: Decimal | None
    period_end: datetime
