"""Repricing recorded requests after the price catalog changed: the gateway's own write to
its request log, called by billing for the months it still may change.

A row is priced again the way the recorder priced it: its token columns with the row in force
when it started for `model_served` (else `model_requested`) on its provider; rows that billed
nothing (other endpoints, no usage) cost exactly 0.

Limit: the request log keeps no web-search count and no per-iteration usage, so a repriced
row is priced from its token columns alone; web searches ($0.01 each) and iterations billed
at another model's rates are not part of its new cost (docs/billing.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction

from gateway.contracts import Usage
from gateway.models import RequestLog
from gateway.pricing import PriceBook, price_request, quantize_cost
from gateway.selectors import price_book_load

MESSAGES_ENDPOINT = "/v1/messages"
_COLUMNS = (
    "pk",
    "started_at",
    "endpoint",
    "model_served",
    "model_requested",
    "provider_id",
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "cost_usd",
    "is_priced",
    "cache_savings_usd",
)


@dataclass(frozen=True)
class RepriceResult:
    scanned: int
    changed: int
    days: frozenset[date]


@dataclass(frozen=True)
class _Repriced:
    cost_usd: Decimal | None
    is_priced: bool
    cache_savings_usd: Decimal | None


def request_costs_reprice(
    *,
    start: datetime,
    end: datetime,
    book: PriceBook | None = None,
    batch_size: int = 1000,
) -> RepriceResult:
    """Price the requests that started in [start, end) again with `book` (default: now's);
    only rows whose cost, priced flag or savings change are written."""
    book = book or price_book_load()
    scanned = changed = 0
    days: set[date] = set()
    rows = RequestLog.objects.filter(started_at__gte=start, started_at__lt=end).order_by("pk")
    last_pk = 0
    with transaction.atomic():
        while page := list(rows.filter(pk__gt=last_pk).values_list(*_COLUMNS)[:batch_size]):
            last_pk = page[-1][0]
            scanned += len(page)
            pending: list[RequestLog] = []
            for row in page:
                values = dict(zip(_COLUMNS, row, strict=True))
                repriced = _reprice(values, book)
                if (repriced.cost_usd, repriced.is_priced, repriced.cache_savings_usd) != (
                    values["cost_usd"],
                    values["is_priced"],
                    values["cache_savings_usd"],
                ):
                    pending.append(
                        RequestLog(
                            pk=values["pk"],
                            cost_usd=repriced.cost_usd,
                            is_priced=repriced.is_priced,
                            cache_savings_usd=repriced.cache_savings_usd,
                        )
                    )
                    days.add(values["started_at"].date())
            if pending:
                RequestLog.objects.bulk_update(
                    pending, ["cost_usd", "is_priced", "cache_savings_usd"]
                )
                changed += len(pending)
    return RepriceResult(scanned=scanned, changed=changed, days=frozenset(days))


def _usage(values: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=values["input_tokens"],
        output_tokens=values["output_tokens"],
        cache_write_5m_tokens=values["cache_write_5m_tokens"],
        cache_write_1h_tokens=values["cache_write_1h_tokens"],
        cache_read_tokens=values["cache_read_tokens"],
    )


def _model(values: dict[str, Any]) -> str:
    return values["model_served"] or values["model_requested"] or ""


def _reprice(values: dict, book: PriceBook) -> _Repriced:
    usage = _usage(values)
    if values["endpoint"] != MESSAGES_ENDPOINT or usage == Usage():
        return _Repriced(cost_usd=Decimal(0), is_priced=True, cache_savings_usd=None)
    priced = price_request(
        usage=usage,
        iterations=(),
        model=_model(values),
        provider_id=values["provider_id"],
        at=values["started_at"],
        book=book,
    )
    return _Repriced(
        cost_usd=None if priced.cost_usd is None else quantize_cost(priced.cost_usd),
        is_priced=priced.is_priced,
        cache_savings_usd=(
            None if priced.cache_savings_usd is None else quantize_cost(priced.cache_savings_usd)
        ),
    )
