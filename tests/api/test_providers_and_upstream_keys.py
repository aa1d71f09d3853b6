"""Providers and their upstream keys over the API; an upstream secret goes in, never out."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent
from gateway.models import KeyHealth, Provider, UpstreamKey
from tests.api.conftest import CALLERS, UPSTREAM_SECRET, expected_status


@pytest.mark.parametrize("name", CALLERS)
@pytest.mark.parametrize(
    ("method", "path", "body", "ok", "write"),
    [
        ("get", "/providers", None, 200, False),
        ("get", "/providers/{provider}", None, 200, False),
        (
            "post",
            "/providers",
            {"name": "bedrock", "kind": "bedrock", "base_url": "https://bedrock.example"},
            201,
            True,
        ),
        ("patch", "/providers/{provider}", {"read_timeout_s": 120}, 200, True),
        ("delete", "/providers/{provider}", None, 204, True),
        ("get", "/upstream-keys", None, 200, False),
        ("get", "/upstream-keys/{upstream_key}", None, 200, False),
        (
            "post",
            "/upstream-keys",
            {"provider_id": "{provider}", "label": "team-b", "secret": "sk-new"},
            201,
            True,
        ),
        ("patch", "/upstream-keys/{upstream_key}", {"weight": 3}, 200, True),
        ("delete", "/upstream-keys/{upstream_key}", None, 204, True),
    ],
)
def test_provider_and_upstream_key_endpoints_follow_the_permission_matrix(
    caller, provider, upstream_key, name, method, path, body, ok, write
):
    if body and body.get("provider_id") == "{provider}":
        body = {**body, "provider_id": provider.pk}
    url = path.format(provider=provider.pk, upstream_key=upstream_key.pk)

    response = caller(name).call(method, url, body)

    assert response.status_code == expected_status(name, ok=ok, write=write)


def test_create_a_provider_and_filter_by_kind(admin_api, provider):
    response = admin_api.post(
        "/providers",
        {
            "name": "vertex-eu",
            "kind": "vertex",
            "base_url": "https://europe-west1.vertex.example",
            "options": {"region": "europe-west1", "project": "acme"},
        },
    )

    assert response.status_code == 201
    assert response.json()["options"] == {"region": "europe-west1", "project": "acme"}
    vertex = admin_api.get("/providers", kind="vertex").json()["items"]
    assert [item["name"] for item in vertex] == ["vertex-eu"]


def test_a_provider_url_that_is_not_http_is_refused(admin_api, db):
    response = admin_api.post(
        "/providers", {"name": "odd", "kind": "anthropic", "base_url": "ftp://files.example"}
    )

    assert response.status_code == 422


def test_disabling_a_provider_an_enabled_route_uses_is_a_400_naming_the_route(admin_api, route):
    provider = route.targets.get().provider

    response = admin_api.patch(f"/providers/{provider.pk}", {"is_enabled": False})

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Enabled routes still send traffic here: default. Change them first.",
        "field": "is_enabled",
    }


def test_deleting_a_provider_a_route_targets_is_a_409_naming_the_target(admin_api, route):
    provider = route.targets.get().provider

    response = admin_api.delete(f"/providers/{provider.pk}")

    assert response.status_code == 409
    assert response.json() == {
        "detail": "Still in use by 1 route target (default#0 → anthropic).",
        "field": None,
    }
    assert Provider.objects.filter(pk=provider.pk).exists()


def test_an_upstream_key_secret_is_accepted_stored_encrypted_and_never_returned(
    admin_api, provider, staff
):
    response = admin_api.post(
        "/upstream-keys",
        {"provider_id": provider.pk, "label": "team-b", "secret": "sk-ant-brand-new-secret"},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["has_secret"] is True
    assert "secret" not in body
    assert "sk-ant-brand-new-secret" not in response.content.decode()
    stored = UpstreamKey.objects.get(pk=body["id"])
    assert stored.secret.reveal() == "sk-ant-brand-new-secret"
    event = AuditEvent.objects.get(object_type="gateway.upstreamkey")
    assert event.changes["secret"] == ["(hidden)", "(hidden)"]
    assert "sk-ant-brand-new-secret" not in str(event.changes)


def test_a_new_secret_replaces_the_old_and_puts_the_key_back_in_the_pool(admin_api, upstream_key):
    UpstreamKey.objects.filter(pk=upstream_key.pk).update(
        health=KeyHealth.UNHEALTHY, health_reason="401 from provider"
    )

    response = admin_api.patch(f"/upstream-keys/{upstream_key.pk}", {"secret": "sk-rotated"})

    assert response.status_code == 200
    assert (response.json()["health"], response.json()["health_reason"]) == ("healthy", "")
    upstream_key.refresh_from_db()
    assert upstream_key.secret.reveal() == "sk-rotated"
    assert AuditEvent.objects.get().changes == {"secret": ["(hidden)", "(hidden)"]}


def test_patch_without_a_secret_keeps_the_stored_one(admin_api, upstream_key):
    response = admin_api.patch(f"/upstream-keys/{upstream_key.pk}", {"weight": 5})

    assert response.status_code == 200
    upstream_key.refresh_from_db()
    assert (upstream_key.weight, upstream_key.secret.reveal()) == (5, UPSTREAM_SECRET)


def test_a_duplicate_label_on_one_provider_is_a_409(admin_api, upstream_key):
    response = admin_api.post(
        "/upstream-keys",
        {"provider_id": upstream_key.provider_id, "label": "team-a", "secret": "sk-other"},
    )

    assert response.status_code == 409
    assert response.json()["detail"] == "Upstream key with this Provider and Label already exists."


def test_a_validation_error_never_echoes_the_secret(admin_api, provider):
    response = admin_api.post(
        "/upstream-keys",
        {"provider_id": provider.pk, "label": "", "secret": "sk-must-not-echo"},
    )

    assert response.status_code == 422
    assert "sk-must-not-echo" not in response.content.decode()


def test_upstream_keys_filter_by_provider_and_health(admin_api, upstream_key, provider):
    other = Provider.objects.create(name="other", kind="anthropic", base_url="https://o.example")
    UpstreamKey.objects.create(provider=other, label="x", secret="sk-x", health="unhealthy")

    mine = admin_api.get("/upstream-keys", provider=provider.pk).json()["items"]
    sick = admin_api.get("/upstream-keys", health="unhealthy").json()["items"]

    assert [item["label"] for item in mine] == ["team-a"]
    assert [item["label"] for item in sick] == ["x"]
