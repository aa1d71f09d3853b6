"""Celery entry points of billing: thin, idempotent, safe to run twice or at once."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError
from django.utils import timezone

from billing import exports, invoices, retention, rollups
from billing.periods import month_start, parse_period, previous_month

# A lock wait that timed out (see selectors.request_log_watermark) or a database restart:
# try again shortly rather than wait for the next beat (a month, for closing).
RETRY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 30,
    "retry_backoff_max": 600,
    "max_retries": 12,
}


@shared_task(name="billing.rollup_usage", **RETRY)
def rollup_usage() -> int:
    """Every 5 minutes: rollups of the days with new requests, and their drafts."""
    return len(rollups.rollup_usage().days)


@shared_task(name="billing.close_month", **RETRY)
def close_month(period: str | None = None) -> list[str]:
    """On the 1st at 00:10 UTC: close the previous month (or `period`, "YYYY-MM"), then
    export it. Returns the numbers of the month's finalized invoices."""
    month = parse_period(period) if period else previous_month(month_start(timezone.now().date()))
    closed = invoices.close_month(month)
    export_month.delay(f"{month:%Y-%m}")
    return [invoice.number or "" for invoice in closed]


@shared_task(name="billing.export_month", **RETRY)
def export_month(period: str | None = None) -> int:
    """Write the month's CSV files (default: the previous month). Returns how many."""
    month = parse_period(period) if period else previous_month(month_start(timezone.now().date()))
    return len(exports.export_month(month))


@shared_task(name="billing.purge_request_log", **RETRY)
def purge_request_log() -> int:
    """Daily at 03:40 UTC: delete request log rows past GATEHOUSE_LOG_RETENTION_DAYS that
    are rolled up and on finalized invoices. Returns how many."""
    return retention.request_log_purge().deleted
