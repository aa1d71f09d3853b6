"""Billing's Celery tasks and their beat schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.utils import timezone

from billing import tasks
from billing.models import Invoice, InvoiceExport
from billing.periods import month_start, previous_month
from tests.billing.factories import MAY, at, record_one, standard_prices


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def test_beat_rolls_up_every_five_minutes_and_closes_the_previous_month_on_the_first():
    schedule = settings.CELERY_BEAT_SCHEDULE

    assert schedule["billing-rollup-usage"] == {"task": "billing.rollup_usage", "schedule": 300.0}
    assert schedule["billing-close-month"]["task"] == "billing.close_month"
    assert schedule["billing-close-month"]["schedule"] == crontab(
        minute="10", hour="0", day_of_month="1"
    )


@pytest.mark.django_db
def test_rollup_task_returns_how_many_days_it_recomputed(research):
    standard_prices()
    record_one(started_at=at(4), cost_center=research, model="claude-opus-5", output_tokens=1)
    record_one(started_at=at(5), cost_center=research, model="claude-opus-5", output_tokens=1)

    assert tasks.rollup_usage.delay().get() == 2
    assert tasks.rollup_usage.delay().get() == 0


@pytest.mark.django_db
def test_close_task_finalizes_and_exports_the_month(research):
    standard_prices()
    record_one(started_at=at(4), cost_center=research, model="claude-opus-5", output_tokens=40_000)

    numbers = tasks.close_month.delay("2026-05").get()

    assert numbers == ["GH-202605-research"]
    assert list(
        InvoiceExport.objects.order_by("pk").values_list("period_start", "file", "total_usd")
    ) == [
        (MAY, "billing/exports/2026-05/GH-202605-research.csv", Decimal("1.00")),
        (MAY, "billing/exports/2026-05/GH-202605-all.csv", Decimal("1.00")),
    ]
    assert tasks.close_month.delay("2026-05").get() == numbers
    assert InvoiceExport.objects.count() == 2


@pytest.mark.django_db
def test_close_task_defaults_to_the_month_before_this_one(research):
    standard_prices()
    last_month = previous_month(month_start(timezone.now().date()))
    record_one(
        started_at=datetime.combine(last_month, datetime.min.time(), tzinfo=UTC)
        + timedelta(hours=5),
        cost_center=research,
        model="claude-opus-5",
        output_tokens=40_000,
    )

    assert tasks.close_month.delay().get() == [f"GH-{last_month:%Y%m}-research"]
    assert Invoice.objects.get().period_start == last_month
    assert tasks.export_month.delay().get() == 2
