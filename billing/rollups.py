"""Daily usage rollups: one row per day × cost center × user × key × provider × model.

A day's rows are always recomputed whole from the request log (one aggregate query) and
replaced in one transaction under that day's lock, so recomputing is idempotent and two runs
at once end with the same rows. Which days to recompute: those on which request log rows
with an id above the rollup watermark started (`RollupWatermark`, a request log id read with
`request_log_watermark`, so no row below it can still appear); the watermark moves forward
only after those days are done, so a crash in between means the work is redone, not lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from django.db import transaction
from django.db.models.functions import Greatest
from django.utils import timezone

from billing import locks
from billing.invoices import recompute_drafts
from billing.models import RollupWatermark, UsageRollup
from billing.periods import day_bounds, month_start
from billing.selectors import (
    ROLLUP_WATERMARK,
    daily_usage,
    days_with_requests,
    is_period_closed,
    open_period,
    request_log_watermark,
    rollup_watermark,
)
from gateway.selectors import from_cost_units


@dataclass(frozen=True)
class RollupResult:
    days: tuple[date, ...]
    rows: int
    watermark: int
    drafts_recomputed: tuple[date, ...] = ()


def rollup_days(days: Iterable[date]) -> int:
    """Recompute the rollups of each day; returns how many rows the days now have."""
    return sum(_rollup_day(day) for day in sorted(set(days)))


@transaction.atomic
def _rollup_day(day: date) -> int:
    locks.hold(locks.LockScope.ROLLUP_DAY, locks.day_key(day))
    start, end = day_bounds(day)
    now = timezone.now()
    rollups = [
        UsageRollup(
            day=day,
            cost_center_id=row["cost_center_id"],
            user_id=row["user_id"],
            virtual_key_id=row["virtual_key_id"],
            provider_id=row["provider_id"],
            model=row["billed_model"] or "",
            requests=row["requests"],
            error_requests=row["error_requests"],
            unpriced_requests=row["unpriced_requests"],
            input_tokens=row["input_tokens_sum"] or 0,
            output_tokens=row["output_tokens_sum"] or 0,
            cache_write_5m_tokens=row["cache_write_5m_tokens_sum"] or 0,
            cache_write_1h_tokens=row["cache_write_1h_tokens_sum"] or 0,
            cache_read_tokens=row["cache_read_tokens_sum"] or 0,
            cost_usd=from_cost_units(row["cost_units"]),
            cache_savings_usd=from_cost_units(row["savings_units"]),
            computed_at=now,
        )
        for row in daily_usage(start=start, end=end)
    ]
    UsageRollup.objects.filter(day=day).delete()
    UsageRollup.objects.bulk_create(rollups, batch_size=500)
    return len(rollups)


def rollup_usage() -> RollupResult:
    """Bring rollups (and the affected draft invoices) up to date with the request log.

    Run it every few minutes, twice, or twice at once: the result is the same.
    """
    watermark = request_log_watermark()
    days = days_with_requests(after_id=rollup_watermark(), up_to_id=watermark)
    rows = rollup_days(days)
    _advance_watermark(watermark)
    drafts = _affected_open_periods(days)
    for period in drafts:
        recompute_drafts(period, up_to_id=watermark)
    return RollupResult(
        days=tuple(days), rows=rows, watermark=watermark, drafts_recomputed=tuple(drafts)
    )


def _advance_watermark(request_id: int) -> None:
    """Move the watermark forward, never back (a slower concurrent run may finish last)."""
    updated = RollupWatermark.objects.filter(name=ROLLUP_WATERMARK).update(
        request_id=Greatest("request_id", request_id), updated_at=timezone.now()
    )
    if not updated:
        RollupWatermark.objects.bulk_create(
            [RollupWatermark(name=ROLLUP_WATERMARK)], ignore_conflicts=True
        )
        _advance_watermark(request_id)


def _affected_open_periods(days: Iterable[date]) -> list[date]:
    """The months whose drafts the new usage changes: its own months while they are open;
    the open month (which takes late usage as adjustments) for usage of closed months."""
    periods: set[date] = set()
    for period in {month_start(day) for day in days}:
        if not is_period_closed(period):
            periods.add(period)
        else:
            late_goes_to = open_period()
            if late_goes_to is not None:
                periods.add(late_goes_to)
    return sorted(periods)
