"""Who may call the management API: tokens by scope, staff sessions with CSRF, developers'
virtual keys for /me only, and nobody else. The docs are for staff and token holders."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import CostCenter, ManagementToken, TokenScope, User
from accounts.services import management_token_issue, management_token_revoke
from tests.api.conftest import ApiClient


def test_a_read_token_may_not_write(read_api, research):
    response = read_api.patch(f"/cost-centers/{research.pk}", {"name": "R&D"})

    assert response.status_code == 403
    assert response.json() == {
        "detail": "This token has the read scope: it may only make GET requests.",
        "field": None,
    }


def test_a_developer_key_is_refused_everywhere_but_me(client, alice):
    bearer = client.get("/api/v1/cost-centers", headers={"Authorization": f"Bearer {alice.secret}"})
    header = client.get("/api/v1/keys", headers={"x-api-key": alice.secret})

    assert (bearer.status_code, header.status_code) == (403, 403)
    assert header.json() == {"detail": "A virtual key may only call /api/v1/me.", "field": None}


def test_no_credentials_is_a_401(client, db):
    response = client.get("/api/v1/cost-centers")

    assert response.status_code == 401
    assert response.json() == {"detail": "Unauthorized", "field": None}


@pytest.mark.parametrize(
    "header",
    [
        "Bearer gh_mgmt_not-a-real-token",
        "Bearer gh_live_not-a-real-key",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "gh_mgmt_without_scheme",
    ],
)
def test_an_unknown_or_malformed_credential_is_a_401(client, db, header):
    assert client.get("/api/v1/users", headers={"Authorization": header}).status_code == 401


def test_a_management_token_is_not_accepted_as_x_api_key(client, tokens):
    assert client.get("/api/v1/users", headers={"x-api-key": tokens.admin}).status_code == 401


def test_a_revoked_or_expired_token_is_a_401(client, staff):
    revoked = management_token_issue(owner=staff, scope=TokenScope.ADMIN)
    management_token_revoke(token=revoked.token)
    expired = management_token_issue(owner=staff, scope=TokenScope.ADMIN)
    ManagementToken.objects.filter(pk=expired.token.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    for secret in (revoked.secret, expired.secret):
        response = client.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 401


def test_a_token_of_a_deactivated_owner_is_a_401(client, alice):
    issued = management_token_issue(owner=alice.user, scope=TokenScope.ADMIN)
    User.objects.filter(pk=alice.user.pk).update(is_active=False)

    response = client.get("/api/v1/users", headers={"Authorization": f"Bearer {issued.secret}"})

    assert response.status_code == 401


def test_a_staff_session_write_needs_the_csrf_token(staff):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)

    without = ApiClient(browser).post("/cost-centers", {"code": "x", "name": "X"})

    assert without.status_code == 403
    assert without.json()["detail"].startswith("CSRF check failed")
    assert not CostCenter.objects.filter(code="x").exists()


def test_a_staff_session_write_with_the_csrf_token_works(staff_api):
    response = staff_api.post("/cost-centers", {"code": "x", "name": "X"})

    assert response.status_code == 201


def test_a_token_write_is_not_refused_for_csrf_even_with_a_session_cookie(staff, tokens):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)

    response = ApiClient(browser, {"Authorization": f"Bearer {tokens.admin}"}).post(
        "/cost-centers", {"code": "x", "name": "X"}
    )

    assert response.status_code == 201


def test_a_logged_in_non_staff_user_is_a_401(alice):
    browser = Client()
    browser.force_login(alice.user)

    assert browser.get("/api/v1/users").status_code == 401


def test_a_revoked_developer_key_cannot_call_me(client, admin_api, alice):
    admin_api.post(f"/keys/{alice.user.virtual_keys.get().public_id}/revoke")

    assert client.get("/api/v1/me", headers={"x-api-key": alice.secret}).status_code == 401


def test_the_health_check_needs_no_credentials(client):
    assert client.get("/api/v1/health").json() == {"status": "ok"}


def test_the_docs_are_for_staff(client, staff):
    anonymous = client.get("/api/v1/docs")
    client.force_login(staff)
    logged_in = client.get("/api/v1/docs")

    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/admin/login/")
    assert logged_in.status_code == 200


@pytest.mark.parametrize(
    ("credential", "status"), [("admin", 200), ("read", 200), ("developer", 302), ("none", 302)]
)
def test_the_openapi_document_is_for_staff_and_management_tokens(
    client, tokens, alice, credential, status
):
    secret = {"admin": tokens.admin, "read": tokens.read, "developer": alice.secret}.get(credential)
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}

    response = client.get("/api/v1/openapi.json", headers=headers)

    assert response.status_code == status
    if status == 200:
        assert "/api/v1/cost-centers" in response.json()["paths"]


def test_a_logged_in_staff_member_reads_the_openapi_document(client, staff):
    client.force_login(staff)

    assert client.get("/api/v1/openapi.json").status_code == 200
