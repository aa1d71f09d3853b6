"""Invoices and rollups in the control room: shown in money, never edited by hand."""

from datetime import date
from decimal import Decimal

import pytest
from django.urls import reverse
from pytest_django.asserts import assertContains

from billing.models import Invoice, InvoiceLine, InvoiceStatus, TokenClass, UsageRollup


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def invoice(research) -> Invoice:
    invoice = Invoice.objects.create(
        cost_center=research,
        period_start=date(2025, 5, 1),
        number="GH-2025-05-research",
        status=InvoiceStatus.FINALIZED,
        total_usd=Decimal("1234.5"),
    )
    InvoiceLine.objects.create(
        invoice=invoice,
        provider_name="anthropic",
        model="claude-sonnet-4-5",
        token_class=TokenClass.OUTPUT,
        quantity=82_300_000,
        unit_price_per_mtok=Decimal("15"),
        amount_usd=Decimal("1234.5"),
    )
    return invoice


def test_invoice_list_shows_the_total_with_currency_and_two_decimals(staff_client, invoice):
    response = staff_client.get(reverse("admin:billing_invoice_changelist"))

    assert '<td class="field-total">$1,234.50</td>' in response.text
    assert '<td class="field-period">2025-05</td>' in response.text


def test_invoice_page_shows_its_lines_read_only(staff_client, invoice):
    response = staff_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))

    assert response.status_code == 200
    assert response.context["title"] == "View invoice"
    assertContains(response, '<td class="field-tokens"><p>82,300,000</p></td>', html=True)
    assertContains(response, '<td class="field-unit_price"><p>$15.0000</p></td>', html=True)
    assertContains(response, '<td class="field-amount"><p>$1,234.50</p></td>', html=True)
    assert 'name="lines-0-quantity"' not in response.text


def test_invoice_in_another_currency_is_labelled_with_it(staff_client, invoice):
    Invoice.objects.filter(pk=invoice.pk).update(currency="EUR")

    response = staff_client.get(reverse("admin:billing_invoice_changelist"))

    assert '<td class="field-total">EUR 1,234.50</td>' in response.text


def test_finalized_invoice_cannot_be_changed_through_the_admin(staff_client, invoice):
    response = staff_client.post(
        reverse("admin:billing_invoice_change", args=[invoice.pk]), {"total_usd": "1.00"}
    )

    invoice.refresh_from_db()
    assert response.status_code == 403
    assert invoice.total_usd == Decimal("1234.50")


def test_rollup_list_shows_usage_cost_to_four_decimals(staff_client, research, alice):
    UsageRollup.objects.create(
        day=date(2025, 5, 2),
        cost_center=research,
        user=alice.user,
        model="claude-haiku-4-5",
        requests=3,
        input_tokens=5000,
        output_tokens=700,
        cost_usd=Decimal("0.00845"),
    )

    response = staff_client.get(reverse("admin:billing_usagerollup_changelist"))

    assert '<td class="field-cost">$0.0085</td>' in response.text
    assert '<td class="field-tokens">5,000 / 700</td>' in response.text
