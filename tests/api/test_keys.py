"""Virtual keys over the API: the secret is in the issuing (or rotating) response only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent, VirtualKey
from accounts.selectors import virtual_key_resolve
from tests.api.conftest import CALLERS, expected_status


def alice_key(alice) -> VirtualKey:
    return alice.user.virtual_keys.get()


@pytest.mark.parametrize("name", CALLERS)
@pytest.mark.parametrize(
    ("method", "path", "body", "ok", "write"),
    [
        ("get", "/keys", None, 200, False),
        ("get", "/keys/{key}", None, 200, False),
        ("post", "/keys", {"owner_id": "{bob}"}, 201, True),
        ("patch", "/keys/{key}", {"rpm_limit": 60}, 200, True),
        ("post", "/keys/{key}/revoke", None, 200, True),
        ("post", "/keys/{key}/rotate", {"grace_hours": 1}, 200, True),
    ],
)
def test_key_endpoints_follow_the_permission_matrix(
    caller, alice, bob, name, method, path, body, ok, write
):
    if body and body.get("owner_id") == "{bob}":
        body = {"owner_id": bob.user.pk}
    url = path.format(key=bob.user.virtual_keys.get().public_id)

    response = caller(name).call(method, url, body)

    assert response.status_code == expected_status(name, ok=ok, write=write)


def test_issue_returns_the_secret_once_and_it_authenticates(admin_api, bob, staff):
    response = admin_api.post(
        "/keys", {"owner_id": bob.user.pk, "name": "ci", "monthly_budget_usd": "20.00"}
    )

    assert response.status_code == 201
    body = response.json()
    assert body["secret"].startswith("gh_live_")
    assert body["prefix"] == body["secret"][: len(body["prefix"])]
    context = virtual_key_resolve(body["secret"])
    assert context is not None
    assert (context.key_public_id, context.user_id) == (body["id"], bob.user.pk)
    again = admin_api.get(f"/keys/{body['id']}").json()
    assert "secret" not in again
    assert again["name"] == "ci"
    event = AuditEvent.objects.get(action="issue")
    assert (event.actor, event.via) == (staff, "api")
    assert body["secret"] not in str(event.changes)


def test_list_filters_by_owner_and_state(admin_api, alice, bob):
    revoked = alice_key(alice)
    revoked.revoked_at = timezone.now()
    revoked.save()

    bobs = admin_api.get("/keys", owner=bob.user.pk).json()["items"]
    active = admin_api.get("/keys", state="active").json()["items"]
    gone = admin_api.get("/keys", state="revoked").json()["items"]

    assert [item["name"] for item in bobs] == ["bob laptop"]
    assert [item["name"] for item in active] == ["bob laptop"]
    assert [(item["name"], item["state"]) for item in gone] == [("alice laptop", "revoked")]


def test_patch_changes_limits_not_the_secret(admin_api, alice):
    key = alice_key(alice)

    response = admin_api.patch(
        f"/keys/{key.public_id}", {"rpm_limit": 60, "allowed_models": ["claude-haiku-*"]}
    )

    assert response.status_code == 200
    assert (response.json()["rpm_limit"], response.json()["allowed_models"]) == (
        60,
        ["claude-haiku-*"],
    )
    assert virtual_key_resolve(alice.secret).rpm_limit == 60
    assert AuditEvent.objects.get(action="update").changes == {
        "rpm_limit": [None, 60],
        "allowed_models": [[], ["claude-haiku-*"]],
    }


def test_revoke_stops_the_key_and_is_recorded_once(admin_api, alice):
    key = alice_key(alice)

    first = admin_api.post(f"/keys/{key.public_id}/revoke")
    second = admin_api.post(f"/keys/{key.public_id}/revoke")

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["state"] == "revoked"
    assert virtual_key_resolve(alice.secret) is None
    assert AuditEvent.objects.filter(action="revoke").count() == 1


def test_rotate_returns_a_new_secret_and_the_old_one_works_for_the_grace(admin_api, alice):
    key = alice_key(alice)

    response = admin_api.post(f"/keys/{key.public_id}/rotate", {"grace_hours": 2})

    assert response.status_code == 200
    new_secret = response.json()["secret"]
    assert new_secret != alice.secret
    assert virtual_key_resolve(new_secret).key_public_id == key.public_id
    old = virtual_key_resolve(alice.secret)
    assert old is not None
    assert abs(old.secret_valid_until - (timezone.now() + timedelta(hours=2))) < timedelta(
        seconds=30
    )
    assert AuditEvent.objects.get(action="rotate").object_id == str(key.pk)


def test_rotating_a_revoked_key_is_a_409(admin_api, alice):
    key = alice_key(alice)
    admin_api.post(f"/keys/{key.public_id}/revoke")

    response = admin_api.post(f"/keys/{key.public_id}/rotate", {"grace_hours": 0})

    assert response.status_code == 409
    assert response.json() == {"detail": "A revoked key cannot be rotated.", "field": "id"}


def test_an_unknown_key_is_a_404_naming_it(admin_api, db):
    response = admin_api.get("/keys/vk_0000000000000000")

    assert response.status_code == 404
    assert response.json() == {
        "detail": "No virtual key with id vk_0000000000000000.",
        "field": None,
    }
