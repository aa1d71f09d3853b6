"""Reads for billing: the request log aggregated for rollups and invoices, and billing state.

Money is summed exactly on both databases: SQLite keeps a DecimalField as a float (15
significant digits, which every single cost fits), so a plain SUM would add floats. Each cost
is summed instead as an integer count of 1E-10 dollars (`ROUND(cost × 10^10)`), exact on
SQLite (64-bit integers) and on PostgreSQL (numeric), and turned back into a Decimal here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Case,
    Count,
    ExpressionWrapper,
    F,
    IntegerField,
    Max,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, NullIf, TruncDate

from billing.lines import TokenCounts, UsageGroup
from billing.models import ClosedPeriod, RollupWatermark
from billing.periods import month_bounds, month_start, next_month
from gateway.contracts import PriceRow
from gateway.models import ModelPrice, Provider, RequestLog, RequestOutcome
from gateway.pricing import PriceBook
from gateway.selectors import exact_cost_sum, from_cost_units

ROLLUP_WATERMARK = "usage_rollup"

_TOKEN_COLUMNS = {
    "input": "input_tokens",
    "cache_write_5m": "cache_write_5m_tokens",
    "cache_write_1h": "cache_write_1h_tokens",
    "cache_read": "cache_read_tokens",
    "output": "output_tokens",
}


# -- expressions -------------------------------------------------------------------------
def billed_model() -> Coalesce:
    """The model a request is priced under, as the recorder prices it: served, else requested."""
    return Coalesce(NullIf(F("model_served"), Value("")), F("model_requested"))


def is_priced() -> ExpressionWrapper:
    """Priced: the recorder found a price and recorded a cost (never a silent 0)."""
    return ExpressionWrapper(Q(is_priced=True, cost_usd__isnull=False), output_field=BooleanField())


# -- watermarks and billing state ----------------------------------------------------------
def request_log_watermark() -> int:
    """The greatest request log id below which no row can still appear.

    PostgreSQL hands out ids when rows are inserted, not when they commit, so a row with a
    smaller id than the current maximum may still be on its way. A SHARE lock on the table
    waits for every open insert to commit and holds new ones back for the instant it takes to
    read the maximum. Call it outside a transaction, or the lock lasts until that one ends.
    While it waits, new inserts queue behind it, so it gives up after a few seconds
    (OperationalError; the billing tasks retry). SQLite has one writer at a time and
    AUTOINCREMENT ids, so its maximum is already safe.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            table = connection.ops.quote_name(RequestLog._meta.db_table)
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '5s'")
                cursor.execute(f"LOCK TABLE {table} IN SHARE MODE")
        return int(RequestLog.objects.aggregate(last=Max("id"))["last"] or 0)


def rollup_watermark() -> int:
    value = (
        RollupWatermark.objects.filter(name=ROLLUP_WATERMARK)
        .values_list("request_id", flat=True)
        .first()
    )
    return int(value or 0)


def latest_closed_period() -> ClosedPeriod | None:
    return ClosedPeriod.objects.order_by("-period_start").first()


def open_period() -> date | None:
    """The month after the last closed one: its invoice takes late usage. None: none closed."""
    latest = latest_closed_period()
    return next_month(latest.period_start) if latest is not None else None


def is_period_closed(period: date) -> bool:
    """Months close in order, so every month up to the last closed one counts as closed
    (also one whose first request was backfilled after later months closed)."""
    return ClosedPeriod.objects.filter(period_start__gte=month_start(period)).exists()


def first_usage_period() -> date | None:
    """The month of the earliest request billed to a cost center."""
    first = (
        RequestLog.objects.filter(cost_center_id__isnull=False)
        .order_by("started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    return month_start(first.date()) if first is not None else None


def provider_names() -> dict[int, str]:
    return dict(Provider.objects.values_list("pk", "name"))


# -- rollups --------------------------------------------------------------------------------
def days_with_requests(*, after_id: int, up_to_id: int) -> list[date]:
    """UTC days on which the request log rows with ids in (after_id, up_to_id] started."""
    if up_to_id <= after_id:
        return []
    days = (
        RequestLog.objects.filter(pk__gt=after_id, pk__lte=up_to_id)
        .annotate(day=TruncDate("started_at"))
        .values_list("day", flat=True)
        .order_by("day")
        .distinct()
    )
    return list(days)


def daily_usage(*, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """One aggregate row per (cost center, user, key, provider, model) of [start, end)."""
    priced = Q(is_priced=True, cost_usd__isnull=False)
    return list(
        RequestLog.objects.filter(started_at__gte=start, started_at__lt=end)
        .annotate(billed_model=billed_model())
        .values("cost_center_id", "user_id", "virtual_key_id", "provider_id", "billed_model")
        .annotate(
            requests=Count("pk"),
            error_requests=Count("pk", filter=~Q(outcome=RequestOutcome.OK)),
            unpriced_requests=Count("pk", filter=~priced),
            input_tokens_sum=Sum("input_tokens"),
            output_tokens_sum=Sum("output_tokens"),
            cache_write_5m_tokens_sum=Sum("cache_write_5m_tokens"),
            cache_write_1h_tokens_sum=Sum("cache_write_1h_tokens"),
            cache_read_tokens_sum=Sum("cache_read_tokens"),
            cost_units=exact_cost_sum("cost_usd", filter=priced),
            savings_units=exact_cost_sum("cache_savings_usd", filter=priced),
        )
        .order_by()
    )


# -- invoices -------------------------------------------------------------------------------
def price_breakpoints(*, start: datetime, end: datetime) -> list[datetime]:
    """Instants inside (start, end) at which some price row takes effect."""
    return sorted(
        set(
            ModelPrice.objects.filter(effective_from__gt=start, effective_from__lt=end)
            .values_list("effective_from", flat=True)
            .order_by()
        )
    )


def period_usage_groups(*, period: date, up_to_id: int, book: PriceBook) -> list[UsageGroup]:
    """A month's requests (ids up to `up_to_id`), grouped for invoicing, in one query.

    Price rows change only at their `effective_from`, so between two consecutive such
    instants every request of a model is priced by the same row: the query buckets requests
    by those instants and each group gets the row in force at the start of its bucket.
    """
    start, end = month_bounds(period)
    bucket_starts = [start, *price_breakpoints(start=start, end=end)]
    rows = (
        _invoiced_requests()
        .filter(started_at__gte=start, started_at__lt=end, pk__lte=up_to_id)
        .annotate(bucket=_bucket(bucket_starts[1:]))
        .values("cost_center_id", "user_id", "provider_id", "billed_model", "priced", "bucket")
        .annotate(**_group_aggregates())
        .order_by()
    )
    return [
        _usage_group(
            row, book.lookup(row["billed_model"], row["provider_id"], bucket_starts[row["bucket"]])
        )
        for row in rows
    ]


def late_usage_groups(
    *, before: date, after_id: int, up_to_id: int, book: PriceBook
) -> list[UsageGroup]:
    """Requests of closed months (started before `before`) with ids in (after_id, up_to_id].

    They arrived after their month was invoiced (a spool replayed after an outage, a slow
    writer at midnight); few, so they are priced one by one, each by the row in force when
    it started, exactly as the recorder priced it.
    """
    if up_to_id <= after_id:
        return []
    columns = ("started_at", *_TOKEN_COLUMNS.values())
    rows = (
        _invoiced_requests()
        .filter(started_at__lt=month_bounds(before)[0], pk__gt=after_id, pk__lte=up_to_id)
        .values_list(
            "cost_center_id",
            "user_id",
            "provider_id",
            "billed_model",
            "priced",
            "cost_usd",
            *columns,
        )
        .order_by("pk")
    )
    totals: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, TokenCounts(), Decimal(0)])
    for (
        cost_center_id,
        user_id,
        provider_id,
        model,
        priced,
        cost,
        started_at,
        *tokens,
    ) in rows.iterator(chunk_size=2000):
        price = book.lookup(model, provider_id, started_at)
        key = (
            cost_center_id,
            user_id,
            provider_id,
            model,
            priced,
            price,
            month_start(started_at.date()),
        )
        total = totals[key]
        total[0] += 1
        total[1] += TokenCounts(*tokens)
        total[2] += cost if priced else 0
    return [
        UsageGroup(
            cost_center_id=cost_center_id,
            user_id=user_id,
            provider_id=provider_id,
            model=model,
            price=price,
            is_priced=priced,
            requests=requests,
            tokens=tokens,
            cost=cost,
            adjusts_period=adjusts_period,
        )
        for (
            cost_center_id,
            user_id,
            provider_id,
            model,
            priced,
            price,
            adjusts_period,
        ), (requests, tokens, cost) in totals.items()
    ]


def _invoiced_requests() -> QuerySet[RequestLog]:
    return RequestLog.objects.filter(cost_center_id__isnull=False).annotate(
        billed_model=billed_model(), priced=is_priced()
    )


def _bucket(breakpoints: Sequence[datetime]) -> Case | Value:
    if not breakpoints:
        return Value(0, output_field=IntegerField())
    return Case(
        *(
            When(started_at__lt=instant, then=Value(index))
            for index, instant in enumerate(breakpoints)
        ),
        default=Value(len(breakpoints)),
        output_field=IntegerField(),
    )


def _group_aggregates() -> dict[str, Any]:
    aggregates: dict[str, Any] = {
        f"{token_class}_sum": Sum(column) for token_class, column in _TOKEN_COLUMNS.items()
    }
    aggregates["requests"] = Count("pk")
    aggregates["cost_units"] = exact_cost_sum("cost_usd")
    return aggregates


def _usage_group(row: dict[str, Any], price: PriceRow | None) -> UsageGroup:
    return UsageGroup(
        cost_center_id=row["cost_center_id"],
        user_id=row["user_id"],
        provider_id=row["provider_id"],
        model=row["billed_model"],
        price=price,
        is_priced=bool(row["priced"]),
        requests=row["requests"],
        tokens=TokenCounts(
            **{token_class: int(row[f"{token_class}_sum"] or 0) for token_class in _TOKEN_COLUMNS}
        ),
        cost=from_cost_units(row["cost_units"]) if row["priced"] else Decimal(0),
    )
