"""What staff do in the admin lands in the audit trail the API serves."""

from __future__ import annotations

from django.urls import reverse

from accounts.models import AuditEvent, CostCenter, VirtualKey


def test_admin_create_change_revoke_and_rotate_are_audited(admin_client, alice):
    admin_client.post(
        reverse("admin:accounts_costcenter_add"),
        {
            "code": "finance",
            "name": "Finance",
            "is_active": "on",
            "cache_policy": "",
            "cache_ttl": "",
        },
    )
    finance = CostCenter.objects.get(code="finance")
    admin_client.post(
        reverse("admin:accounts_costcenter_change", args=[finance.pk]),
        {
            "code": "finance",
            "name": "Finance & Legal",
            "is_active": "on",
            "cache_policy": "",
            "cache_ttl": "",
        },
    )
    key = VirtualKey.objects.get(owner=alice.user)
    keys = reverse("admin:accounts_virtualkey_changelist")
    admin_client.post(keys, {"action": "rotate_selected", "_selected_action": [key.pk]})
    admin_client.post(keys, {"action": "revoke_selected", "_selected_action": [key.pk]})

    trail = [
        (event.via, event.action, event.object_type, event.actor.username, event.changes)
        for event in AuditEvent.objects.order_by("at", "pk")
    ]
    assert trail == [
        ("admin", "create", "accounts.costcenter", "admin", {}),
        ("admin", "update", "accounts.costcenter", "admin", {"fields": ["Name"]}),
        ("admin", "rotate", "accounts.virtualkey", "admin", {"message": "Rotated the secret."}),
        ("admin", "revoke", "accounts.virtualkey", "admin", {"message": "Revoked."}),
    ]
    assert alice.secret not in str(trail)
