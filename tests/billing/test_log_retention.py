"""Request log retention: old rows go, in bounded batches, only once their days are rolled
up and their usage is on finalized invoices; rollups and invoices read the same afterwards."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from celery.schedules import crontab
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import rollups, tasks
from billing.invoices import close_month
from billing.models import Invoice, InvoiceLine, UsageRollup
from billing.retention import request_log_purge
from gateway.models import RequestLog
from tests.billing.factories import JULY, JUNE, MAY, at, record, request_log, standard_prices

pytestmark = pytest.mark.django_db

# 400 days before 2027-08-15: the horizon is 2026-07-11 00:00 UTC.
NOW = datetime(2027, 8, 15, 9, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def retention(settings):
    settings.GATEHOUSE = {
        **settings.GATEHOUSE,
        "LOG_RETENTION_DAYS": 400,
        "LOG_RETENTION_BATCH_SIZE": 5,
    }
    standard_prices()


def requests_on(day: datetime, count: int, cost_center) -> list[RequestLog]:
    return record(
        *(
            request_log(
                started_at=day,
                cost_center=cost_center,
                model="claude-sonnet-5",
                input_tokens=1000 + number,
                output_tokens=200,
            )
            for number in range(count)
        )
    )


def ids_left() -> list[int]:
    return list(RequestLog.objects.order_by("pk").values_list("pk", flat=True))


def billing_state() -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Everything invoices and dashboards are read from, minus ids and timestamps."""
    rollup_rows = sorted(
        UsageRollup.objects.values_list(
            "day",
            "cost_center_id",
            "model",
            "requests",
            "input_tokens",
            "output_tokens",
            "cost_usd",
        )
    )
    invoices = sorted(
        Invoice.objects.values_list(
            "cost_center_id", "period_start", "number", "status", "total_usd", "requests"
        )
    )
    lines = sorted(
        InvoiceLine.objects.values_list(
            "invoice__number", "kind", "model", "token_class", "quantity", "amount_usd"
        )
    )
    return rollup_rows, invoices, lines


def request_log_deletes(queries: CaptureQueriesContext) -> list[str]:
    table = RequestLog._meta.db_table
    return [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].upper().startswith("DELETE") and table in query["sql"]
    ]


def test_old_rolled_up_invoiced_rows_go_and_recent_rows_stay(research):
    old = requests_on(at(4), 7, research) + requests_on(at(20, month=6), 4, research)
    recent = requests_on(at(20, month=7), 3, research)
    rollups.rollup_usage()
    close_month(JULY)

    result = request_log_purge(now=NOW)

    assert result.deleted == len(old) == 11
    assert result.horizon == datetime(2026, 7, 11, tzinfo=UTC)
    assert ids_left() == [row.pk for row in recent]


def test_deleting_leaves_rollups_and_invoices_unchanged(research):
    requests_on(at(4), 6, research)
    requests_on(at(9, month=6), 6, research)
    requests_on(at(20, month=7), 2, research)
    rollups.rollup_usage()
    close_month(JULY)
    before = billing_state()

    deleted = request_log_purge(now=NOW).deleted
    rerun = rollups.rollup_usage()

    assert deleted == 12
    assert rerun.days == ()
    assert billing_state() == before
    assert [(number, status, requests) for _, _, number, status, _, requests in before[1]] == [
        ("GH-202605-research", "finalized", 6),
        ("GH-202606-research", "finalized", 6),
        ("GH-202607-research", "finalized", 2),
    ]


def test_rows_of_a_month_not_yet_closed_stay_however_old(research):
    requests_on(at(4), 3, research)
    rollups.rollup_usage()

    result = request_log_purge(now=NOW)

    assert result.deleted == 0
    assert len(ids_left()) == 3


def test_invoiced_rows_whose_day_is_not_rolled_up_yet_stay_until_it_is(research):
    rows = requests_on(at(4), 3, research)
    close_month(MAY)

    before_rollup = request_log_purge(now=NOW).deleted
    rollups.rollup_usage()
    after_rollup = request_log_purge(now=NOW).deleted

    assert before_rollup == 0
    assert after_rollup == len(rows) == 3
    assert UsageRollup.objects.get().requests == 3


def test_a_late_row_of_a_closed_month_stays_until_an_invoice_carries_it(research):
    requests_on(at(4), 2, research)
    rollups.rollup_usage()
    close_month(MAY)
    [late] = requests_on(at(5), 1, research)
    rollups.rollup_usage()

    first = request_log_purge(now=NOW).deleted
    kept = ids_left()
    close_month(JUNE)
    second = request_log_purge(now=NOW).deleted

    assert first == 2
    assert kept == [late.pk]
    assert second == 1
    assert Invoice.objects.get(period_start=JUNE).lines.filter(kind="adjustment").exists()


def test_each_delete_statement_removes_at_most_one_batch(research):
    requests_on(at(4), 12, research)
    rollups.rollup_usage()
    close_month(MAY)

    with CaptureQueriesContext(connection) as queries:
        result = request_log_purge(now=NOW)

    assert (result.deleted, result.batches) == (12, 3)
    assert len(request_log_deletes(queries)) == 3
    assert ids_left() == []


def test_batches_hold_to_the_bound_when_rows_interleave_with_kept_ones(research):
    old = []
    for _ in range(4):
        old += requests_on(at(4), 3, research)
        requests_on(at(20, month=7), 1, research)
    rollups.rollup_usage()
    close_month(JULY)

    with CaptureQueriesContext(connection) as queries:
        result = request_log_purge(now=NOW)

    assert (result.deleted, result.batches) == (12, 3)
    assert len(request_log_deletes(queries)) == 3
    assert RequestLog.objects.filter(pk__in=[row.pk for row in old]).count() == 0
    assert RequestLog.objects.count() == 4


def test_a_retention_of_zero_keeps_everything(settings, research):
    settings.GATEHOUSE = {**settings.GATEHOUSE, "LOG_RETENTION_DAYS": 0}
    requests_on(at(4), 3, research)
    rollups.rollup_usage()
    close_month(MAY)

    assert request_log_purge(now=NOW).deleted == 0
    assert len(ids_left()) == 3


def test_running_the_purge_twice_deletes_nothing_more(research):
    requests_on(at(4), 3, research)
    rollups.rollup_usage()
    close_month(MAY)

    first = request_log_purge(now=NOW).deleted
    second = request_log_purge(now=NOW).deleted

    assert (first, second) == (3, 0)


def test_the_purge_task_runs_daily_and_deletes_what_is_past_retention(settings, research):
    settings.GATEHOUSE = {**settings.GATEHOUSE, "LOG_RETENTION_DAYS": 90}
    long_ago = datetime(2020, 3, 2, 12, tzinfo=UTC)
    requests_on(long_ago, 2, research)
    rollups.rollup_usage()
    close_month(long_ago.date())

    deleted = tasks.purge_request_log.delay().get()

    assert deleted == 2
    assert django_settings.CELERY_BEAT_SCHEDULE["billing-purge-request-log"] == {
        "task": "billing.purge_request_log",
        "schedule": crontab(minute="40", hour="3"),
    }
