"""CSV exports of a month's invoices: stored, downloadable, and adding up to the totals."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from billing.exports import CSV_COLUMNS, export_month, invoice_csv_response
from billing.invoices import close_month, recompute_drafts
from billing.models import Invoice, InvoiceExport
from tests.billing.factories import MAY, at, record, request_log, standard_prices

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def parsed(content: bytes | str) -> list[dict[str, str]]:
    text = content.decode() if isinstance(content, bytes) else content
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def may_closed(research, ops, alice, charlie):
    research.external_billing_code = "GL-4410"
    research.save()
    standard_prices()
    record(
        # $0.004 each on input, cache read and output: three lines of 0.004 → total $0.01.
        request_log(
            started_at=at(2),
            cost_center=research,
            user=alice.user,
            model="claude-sonnet-5",
            input_tokens=2_000,
            cache_read_tokens=20_000,
            output_tokens=400,
        ),
        request_log(
            started_at=at(3),
            cost_center=ops,
            user=charlie.user,
            model="claude-haiku-4-5",
            input_tokens=3_000_000,
        ),
    )
    return close_month(MAY)


def test_csv_has_the_documented_columns_and_amounts_in_cents(may_closed):
    research_invoice = may_closed[1]

    response = invoice_csv_response(research_invoice)

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="GH-202605-research.csv"'
    rows = parsed(response.content)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [
        (
            row["invoice_number"],
            row["period"],
            row["cost_center_code"],
            row["external_billing_code"],
            row["model"],
            row["token_class"],
            row["quantity"],
            row["unit_price_per_mtok"],
            row["amount"],
            row["currency"],
            row["kind"],
        )
        for row in rows
    ] == [
        (
            "GH-202605-research",
            "2026-05",
            "research",
            "GL-4410",
            "claude-sonnet-5",
            "input",
            "2000",
            "2.0000",
            "0.01",
            "USD",
            "usage",
        ),
        (
            "GH-202605-research",
            "2026-05",
            "research",
            "GL-4410",
            "claude-sonnet-5",
            "cache_read",
            "20000",
            "0.2000",
            "0.00",
            "USD",
            "usage",
        ),
        (
            "GH-202605-research",
            "2026-05",
            "research",
            "GL-4410",
            "claude-sonnet-5",
            "output",
            "400",
            "10.0000",
            "0.00",
            "USD",
            "usage",
        ),
    ]
    assert research_invoice.total_usd == Decimal("0.01")


def test_month_export_stores_one_file_per_cost_center_and_one_for_all(may_closed, media_root):
    exports = export_month(MAY)

    assert [
        (e.cost_center.code if e.cost_center else None, e.file.name, e.rows, e.total_usd)
        for e in exports
    ] == [
        ("ops", "billing/exports/2026-05/GH-202605-ops.csv", 1, Decimal("3.00")),
        ("research", "billing/exports/2026-05/GH-202605-research.csv", 3, Decimal("0.01")),
        (None, "billing/exports/2026-05/GH-202605-all.csv", 4, Decimal("3.01")),
    ]
    everything = parsed((media_root / "billing/exports/2026-05/GH-202605-all.csv").read_bytes())
    assert sum(Decimal(row["amount"]) for row in everything) == Decimal("3.01")
    assert [row["cost_center_code"] for row in everything] == [
        "ops",
        "research",
        "research",
        "research",
    ]


def test_exporting_twice_leaves_one_set_of_files_with_the_same_content(may_closed, media_root):
    first = {e.file.name: e.sha256 for e in export_month(MAY)}

    second = {e.file.name: e.sha256 for e in export_month(MAY)}

    assert second == first
    assert InvoiceExport.objects.count() == 3
    assert sorted(path.name for path in (media_root / "billing/exports/2026-05").iterdir()) == [
        "GH-202605-all.csv",
        "GH-202605-ops.csv",
        "GH-202605-research.csv",
    ]


def test_a_draft_downloads_without_a_number(research, alice):
    standard_prices()
    record(
        request_log(
            started_at=at(2), cost_center=research, model="claude-opus-5", output_tokens=40_000
        )
    )
    recompute_drafts(MAY)

    response = invoice_csv_response(Invoice.objects.get())

    assert response["Content-Disposition"] == 'attachment; filename="draft-202605-research.csv"'
    assert [(row["invoice_number"], row["amount"]) for row in parsed(response.content)] == [
        ("", "1.00")
    ]


def test_unpriced_lines_are_exported_without_unit_price_or_amount(research):
    standard_prices()
    record(
        request_log(
            started_at=at(2), cost_center=research, model="mystery-model-1", input_tokens=900
        )
    )
    recompute_drafts(MAY)

    rows = parsed(invoice_csv_response(Invoice.objects.get()).content)

    assert [
        (
            row["token_class"],
            row["quantity"],
            row["unit_price_per_mtok"],
            row["amount"],
            row["description"],
        )
        for row in rows
    ] == [("input", "900", "", "", "1 request without a price in force: not billed.")]
