"""Developer self-service in a real browser: a developer signs in at `/`, sees only their own
keys, issues one (the secret shown once, even after the back button) and cannot open the
staff-only live feed."""

from __future__ import annotations

import pytest

from accounts import keys
from accounts.models import VirtualKey
from tests.ui.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in_at_root(page, server, username: str, password: str) -> None:
    page.goto(server.base_url + "/")
    assert page.url == server.base_url + "/login/?next=/"
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#your-keys")


def test_a_developer_sees_only_their_own_keys_and_issues_one(
    page, gatehouse_server, alice, bob, charlie
):
    own, others = (
        VirtualKey.objects.get(owner=alice.user),
        VirtualKey.objects.exclude(owner=alice.user),
    )

    sign_in_at_root(page, gatehouse_server, "alice", "alice-password")

    keys_text = page.inner_text("#your-keys")
    assert page.inner_text("#signed-in-as") == "alice"
    assert f"{own.prefix}…" in keys_text
    assert all(other.prefix not in page.content() for other in others)
    assert page.locator("#your-keys tbody tr").count() == 1
    assert f"export ANTHROPIC_BASE_URL={gatehouse_server.base_url}" in page.inner_text(
        "#claude-code-snippet"
    )

    page.fill("#id_name", "second laptop")
    page.click("#issue-key-form button[type=submit]")
    secret = page.inner_text("#secret").strip()
    issued = VirtualKey.objects.get(owner=alice.user, name="second laptop")
    assert keys.secret_matches(secret, issued.secret_hash)
    assert f"export ANTHROPIC_API_KEY={secret}" in page.inner_text("#claude-code-snippet")
    screenshot(page, "self_service_issued.png")

    page.go_back()
    page.go_forward()  # the browser sends the form again: nothing is issued
    assert secret not in page.content()
    assert "That form had already been sent" in page.inner_text(".messages")
    assert VirtualKey.objects.filter(owner=alice.user).count() == 2
    page.goto(gatehouse_server.base_url + "/")
    assert secret not in page.content()
    assert f"{issued.prefix}…" in page.inner_text("#your-keys")
    screenshot(page, "self_service.png")


def test_a_developer_cannot_open_the_live_feed(page, gatehouse_server, alice):
    sign_in_at_root(page, gatehouse_server, "alice", "alice-password")

    close_code = page.evaluate(
        """path => new Promise(resolve => {
            const socket = new WebSocket("ws://" + location.host + path);
            socket.onclose = event => resolve(event.code);
        })""",
        "/ws/live/requests/",
    )

    assert close_code == 4403
    page.goto(gatehouse_server.base_url + "/admin/live/")
    assert "/admin/login/" in page.url
