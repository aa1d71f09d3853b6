"""What the control room shows about spend: the admin home dashboard and the usage panels of
the cost center, user and virtual key pages.

Days before today come from the daily rollups (`UsageRollup`, written by `billing.rollups`);
today comes from the request log, aggregated on the fly, so the figures are current without
waiting for the next rollup run. Rollup rows for today are ignored, so nothing is counted
twice. A past day's late requests show up once the rollup job has seen them (the dashboard
says when it last ran).

Every function here issues a fixed number of queries, whatever the number of requests:
sums are grouped in the database (one query over the rollups, one over today's requests per
page) and regrouped in Python for each breakdown.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from accounts.models import CostCenter, User, VirtualKey
from billing.models import Invoice, RollupWatermark, UsageRollup
from billing.periods import day_bounds, month_start, next_month, previous_month
from billing.selectors import ROLLUP_WATERMARK, billed_model
from gateway import dashboard as traffic
from gateway.models import Provider, RequestLog, RequestOutcome
from gateway.selectors import exact_cost_sum, from_cost_units

ENTITY_DIMENSIONS = ("cost_center_id", "user_id", "virtual_key_id", "provider_id", "model")
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
)
COUNT_FIELDS = ("requests", "error_requests", "unpriced_requests")
TOP = 10


@dataclass
class UsageTotals:
    """Requests, tokens and money of some slice of traffic; added up across rows."""

    requests: int = 0
    error_requests: int = 0
    unpriced_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    cache_savings_usd: Decimal = Decimal(0)

    def add(self, other: UsageTotals) -> None:
        for name in (*COUNT_FIELDS, *TOKEN_FIELDS, "cost_usd", "cache_savings_usd"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def total_input_tokens(self) -> int:
        return (
            self.input_tokens
            + self.cache_write_5m_tokens
            + self.cache_write_1h_tokens
            + self.cache_read_tokens
        )

    @property
    def cache_hit_ratio(self) -> Decimal | None:
        return traffic.cache_hit_ratio(self.cache_read_tokens, self.total_input_tokens)

    @property
    def error_rate(self) -> Decimal | None:
        if not self.requests:
            return None
        return Decimal(self.error_requests) / Decimal(self.requests)


def total(usages: Iterable[UsageTotals]) -> UsageTotals:
    summed = UsageTotals()
    for usage in usages:
        summed.add(usage)
    return summed


def _usage_from(row: Mapping[str, Any]) -> UsageTotals:
    return UsageTotals(
        **{name: int(row[name] or 0) for name in (*COUNT_FIELDS, *TOKEN_FIELDS)},
        cost_usd=from_cost_units(row["cost_units"]),
        cache_savings_usd=from_cost_units(row["savings_units"]),
    )


Group = tuple[Any, ...]


class UsageReader:
    """UsageTotals of the days in [first, end), by any dimensions, for one filter (e.g. a cost
    center or a key). Each call to `by` is one rollup query; today's requests are read
    once, grouped by every dimension, and regrouped for each call."""

    def __init__(self, *, today: date, filters: Mapping[str, Any] | None = None) -> None:
        self.today = today
        self.filters = dict(filters or {})
        self._today_rows: list[tuple[dict[str, Any], UsageTotals]] | None = None

    def by(self, dimensions: Sequence[str], *, first: date, end: date) -> dict[Group, UsageTotals]:
        """UsageTotals keyed by the values of `dimensions` ("day", "month" or entity columns)."""
        grouped: dict[Group, UsageTotals] = defaultdict(UsageTotals)
        if first < min(end, self.today):
            for row in self._rollups(dimensions, first=first, end=min(end, self.today)):
                grouped[tuple(row[name] for name in dimensions)].add(_usage_from(row))
        if first <= self.today < end:
            for values, usage in self._today():
                values = {**values, "day": self.today, "month": month_start(self.today)}
                grouped[tuple(values[name] for name in dimensions)].add(usage)
        return dict(grouped)

    def _rollups(self, dimensions: Sequence[str], *, first: date, end: date) -> Any:
        rollups = UsageRollup.objects.filter(day__gte=first, day__lt=end, **self.filters)
        if "month" in dimensions:
            rollups = rollups.annotate(month=TruncMonth("day"))
        return (
            rollups.order_by()
            .values(*dimensions)
            .annotate(
                **{name: Sum(name) for name in (*COUNT_FIELDS, *TOKEN_FIELDS)},
                cost_units=exact_cost_sum("cost_usd"),
                savings_units=exact_cost_sum("cache_savings_usd"),
            )
        )

    def _today(self) -> list[tuple[dict[str, Any], UsageTotals]]:
        if self._today_rows is None:
            start, end = day_bounds(self.today)
            priced = Q(is_priced=True, cost_usd__isnull=False)
            rows = (
                RequestLog.objects.filter(started_at__gte=start, started_at__lt=end, **self.filters)
                .annotate(model=billed_model())
                .order_by()
                .values(*ENTITY_DIMENSIONS)
                .annotate(
                    requests=Count("pk"),
                    error_requests=Count("pk", filter=~Q(outcome=RequestOutcome.OK)),
                    unpriced_requests=Count("pk", filter=~priced),
                    **{name: Sum(name) for name in TOKEN_FIELDS},
                    cost_units=exact_cost_sum("cost_usd", filter=priced),
                    savings_units=exact_cost_sum("cache_savings_usd", filter=priced),
                )
            )
            self._today_rows = [
                ({name: row[name] for name in ENTITY_DIMENSIONS}, _usage_from(row)) for row in rows
            ]
        return self._today_rows


def rollups_updated_at() -> datetime | None:
    return (
        RollupWatermark.objects.filter(name=ROLLUP_WATERMARK)
        .values_list("updated_at", flat=True)
        .first()
    )


def recent_months(today: date, count: int = 12) -> list[date]:
    months = [month_start(today)]
    while len(months) < count:
        months.append(previous_month(months[-1]))
    return months


# --- Budgets


@dataclass(frozen=True)
class Budget:
    """Spend of one period against a budget (None: no budget set)."""

    label: str
    spent_usd: Decimal
    budget_usd: Decimal | None

    @property
    def remaining_usd(self) -> Decimal | None:
        if self.budget_usd is None:
            return None
        return max(self.budget_usd - self.spent_usd, Decimal(0))

    @property
    def used_ratio(self) -> Decimal | None:
        if not self.budget_usd:
            return None
        return self.spent_usd / self.budget_usd

    @property
    def gauge_percent(self) -> int:
        """Width of the gauge bar: 0–100."""
        ratio = self.used_ratio
        return 0 if ratio is None else int(min(ratio, Decimal(1)) * 100)

    @property
    def level(self) -> str:
        ratio = self.used_ratio
        if ratio is None:
            return "none"
        if ratio >= 1:
            return "over"
        return "warn" if ratio >= Decimal("0.8") else "ok"


# --- The admin home dashboard


@dataclass(frozen=True)
class Slice:
    """One row of a breakdown (a model, a provider, a user, a key)."""

    label: str
    usage: UsageTotals
    detail: str = ""
    url_name: str = ""
    object_id: int | None = None


@dataclass(frozen=True)
class CostCenterSpend:
    cost_center: CostCenter | None
    budget: Budget
    usage: UsageTotals


@dataclass
class ControlRoom:
    period: date
    today: date
    cost_center: CostCenter | None
    cost_centers: list[CostCenter]
    months: list[date]
    totals: UsageTotals
    spend_by_cost_center: list[CostCenterSpend]
    daily: list[tuple[date, UsageTotals]]
    by_model: list[Slice]
    by_provider: list[Slice]
    top_users: list[Slice]
    top_keys: list[Slice]
    latency: dict[int, int | None]
    ttfb: dict[int, int | None]
    sessions_today: int
    recent_sessions: list[traffic.SessionSummary]
    rollups_updated_at: datetime | None
    today_usage: UsageTotals = field(default_factory=UsageTotals)

    @property
    def is_current_month(self) -> bool:
        return self.period == month_start(self.today)

    def chart_data(self) -> dict[str, Any]:
        """What the page's charts draw; money as plain numbers, for drawing only."""
        return {
            "daily": {
                "labels": [day.isoformat() for day, _ in self.daily],
                "cost": [_number(usage.cost_usd) for _, usage in self.daily],
                "requests": [usage.requests for _, usage in self.daily],
            },
            "models": _slices_chart(self.by_model),
            "providers": _slices_chart(self.by_provider),
        }


def _number(amount: Decimal) -> float:
    return float(round(amount, 4))


def _slices_chart(slices: Sequence[Slice]) -> dict[str, Any]:
    return {
        "labels": [item.label for item in slices],
        "cost": [_number(item.usage.cost_usd) for item in slices],
    }


def _by(combos: Mapping[Group, UsageTotals], dimension: str) -> dict[Any, UsageTotals]:
    index = ENTITY_DIMENSIONS.index(dimension)
    grouped: dict[Any, UsageTotals] = defaultdict(UsageTotals)
    for values, usage in combos.items():
        grouped[values[index]].add(usage)
    return dict(grouped)


def _ranked(
    grouped: Mapping[Any, UsageTotals], limit: int | None = None
) -> list[tuple[Any, UsageTotals]]:
    ranked = sorted(
        grouped.items(), key=lambda item: (-item[1].cost_usd, -item[1].requests, str(item[0]))
    )
    return ranked[:limit] if limit is not None else ranked


def control_room(
    *, period: date, cost_center_id: int | None = None, now: datetime | None = None
) -> ControlRoom:
    """The home dashboard for one month, for every cost center or one of them."""
    today = utc_today(now)
    period = month_start(period)
    cost_centers = list(CostCenter.objects.order_by("code"))
    cost_center = next((item for item in cost_centers if item.pk == cost_center_id), None)
    filters = {"cost_center_id": cost_center.pk} if cost_center is not None else {}
    reader = UsageReader(today=today, filters=filters)

    combos = reader.by(ENTITY_DIMENSIONS, first=period, end=next_month(period))
    last_day = min(today, next_month(period) - timedelta(days=1))
    window = [last_day - timedelta(days=offset) for offset in range(29, -1, -1)]
    daily = reader.by(("day",), first=window[0], end=last_day + timedelta(days=1))

    by_cost_center = _by(combos, "cost_center_id")
    spend = []
    for item in [cost_center] if cost_center is not None else cost_centers:
        usage = by_cost_center.get(item.pk, UsageTotals())
        if item.is_active or usage.requests:
            spend.append(
                CostCenterSpend(
                    item, Budget(item.code, usage.cost_usd, item.monthly_budget_usd), usage
                )
            )
    if cost_center is None and None in by_cost_center:
        unassigned = by_cost_center[None]
        spend.append(
            CostCenterSpend(None, Budget("no cost center", unassigned.cost_usd, None), unassigned)
        )

    top_users = _ranked(_by(combos, "user_id"), TOP)
    top_keys = _ranked(_by(combos, "virtual_key_id"), TOP)
    by_provider = _ranked(_by(combos, "provider_id"))
    names = traffic.usernames(user_id for user_id, _ in top_users)
    keys = {
        row["pk"]: row
        for row in VirtualKey.objects.filter(
            pk__in=[key_id for key_id, _ in top_keys if key_id is not None]
        ).values("pk", "name", "prefix", "owner__username")
    }
    providers = dict(
        Provider.objects.filter(
            pk__in=[provider_id for provider_id, _ in by_provider if provider_id is not None]
        ).values_list("pk", "name")
    )
    today_requests = traffic.requests_on(today, cost_center_id=filters.get("cost_center_id"))
    sessions_today, recent_sessions = traffic.sessions_on(
        today, cost_center_id=filters.get("cost_center_id")
    )
    return ControlRoom(
        period=period,
        today=today,
        cost_center=cost_center,
        cost_centers=cost_centers,
        months=recent_months(today),
        totals=total(combos.values()),
        spend_by_cost_center=spend,
        daily=[(day, daily.get((day,), UsageTotals())) for day in window],
        by_model=[
            Slice(model or "(unknown model)", usage)
            for model, usage in _ranked(_by(combos, "model"))
        ],
        by_provider=[
            Slice(providers.get(provider_id, "(no provider)"), usage)
            for provider_id, usage in by_provider
        ],
        top_users=[
            Slice(
                names.get(user_id, "(no user)") if user_id is not None else "(no user)",
                usage,
                url_name="admin:accounts_user_change" if user_id is not None else "",
                object_id=user_id,
            )
            for user_id, usage in top_users
        ],
        top_keys=[
            Slice(
                keys[key_id]["name"] if key_id in keys else "(no key)",
                usage,
                detail=f"{keys[key_id]['prefix']}… · {keys[key_id]['owner__username']}"
                if key_id in keys
                else "",
                url_name="admin:accounts_virtualkey_change" if key_id in keys else "",
                object_id=key_id,
            )
            for key_id, usage in top_keys
        ],
        latency=traffic.percentiles(today_requests, "latency_ms"),
        ttfb=traffic.percentiles(today_requests, "ttfb_ms"),
        sessions_today=sessions_today,
        recent_sessions=recent_sessions,
        rollups_updated_at=rollups_updated_at(),
        today_usage=daily.get((today,), UsageTotals()),
    )


# --- Object pages


@dataclass(frozen=True)
class MemberSpend:
    user: User
    usage: UsageTotals


@dataclass(frozen=True)
class KeySpend:
    virtual_key: VirtualKey
    usage: UsageTotals


@dataclass(frozen=True)
class CostCenterOverview:
    month: date
    budget: Budget
    usage: UsageTotals
    monthly: list[tuple[date, UsageTotals]]
    members: list[MemberSpend]
    keys: list[KeySpend]
    invoices: list[Invoice]

    def chart_data(self) -> dict[str, Any]:
        return {
            "labels": [f"{month:%Y-%m}" for month, _ in self.monthly],
            "cost": [_number(usage.cost_usd) for _, usage in self.monthly],
        }


def cost_center_overview(
    cost_center: CostCenter, *, now: datetime | None = None
) -> CostCenterOverview:
    """This month against the budget, who and which keys spent it, the last twelve months
    and the invoices."""
    today = utc_today(now)
    months = list(reversed(recent_months(today)))
    reader = UsageReader(today=today, filters={"cost_center_id": cost_center.pk})
    monthly = reader.by(("month",), first=months[0], end=next_month(months[-1]))
    this_month = reader.by(
        ("user_id", "virtual_key_id"), first=months[-1], end=next_month(months[-1])
    )
    by_user: dict[Any, UsageTotals] = defaultdict(UsageTotals)
    by_key: dict[Any, UsageTotals] = defaultdict(UsageTotals)
    for (user_id, key_id), usage in this_month.items():
        by_user[user_id].add(usage)
        by_key[key_id].add(usage)
    members = list(User.objects.filter(default_cost_center=cost_center).order_by("username"))
    keys = list(
        VirtualKey.objects.filter(
            Q(cost_center=cost_center)
            | Q(cost_center__isnull=True, owner__default_cost_center=cost_center)
        )
        .select_related("owner")
        .order_by("-created_at")
    )
    usage = total(this_month.values())
    return CostCenterOverview(
        month=months[-1],
        budget=Budget(cost_center.code, usage.cost_usd, cost_center.monthly_budget_usd),
        usage=usage,
        monthly=[(month, monthly.get((month,), UsageTotals())) for month in months],
        members=sorted(
            (MemberSpend(user, by_user.get(user.pk, UsageTotals())) for user in members),
            key=lambda item: (-item.usage.cost_usd, item.user.username),
        ),
        keys=[KeySpend(key, by_key.get(key.pk, UsageTotals())) for key in keys],
        invoices=list(
            Invoice.objects.filter(cost_center=cost_center).order_by("-period_start")[:12]
        ),
    )


@dataclass(frozen=True)
class DailySeries:
    days: list[tuple[date, UsageTotals]]

    def chart_data(self) -> dict[str, Any]:
        return {
            "labels": [day.isoformat() for day, _ in self.days],
            "cost": [_number(usage.cost_usd) for _, usage in self.days],
            "requests": [usage.requests for _, usage in self.days],
        }

    @property
    def usage(self) -> UsageTotals:
        return total(usage for _, usage in self.days)


@dataclass(frozen=True)
class UserOverview:
    month: date
    budget: Budget
    usage: UsageTotals
    last_30_days: DailySeries
    keys: list[KeySpend]


def user_usage_overview(user: User, *, now: datetime | None = None) -> UserOverview:
    today = utc_today(now)
    reader = UsageReader(today=today, filters={"user_id": user.pk})
    first = min(month_start(today), today - timedelta(days=29))
    rows = reader.by(("day", "virtual_key_id"), first=first, end=today + timedelta(days=1))
    daily: dict[date, UsageTotals] = defaultdict(UsageTotals)
    month_by_key: dict[Any, UsageTotals] = defaultdict(UsageTotals)
    for (day, key_id), usage in rows.items():
        daily[day].add(usage)
        if day >= month_start(today):
            month_by_key[key_id].add(usage)
    keys = list(VirtualKey.objects.filter(owner=user).order_by("-created_at"))
    usage = total(month_by_key.values())
    return UserOverview(
        month=month_start(today),
        budget=Budget(user.username, usage.cost_usd, user.monthly_budget_usd),
        usage=usage,
        last_30_days=_series(daily, today),
        keys=[KeySpend(key, month_by_key.get(key.pk, UsageTotals())) for key in keys],
    )


@dataclass(frozen=True)
class VirtualKeyOverview:
    month: date
    monthly_budget: Budget
    daily_budget: Budget
    usage: UsageTotals
    last_30_days: DailySeries


def virtual_key_overview(
    virtual_key: VirtualKey, *, now: datetime | None = None
) -> VirtualKeyOverview:
    today = utc_today(now)
    reader = UsageReader(today=today, filters={"virtual_key_id": virtual_key.pk})
    first = min(month_start(today), today - timedelta(days=29))
    rows = reader.by(("day",), first=first, end=today + timedelta(days=1))
    daily = {day: usage for (day,), usage in rows.items()}
    month_usage = total(usage for day, usage in daily.items() if day >= month_start(today))
    today_usage = daily.get(today, UsageTotals())
    return VirtualKeyOverview(
        month=month_start(today),
        monthly_budget=Budget("this month", month_usage.cost_usd, virtual_key.monthly_budget_usd),
        daily_budget=Budget("today", today_usage.cost_usd, virtual_key.daily_budget_usd),
        usage=month_usage,
        last_30_days=_series(daily, today),
    )


def _series(daily: Mapping[date, UsageTotals], today: date) -> DailySeries:
    days = [today - timedelta(days=offset) for offset in range(29, -1, -1)]
    return DailySeries([(day, daily.get(day, UsageTotals())) for day in days])


def utc_today(now: datetime | None = None) -> date:
    """Days and months are UTC days and months, as budgets and invoices count them."""
    return (now or timezone.now()).astimezone(UTC).date()
