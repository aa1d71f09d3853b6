"""The audit trail's own rules: one event per change, in the caller's transaction, no secrets."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from accounts.audit import HIDDEN, audit_record
from accounts.models import AuditEvent
from accounts.services import cost_center_create
from gateway.models import UpstreamKey
from gateway.secrets import Secret


def test_an_event_names_actor_object_and_json_safe_changes(alice, research):
    event = audit_record(
        actor=alice.user,
        via="admin",
        action="update",
        obj=research,
        changes={"monthly_budget_usd": [Decimal("500.00"), Decimal("750.00")]},
    )

    event.refresh_from_db()
    assert (event.actor, event.via, event.object_type, event.object_id) == (
        alice.user,
        "admin",
        "accounts.costcenter",
        str(research.pk),
    )
    assert event.changes == {"monthly_budget_usd": ["500.00", "750.00"]}


def test_secrets_never_reach_the_trail_by_name_or_by_type(provider):
    upstream_key = UpstreamKey.objects.create(provider=provider, label="a", secret="sk-1")

    event = audit_record(
        actor=None,
        via="api",
        action="update",
        obj=upstream_key,
        changes={
            "secret": [Secret("sk-1"), Secret("sk-2")],
            "secret_hash": ["abc", "def"],
            "label": [Secret("sk-3"), "b"],
        },
    )

    event.refresh_from_db()
    assert event.changes == {
        "secret": [HIDDEN, HIDDEN],
        "secret_hash": [HIDDEN, HIDDEN],
        "label": [HIDDEN, "b"],
    }
    assert "sk-" not in str(event.changes)


def create_then_give_up() -> None:
    with transaction.atomic():
        cost_center_create(actor=None, via="command", code="temp", name="Temporary")
        raise RuntimeError("the caller gave up")


def test_a_write_that_fails_leaves_no_event(db):
    with pytest.raises(RuntimeError):
        create_then_give_up()

    assert not AuditEvent.objects.exists()


def test_services_record_where_a_change_came_from(staff):
    cost_center_create(actor=staff, via="admin", code="design", name="Design")

    assert AuditEvent.objects.get().via == "admin"
