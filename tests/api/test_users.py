"""Users over the API: list, filter, create, change, deactivate."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent, User
from accounts.selectors import virtual_key_resolve
from tests.api.conftest import CALLERS, expected_status


@pytest.mark.parametrize("name", CALLERS)
@pytest.mark.parametrize(
    ("method", "path", "body", "ok", "write"),
    [
        ("get", "/users", None, 200, False),
        ("get", "/users/{bob}", None, 200, False),
        ("post", "/users", {"username": "dana"}, 201, True),
        ("patch", "/users/{bob}", {"first_name": "Bob"}, 200, True),
        ("delete", "/users/{bob}", None, 200, True),
    ],
)
def test_user_endpoints_follow_the_permission_matrix(
    caller, bob, name, method, path, body, ok, write
):
    response = caller(name).call(method, path.format(bob=bob.user.pk), body)

    assert response.status_code == expected_status(name, ok=ok, write=write)


def test_list_filters_by_cost_center_and_text(admin_api, alice, bob, charlie):
    research = alice.user.default_cost_center

    members = admin_api.get("/users", cost_center=research.pk).json()
    searched = admin_api.get("/users", q="charlie@").json()

    assert [item["username"] for item in members["items"]] == ["alice", "bob"]
    assert [item["username"] for item in searched["items"]] == ["charlie"]


def test_list_pages_through_every_user_once(admin_api, alice, bob, charlie, staff):
    seen, cursor = [], None
    while True:
        page = admin_api.get("/users", limit=1, **({"cursor": cursor} if cursor else {})).json()
        seen += [item["username"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == ["root-admin", "alice", "bob", "charlie"]  # in order of creation


def test_create_makes_a_user_without_a_usable_password(admin_api, research):
    response = admin_api.post(
        "/users",
        {"username": "dana", "email": "dana@example.com", "default_cost_center_id": research.pk},
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["username"], body["default_cost_center_id"], body["is_staff"]) == (
        "dana",
        research.pk,
        False,
    )
    dana = User.objects.get(username="dana")
    assert not dana.has_usable_password()
    assert "password" not in AuditEvent.objects.get(action="create").changes


def test_an_unknown_cost_center_is_a_400_naming_the_field(admin_api, db):
    response = admin_api.post("/users", {"username": "dana", "default_cost_center_id": 999})

    assert response.status_code == 400
    assert response.json() == {
        "detail": "No cost center with id 999.",
        "field": "default_cost_center_id",
    }


def test_a_taken_username_is_a_409(admin_api, alice):
    response = admin_api.post("/users", {"username": "alice"})

    assert response.status_code == 409
    assert response.json()["field"] == "username"


def test_patch_moves_a_user_to_another_cost_center(admin_api, bob, ops):
    response = admin_api.patch(f"/users/{bob.user.pk}", {"default_cost_center_id": ops.pk})

    assert response.status_code == 200
    assert response.json()["default_cost_center_id"] == ops.pk
    event = AuditEvent.objects.get(action="update")
    assert (
        event.changes == {"default_cost_center": [bob.user.default_cost_center_id, ops.pk]}
        or event.changes["default_cost_center"][1] == ops.pk
    )


def test_delete_deactivates_the_user_and_their_keys_stop_working(admin_api, bob):
    response = admin_api.delete(f"/users/{bob.user.pk}")

    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert User.objects.filter(pk=bob.user.pk).exists()
    assert virtual_key_resolve(bob.secret) is None
    assert AuditEvent.objects.get().action == "deactivate"
