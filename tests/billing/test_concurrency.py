"""Billing jobs run twice at once (two workers, beat plus an admin action) end as if run once.

Real threads with their own database connections, on the test database (SQLite file or
PostgreSQL), with committed data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection, transaction

from billing.invoices import close_month
from billing.lines import round_total
from billing.models import (
    ClosedPeriod,
    Invoice,
    InvoiceLine,
    RollupWatermark,
    UsageRollup,
)
from billing.rollups import rollup_usage
from billing.selectors import request_log_watermark
from gateway.models import RequestLog
from tests.billing.factories import JUNE, MAY, at, record, record_one, request_log, standard_prices

pytestmark = pytest.mark.django_db(transaction=True)


def at_once(*calls: Callable[[], object]) -> None:
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=10)
            call()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []


def billing_state() -> dict[str, list]:
    def rows(queryset, *fields):
        return sorted(queryset.values_list(*fields), key=repr)

    return {
        "rollups": rows(
            UsageRollup.objects,
            "day",
            "cost_center_id",
            "user_id",
            "virtual_key_id",
            "provider_id",
            "model",
            "requests",
            "error_requests",
            "unpriced_requests",
            "input_tokens",
            "output_tokens",
            "cache_write_5m_tokens",
            "cache_write_1h_tokens",
            "cache_read_tokens",
            "cost_usd",
            "cache_savings_usd",
        ),
        "invoices": rows(
            Invoice.objects,
            "cost_center_id",
            "period_start",
            "number",
            "status",
            "total_usd",
            "requests",
            "unpriced_requests",
            "covered_request_id",
        ),
        "lines": rows(
            InvoiceLine.objects,
            "invoice__cost_center_id",
            "invoice__period_start",
            "kind",
            "provider_name",
            "model",
            "token_class",
            "user_id",
            "is_breakdown",
            "adjusts_period_start",
            "quantity",
            "unit_price_per_mtok",
            "amount_usd",
            "requests",
        ),
        "closed": rows(ClosedPeriod.objects, "period_start", "covered_request_id"),
    }


def forget_billing() -> None:
    InvoiceLine.objects.all().delete()
    Invoice.objects.all().delete()
    ClosedPeriod.objects.all().delete()
    UsageRollup.objects.all().delete()
    RollupWatermark.objects.all().delete()


@pytest.fixture
def traffic(research, ops, alice, bob, charlie):
    standard_prices()
    people = ((research, alice.user), (research, bob.user), (ops, charlie.user))
    record(
        *(
            request_log(
                started_at=at(day, hour, month=month),
                cost_center=cost_center,
                user=user,
                model=model,
                input_tokens=day * 1_003 + hour,
                output_tokens=hour * 17,
                cache_read_tokens=day * hour * 101,
            )
            for month in (5, 6)
            for day in range(1, 29, 2)
            for hour in (1, 12, 23)
            for model in ("claude-opus-5", "claude-haiku-4-5")
            for cost_center, user in people
        )
    )


def test_two_rollups_at_once_leave_the_same_rows_as_one(traffic):
    at_once(rollup_usage, rollup_usage)
    concurrent = billing_state()
    forget_billing()

    rollup_usage()

    assert billing_state() == concurrent
    assert len(concurrent["rollups"]) == 2 * 14 * 3 * 2


def test_two_closings_at_once_leave_the_same_invoices_as_one(traffic):
    at_once(lambda: close_month(MAY), lambda: close_month(MAY))
    concurrent = billing_state()
    forget_billing()

    close_month(MAY)

    assert billing_state() == concurrent
    assert sorted((row[2], row[3]) for row in concurrent["invoices"]) == [
        ("GH-202605-ops", "finalized"),
        ("GH-202605-research", "finalized"),
    ]


def test_rollups_and_a_closing_at_once_bill_every_request_once(traffic, research, ops):
    at_once(rollup_usage, lambda: close_month(MAY), rollup_usage)
    concurrent = billing_state()
    forget_billing()

    close_month(MAY)
    rollup_usage()

    assert billing_state() == concurrent
    for cost_center in (research, ops):
        for period, status in ((MAY, "finalized"), (JUNE, "draft")):
            recorded = RequestLog.objects.filter(
                cost_center=cost_center, started_at__month=period.month
            ).values_list("cost_usd", flat=True)
            invoice = Invoice.objects.get(cost_center=cost_center, period_start=period)
            assert (invoice.status, invoice.total_usd) == (
                status,
                round_total(sum(recorded, Decimal(0))),
            )


def test_the_watermark_waits_for_a_request_log_row_still_being_written(research):
    standard_prices()
    inserted, release = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def write() -> None:
        try:
            with transaction.atomic():
                seen["id"] = record_one(
                    started_at=at(4), cost_center=research, model="claude-opus-5", output_tokens=1
                ).pk
                inserted.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    def read() -> None:
        try:
            seen["watermark"] = request_log_watermark()
        finally:
            connection.close()

    writer = threading.Thread(target=write)
    writer.start()
    assert inserted.wait(timeout=10)
    reader = threading.Thread(target=read)
    reader.start()
    reader.join(timeout=0.5)
    still_waiting = reader.is_alive()
    release.set()
    writer.join(timeout=10)
    reader.join(timeout=10)

    assert still_waiting
    assert seen["watermark"] == seen["id"]
