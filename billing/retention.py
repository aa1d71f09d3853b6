"""Request log retention: rows older than `GATEHOUSE["LOG_RETENTION_DAYS"]` are deleted once
nothing will read them again.

A row may go only when all of these hold:

- it started before the retention horizon, UTC midnight `LOG_RETENTION_DAYS` days ago (so
  whole days go, never part of one);
- its month is closed (`ClosedPeriod`): its usage is on finalized invoices, which are never
  recomputed, and repricing leaves closed months alone;
- its id is at most the rollup watermark (its day's rollups were computed with it in) and at
  most the last closed month's `covered_request_id` (it is on a finalized invoice; a late row
  of a closed month that arrived after closing waits until the next invoice carries it).

So rollups and invoices read the same after a purge as before. The rows go in batches of
`LOG_RETENTION_BATCH_SIZE`, by primary key range, each batch in its own short transaction,
so the table is never locked for long and a crash loses nothing but the remaining work.

Settings refuse a retention shorter than `MIN_LOG_RETENTION_DAYS` (config/settings.py):
rollups recompute a day whole from the request log when a late row of that day arrives, and
a day whose rows were purged must never be recomputed; a request log row that arrives more
than that many days late does not happen (the spool is replayed as soon as the database is
back).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.periods import month_bounds, utc_midnight
from billing.selectors import latest_closed_period, rollup_watermark
from gateway.models import RequestLog


@dataclass(frozen=True)
class PurgeResult:
    deleted: int
    batches: int
    horizon: datetime | None
    id_bound: int


NOTHING = PurgeResult(deleted=0, batches=0, horizon=None, id_bound=0)


def request_log_purge(*, now: datetime | None = None) -> PurgeResult:
    """Delete the request log rows past retention that rollups and invoices no longer need.

    Safe to run twice or at once: a second run finds nothing (or deletes 0 rows per batch).
    """
    retention_days: int = settings.GATEHOUSE["LOG_RETENTION_DAYS"]
    batch_size: int = settings.GATEHOUSE["LOG_RETENTION_BATCH_SIZE"]
    if retention_days <= 0:
        return NOTHING
    latest = latest_closed_period()
    if latest is None:
        return NOTHING
    today = (now or timezone.now()).date()
    horizon = min(
        utc_midnight(today - timedelta(days=retention_days)), month_bounds(latest.period_start)[1]
    )
    id_bound = min(rollup_watermark(), latest.covered_request_id)
    expired = RequestLog.objects.filter(pk__lte=id_bound, started_at__lt=horizon)
    deleted = batches = 0
    after_id = 0
    while True:
        ids = list(
            expired.filter(pk__gt=after_id).order_by("pk").values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            break
        with transaction.atomic():
            _, by_model = expired.filter(pk__gte=ids[0], pk__lte=ids[-1]).delete()
        deleted += by_model.get(RequestLog._meta.label, 0)
        batches += 1
        after_id = ids[-1]
    return PurgeResult(deleted=deleted, batches=batches, horizon=horizon, id_bound=id_bound)
