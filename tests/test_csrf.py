"""CSRF: a signed-in staff member's browser cannot be made to change anything from another
site. The admin refuses every form POST without the token; the management API refuses a
session-authenticated write without it, whatever other header comes along."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from accounts.models import CostCenter
from config.api import api

UNSAFE_METHODS = ("post", "put", "patch", "delete")


@pytest.fixture
def staff_browser(staff) -> Client:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)
    return browser


def admin_form_urls(object_id: int) -> list[str]:
    """The add, change, delete and changelist (actions) URLs of every registered model."""
    urls = []
    for model in admin.site._registry:
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        urls += [
            reverse(f"{prefix}_add"),
            reverse(f"{prefix}_change", args=[object_id]),
            reverse(f"{prefix}_delete", args=[object_id]),
            reverse(f"{prefix}_changelist"),
        ]
    return urls


def test_every_admin_form_post_without_the_csrf_token_is_refused(staff_browser, research):
    urls = admin_form_urls(research.pk)

    statuses = {
        url: staff_browser.post(
            url, {"code": "forged", "name": "Forged", "action": "delete_selected", "post": "yes"}
        ).status_code
        for url in urls
    }

    assert len(urls) >= 4 * 15
    assert {url for url, status in statuses.items() if status != 403} == set()
    assert list(CostCenter.objects.values_list("code", flat=True)) == ["research"]


def test_an_admin_change_without_the_csrf_token_changes_nothing(staff_browser, research):
    url = reverse("admin:accounts_costcenter_change", args=[research.pk])

    response = staff_browser.post(url, {"code": "research", "name": "Renamed"})

    assert response.status_code == 403
    assert b"CSRF verification failed" in response.content
    research.refresh_from_db()
    assert research.name == "Research"


def test_the_same_admin_add_with_the_csrf_token_is_accepted(staff_browser):
    url = reverse("admin:accounts_costcenter_add")
    staff_browser.get(url)

    response = staff_browser.post(
        url,
        {
            "code": "forged",
            "name": "Forged",
            "cache_policy": "",
            "cache_ttl": "",
            "csrfmiddlewaretoken": staff_browser.cookies["csrftoken"].value,
        },
    )

    assert response.status_code == 302
    assert CostCenter.objects.filter(code="forged").exists()


def test_the_login_forms_need_the_csrf_token(alice):
    browser = Client(enforce_csrf_checks=True)

    statuses = [
        browser.post(page, {"username": "alice", "password": "alice-password"}).status_code
        for page in ("/admin/login/", "/login/")
    ]

    assert statuses == [403, 403]


def unsafe_api_operations() -> list[tuple[str, str]]:
    operations = []
    for path, methods in api.get_openapi_schema()["paths"].items():
        url = re.sub(r"\{\w+\}", "1", path)
        operations += [(method, url) for method in methods if method in UNSAFE_METHODS]
    return operations


@pytest.mark.parametrize(
    "extra_headers",
    [{}, {"Authorization": "Bearer gh_mgmt_not-a-real-token"}, {"x-api-key": "gh_live_forged"}],
    ids=["session-only", "session-and-unknown-token", "session-and-unknown-key"],
)
def test_every_api_write_by_a_staff_session_without_the_csrf_token_is_refused(
    staff_browser, research, extra_headers
):
    operations = unsafe_api_operations()

    answers = {
        (method, url): getattr(staff_browser, method)(
            url, data="{}", content_type="application/json", headers=extra_headers
        )
        for method, url in operations
    }

    assert len(operations) >= 20
    assert {
        operation: (response.status_code, response.json()["detail"][:17])
        for operation, response in answers.items()
        if (response.status_code, response.json()["detail"][:17]) != (403, "CSRF check failed")
    } == {}
    assert list(CostCenter.objects.values_list("code", flat=True)) == ["research"]


def test_a_non_staff_session_cannot_write_through_the_api_at_all(alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice.user)
    browser.get("/")

    response = browser.post(
        "/api/v1/cost-centers",
        data='{"code": "x", "name": "X"}',
        content_type="application/json",
        headers={"X-CSRFToken": browser.cookies["csrftoken"].value},
    )

    assert response.status_code == 401
    assert not CostCenter.objects.filter(code="x").exists()
