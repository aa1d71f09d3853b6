"""Finance finalizes a month's invoice through the API; the audit log says who."""

from __future__ import annotations

from datetime import date

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from billing.invoices import recompute_drafts
from billing.models import Invoice, InvoiceStatus
from tests.api.conftest import CALLERS, expected_status
from tests.billing.factories import at, record_one, standard_prices


@pytest.fixture
def may_draft(research, alice):
    standard_prices()
    record_one(started_at=at(12), cost_center=research, user=alice.user, input_tokens=1_000_000)
    recompute_drafts(date(2026, 5, 1))
    return Invoice.objects.get(cost_center=research, period_start=date(2026, 5, 1))


def test_finalizing_a_past_month_numbers_the_invoice_and_audits_it(admin_api, may_draft):
    response = admin_api.post(f"/invoices/{may_draft.pk}/finalize")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["number"]) == ("finalized", "GH-202605-research")
    event = AuditEvent.objects.get(action="finalize", object_id=str(may_draft.pk))
    assert (event.via, event.actor.username) == ("api", "root-admin")


def test_finalizing_twice_is_a_conflict(admin_api, may_draft):
    admin_api.post(f"/invoices/{may_draft.pk}/finalize")

    response = admin_api.post(f"/invoices/{may_draft.pk}/finalize")

    assert response.status_code == 409
    assert response.json() == {
        "detail": "Invoice GH-202605-research is already finalized.",
        "field": "status",
    }


def test_the_running_month_cannot_be_finalized(admin_api, research):
    today = timezone.now().date().replace(day=1)
    draft = Invoice.objects.create(cost_center=research, period_start=today)

    response = admin_api.post(f"/invoices/{draft.pk}/finalize")

    assert response.status_code == 409
    assert response.json()["field"] == "period"
    assert Invoice.objects.get(pk=draft.pk).status == InvoiceStatus.DRAFT


@pytest.mark.parametrize("name", CALLERS)
def test_finalize_follows_the_permission_matrix(caller, may_draft, name):
    response = caller(name).post(f"/invoices/{may_draft.pk}/finalize")

    assert response.status_code == expected_status(name, ok=200, write=True)
