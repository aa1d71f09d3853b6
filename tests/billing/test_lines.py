"""Invoice lines and rounding, without a database."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing.lines import TokenCounts, UsageGroup, build_invoice, cents_summing_to, round_total
from billing.periods import (
    day_bounds,
    invoice_number,
    month_bounds,
    months_between,
    next_month,
    parse_period,
    previous_month,
)
from gateway.contracts import PriceRow

SONNET = PriceRow(
    price_id=1,
    provider_id=None,
    model="claude-sonnet-5",
    effective_from=datetime(2026, 1, 1, tzinfo=UTC),
    input_per_mtok=Decimal("2"),
    output_per_mtok=Decimal("10"),
    cache_write_5m_per_mtok=Decimal("2.5"),
    cache_write_1h_per_mtok=Decimal("4"),
    cache_read_per_mtok=Decimal("0.2"),
)


def group(**fields) -> UsageGroup:
    defaults = {
        "cost_center_id": 1,
        "user_id": 10,
        "provider_id": None,
        "model": "claude-sonnet-5",
        "price": SONNET,
        "is_priced": True,
        "requests": 1,
        "tokens": TokenCounts(),
        "cost": Decimal(0),
    }
    return UsageGroup(**{**defaults, **fields})


@pytest.mark.parametrize(
    ("exact", "total"),
    [
        (Decimal("0.005"), Decimal("0.01")),
        (Decimal("0.0049999999"), Decimal("0.00")),
        (Decimal("2.345"), Decimal("2.35")),
        (Decimal("-0.005"), Decimal("-0.01")),
    ],
)
def test_total_rounds_half_up_to_cents(exact, total):
    assert round_total(exact) == total


def test_cents_go_to_the_lines_that_lost_most_in_rounding():
    amounts = [Decimal("0.004"), Decimal("0.0071"), Decimal("1.0029"), Decimal("0.0062")]

    cents = cents_summing_to(amounts, round_total(sum(amounts)))

    assert cents == [Decimal("0.00"), Decimal("0.01"), Decimal("1.00"), Decimal("0.01")]
    assert sum(cents) == Decimal("1.02")


def test_equal_remainders_give_the_cent_to_the_earlier_line():
    assert cents_summing_to([Decimal("0.004")] * 3, Decimal("0.01")) == [
        Decimal("0.01"),
        Decimal("0"),
        Decimal("0"),
    ]


def test_negative_amounts_are_apportioned_too():
    amounts = [Decimal("1.006"), Decimal("-0.003")]

    cents = cents_summing_to(amounts, round_total(sum(amounts)))

    assert cents == [Decimal("1.00"), Decimal("0.00")]


def test_a_total_that_is_not_the_rounded_sum_is_refused():
    with pytest.raises(ValueError, match="not the rounded sum"):
        cents_summing_to([Decimal("0.004")], Decimal("0.02"))


def test_lines_add_up_exactly_to_the_recorded_costs_with_an_other_line():
    recorded = Decimal("0.0123456789")
    draft = build_invoice(
        1,
        [group(tokens=TokenCounts(input=1234, output=567), cost=recorded)],
        provider_names={},
    )

    lines = [line for line in draft.lines if not line.is_breakdown]
    assert [(line.token_class, line.amount_usd) for line in lines] == [
        ("input", Decimal("0.002468")),
        ("output", Decimal("0.00567")),
        ("other", Decimal("0.0042076789")),
    ]
    assert draft.exact_total_usd == recorded
    assert draft.total_usd == Decimal("0.01")


def test_priced_requests_whose_price_row_is_gone_bill_their_recorded_cost_as_other():
    draft = build_invoice(
        1, [group(price=None, tokens=TokenCounts(input=10), cost=Decimal("0.5"))], {}
    )

    assert [(line.token_class, line.quantity, line.amount_usd) for line in draft.lines] == [
        ("other", 0, Decimal("0.5")),
        ("other", 0, Decimal("0.5")),
    ]
    assert [line.is_breakdown for line in draft.lines] == [False, True]


def test_unpriced_requests_without_tokens_still_get_a_line():
    draft = build_invoice(1, [group(is_priced=False, price=None, requests=3)], {})

    line = draft.lines[0]
    assert (line.token_class, line.quantity, line.amount_usd, line.requests) == (
        "input",
        0,
        None,
        3,
    )
    assert draft.unpriced_requests == 3
    assert draft.total_usd == Decimal("0.00")


def test_only_the_cost_centers_own_groups_are_invoiced():
    draft = build_invoice(
        2,
        [
            group(cost_center_id=1, tokens=TokenCounts(input=10**6), cost=Decimal(2)),
            group(cost_center_id=2, tokens=TokenCounts(output=10**6), cost=Decimal(10)),
        ],
        {},
    )

    assert draft.total_usd == Decimal("10.00")
    assert draft.requests == 1


def test_adjustments_follow_the_months_own_usage():
    draft = build_invoice(
        1,
        [
            group(
                tokens=TokenCounts(input=10**6), cost=Decimal(2), adjusts_period=date(2026, 4, 1)
            ),
            group(tokens=TokenCounts(output=10**6), cost=Decimal(10)),
        ],
        {},
    )

    assert [
        (line.kind, line.adjusts_period, line.token_class)
        for line in draft.lines
        if not line.is_breakdown
    ] == [("usage", None, "output"), ("adjustment", date(2026, 4, 1), "input")]
    assert draft.total_usd == Decimal("12.00")


@pytest.mark.parametrize(
    ("period", "before", "after"),
    [
        (date(2026, 1, 1), date(2025, 12, 1), date(2026, 2, 1)),
        (date(2026, 12, 9), date(2026, 11, 1), date(2027, 1, 1)),
    ],
)
def test_months_roll_over_the_year(period, before, after):
    assert (previous_month(period), next_month(period)) == (before, after)


def test_periods_are_utc_calendar_months_and_days():
    assert month_bounds(date(2026, 2, 14)) == (
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert day_bounds(date(2026, 2, 28)) == (
        datetime(2026, 2, 28, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert list(months_between(date(2026, 11, 30), date(2027, 1, 2))) == [
        date(2026, 11, 1),
        date(2026, 12, 1),
        date(2027, 1, 1),
    ]


def test_invoice_numbers_name_the_month_and_cost_center():
    assert invoice_number(date(2026, 5, 1), "research") == "GH-202605-research"
    assert parse_period("2026-05") == parse_period("2026-05-17") == date(2026, 5, 1)
