"""Draft invoices from the request log, closing months, and late usage of closed months."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing.invoices import (
    InvoiceIsFinalized,
    PeriodNotOver,
    close_month,
    recompute_drafts,
    recompute_invoice,
)
from billing.models import ClosedPeriod, Invoice, InvoiceLine, InvoiceStatus
from gateway.models import Provider, ProviderKind
from gateway.pricing import price_request, quantize_cost
from gateway.selectors import price_book_load
from gateway.usage import StreamUsage
from tests.billing.factories import (
    HAIKU,
    HAIKU_CHEAPER,
    JULY,
    JUNE,
    MAY,
    at,
    price,
    record,
    record_one,
    request_log,
    standard_prices,
)

pytestmark = pytest.mark.django_db


def line_rows(invoice: Invoice, *, is_breakdown: bool = False) -> list[tuple]:
    return [
        (
            line.kind,
            line.model,
            line.token_class,
            line.quantity,
            line.unit_price_per_mtok,
            line.amount_usd,
        )
        for line in invoice.lines.filter(is_breakdown=is_breakdown).order_by("pk")
    ]


def invoice_of(cost_center, period: date) -> Invoice:
    return Invoice.objects.get(cost_center=cost_center, period_start=period)


def test_draft_has_one_line_per_model_token_class_and_unit_price_in_force(research, alice):
    price("claude-haiku-4-5", HAIKU)
    price("claude-haiku-4-5", HAIKU_CHEAPER, effective_from=at(15, 0))
    price("claude-sonnet-5", ("2", "2.50", "4", "0.20", "10"))
    who = {"cost_center": research, "user": alice.user}
    record(
        request_log(
            started_at=at(10),
            model="claude-haiku-4-5",
            input_tokens=1_000_000,
            output_tokens=200_000,
            **who,
        ),
        request_log(
            started_at=at(20),
            model="claude-haiku-4-5",
            input_tokens=500_000,
            output_tokens=100_000,
            **who,
        ),
        request_log(
            started_at=at(3),
            model="claude-sonnet-5",
            input_tokens=300,
            cache_read_tokens=1000,
            output_tokens=50,
            **who,
        ),
    )

    recompute_drafts(MAY)

    invoice = invoice_of(research, MAY)
    assert line_rows(invoice) == [
        ("usage", "claude-haiku-4-5", "input", 500_000, Decimal("0.8"), Decimal("0.4")),
        ("usage", "claude-haiku-4-5", "input", 1_000_000, Decimal("1"), Decimal("1")),
        ("usage", "claude-haiku-4-5", "output", 100_000, Decimal("4"), Decimal("0.4")),
        ("usage", "claude-haiku-4-5", "output", 200_000, Decimal("5"), Decimal("1")),
        ("usage", "claude-sonnet-5", "input", 300, Decimal("2"), Decimal("0.0006")),
        ("usage", "claude-sonnet-5", "cache_read", 1000, Decimal("0.2"), Decimal("0.0002")),
        ("usage", "claude-sonnet-5", "output", 50, Decimal("10"), Decimal("0.0005")),
    ]
    assert invoice.total_usd == Decimal("2.80")
    assert invoice.status == InvoiceStatus.DRAFT
    assert invoice.number is None
    assert invoice.requests == 3


def test_total_is_rounded_half_up_once_from_the_exact_sum(research, alice):
    standard_prices()
    # Each request costs $0.0025: rounded one by one they would come to $0.00.
    record(
        *(
            request_log(
                started_at=at(day),
                cost_center=research,
                user=alice.user,
                model="claude-sonnet-5",
                input_tokens=1250,
            )
            for day in (4, 5)
        )
    )

    recompute_drafts(MAY)

    assert invoice_of(research, MAY).total_usd == Decimal("0.01")


def test_unpriced_requests_are_listed_with_their_count_and_no_amount(research, alice):
    standard_prices()
    record(
        request_log(
            started_at=at(2),
            cost_center=research,
            user=alice.user,
            model="claude-sonnet-5",
            output_tokens=100_000,
        ),
        *(
            request_log(
                started_at=at(day),
                cost_center=research,
                user=alice.user,
                model="mystery-model-1",
                input_tokens=700,
                output_tokens=30,
            )
            for day in (3, 4)
        ),
    )

    recompute_drafts(MAY)

    invoice = invoice_of(research, MAY)
    unpriced = invoice.lines.filter(is_breakdown=False, model="mystery-model-1").order_by("pk")
    assert [
        (line.token_class, line.quantity, line.unit_price_per_mtok, line.amount_usd, line.requests)
        for line in unpriced
    ] == [("input", 1400, None, None, 2), ("output", 60, None, None, 2)]
    assert unpriced[0].description == "2 requests without a price in force: not billed."
    assert invoice.unpriced_requests == 2
    assert invoice.total_usd == Decimal("1.00")


def test_per_user_breakdown_repeats_the_lines_and_is_not_added_to_the_total(research, alice, bob):
    standard_prices()
    record(
        request_log(
            started_at=at(2),
            cost_center=research,
            user=alice.user,
            model="claude-opus-5",
            input_tokens=10_000,
            output_tokens=1_000,
        ),
        request_log(
            started_at=at(3),
            cost_center=research,
            user=bob.user,
            model="claude-opus-5",
            input_tokens=20_000,
        ),
    )

    recompute_drafts(MAY)

    invoice = invoice_of(research, MAY)
    breakdown = [
        (line.user_id, line.token_class, line.quantity, line.amount_usd)
        for line in invoice.lines.filter(is_breakdown=True).order_by("pk")
    ]
    assert breakdown == [
        (alice.user.pk, "input", 10_000, Decimal("0.05")),
        (alice.user.pk, "output", 1_000, Decimal("0.025")),
        (bob.user.pk, "input", 20_000, Decimal("0.1")),
    ]
    assert line_rows(invoice) == [
        ("usage", "claude-opus-5", "input", 30_000, Decimal("5"), Decimal("0.15")),
        ("usage", "claude-opus-5", "output", 1_000, Decimal("25"), Decimal("0.025")),
    ]
    assert invoice.total_usd == Decimal("0.18")


def test_recorded_cost_beyond_the_token_lines_is_an_other_line(research, alice):
    standard_prices()
    record(
        request_log(
            started_at=at(2),
            cost_center=research,
            user=alice.user,
            model="claude-sonnet-5",
            input_tokens=1_000,
            web_search_requests=3,
        )
    )

    recompute_drafts(MAY)

    invoice = invoice_of(research, MAY)
    assert line_rows(invoice) == [
        ("usage", "claude-sonnet-5", "input", 1_000, Decimal("2"), Decimal("0.002")),
        ("usage", "claude-sonnet-5", "other", 0, None, Decimal("0.03")),
    ]
    assert invoice.total_usd == Decimal("0.03")


def test_requests_of_other_months_and_without_cost_center_are_not_on_the_invoice(research, alice):
    standard_prices()
    record(
        request_log(
            started_at=at(31, 23, 59),
            cost_center=research,
            model="claude-opus-5",
            input_tokens=1_000_000,
        ),
        request_log(
            started_at=datetime(2026, 4, 30, 23, 59, tzinfo=UTC),
            cost_center=research,
            model="claude-opus-5",
            input_tokens=2_000_000,
        ),
        request_log(
            started_at=datetime(2026, 6, 1, tzinfo=UTC),
            cost_center=research,
            model="claude-opus-5",
            input_tokens=4_000_000,
        ),
        request_log(started_at=at(10), model="claude-opus-5", input_tokens=8_000_000),
    )

    recompute_drafts(MAY)

    assert invoice_of(research, MAY).total_usd == Decimal("5.00")
    assert Invoice.objects.count() == 1


def test_a_stream_with_both_cache_writes_and_reads_is_invoiced_exactly(research, alice):
    standard_prices()
    stream = StreamUsage()
    stream.on_message_start(
        {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-opus-5",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 50,
                "cache_creation_input_tokens": 248,
                "cache_read_input_tokens": 100000,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 148,
                    "ephemeral_1h_input_tokens": 100,
                },
                "output_tokens": 1,
                "service_tier": "standard",
            },
        }
    )
    stream.on_message_delta(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 503},
        }
    )
    usage = stream.usage
    priced = price_request(
        usage=usage,
        iterations=stream.iterations,
        model=stream.model,
        provider_id=None,
        at=at(7),
        book=price_book_load(),
    )
    record(
        request_log(
            started_at=at(7),
            cost_center=research,
            user=alice.user,
            model=stream.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_write_5m_tokens=usage.cache_write_5m_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            cache_read_tokens=usage.cache_read_tokens,
        )
    )

    recompute_drafts(MAY)

    # 50×5 + 148×6.25 + 100×10 + 100000×0.50 + 503×25 = 64750 per million tokens.
    assert quantize_cost(priced.cost_usd) == Decimal("0.0647500000")
    invoice = invoice_of(research, MAY)
    assert line_rows(invoice) == [
        ("usage", "claude-opus-5", "input", 50, Decimal("5"), Decimal("0.00025")),
        ("usage", "claude-opus-5", "cache_write_5m", 148, Decimal("6.25"), Decimal("0.000925")),
        ("usage", "claude-opus-5", "cache_write_1h", 100, Decimal("10"), Decimal("0.001")),
        ("usage", "claude-opus-5", "cache_read", 100000, Decimal("0.5"), Decimal("0.05")),
        ("usage", "claude-opus-5", "output", 503, Decimal("25"), Decimal("0.012575")),
    ]
    assert sum(line[5] for line in line_rows(invoice)) == Decimal("0.06475")
    assert invoice.total_usd == Decimal("0.06")


def test_lines_carry_the_provider_name(research):
    bedrock = Provider.objects.create(
        name="bedrock-us", kind=ProviderKind.BEDROCK, base_url="https://bedrock.example"
    )
    price("claude-haiku-4-5", HAIKU, provider=bedrock)
    record_one(
        started_at=at(2),
        cost_center=research,
        provider=bedrock,
        model="claude-haiku-4-5",
        output_tokens=1_000,
    )

    recompute_drafts(MAY)

    line = invoice_of(research, MAY).lines.get(is_breakdown=False)
    assert (line.provider_name, line.amount_usd) == ("bedrock-us", Decimal("0.005"))


def test_closing_a_month_numbers_and_finalizes_each_cost_centers_invoice(
    research, ops, alice, charlie
):
    standard_prices()
    record(
        request_log(
            started_at=at(2),
            cost_center=research,
            user=alice.user,
            model="claude-opus-5",
            output_tokens=40_000,
        ),
        request_log(
            started_at=at(3),
            cost_center=ops,
            user=charlie.user,
            model="claude-haiku-4-5",
            input_tokens=3_000_000,
        ),
    )
    closed_at = datetime(2026, 6, 1, 0, 10, tzinfo=UTC)

    invoices = close_month(MAY, now=closed_at)

    assert [(i.number, i.status, i.total_usd, i.finalized_at) for i in invoices] == [
        ("GH-202605-ops", "finalized", Decimal("3.00"), closed_at),
        ("GH-202605-research", "finalized", Decimal("1.00"), closed_at),
    ]
    assert list(ClosedPeriod.objects.values_list("period_start", flat=True)) == [MAY]


def test_closing_a_month_twice_changes_nothing(research, alice):
    standard_prices()
    record_one(
        started_at=at(2),
        cost_center=research,
        user=alice.user,
        model="claude-opus-5",
        output_tokens=40_000,
    )
    first = close_month(MAY)
    lines = line_rows(first[0])

    second = close_month(MAY)

    assert [(i.pk, i.number, i.total_usd, i.finalized_at) for i in second] == [
        (first[0].pk, "GH-202605-research", Decimal("1.00"), first[0].finalized_at)
    ]
    assert line_rows(second[0]) == lines
    assert ClosedPeriod.objects.count() == 1


def test_closing_a_month_closes_the_earlier_months_not_yet_closed_first(research, alice):
    standard_prices()
    record(
        request_log(
            started_at=at(2), cost_center=research, model="claude-opus-5", output_tokens=40_000
        ),
        request_log(
            started_at=at(2, month=7),
            cost_center=research,
            model="claude-opus-5",
            output_tokens=80_000,
        ),
    )

    close_month(JULY)

    assert list(
        Invoice.objects.order_by("period_start").values_list("number", "status", "total_usd")
    ) == [
        ("GH-202605-research", "finalized", Decimal("1.00")),
        ("GH-202607-research", "finalized", Decimal("2.00")),
    ]
    assert list(
        ClosedPeriod.objects.order_by("period_start").values_list("period_start", flat=True)
    ) == [MAY, JUNE, JULY]


def test_a_month_that_has_not_ended_cannot_be_closed(research):
    with pytest.raises(PeriodNotOver, match="2026-05 has not ended yet"):
        close_month(MAY, now=datetime(2026, 5, 31, 23, 59, tzinfo=UTC))

    assert ClosedPeriod.objects.count() == 0


def test_a_late_request_for_a_closed_month_is_an_adjustment_on_the_next_invoice(research, alice):
    standard_prices()
    record_one(
        started_at=at(2),
        cost_center=research,
        user=alice.user,
        model="claude-opus-5",
        output_tokens=40_000,
    )
    record_one(
        started_at=at(3, month=6),
        cost_center=research,
        user=alice.user,
        model="claude-opus-5",
        output_tokens=4_000,
    )
    may = close_month(MAY)[0]
    # Replayed from a spool after May was closed: started in May, recorded in June.
    record_one(
        started_at=at(31, 23, 58),
        cost_center=research,
        user=alice.user,
        model="claude-opus-5",
        input_tokens=200_000,
    )

    recompute_drafts(JUNE)

    june = invoice_of(research, JUNE)
    assert [
        (line.kind, line.adjusts_period_start, line.token_class, line.quantity, line.amount_usd)
        for line in june.lines.filter(is_breakdown=False).order_by("pk")
    ] == [
        ("usage", None, "output", 4_000, Decimal("0.1")),
        ("adjustment", MAY, "input", 200_000, Decimal("1")),
    ]
    assert june.total_usd == Decimal("1.10")
    may.refresh_from_db()
    assert may.total_usd == Decimal("1.00")
    assert line_rows(may) == [
        ("usage", "claude-opus-5", "output", 40_000, Decimal("25"), Decimal("1")),
    ]


def test_late_usage_closed_with_the_next_month_is_not_billed_again(research):
    standard_prices()
    record_one(started_at=at(2), cost_center=research, model="claude-opus-5", output_tokens=40_000)
    close_month(MAY)
    record_one(started_at=at(20), cost_center=research, model="claude-opus-5", input_tokens=200_000)
    close_month(JUNE)
    record_one(started_at=at(21), cost_center=research, model="claude-opus-5", input_tokens=400_000)

    recompute_drafts(JULY)

    assert list(
        Invoice.objects.order_by("period_start").values_list("period_start", "status", "total_usd")
    ) == [
        (MAY, "finalized", Decimal("1.00")),
        (JUNE, "finalized", Decimal("1.00")),
        (JULY, "draft", Decimal("2.00")),
    ]
    july = invoice_of(research, JULY)
    assert list(
        july.lines.filter(is_breakdown=False).values_list("kind", "adjusts_period_start")
    ) == [("adjustment", MAY)]


def test_a_finalized_invoice_cannot_be_recomputed(research):
    standard_prices()
    record_one(started_at=at(2), cost_center=research, model="claude-opus-5", output_tokens=40_000)
    invoice = close_month(MAY)[0]

    with pytest.raises(InvoiceIsFinalized, match="GH-202605-research is finalized"):
        recompute_invoice(invoice_id=invoice.pk)


def test_recomputing_a_closed_month_leaves_its_invoices_as_they_are(research):
    standard_prices()
    record_one(started_at=at(2), cost_center=research, model="claude-opus-5", output_tokens=40_000)
    invoice = close_month(MAY)[0]
    lines = list(InvoiceLine.objects.filter(invoice=invoice).values_list("pk", "amount_usd"))
    record_one(started_at=at(9), cost_center=research, model="claude-opus-5", output_tokens=40_000)

    assert recompute_drafts(MAY) == []

    invoice.refresh_from_db()
    assert (invoice.total_usd, invoice.computed_at) == (Decimal("1.00"), invoice.computed_at)
    assert (
        list(InvoiceLine.objects.filter(invoice=invoice).values_list("pk", "amount_usd")) == lines
    )


def test_recompute_invoice_refreshes_a_draft(research):
    standard_prices()
    record_one(started_at=at(2), cost_center=research, model="claude-opus-5", output_tokens=40_000)
    recompute_drafts(MAY)
    draft = invoice_of(research, MAY)
    record_one(started_at=at(9), cost_center=research, model="claude-opus-5", output_tokens=40_000)

    refreshed = recompute_invoice(invoice_id=draft.pk)

    assert (refreshed.pk, refreshed.total_usd, refreshed.requests) == (draft.pk, Decimal("2.00"), 2)
