"""Admin actions on invoices (billing.admin_actions), called as the admin calls them."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.admin import AdminSite, ModelAdmin
from django.contrib.messages import get_messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.test import RequestFactory

from billing.admin_actions import download_invoice_csv, finalize_invoices, recompute_invoices
from billing.invoices import recompute_drafts
from billing.models import Invoice
from tests.billing.factories import JUNE, MAY, at, record, record_one, request_log, standard_prices

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice_admin() -> ModelAdmin:
    return ModelAdmin(Invoice, AdminSite())


@pytest.fixture
def admin_request(staff):
    request = RequestFactory().post("/admin/billing/invoice/")
    request.user = staff
    request.session = {}
    request._messages = FallbackStorage(request)
    return request


def messages_of(request) -> list[str]:
    return [str(message) for message in get_messages(request)]


@pytest.fixture
def may_drafts(research, ops):
    standard_prices()
    record(
        request_log(
            started_at=at(2), cost_center=research, model="claude-opus-5", output_tokens=40_000
        ),
        request_log(started_at=at(3), cost_center=ops, model="claude-opus-5", output_tokens=80_000),
    )
    recompute_drafts(MAY)
    return Invoice.objects.order_by("cost_center__code")


def test_finalizing_an_invoice_closes_its_month_for_every_cost_center(
    invoice_admin, admin_request, may_drafts, research
):
    finalize_invoices(invoice_admin, admin_request, Invoice.objects.filter(cost_center=research))

    assert list(may_drafts.values_list("number", "status")) == [
        ("GH-202605-ops", "finalized"),
        ("GH-202605-research", "finalized"),
    ]
    assert messages_of(admin_request) == ["2026-05 closed: 2 invoices finalized."]


def test_finalizing_finalized_invoices_only_says_so(invoice_admin, admin_request, may_drafts):
    finalize_invoices(invoice_admin, admin_request, Invoice.objects.all())

    finalize_invoices(invoice_admin, admin_request, Invoice.objects.all())

    assert messages_of(admin_request) == [
        "2026-05 closed: 2 invoices finalized.",
        "The selected invoices are already finalized.",
    ]


def test_recomputing_skips_finalized_invoices(invoice_admin, admin_request, may_drafts, research):
    finalize_invoices(invoice_admin, admin_request, Invoice.objects.all())
    record_one(
        started_at=at(2, month=6), cost_center=research, model="claude-opus-5", output_tokens=40_000
    )
    recompute_drafts(JUNE)

    recompute_invoices(invoice_admin, admin_request, Invoice.objects.all())

    assert messages_of(admin_request)[-1] == (
        "Recomputed the drafts of 1 month; 2 finalized invoices left as they are."
    )
    assert list(Invoice.objects.values_list("period_start", "status", "total_usd")) == [
        (JUNE, "draft", Decimal("1.00")),
        (MAY, "finalized", Decimal("2.00")),
        (MAY, "finalized", Decimal("1.00")),
    ]


def test_downloading_several_invoices_gives_one_csv(invoice_admin, admin_request, may_drafts):
    response = download_invoice_csv(invoice_admin, admin_request, Invoice.objects.all())

    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert response["Content-Disposition"] == 'attachment; filename="invoices.csv"'
    assert [(row["cost_center_code"], row["amount"]) for row in rows] == [
        ("ops", "2.00"),
        ("research", "1.00"),
    ]


def test_downloading_one_invoice_gives_its_csv(invoice_admin, admin_request, may_drafts, research):
    response = download_invoice_csv(
        invoice_admin, admin_request, Invoice.objects.filter(cost_center=research)
    )

    assert response["Content-Disposition"] == 'attachment; filename="draft-202605-research.csv"'
