"""Reads for the management API: usage aggregates over the request log, and budgets as
admission sees them (`gateway.selectors.budget_status`: recorded spend plus reservations).

Money is summed exactly on both databases: SQLite keeps a DecimalField as a float, so each
cost is summed as an integer count of 1E-10 dollars (the column's last digit) and turned back
into a Decimal here — the same rule billing's selectors follow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import (
    CharField,
    Count,
    F,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, NullIf, TruncDate
from django.utils import timezone

from accounts.models import CostCenter, User, VirtualKey
from gateway.admission.budgets import DAY, MONTH, period_of
from gateway.models import RequestLog, RequestOutcome
from gateway.pricing import quantize_cost
from gateway.selectors import budget_status, exact_cost_sum, from_cost_units

TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
)
GROUPINGS = ("day", "user", "key", "cost_center", "model", "provider")


def _aggregates() -> dict[str, Any]:
    return {
        "requests": Count("pk"),
        "error_requests": Count("pk", filter=~Q(outcome=RequestOutcome.OK)),
        "unpriced_requests": Count("pk", filter=Q(is_priced=False) | Q(cost_usd__isnull=True)),
        **{column: Sum(column) for column in TOKEN_COLUMNS},
        "cost_units": exact_cost_sum("cost_usd"),
        "savings_units": exact_cost_sum("cache_savings_usd"),
    }


def _totals(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests": row["requests"] or 0,
        "error_requests": row["error_requests"] or 0,
        "unpriced_requests": row["unpriced_requests"] or 0,
        **{column: int(row[column] or 0) for column in TOKEN_COLUMNS},
        "cost_usd": from_cost_units(row["cost_units"]),
        "cache_savings_usd": from_cost_units(row["savings_units"]),
    }


def requests_between(*, since: date, until: date) -> QuerySet[RequestLog]:
    """Requests that started on the days `since` … `until` (UTC, both included)."""
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    requests = RequestLog.objects.filter(started_at__gte=start)
    if until < date.max:
        next_day = until + timedelta(days=1)
        requests = requests.filter(
            started_at__lt=datetime(next_day.year, next_day.month, next_day.day, tzinfo=UTC)
        )
    return requests


def usage_totals(requests: QuerySet[RequestLog]) -> dict[str, Any]:
    return _totals(requests.aggregate(**_aggregates()))


def usage_by(requests: QuerySet[RequestLog], *, group_by: str) -> list[dict[str, Any]]:
    """One row per group: `group` (its id, day or name), `label` (how people call it), totals."""
    if group_by not in GROUPINGS:
        raise ValueError(f"Unknown grouping {group_by!r}.")
    group, label = {
        "day": (TruncDate("started_at", tzinfo=UTC), None),
        "user": (F("user_id"), F("user__username")),
        "key": (F("virtual_key__public_id"), F("virtual_key__name")),
        "cost_center": (F("cost_center_id"), F("cost_center__code")),
        "model": (Coalesce(NullIf(F("model_served"), Value("")), F("model_requested")), None),
        "provider": (F("provider_id"), F("provider__name")),
    }[group_by]
    rows = (
        requests.order_by()
        .annotate(group=group, label=label if label is not None else Value(None, CharField()))
        .values("group", "label")
        .annotate(**_aggregates())
        .order_by("group")
    )
    return [
        {
            "group": None if row["group"] is None else _group_text(row["group"]),
            "label": row["label"],
            **_totals(row),
        }
        for row in rows
    ]


def _group_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


# --- Budgets: this period's spend against each limit


@dataclass(frozen=True)
class BudgetPeriodStatus:
    period: str  # month or day
    start: datetime
    end: datetime
    budget_usd: Decimal | None
    spent_usd: Decimal
    reserved_usd: Decimal  # held by requests still in flight
    remaining_usd: Decimal | None


@dataclass(frozen=True)
class BudgetStatus:
    scope: str  # key, user or cost_center
    id: str  # the key's public id, the user's or cost center's id
    name: str
    month: BudgetPeriodStatus
    day: BudgetPeriodStatus | None  # keys only


def budget_statuses(
    scope: str, objects: Iterable[VirtualKey | User | CostCenter], *, at: datetime | None = None
) -> list[BudgetStatus]:
    """This month's (and for keys, today's) spend of each object against its budgets, as
    admission sees it: recorded spend plus what requests in flight have reserved."""
    now = at or timezone.now()
    return [
        BudgetStatus(
            scope=scope,
            id=_scope_id(obj),
            name=_scope_name(obj),
            month=_period_status(scope, obj.pk, MONTH, now),
            day=_period_status(scope, obj.pk, DAY, now) if scope == "key" else None,
        )
        for obj in objects
    ]


def _period_status(scope: str, scope_id: int, kind: str, now: datetime) -> BudgetPeriodStatus:
    period = period_of(kind, now)
    status = budget_status(scope, scope_id, period=kind, at=now)
    return BudgetPeriodStatus(
        period=kind,
        start=period.start,
        end=period.end,
        budget_usd=status.limit,
        spent_usd=quantize_cost(status.spent),
        reserved_usd=quantize_cost(status.reserved),
        remaining_usd=None if status.remaining is None else quantize_cost(status.remaining),
    )


def _code(cost_center: CostCenter) -> str:
    return cost_center.code


def _scope_id(obj: VirtualKey | User | CostCenter) -> str:
    return obj.public_id if isinstance(obj, VirtualKey) else str(obj.pk)


def _scope_name(obj: VirtualKey | User | CostCenter) -> str:
    if isinstance(obj, VirtualKey):
        return obj.name
    if isinstance(obj, User):
        return obj.username
    return obj.code


def budgeted(scope: str) -> QuerySet[Any]:
    """Active keys, users or cost centers that have a budget of some kind."""
    if scope == "key":
        return VirtualKey.objects.filter(revoked_at__isnull=True).filter(
            Q(monthly_budget_usd__isnull=False) | Q(daily_budget_usd__isnull=False)
        )
    if scope == "user":
        return User.objects.filter(is_active=True, monthly_budget_usd__isnull=False)
    if scope == "cost_center":
        return CostCenter.objects.filter(is_active=True, monthly_budget_usd__isnull=False)
    raise ValueError(f"Unknown budget scope {scope!r}.")


# --- What a developer sees about themselves


@dataclass(frozen=True)
class Overview:
    user: User
    keys: list[VirtualKey]
    month_start: datetime
    usage_this_month: dict[str, Any]
    budgets: list[BudgetStatus]


def user_overview(user: User, *, at: datetime | None = None) -> Overview:
    """A user's keys, their usage this month and every budget their requests count against."""
    now = at or timezone.now()
    month = period_of(MONTH, now)
    keys = list(VirtualKey.objects.filter(owner=user).select_related("cost_center"))
    usage = usage_totals(
        RequestLog.objects.filter(user=user, started_at__gte=month.start, started_at__lt=month.end)
    )
    cost_centers = {key.cost_center for key in keys if key.cost_center is not None}
    if user.default_cost_center is not None:
        cost_centers.add(user.default_cost_center)
    ordered_cost_centers: list[CostCenter] = sorted(cost_centers, key=_code)
    budgets = [
        *budget_statuses("user", [user], at=now),
        *budget_statuses("key", [key for key in keys if key.revoked_at is None], at=now),
        *budget_statuses("cost_center", ordered_cost_centers, at=now),
    ]
    return Overview(
        user=user,
        keys=keys,
        month_start=month.start,
        usage_this_month=usage,
        budgets=budgets,
    )
