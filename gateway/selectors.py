"""Reads on gateway: prices, detached from the ORM as `PriceRow`s."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import BigIntegerField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast, Round
from django.utils import timezone

from gateway.admission.budgets import (
    COST_CENTER,
    DAY,
    KEY,
    MONTH,
    USER,
    BudgetScope,
    BudgetStatus,
    period_of,
    usd,
)
from gateway.contracts import PriceRow
from gateway.models import ModelPrice, RequestLog, UpstreamKey
from gateway.pricing import PriceBook, model_id_candidates

if TYPE_CHECKING:
    from gateway.admission.ledger import Ledger

_PRICE_FIELDS = (
    "pk",
    "provider_id",
    "model",
    "effective_from",
    "input_per_mtok",
    "output_per_mtok",
    "cache_write_5m_per_mtok",
    "cache_write_1h_per_mtok",
    "cache_read_per_mtok",
)

_ROW_FIELDS = ("price_id", *_PRICE_FIELDS[1:])


def price_book_load() -> PriceBook:
    """Every price row in one query; the recorder caches the book for a few seconds."""
    return PriceBook(_price_rows(ModelPrice.objects.all()))


def model_price_in_force(*, model: str, provider_id: int | None, at: datetime) -> PriceRow | None:
    """The row that prices `model` on `provider_id` at `at`, by the same rules as PriceBook."""
    provider_scope = Q(provider__isnull=True)
    if provider_id is not None:
        provider_scope |= Q(provider_id=provider_id)
    rows = ModelPrice.objects.filter(
        provider_scope, model__in=model_id_candidates(model), effective_from__lte=at
    )
    return PriceBook(_price_rows(rows)).lookup(model, provider_id, at)


def _price_rows(queryset: QuerySet[ModelPrice]) -> list[PriceRow]:
    return [
        PriceRow(**dict(zip(_ROW_FIELDS, values, strict=True)))
        for values in queryset.values_list(*_PRICE_FIELDS)
    ]


# -- exact sums of money (budgets, dashboard, reports, billing) ------------------------------
COST_UNITS_PER_USD = 10**10  # RequestLog.cost_usd keeps 10 decimal places


def exact_cost_sum(column: str = "cost_usd", **options: Any) -> Sum:
    """SUM of a 10-place money column as an integer number of 1E-10 dollars: exact on
    PostgreSQL and on SQLite, whose own SUM of decimals is floating point."""
    units = Round(F(column) * Value(COST_UNITS_PER_USD))
    return Sum(Cast(units, output_field=BigIntegerField()), **options)


def from_cost_units(units: int | Decimal | None) -> Decimal:
    return Decimal(int(units or 0)).scaleb(-10)


# -- budgets (gateway.admission) -------------------------------------------------------------
def request_spend_in_period(
    *, scope_type: str, scope_id: int, start: datetime, end: datetime
) -> Decimal:
    """Recorded spend of a key, user or cost center for requests started in [start, end)."""
    field = {KEY: "virtual_key_id", USER: "user_id", COST_CENTER: "cost_center_id"}[scope_type]
    units = RequestLog.objects.filter(
        **{field: scope_id}, started_at__gte=start, started_at__lt=end
    ).aggregate(units=exact_cost_sum())["units"]
    return from_cost_units(units)


def budget_limit(*, scope_type: str, scope_id: int, period: str) -> Decimal | None:
    """The budget set on the key, user or cost center for `period` (None: unlimited)."""
    from accounts.models import CostCenter, User, VirtualKey

    if scope_type == KEY:
        field = "daily_budget_usd" if period == DAY else "monthly_budget_usd"
        return VirtualKey.objects.values_list(field, flat=True).get(pk=scope_id)
    if period != MONTH:
        raise ValueError(f"A {scope_type} has only a monthly budget.")
    model = User if scope_type == USER else CostCenter
    return model.objects.values_list("monthly_budget_usd", flat=True).get(pk=scope_id)


def budget_alert_recipient(*, scope_type: str, scope_id: int) -> str:
    """Who hears about a budget: the key's owner, the user, the cost center's contact."""
    from accounts.models import CostCenter, User, VirtualKey

    if scope_type == KEY:
        keys = VirtualKey.objects.filter(pk=scope_id)
        return keys.values_list("owner__email", flat=True).first() or ""
    if scope_type == USER:
        return User.objects.filter(pk=scope_id).values_list("email", flat=True).first() or ""
    cost_centers = CostCenter.objects.filter(pk=scope_id)
    return cost_centers.values_list("contact_email", flat=True).first() or ""


def budget_status(
    scope_type: str,
    scope_id: int,
    *,
    period: str = MONTH,
    at: datetime | None = None,
    ledger: Ledger | None = None,
) -> BudgetStatus:
    """A budget now: its limit, what was spent, what requests in flight hold, what is left.

    Read from the ledger (this process's, shared through Redis when REDIS_URL is set), which
    counts requests whose rows are not written yet; from the database when it has no counter.
    """
    from gateway.admission.ledger import shared_ledger

    limit = budget_limit(scope_type=scope_type, scope_id=scope_id, period=period)
    scope = BudgetScope(scope_type, scope_id, "", period_of(period, at or timezone.now()), limit)
    state = (ledger or shared_ledger()).read(scope)
    if state is None:
        spent = request_spend_in_period(
            scope_type=scope_type,
            scope_id=scope_id,
            start=scope.period.start,
            end=scope.period.end,
        )
        reserved = Decimal(0)
    else:
        spent, reserved = usd(state.spent), usd(state.reserved)
    return BudgetStatus(
        limit=limit,
        spent=spent,
        reserved=reserved,
        remaining=None if limit is None else limit - spent - reserved,
        period_end=scope.period.end,
    )


def upstream_key_secrets() -> list[str]:
    """Every upstream secret the gateway holds, revealed: logged bodies are redacted of them."""
    return [
        upstream_key.secret.reveal()
        for upstream_key in UpstreamKey.objects.only("secret")
        if upstream_key.secret
    ]
