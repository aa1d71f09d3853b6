"""Every page of the control room renders for a superuser, and none of them shows a secret."""

from datetime import date
from decimal import Decimal

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from accounts.models import CostCenter, ManagementToken, User, VirtualKey
from accounts.services import management_token_issue
from billing.models import Invoice, InvoiceLine, TokenClass, UsageRollup
from gateway.models import (
    KeyHealth,
    ModelPrice,
    Provider,
    ProviderKind,
    RequestBody,
    RequestLog,
    Route,
    RouteTarget,
    UpstreamKey,
)

UPSTREAM_SECRET = "sk-ant-api03-upstream-secret-for-the-pages-test"

ADDABLE = [CostCenter, User, VirtualKey, ManagementToken, Provider, UpstreamKey, Route, ModelPrice]
VIEW_ONLY = [RequestLog, RequestBody, UsageRollup, Invoice, InvoiceLine]
# django-axes' records of sign-ins (see tests/accounts/test_login_throttling.py).
SIGN_IN_RECORDS = [AccessAttempt, AccessLog, AccessFailureLog]


@pytest.fixture
def control_room(alice, research, staff):
    """One row of every model the admin shows, with a secret in every place one could leak."""
    token = management_token_issue(owner=alice.user, name="alice ci", scope="admin")
    provider = Provider.objects.create(
        name="anthropic", kind=ProviderKind.ANTHROPIC, base_url="http://127.0.0.1:9"
    )
    upstream_key = UpstreamKey.objects.create(
        provider=provider,
        label="primary",
        secret=UPSTREAM_SECRET,
        health=KeyHealth.UNHEALTHY,
        health_reason="401 from upstream",
    )
    route = Route.objects.create(name="sonnet", model_pattern="claude-sonnet-*")
    RouteTarget.objects.create(route=route, position=0, provider=provider)
    RequestLog.objects.create(
        request_id="req_pages_1",
        started_at=timezone.now(),
        user=alice.user,
        cost_center=research,
        virtual_key=VirtualKey.objects.get(owner=alice.user),
        endpoint="/v1/messages",
        model_requested="claude-sonnet-4-5",
        model_served="claude-sonnet-4-5",
        provider=provider,
        upstream_key=upstream_key,
        route=route,
        status_code=200,
        input_tokens=1200,
        output_tokens=350,
        cost_usd=Decimal("0.0123"),
        is_priced=True,
        latency_ms=840,
    )
    RequestBody.objects.create(
        request_id="req_pages_1",
        cost_center=research,
        created_at=timezone.now(),
        request_text='{"messages": [{"role": "user", "content": "key [REDACTED]"}]}',
        response_text="event: message_stop",
    )
    UsageRollup.objects.create(
        day=date(2025, 5, 1),
        cost_center=research,
        user=alice.user,
        provider=provider,
        model="claude-sonnet-4-5",
        requests=1,
        cost_usd=Decimal("0.0123"),
    )
    invoice = Invoice.objects.create(
        cost_center=research, period_start=date(2025, 5, 1), total_usd=Decimal("1234.50")
    )
    InvoiceLine.objects.create(
        invoice=invoice,
        model="claude-sonnet-4-5",
        token_class=TokenClass.INPUT,
        quantity=1_000_000,
        unit_price_per_mtok=Decimal("3.0000"),
        amount_usd=Decimal("3.00"),
    )
    return {"alice_secret": alice.secret, "token_secret": token.secret}


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_model_is_registered_in_the_admin():
    registered = set(admin.site._registry)

    assert registered == {*ADDABLE, *VIEW_ONLY, *SIGN_IN_RECORDS, Group}


def test_site_header_names_the_control_room(client, staff):
    client.force_login(staff)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert "<title>Control room | Gatehouse control room</title>" in response.text
    assert '<a href="/admin/">Gatehouse control room</a>' in response.text


@pytest.mark.parametrize(
    ("model", "view"),
    [(model, "changelist") for model in ADDABLE + VIEW_ONLY]
    + [(model, "add") for model in ADDABLE],
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)
def test_every_changelist_and_add_page_renders_for_a_superuser(
    client, staff, control_room, model, view
):
    client.force_login(staff)

    response = client.get(admin_url(model, view))

    assert response.status_code == 200
    for secret in [UPSTREAM_SECRET, *control_room.values()]:
        assert secret not in response.text


@pytest.mark.parametrize("model", ADDABLE + VIEW_ONLY, ids=lambda model: model.__name__)
def test_every_change_page_renders_without_any_secret(client, staff, control_room, model):
    client.force_login(staff)
    obj = model.objects.order_by("pk").last()

    response = client.get(admin_url(model, "change", obj.pk))

    assert response.status_code == 200
    for secret in [UPSTREAM_SECRET, *control_room.values()]:
        assert secret not in response.text


@pytest.mark.parametrize("model", VIEW_ONLY, ids=lambda model: model.__name__)
def test_records_written_by_the_system_cannot_be_added_changed_or_deleted(
    client, staff, control_room, model
):
    client.force_login(staff)
    obj = model.objects.order_by("pk").last()

    add = client.get(admin_url(model, "add"))
    change = client.post(admin_url(model, "change", obj.pk), {})
    delete = client.post(admin_url(model, "delete", obj.pk), {"post": "yes"})

    assert [add.status_code, change.status_code, delete.status_code] == [403, 403, 403]
    assert model.objects.filter(pk=obj.pk).exists()


def test_a_member_without_staff_status_is_sent_to_the_login_page(client, bob):
    client.force_login(bob.user)

    response = client.get(admin_url(VirtualKey, "changelist"))

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/accounts/virtualkey/"
