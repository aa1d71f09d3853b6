"""Sign-in throttling: failed sign-ins lock a username (from that address and from anywhere)
for a while, on the admin's login page and on the self-service one; a success resets the
count; an administrator can unlock early."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import httpx
import pytest
from axes.models import AccessAttempt
from django.contrib.auth import SESSION_KEY
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts.login_throttling import client_ip_address

ADMIN_LOGIN = "/admin/login/"
SELF_SERVICE_LOGIN = "/login/"
LOGIN_PAGES = [ADMIN_LOGIN, SELF_SERVICE_LOGIN]
HOME = "10.0.0.1"
ELSEWHERE = "10.0.0.2"


@pytest.fixture(autouse=True)
def lockout_policy(settings):
    settings.AXES_FAILURE_LIMIT = 5
    settings.GATEHOUSE_LOGIN_LOCKOUT_MINUTES = 15
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.GATEHOUSE_TRUSTED_PROXY_COUNT = 0


def sign_in(page: str, username: str, password: str, address: str = HOME, **headers):
    client = Client()
    response = client.post(
        page, {"username": username, "password": password}, REMOTE_ADDR=address, **headers
    )
    return client, response


def fail(page: str, username: str, times: int, address: str = HOME) -> list[int]:
    return [sign_in(page, username, "wrong-password", address)[1].status_code for _ in range(times)]


def is_signed_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def password_of(username: str) -> str:
    return {"root-admin": "admin-password", "alice": "alice-password", "bob": "bob-password"}[
        username
    ]


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_the_fifth_failed_sign_in_from_one_address_locks_that_user_there(page, alice, staff):
    username = "root-admin" if page == ADMIN_LOGIN else "alice"

    statuses = fail(page, username, 5)
    client, locked = sign_in(page, username, "wrong-password")

    assert statuses == [200, 200, 200, 200, 429]
    assert locked.status_code == 429
    assert locked["Retry-After"] == "900"
    assert "no-store" in locked["Cache-Control"]
    assert "<h1>Too many failed sign-ins</h1>" in locked.text
    assert "Try again in 15 minutes" in locked.text
    assert not is_signed_in(client)


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_the_right_password_while_locked_is_refused(page, alice, staff):
    username = "root-admin" if page == ADMIN_LOGIN else "alice"
    fail(page, username, 5)

    client, response = sign_in(page, username, password_of(username))

    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.text
    assert not is_signed_in(client)


def test_the_same_user_from_another_address_is_locked_too(alice):
    fail(SELF_SERVICE_LOGIN, "alice", 5, address=HOME)

    client, response = sign_in(SELF_SERVICE_LOGIN, "alice", "alice-password", address=ELSEWHERE)

    assert response.status_code == 429
    assert not is_signed_in(client)


def test_a_different_user_from_another_address_is_not_locked(alice, bob):
    fail(SELF_SERVICE_LOGIN, "alice", 5, address=HOME)

    client, response = sign_in(SELF_SERVICE_LOGIN, "bob", "bob-password", address=ELSEWHERE)

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert is_signed_in(client)


def test_failures_spread_over_several_addresses_add_up_for_one_user(alice):
    fail(SELF_SERVICE_LOGIN, "alice", 3, address=HOME)
    fail(SELF_SERVICE_LOGIN, "alice", 2, address=ELSEWHERE)

    _, response = sign_in(SELF_SERVICE_LOGIN, "alice", "alice-password", address="10.0.0.3")

    assert response.status_code == 429


def test_a_successful_sign_in_resets_the_count(alice):
    fail(SELF_SERVICE_LOGIN, "alice", 4)
    _, success = sign_in(SELF_SERVICE_LOGIN, "alice", "alice-password")

    after = fail(SELF_SERVICE_LOGIN, "alice", 4)
    client, response = sign_in(SELF_SERVICE_LOGIN, "alice", "alice-password")

    assert success.status_code == 302
    assert after == [200, 200, 200, 200]
    assert response.status_code == 302
    assert is_signed_in(client)


def test_attempts_while_locked_do_not_extend_the_lock(alice):
    fail(SELF_SERVICE_LOGIN, "alice", 5)
    locked_at = set(AccessAttempt.objects.values_list("attempt_time", flat=True))

    fail(SELF_SERVICE_LOGIN, "alice", 3)

    assert set(AccessAttempt.objects.values_list("attempt_time", flat=True)) == locked_at
    assert AccessAttempt.objects.get().failures_since_start == 5


def test_the_lock_ends_after_the_lockout_time(alice):
    fail(SELF_SERVICE_LOGIN, "alice", 5)
    attempt = AccessAttempt.objects.get()
    attempt.attempt_time -= timedelta(minutes=15, seconds=1)
    attempt.save(update_fields=["attempt_time"])

    client, response = sign_in(SELF_SERVICE_LOGIN, "alice", "alice-password")

    assert response.status_code == 302
    assert is_signed_in(client)


def test_an_administrator_unlocks_a_user_in_the_control_room(alice, staff):
    fail(SELF_SERVICE_LOGIN, "alice", 5)
    attempt = AccessAttempt.objects.get(username="alice")
    admin = Client()
    admin.force_login(staff)

    listed = admin.get(reverse("admin:axes_accessattempt_changelist"))
    deleted = admin.post(
        reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"}
    )
    client, response = sign_in(SELF_SERVICE_LOGIN, "alice", "alice-password")

    assert listed.status_code == 200
    assert "Locked Out" in listed.text
    assert deleted.status_code == 302
    assert response.status_code == 302
    assert is_signed_in(client)


def test_the_axes_reset_username_command_unlocks_a_user(alice):
    fail(SELF_SERVICE_LOGIN, "alice", 5)

    call_command("axes_reset_username", "alice", stdout=StringIO())
    _, response = sign_in(SELF_SERVICE_LOGIN, "alice", "alice-password")

    assert response.status_code == 302


def test_an_unknown_username_is_throttled_like_a_known_one(db):
    statuses = fail(SELF_SERVICE_LOGIN, "mallory", 6)

    assert statuses == [200, 200, 200, 200, 429, 429]


def test_a_forged_x_forwarded_for_is_ignored_without_trusted_proxies(alice):
    sign_in(SELF_SERVICE_LOGIN, "alice", "nope", address=HOME, HTTP_X_FORWARDED_FOR="192.0.2.9")

    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [HOME]


@pytest.mark.parametrize(
    ("trusted_proxies", "forwarded_for", "expected"),
    [
        (0, "192.0.2.9", "10.9.9.9"),
        (1, "192.0.2.9", "192.0.2.9"),
        (1, "198.51.100.1, 192.0.2.9", "192.0.2.9"),
        (2, "198.51.100.1, 192.0.2.9, 10.0.0.5", "192.0.2.9"),
        (2, "192.0.2.9", "10.9.9.9"),
        (1, "", "10.9.9.9"),
    ],
)
def test_the_client_address_is_taken_from_x_forwarded_for_only_as_far_as_proxies_are_trusted(
    settings, trusted_proxies, forwarded_for, expected
):
    settings.GATEHOUSE_TRUSTED_PROXY_COUNT = trusted_proxies
    request = RequestFactory().post(
        "/login/", REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=forwarded_for
    )

    assert client_ip_address(request) == expected


@pytest.mark.django_db(transaction=True)
def test_daphne_serves_the_locked_out_page_with_429(gatehouse_server, alice):
    with httpx.Client(base_url=gatehouse_server.base_url, timeout=10) as browser:
        browser.get(SELF_SERVICE_LOGIN)
        token = browser.cookies["csrftoken"]

        def attempt(password: str) -> httpx.Response:
            return browser.post(
                SELF_SERVICE_LOGIN,
                data={"username": "alice", "password": password, "csrfmiddlewaretoken": token},
            )

        statuses = [attempt("wrong-password").status_code for _ in range(5)]
        locked = attempt("alice-password")

    assert statuses == [200, 200, 200, 200, 429]
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "900"
    assert "Too many failed sign-ins" in locked.text
    assert "sessionid" not in locked.cookies


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("page", "username", "password", "lands_on"),
    [
        (ADMIN_LOGIN, "root-admin", "admin-password", "/admin/"),
        (SELF_SERVICE_LOGIN, "alice", "alice-password", "/"),
    ],
)
def test_signing_in_through_daphne_works_with_the_throttle_in_place(
    gatehouse_server, alice, staff, page, username, password, lands_on
):
    with httpx.Client(base_url=gatehouse_server.base_url, timeout=10) as browser:
        browser.get(page)
        response = browser.post(
            page,
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
                "next": lands_on,
            },
        )
        landed = browser.get(lands_on)

    assert response.status_code == 302
    assert response.headers["location"] == lands_on
    assert "sessionid" in response.cookies
    assert landed.status_code == 200
    assert AccessAttempt.objects.count() == 0
