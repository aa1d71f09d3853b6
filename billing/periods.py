"""Calendar arithmetic for billing: UTC days and months. Pure, no ORM."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta


def month_start(day: date) -> date:
    """The first day of the month `day` falls in (a billing period is named by it)."""
    return day.replace(day=1)


def next_month(period: date) -> date:
    period = month_start(period)
    return date(period.year + period.month // 12, period.month % 12 + 1, 1)


def previous_month(period: date) -> date:
    period = month_start(period)
    return date(period.year - (period.month == 1), (period.month - 2) % 12 + 1, 1)


def months_between(first: date, last: date) -> Iterator[date]:
    """Every period from `first`'s month to `last`'s month, both included."""
    period, last = month_start(first), month_start(last)
    while period <= last:
        yield period
        period = next_month(period)


def utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day."""
    return utc_midnight(day), utc_midnight(day + timedelta(days=1))


def month_bounds(period: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC calendar month."""
    return utc_midnight(month_start(period)), utc_midnight(next_month(period))


def invoice_number(period: date, cost_center_code: str) -> str:
    """`GH-YYYYMM-<cost center code>`: unique, since there is one invoice per center and month."""
    return f"GH-{period:%Y%m}-{cost_center_code}"


def parse_period(text: str) -> date:
    """`2026-05` or any ISO date in the month (`2026-05-17`) → 2026-05-01."""
    if len(text) == 7:
        text = f"{text}-01"
    return month_start(date.fromisoformat(text))
