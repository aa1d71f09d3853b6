"""Repricing a date range after the price catalog changed: only months not yet closed.

For each month of the range, under that month's lock: if it is closed (its invoices are
finalized) nothing is touched; otherwise the gateway reprices its requests in the range
(`gateway.repricing`), then the rollups of the days that changed and the month's drafts are
recomputed. Holding the month's lock keeps `close_month` from finalizing the month halfway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.db import transaction

from billing import locks
from billing.invoices import rebuild_drafts
from billing.periods import month_bounds, months_between, utc_midnight
from billing.rollups import rollup_days
from billing.selectors import is_period_closed, request_log_watermark
from gateway.repricing import request_costs_reprice
from gateway.selectors import price_book_load


@dataclass(frozen=True)
class MonthRepriced:
    period: date
    is_closed: bool
    scanned: int = 0
    changed: int = 0


def reprice(*, first_day: date, last_day: date) -> list[MonthRepriced]:
    """Reprice the requests that started from `first_day` to `last_day` (both included, UTC)."""
    if last_day < first_day:
        raise ValueError("The range ends before it starts.")
    range_start, range_end = utc_midnight(first_day), utc_midnight(last_day + timedelta(days=1))
    book = price_book_load()
    results = []
    for period in months_between(first_day, last_day):
        watermark = request_log_watermark()
        with transaction.atomic():
            locks.hold(locks.LockScope.PERIOD, locks.period_key(period))
            if is_period_closed(period):
                results.append(MonthRepriced(period=period, is_closed=True))
                continue
            month_start, month_end = month_bounds(period)
            result = request_costs_reprice(
                start=max(range_start, month_start), end=min(range_end, month_end), book=book
            )
            rollup_days(result.days)
            rebuild_drafts(period, watermark)
            results.append(
                MonthRepriced(
                    period=period, is_closed=False, scanned=result.scanned, changed=result.changed
                )
            )
    return results
