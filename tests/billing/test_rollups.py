"""Daily rollups from the request log, and the watermark that finds the days to redo."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from accounts.models import VirtualKey
from billing.invoices import close_month
from billing.models import Invoice, RollupWatermark, UsageRollup
from billing.rollups import rollup_days, rollup_usage
from gateway.models import RequestOutcome
from tests.billing.factories import (
    JUNE,
    MAY,
    at,
    record,
    record_one,
    request_log,
    standard_prices,
)

pytestmark = pytest.mark.django_db

ROLLUP_FIELDS = (
    "day",
    "cost_center__code",
    "user__username",
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
)


def rollups() -> list[tuple]:
    return list(UsageRollup.objects.order_by(*ROLLUP_FIELDS).values_list(*ROLLUP_FIELDS))


def test_a_day_rolls_up_per_cost_center_user_key_provider_and_model(research, alice, bob):
    standard_prices()
    alice_key = VirtualKey.objects.get(owner=alice.user)
    alice_request = {"cost_center": research, "user": alice.user, "virtual_key": alice_key}
    record(
        request_log(
            started_at=at(4, 9),
            model="claude-opus-5",
            input_tokens=1_000,
            cache_write_5m_tokens=2_000,
            cache_read_tokens=10_000,
            output_tokens=300,
            **alice_request,
        ),
        request_log(
            started_at=at(4, 23, 59),
            model="claude-opus-5",
            cache_write_1h_tokens=500,
            output_tokens=100,
            **alice_request,
        ),
        request_log(
            started_at=at(4, 10),
            model="claude-opus-5",
            outcome=RequestOutcome.UPSTREAM_ERROR,
            status_code=529,
            **alice_request,
        ),
        request_log(
            started_at=at(4, 11), model="mystery-model-1", input_tokens=70, **alice_request
        ),
        request_log(
            started_at=at(4, 12),
            cost_center=research,
            user=bob.user,
            model="claude-opus-5",
            output_tokens=1_000,
        ),
        request_log(
            started_at=at(5, 0),
            cost_center=research,
            user=bob.user,
            model="claude-opus-5",
            output_tokens=1_000,
        ),
    )

    assert rollup_days([date(2026, 5, 4)]) == 3

    assert rollups() == [
        (
            date(2026, 5, 4),
            "research",
            "alice",
            alice_key.pk,
            None,
            "claude-opus-5",
            3,
            1,
            0,
            1_000,
            400,
            2_000,
            500,
            10_000,
            # 1000×5 + 2000×6.25 + 10000×0.5 + 300×25 + 500×10 + 100×25 per million
            Decimal("0.0375"),
            # 13000×5 − (1000×5 + 2000×6.25 + 10000×0.5), plus 500×5 − 500×10, per million
            Decimal("0.04"),
        ),
        (
            date(2026, 5, 4),
            "research",
            "alice",
            alice_key.pk,
            None,
            "mystery-model-1",
            1,
            0,
            1,
            70,
            0,
            0,
            0,
            0,
            Decimal("0"),
            Decimal("0"),
        ),
        (
            date(2026, 5, 4),
            "research",
            "bob",
            None,
            None,
            "claude-opus-5",
            1,
            0,
            0,
            0,
            1_000,
            0,
            0,
            0,
            Decimal("0.025"),
            Decimal("0"),
        ),
    ]


def test_recomputing_a_day_replaces_its_rows(research):
    standard_prices()
    record_one(started_at=at(4), cost_center=research, model="claude-opus-5", output_tokens=1_000)
    rollup_days([date(2026, 5, 4)])
    record_one(started_at=at(4), cost_center=research, model="claude-opus-5", output_tokens=3_000)

    rollup_days([date(2026, 5, 4)])

    assert list(UsageRollup.objects.values_list("requests", "output_tokens", "cost_usd")) == [
        (2, 4_000, Decimal("0.1"))
    ]


def test_rollup_usage_redoes_only_the_days_with_new_requests(research):
    standard_prices()
    record(
        request_log(
            started_at=at(4), cost_center=research, model="claude-opus-5", output_tokens=1_000
        ),
        request_log(
            started_at=at(6), cost_center=research, model="claude-opus-5", output_tokens=1_000
        ),
    )
    first = rollup_usage()
    kept = UsageRollup.objects.get(day=date(2026, 5, 6))
    late = record_one(
        started_at=at(4), cost_center=research, model="claude-opus-5", output_tokens=1_000
    )

    second = rollup_usage()

    assert first.days == (date(2026, 5, 4), date(2026, 5, 6))
    assert second.days == (date(2026, 5, 4),)
    assert second.watermark == late.pk
    assert RollupWatermark.objects.get().request_id == late.pk
    assert UsageRollup.objects.get(day=date(2026, 5, 6)).computed_at == kept.computed_at
    assert UsageRollup.objects.get(day=date(2026, 5, 4)).requests == 2


def test_running_rollup_usage_twice_gives_the_same_rows(research, alice):
    standard_prices()
    record(
        *(
            request_log(
                started_at=at(day, hour),
                cost_center=research,
                user=alice.user,
                model=model,
                input_tokens=day * 1_000,
                output_tokens=hour * 10,
            )
            for day in (1, 2, 31)
            for hour in (0, 13, 23)
            for model in ("claude-opus-5", "claude-haiku-4-5")
        )
    )
    rollup_usage()
    once = rollups()

    again = rollup_usage()

    assert again.days == ()
    assert rollups() == once
    assert len(once) == 6


def test_rollup_usage_recomputes_the_drafts_of_the_months_it_touched(research):
    standard_prices()
    record_one(started_at=at(4), cost_center=research, model="claude-opus-5", output_tokens=40_000)

    result = rollup_usage()

    assert result.drafts_recomputed == (MAY,)
    assert Invoice.objects.get(cost_center=research, period_start=MAY).total_usd == Decimal("1.00")


def test_rollup_usage_puts_late_usage_of_a_closed_month_on_the_open_months_draft(research):
    standard_prices()
    record_one(started_at=at(4), cost_center=research, model="claude-opus-5", output_tokens=40_000)
    close_month(MAY)
    rollup_usage()
    record_one(
        started_at=at(31, 23, 59), cost_center=research, model="claude-opus-5", output_tokens=4_000
    )

    result = rollup_usage()

    assert result.days == (date(2026, 5, 31),)
    assert result.drafts_recomputed == (JUNE,)
    june = Invoice.objects.get(cost_center=research, period_start=JUNE)
    assert (june.status, june.total_usd) == ("draft", Decimal("0.10"))
    assert list(
        june.lines.filter(is_breakdown=False).values_list("kind", "adjusts_period_start")
    ) == [("adjustment", MAY)]
    assert UsageRollup.objects.get(day=date(2026, 5, 31)).cost_usd == Decimal("0.1")
