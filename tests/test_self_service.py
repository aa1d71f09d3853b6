"""Developer self-service at `/`: sign in, your keys only, issue within your limit (secret
shown once), rotate, revoke, your usage and budgets, and the Claude Code snippet."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from accounts import keys
from accounts.models import AuditEvent, VirtualKey
from tests.ui.traffic import earlier_today, request_log, save

pytestmark = pytest.mark.django_db


def key_of(person) -> VirtualKey:
    return VirtualKey.objects.get(owner=person.user)


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice.user)
    return client


def send(client, path: str, data: dict | None = None, **kwargs):
    """Submit a form of the key list, as the browser does: with the page's form token."""
    token = client.get("/").context["form_token"]
    return client.post(path, {**(data or {}), "form_token": token}, **kwargs)


def test_anonymous_visitors_are_sent_to_the_sign_in_page(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_a_developer_signs_in_with_the_standard_login_form(client, alice):
    page = client.get("/login/?next=/")
    assert page.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in page.content

    response = client.post(
        "/login/", {"username": "alice", "password": "alice-password", "next": "/"}
    )

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").context["user"] == alice.user


def test_a_wrong_password_is_refused(client, alice):
    response = client.post("/login/", {"username": "alice", "password": "nope"})

    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_a_developer_sees_only_their_own_keys(alice_client, alice, bob, charlie):
    response = alice_client.get("/")

    page = response.content.decode()
    assert [key.name for key in response.context["keys"]] == ["alice laptop"]
    assert key_of(alice).prefix in page
    assert key_of(bob).prefix not in page
    assert key_of(charlie).prefix not in page
    assert "bob laptop" not in page
    assert alice.secret not in page


def test_issuing_shows_the_secret_once_and_keeps_only_its_hash(alice_client, alice):
    response = send(alice_client, "/keys/issue/", {"name": "ci runner"})

    assert response.status_code == 200
    secret = response.context["secret"]
    issued = VirtualKey.objects.get(owner=alice.user, name="ci runner")
    assert secret.startswith("gh_live_")
    assert keys.secret_matches(secret, issued.secret_hash)
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert f'<code class="secret" id="secret">{secret}</code>' in page
    assert f"export ANTHROPIC_BASE_URL=http://testserver\nexport ANTHROPIC_API_KEY={secret}" in page
    listing = alice_client.get("/").content.decode()
    assert secret not in listing
    assert f"<code>{issued.prefix}…</code>" in listing
    event = AuditEvent.objects.get(object_id=str(issued.pk), action="issue")
    assert (event.actor, event.via) == (alice.user, "self-service")


def test_issuing_stops_at_the_users_active_key_limit(alice_client, alice):
    alice.user.max_active_keys = 2
    alice.user.save()
    assert send(alice_client, "/keys/issue/", {"name": "second"}).status_code == 200

    refused = send(alice_client, "/keys/issue/", {"name": "third"}, follow=True)

    assert VirtualKey.objects.filter(owner=alice.user).count() == 2
    assert "You already have 2 active keys" in refused.content.decode()
    assert refused.context["can_issue"] is False


def test_a_revoked_key_frees_a_place_under_the_limit(alice_client, alice):
    alice.user.max_active_keys = 1
    alice.user.save()
    alice_client.post(f"/keys/{key_of(alice).public_id}/revoke/")

    response = send(alice_client, "/keys/issue/", {"name": "replacement"})

    assert response.status_code == 200
    assert VirtualKey.objects.filter(owner=alice.user, revoked_at__isnull=True).count() == 1


@pytest.mark.parametrize("action", ["issue", "rotate"])
def test_a_form_sent_again_changes_nothing(alice_client, alice, action):
    """The back button or a reload re-posts the form that showed a secret."""
    path = "/keys/issue/" if action == "issue" else f"/keys/{key_of(alice).public_id}/rotate/"
    token = alice_client.get("/").context["form_token"]
    first = alice_client.post(path, {"form_token": token})
    hashes = list(VirtualKey.objects.order_by("pk").values_list("secret_hash", flat=True))

    again = alice_client.post(path, {"form_token": token}, follow=True)

    assert first.status_code == 200
    assert "secret" not in again.context
    assert "That form had already been sent" in again.content.decode()
    assert list(VirtualKey.objects.order_by("pk").values_list("secret_hash", flat=True)) == hashes


def test_a_form_without_its_token_changes_nothing(alice_client, alice):
    response = alice_client.post("/keys/issue/", {"name": "forged"}, follow=True)

    assert "That form had already been sent" in response.content.decode()
    assert not VirtualKey.objects.filter(name="forged").exists()


def test_rotating_shows_the_new_secret_and_keeps_the_old_one_for_a_day(alice_client, alice):
    virtual_key = key_of(alice)
    old_prefix = virtual_key.prefix

    response = send(alice_client, f"/keys/{virtual_key.public_id}/rotate/")

    virtual_key.refresh_from_db()
    secret = response.context["secret"]
    assert keys.secret_matches(secret, virtual_key.secret_hash)
    assert keys.secret_matches(alice.secret, virtual_key.previous_secret_hash)
    assert virtual_key.previous_prefix == old_prefix
    assert "no-store" in response["Cache-Control"]
    assert f"The previous secret ({old_prefix}…) keeps working until" in response.content.decode()


def test_revoking_a_key(alice_client, alice):
    virtual_key = key_of(alice)

    response = alice_client.post(f"/keys/{virtual_key.public_id}/revoke/", follow=True)

    virtual_key.refresh_from_db()
    assert virtual_key.revoked_at is not None
    assert "Revoked alice laptop" in response.content.decode()
    assert b"Rotate</button>" not in response.content


def test_a_revoked_key_cannot_be_rotated(alice_client, alice):
    virtual_key = key_of(alice)
    alice_client.post(f"/keys/{virtual_key.public_id}/revoke/")

    response = send(alice_client, f"/keys/{virtual_key.public_id}/rotate/", follow=True)

    assert "cannot be rotated" in response.content.decode()
    assert "secret" not in response.context


@pytest.mark.parametrize("action", ["rotate", "revoke"])
def test_nobody_touches_someone_elses_key(alice_client, bob, action):
    bobs_key = key_of(bob)

    response = send(alice_client, f"/keys/{bobs_key.public_id}/{action}/")

    assert response.status_code == 404
    refreshed = VirtualKey.objects.get(pk=bobs_key.pk)
    assert (refreshed.revoked_at, refreshed.secret_hash) == (None, bobs_key.secret_hash)


@pytest.mark.parametrize(
    ("path", "data"),
    [("/keys/issue/", {"name": "x"}), ("rotate", {}), ("revoke", {}), ("/logout/", {})],
)
def test_every_form_is_csrf_protected(alice, path, data):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    if path in ("rotate", "revoke"):
        path = f"/keys/{key_of(alice).public_id}/{path}/"

    response = client.post(path, data)

    assert response.status_code == 403
    assert VirtualKey.objects.filter(owner=alice.user).count() == 1
    assert key_of(alice).revoked_at is None


def test_changes_are_posts_only(alice_client, alice):
    assert alice_client.get("/keys/issue/").status_code == 405
    assert alice_client.get(f"/keys/{key_of(alice).public_id}/revoke/").status_code == 405


def test_usage_this_month_and_remaining_budgets(alice_client, alice, bob, research):
    alice.user.monthly_budget_usd = Decimal("40.00")
    alice.user.save()
    save(
        [
            request_log(
                started_at=earlier_today(30),
                user=alice.user,
                cost_center=research,
                virtual_key=key_of(alice),
                cost="12.5000",
                input_tokens=1000,
            ),
            request_log(
                started_at=earlier_today(20),
                user=bob.user,
                cost_center=research,
                virtual_key=key_of(bob),
                cost="100.0000",
            ),
        ]
    )

    page = alice_client.get("/").content.decode()

    assert 'data-testid="usage-cost">$12.50<' in page
    assert f'data-testid="remaining-user-{alice.user.pk}">$27.50<' in page
    # research's budget counts everyone in it: $500.00 − $112.50
    assert f'data-testid="remaining-cost_center-{research.pk}">$387.50<' in page


def test_the_snippet_points_claude_code_at_this_host(alice_client, settings):
    settings.ALLOWED_HOSTS = ["gatehouse.internal"]
    page = alice_client.get("/", HTTP_HOST="gatehouse.internal").content.decode()

    assert "export ANTHROPIC_BASE_URL=http://gatehouse.internal\n" in page
    assert "export ANTHROPIC_API_KEY=gh_live_…" in page


def test_signing_out(alice_client):
    response = alice_client.post("/logout/")

    assert response.status_code == 302
    assert alice_client.get("/").status_code == 302
