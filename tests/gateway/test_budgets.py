"""Budgets, pure: worst-case estimate, scopes and periods, messages, settle arithmetic."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from accounts.contracts import KeyContext
from gateway.admission.budgets import (
    COST_CENTER,
    DAY,
    KEY,
    MONTH,
    USER,
    BudgetScope,
    budget_scopes,
    crossed_thresholds,
    estimate_input_tokens,
    fits,
    max_tokens_of,
    period_of,
    refusal_message,
    reset_text,
    settled,
    units_ceiling,
    units_of_cost,
    usd,
    worst_case_cost,
)
from gateway.contracts import PriceRow

AT = datetime(2026, 11, 15, 12, 30, tzinfo=UTC)
OPUS = PriceRow(
    price_id=1,
    provider_id=None,
    model="claude-opus-5",
    effective_from=datetime(2025, 1, 1, tzinfo=UTC),
    input_per_mtok=Decimal("5"),
    output_per_mtok=Decimal("25"),
    cache_write_5m_per_mtok=Decimal("6.25"),
    cache_write_1h_per_mtok=Decimal("10"),
    cache_read_per_mtok=Decimal("0.50"),
)
KEY_CONTEXT = KeyContext(
    key_id=11,
    key_public_id="vk_11",
    key_name="alice laptop",
    user_id=22,
    username="alice",
    cost_center_id=33,
    cost_center_code="research",
    key_monthly_budget_usd=Decimal("50.00"),
    key_daily_budget_usd=Decimal("5.00"),
    user_monthly_budget_usd=None,
    cost_center_monthly_budget_usd=Decimal("500.00"),
)


def scope(limit: str | None, *, scope_type: str = COST_CENTER, kind: str = MONTH) -> BudgetScope:
    return BudgetScope(
        scope_type, 33, "research", period_of(kind, AT), None if limit is None else Decimal(limit)
    )


@pytest.mark.parametrize(
    ("body_size", "tokens"), [(0, 0), (1, 1), (4, 1), (5, 2), (400_001, 100_001)]
)
def test_the_input_estimate_is_the_body_size_over_four_rounded_up(body_size, tokens):
    assert estimate_input_tokens(body_size) == tokens


def test_the_worst_case_prices_the_estimated_input_and_every_output_token():
    # 1,000 bytes → 250 input tokens at $5/M, plus 4,096 output tokens at $25/M.
    assert worst_case_cost(body_size=1000, max_tokens=4096, price=OPUS) == Decimal("0.10365")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"max_tokens": 4096}, 4096),
        ({}, 0),
        ({"max_tokens": "4096"}, 0),
        ({"max_tokens": True}, 0),
        ({"max_tokens": -1}, 0),
    ],
)
def test_max_tokens_is_taken_only_when_it_is_a_count(payload, expected):
    assert max_tokens_of(payload) == expected


def test_a_month_runs_from_its_first_instant_to_the_next_month_in_utc():
    period = period_of(MONTH, AT)
    assert (period.start, period.end, period.label) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
        "2026-11",
    )
    assert period_of(MONTH, datetime(2026, 12, 1, tzinfo=UTC)).label == "2026-12"
    assert period_of(MONTH, datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)).label == (
        "2026-11"
    )


def test_december_resets_on_the_first_of_january():
    assert period_of(MONTH, datetime(2026, 12, 31, 23, 59, tzinfo=UTC)).end == datetime(
        2027, 1, 1, tzinfo=UTC
    )


def test_periods_follow_utc_not_the_local_offset_of_the_timestamp():
    just_after_local_midnight = datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert period_of(MONTH, just_after_local_midnight).label == "2026-11"
    assert period_of(DAY, just_after_local_midnight).label == "2026-11-30"


def test_a_day_runs_midnight_to_midnight_utc_leap_days_included():
    period = period_of(DAY, datetime(2028, 2, 28, 23, 0, tzinfo=UTC))
    assert (period.start, period.end, period.label) == (
        datetime(2028, 2, 28, tzinfo=UTC),
        datetime(2028, 2, 29, tzinfo=UTC),
        "2028-02-28",
    )


def test_counters_outlive_their_period_by_a_day():
    period = period_of(DAY, AT)
    assert period.counter_expires_at == datetime(2026, 11, 17, tzinfo=UTC)


def test_the_reset_time_is_the_end_of_the_period_in_iso_utc():
    assert reset_text(period_of(MONTH, AT)) == "2026-12-01T00:00:00Z"
    assert reset_text(period_of(DAY, AT)) == "2026-11-16T00:00:00Z"


def test_a_request_counts_against_the_key_month_and_day_the_user_and_the_cost_center():
    scopes = budget_scopes(KEY_CONTEXT, AT)

    assert [(s.scope_type, s.scope_id, s.period.kind, s.limit) for s in scopes] == [
        (KEY, 11, MONTH, Decimal("50.00")),
        (KEY, 11, DAY, Decimal("5.00")),
        (USER, 22, MONTH, None),
        (COST_CENTER, 33, MONTH, Decimal("500.00")),
    ]
    assert [s.counter_id for s in scopes] == [
        "key:11:month:2026-11",
        "key:11:day:2026-11-15",
        "user:22:month:2026-11",
        "cost_center:33:month:2026-11",
    ]


def test_a_key_changed_since_its_last_request_counts_against_its_new_limits():
    before = budget_scopes(KEY_CONTEXT, AT)
    changed = dataclasses.replace(KEY_CONTEXT, key_daily_budget_usd=Decimal("7.00"))

    assert budget_scopes(KEY_CONTEXT, AT + timedelta(hours=1)) is before  # same key, same day
    assert budget_scopes(changed, AT)[1].limit == Decimal("7.00")
    assert budget_scopes(KEY_CONTEXT, AT + timedelta(days=1))[1].period.label == "2026-11-16"


def test_a_key_without_cost_center_has_no_cost_center_budget():
    key = KeyContext(
        key_id=1,
        key_public_id="vk_1",
        key_name="k",
        user_id=2,
        username="u",
        cost_center_id=None,
        cost_center_code=None,
    )
    assert [s.scope_type for s in budget_scopes(key, AT)] == [KEY, KEY, USER]


def test_an_exhausted_budget_is_named_with_its_limit_and_reset_time():
    message = refusal_message(
        scope("500.00"), spent=units_ceiling(Decimal("500.00")), reserved=0, amount=1
    )
    assert message == (
        "Monthly budget of cost center 'research' (500.00 USD) is exhausted; "
        "it resets at 2026-12-01T00:00:00Z."
    )


def test_a_budget_that_cannot_cover_the_worst_case_says_how_much_is_left():
    daily = BudgetScope(KEY, 11, "alice laptop", period_of(DAY, AT), Decimal("5.00"))
    message = refusal_message(
        daily,
        spent=units_ceiling(Decimal("4.50")),
        reserved=units_ceiling(Decimal("0.40")),
        amount=units_ceiling(Decimal("0.10365")),
    )
    assert message == (
        "Daily budget of key 'alice laptop' (5.00 USD) cannot cover this request: its "
        "worst-case cost is 0.1037 USD and 0.1000 USD is left (requests in flight included); "
        "lower max_tokens or wait until it resets at 2026-11-16T00:00:00Z."
    )


def test_a_reservation_fits_up_to_the_last_unit_of_the_limit():
    assert fits(limit=1000, spent=600, reserved=300, amount=100)
    assert not fits(limit=1000, spent=600, reserved=300, amount=101)
    assert fits(limit=None, spent=10**15, reserved=0, amount=10**15)


def test_an_unpriced_request_reserves_nothing_but_needs_some_budget_left():
    assert fits(limit=1000, spent=999, reserved=0, amount=0)
    assert not fits(limit=1000, spent=600, reserved=400, amount=0)
    assert not fits(limit=0, spent=0, reserved=0, amount=0)


def test_settling_cheaper_than_reserved_releases_the_rest():
    assert settled(spent=1000, reserved=500, held=300, actual=120) == (1120, 200)


def test_settling_dearer_than_reserved_counts_the_true_cost():
    assert settled(spent=1000, reserved=500, held=300, actual=450) == (1450, 200)


def test_settling_after_the_hold_expired_only_adds_the_cost():
    assert settled(spent=1000, reserved=0, held=0, actual=450) == (1450, 0)


@pytest.mark.parametrize(
    ("before", "after", "crossed"),
    [
        (0, 799, ()),
        (799, 800, (80,)),
        (790, 1000, (80, 100)),
        (800, 999, ()),
        (999, 1000, (100,)),
        (1000, 1200, ()),
    ],
)
def test_thresholds_are_crossed_once_on_the_way_up(before, after, crossed):
    assert crossed_thresholds(limit=1000, before=before, after=after) == crossed


def test_a_zero_budget_has_no_thresholds_to_cross():
    assert crossed_thresholds(limit=0, before=0, after=10) == ()


def test_units_are_tenths_of_a_nano_dollar_rounded_like_the_request_log():
    assert units_ceiling(Decimal("0.00000000001")) == 1
    assert units_of_cost(Decimal("0.00000000005")) == 1
    assert units_of_cost(Decimal("0.00000000004")) == 0
    assert units_of_cost(Decimal("0.10365")) == 1_036_500_000
    assert usd(12_345) == Decimal("0.0000012345")
