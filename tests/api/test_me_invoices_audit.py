"""`/me` for developers, invoices for finance, and the audit log."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from billing.models import Invoice, InvoiceLine
from tests.api.conftest import CALLERS, expected_status, log_request


@pytest.fixture
def invoice(research) -> Invoice:
    invoice = Invoice.objects.create(
        cost_center=research, period_start=date(2026, 1, 1), total_usd=Decimal("12.34")
    )
    InvoiceLine.objects.create(
        invoice=invoice,
        model="claude-sonnet-4-5",
        token_class="input",
        provider_name="anthropic",
        quantity=1_000_000,
        unit_price_per_mtok=Decimal("3"),
        amount_usd=Decimal("3"),
    )
    InvoiceLine.objects.create(
        invoice=invoice,
        model="claude-sonnet-4-5",
        token_class="output",
        provider_name="anthropic",
        quantity=622_666,
        unit_price_per_mtok=Decimal("15"),
        amount_usd=Decimal("9.34"),
    )
    return invoice


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("admin_token", 200),
        ("read_token", 200),
        ("staff_session", 200),
        ("developer_key", 200),
        ("nobody", 401),
    ],
)
def test_me_answers_every_authenticated_caller(caller, name, status):
    assert caller(name).get("/me").status_code == status


def test_me_shows_a_developers_keys_usage_and_remaining_budgets(client, alice, bob):
    key = alice.user.virtual_keys.get()
    key.monthly_budget_usd = Decimal("50")
    key.save()
    log_request(alice, started_at=timezone.now(), cost="12.5000000000")
    log_request(bob, started_at=timezone.now(), cost="100.0000000000")
    log_request(alice, started_at=timezone.now() - timedelta(days=40), cost="7")

    response = client.get("/api/v1/me", headers={"x-api-key": alice.secret})

    assert response.status_code == 200
    body = response.json()
    assert body["user"]["username"] == "alice"
    assert [item["id"] for item in body["keys"]] == [key.public_id]
    assert "secret" not in body["keys"][0]
    assert body["usage_this_month"]["requests"] == 1
    assert body["usage_this_month"]["cost_usd"] == "12.5000000000"
    budgets = {(item["scope"], item["name"]): item["month"] for item in body["budgets"]}
    assert budgets[("key", "alice laptop")]["remaining_usd"] == "37.5000000000"
    assert budgets[("cost_center", "research")]["spent_usd"] == "112.5000000000"
    assert budgets[("user", "alice")]["budget_usd"] is None


@pytest.mark.parametrize("name", CALLERS)
@pytest.mark.parametrize(
    "path", ["/invoices", "/invoices/{invoice}", "/invoices/{invoice}/csv", "/audit"]
)
def test_invoice_and_audit_endpoints_follow_the_permission_matrix(caller, invoice, name, path):
    response = caller(name).get(path.format(invoice=invoice.pk))

    assert response.status_code == expected_status(name, ok=200, write=False)


def test_an_invoice_comes_with_its_lines(admin_api, invoice, research):
    body = admin_api.get(f"/invoices/{invoice.pk}").json()

    assert (body["cost_center_code"], body["status"], body["total_usd"]) == (
        "research",
        "draft",
        "12.34",
    )
    assert [(line["token_class"], line["quantity"]) for line in body["lines"]] == [
        ("input", 1_000_000),
        ("output", 622_666),
    ]


def test_invoices_filter_by_cost_center_and_status(admin_api, invoice, ops):
    Invoice.objects.create(cost_center=ops, period_start=date(2026, 1, 1))

    research_only = admin_api.get("/invoices", cost_center=invoice.cost_center_id).json()
    finalized = admin_api.get("/invoices", status="finalized").json()

    assert [item["id"] for item in research_only["items"]] == [invoice.pk]
    assert finalized["items"] == []


def test_an_invoice_downloads_as_csv(admin_api, invoice):
    response = admin_api.get(f"/invoices/{invoice.pk}/csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    lines = response.content.decode().splitlines()
    assert lines[0].startswith("invoice_number,period,cost_center_code")
    assert len(lines) == 3


def test_every_api_write_is_in_the_audit_log_newest_first(admin_api, staff, research):
    admin_api.post("/cost-centers", {"code": "design", "name": "Design"})
    admin_api.patch(f"/cost-centers/{research.pk}", {"name": "R&D"})

    body = admin_api.get("/audit").json()

    assert [(item["action"], item["object_repr"]) for item in body["items"]] == [
        ("update", "research — R&D"),
        ("create", "design — Design"),
    ]
    assert {(item["actor_username"], item["via"]) for item in body["items"]} == {
        ("root-admin", "api")
    }


def test_the_audit_log_filters_by_object_and_action(admin_api, research):
    admin_api.post("/cost-centers", {"code": "design", "name": "Design"})
    admin_api.patch(f"/cost-centers/{research.pk}", {"name": "R&D"})

    updates = admin_api.get("/audit", action="update").json()["items"]
    on_research = admin_api.get(
        "/audit", object_type="accounts.costcenter", object_id=str(research.pk)
    ).json()["items"]
    future = admin_api.get("/audit", since=(timezone.now() + timedelta(hours=1)).isoformat())

    assert [item["object_id"] for item in updates] == [str(research.pk)]
    assert [item["action"] for item in on_research] == ["update"]
    assert future.json()["items"] == []
    assert AuditEvent.objects.count() == 2
