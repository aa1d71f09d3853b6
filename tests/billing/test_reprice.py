"""`manage.py reprice`: new prices reach the request log and drafts of open months only."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from billing.invoices import close_month, recompute_drafts
from billing.models import Invoice, UsageRollup
from billing.rollups import rollup_usage
from gateway.models import ModelPrice, RequestLog
from tests.billing.factories import JUNE, MAY, at, price, record_one, standard_prices

pytestmark = pytest.mark.django_db


def reprice(first: str, last: str) -> str:
    out = StringIO()
    call_command("reprice", "--from", first, "--to", last, stdout=out)
    return out.getvalue()


@pytest.fixture
def may_closed_june_open(research, alice):
    standard_prices()
    may = record_one(
        started_at=at(20),
        cost_center=research,
        user=alice.user,
        model="claude-sonnet-5",
        output_tokens=100_000,
    )
    june = record_one(
        started_at=at(3, month=6),
        cost_center=research,
        user=alice.user,
        model="claude-sonnet-5",
        output_tokens=100_000,
    )
    unknown = record_one(
        started_at=at(4, month=6),
        cost_center=research,
        user=alice.user,
        model="claude-sonnet-5-preview",
        output_tokens=100_000,
    )
    close_month(MAY)
    rollup_usage()
    return may, june, unknown


def test_reprice_changes_requests_and_drafts_of_open_months_only(may_closed_june_open, research):
    may, june, unknown = may_closed_june_open
    may_invoice = Invoice.objects.get(period_start=MAY)
    may_lines = list(may_invoice.lines.values_list("pk", "unit_price_per_mtok", "amount_usd"))
    # The list price turns out to have been $12 output since May 1st; and the preview model
    # gets a price.
    price(
        "claude-sonnet-5",
        ("2", "2.50", "4", "0.20", "12"),
        effective_from=datetime(2026, 5, 1, tzinfo=UTC),
    )
    price("claude-sonnet-5-preview", ("1", "1.25", "2", "0.10", "5"))

    output = reprice("2026-05-01", "2026-06-30")

    assert output == (
        "2026-05: closed, not repriced\n2026-06: 2 of 2 requests repriced; drafts recomputed\n"
    )
    costs = dict(RequestLog.objects.values_list("pk", "cost_usd"))
    assert costs == {may.pk: Decimal("1"), june.pk: Decimal("1.2"), unknown.pk: Decimal("0.5")}
    may_invoice.refresh_from_db()
    assert may_invoice.total_usd == Decimal("1.00")
    assert list(may_invoice.lines.values_list("pk", "unit_price_per_mtok", "amount_usd")) == (
        may_lines
    )
    june_invoice = Invoice.objects.get(period_start=JUNE)
    assert (june_invoice.status, june_invoice.total_usd, june_invoice.unpriced_requests) == (
        "draft",
        Decimal("1.70"),
        0,
    )
    assert dict(UsageRollup.objects.filter(day__month=6).values_list("model", "cost_usd")) == {
        "claude-sonnet-5": Decimal("1.2"),
        "claude-sonnet-5-preview": Decimal("0.5"),
    }
    assert UsageRollup.objects.get(day=date(2026, 5, 20)).cost_usd == Decimal("1")


def test_repricing_with_unchanged_prices_writes_nothing(may_closed_june_open):
    computed = Invoice.objects.get(period_start=JUNE).computed_at

    output = reprice("2026-06-03", "2026-06-03")

    assert output == "2026-06: 0 of 1 requests repriced; drafts recomputed\n"
    assert Invoice.objects.get(period_start=JUNE).computed_at > computed


def test_repricing_a_price_removed_from_the_catalog_leaves_requests_unpriced(research):
    standard_prices()
    request = record_one(
        started_at=at(3), cost_center=research, model="claude-sonnet-5", output_tokens=100_000
    )
    recompute_drafts(MAY)
    ModelPrice.objects.filter(model="claude-sonnet-5").delete()

    reprice("2026-05-01", "2026-05-31")

    request.refresh_from_db()
    assert (request.cost_usd, request.is_priced) == (None, False)
    invoice = Invoice.objects.get(period_start=MAY)
    assert (invoice.total_usd, invoice.unpriced_requests) == (Decimal("0.00"), 1)


def test_reprice_refuses_a_range_that_ends_before_it_starts(db):
    with pytest.raises(CommandError, match="ends before it starts"):
        reprice("2026-06-02", "2026-06-01")


def test_reprice_refuses_a_date_it_cannot_read(db):
    with pytest.raises(CommandError, match="'June' is not a date"):
        reprice("June", "2026-06-01")
