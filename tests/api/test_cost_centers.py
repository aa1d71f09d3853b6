"""Cost centers over the API: list, filter, paginate, create, change, delete."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent, CostCenter
from tests.api.conftest import CALLERS, expected_status


@pytest.mark.parametrize("name", CALLERS)
@pytest.mark.parametrize(
    ("method", "path", "body", "ok", "write"),
    [
        ("get", "/cost-centers", None, 200, False),
        ("get", "/cost-centers/{research}", None, 200, False),
        ("post", "/cost-centers", {"code": "design", "name": "Design"}, 201, True),
        ("patch", "/cost-centers/{research}", {"name": "R&D"}, 200, True),
        ("delete", "/cost-centers/{empty}", None, 204, True),
    ],
)
def test_cost_center_endpoints_follow_the_permission_matrix(
    caller, research, name, method, path, body, ok, write
):
    empty = CostCenter.objects.create(code="empty", name="Nobody here")
    url = path.format(research=research.pk, empty=empty.pk)

    response = caller(name).call(method, url, body)

    assert response.status_code == expected_status(name, ok=ok, write=write)


def test_list_filters_by_activity_and_text(admin_api, research, ops):
    CostCenter.objects.create(code="legacy", name="Old research", is_active=False)

    active = admin_api.get("/cost-centers", is_active="true").json()
    searched = admin_api.get("/cost-centers", q="research").json()

    assert [item["code"] for item in active["items"]] == ["research", "ops"]
    assert [item["code"] for item in searched["items"]] == ["research", "legacy"]


def test_list_pages_with_an_opaque_cursor(admin_api, db):
    for number in range(5):
        CostCenter.objects.create(code=f"cc-{number}", name=f"Center {number}")

    first = admin_api.get("/cost-centers", limit=2).json()
    second = admin_api.get("/cost-centers", limit=2, cursor=first["next_cursor"]).json()
    third = admin_api.get("/cost-centers", limit=2, cursor=second["next_cursor"]).json()

    codes = [item["code"] for page in (first, second, third) for item in page["items"]]
    assert codes == ["cc-0", "cc-1", "cc-2", "cc-3", "cc-4"]
    assert third["next_cursor"] is None


def test_a_cursor_not_issued_by_the_api_is_a_400_naming_the_field(admin_api, db):
    response = admin_api.get("/cost-centers", cursor="not-a-cursor!")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "This cursor was not issued by this API.",
        "field": "cursor",
    }


def test_limit_above_500_is_refused(admin_api, db):
    assert admin_api.get("/cost-centers", limit=501).status_code == 422


def test_create_returns_the_cost_center_and_records_an_audit_event(admin_api, staff):
    response = admin_api.post(
        "/cost-centers",
        {"code": "design", "name": "Design", "monthly_budget_usd": "250.50"},
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["code"], body["name"], body["monthly_budget_usd"], body["is_active"]) == (
        "design",
        "Design",
        "250.50",
        True,
    )
    event = AuditEvent.objects.get(object_type="accounts.costcenter", object_id=str(body["id"]))
    assert (event.actor, event.via, event.action) == (staff, "api", "create")
    assert event.changes["code"] == [None, "design"]
    assert event.changes["monthly_budget_usd"] == [None, "250.50"]


def test_a_duplicate_code_is_a_409_naming_the_field(admin_api, research):
    response = admin_api.post("/cost-centers", {"code": "research", "name": "Again"})

    assert response.status_code == 409
    assert response.json() == {
        "detail": "Cost center with this Code already exists.",
        "field": "code",
    }


def test_an_invalid_email_is_a_400_naming_the_field(admin_api, db):
    response = admin_api.post(
        "/cost-centers", {"code": "design", "name": "Design", "contact_email": "not-an-email"}
    )

    assert response.status_code == 400
    assert response.json() == {"detail": "Enter a valid email address.", "field": "contact_email"}


def test_patch_changes_only_the_fields_sent_and_audits_the_difference(admin_api, research):
    response = admin_api.patch(f"/cost-centers/{research.pk}", {"name": "R&D", "is_active": False})

    assert response.status_code == 200
    research.refresh_from_db()
    assert (research.name, research.is_active, research.monthly_budget_usd) == (
        "R&D",
        False,
        500,
    )
    event = AuditEvent.objects.get(action="update")
    assert event.changes == {"name": ["Research", "R&D"], "is_active": [True, False]}


def test_patch_with_null_for_a_required_field_is_refused(admin_api, research):
    assert admin_api.patch(f"/cost-centers/{research.pk}", {"name": None}).status_code == 422


def test_a_patch_that_changes_nothing_records_nothing(admin_api, research):
    response = admin_api.patch(f"/cost-centers/{research.pk}", {"name": "Research"})

    assert response.status_code == 200
    assert not AuditEvent.objects.exists()


def test_deleting_a_cost_center_in_use_is_a_409_naming_what_uses_it(admin_api, alice, bob):
    research = alice.user.default_cost_center

    response = admin_api.delete(f"/cost-centers/{research.pk}")

    assert response.status_code == 409
    assert response.json() == {"detail": "Still in use by 2 users (alice, bob).", "field": None}
    assert CostCenter.objects.filter(pk=research.pk).exists()
    assert not AuditEvent.objects.exists()


def test_deleting_an_unused_cost_center_removes_it_and_audits(admin_api, db):
    empty = CostCenter.objects.create(code="empty", name="Nobody here")

    response = admin_api.delete(f"/cost-centers/{empty.pk}")

    assert response.status_code == 204
    assert not CostCenter.objects.filter(pk=empty.pk).exists()
    event = AuditEvent.objects.get()
    assert (event.action, event.object_id, event.object_repr) == (
        "delete",
        str(empty.pk),
        "empty — Nobody here",
    )


def test_a_missing_cost_center_is_a_404_naming_it(admin_api, db):
    response = admin_api.get("/cost-centers/999")

    assert response.status_code == 404
    assert response.json() == {"detail": "No cost center with id 999.", "field": None}


def test_body_logging_is_off_by_default_and_a_patch_turns_it_on_with_patterns(admin_api, research):
    created = admin_api.post("/cost-centers", {"code": "design", "name": "Design"}).json()
    patterns = "ACME-\\d{6}\nINTERNAL-\\d+"

    response = admin_api.patch(
        f"/cost-centers/{research.pk}", {"log_bodies": True, "body_redact_patterns": patterns}
    )

    assert (created["log_bodies"], created["body_redact_patterns"]) == (False, "")
    assert response.status_code == 200
    assert (response.json()["log_bodies"], response.json()["body_redact_patterns"]) == (
        True,
        patterns,
    )
    research.refresh_from_db()
    assert (research.log_bodies, research.body_redact_pattern_list) == (
        True,
        ("ACME-\\d{6}", "INTERNAL-\\d+"),
    )
    event = AuditEvent.objects.get(action="update")
    assert event.changes == {
        "log_bodies": [False, True],
        "body_redact_patterns": ["", patterns],
    }


@pytest.mark.parametrize(
    ("patterns", "detail"),
    [
        (
            "ACME-(\\d+",
            "Line 1 is not a valid regular expression: missing ) at position 9.",
        ),
        (
            "ok\n\nx*",
            "Line 3 matches the empty string; a pattern must match some text.",
        ),
    ],
)
@pytest.mark.parametrize("method", ["post", "patch"])
def test_a_redaction_pattern_that_is_not_a_usable_regex_is_a_400_naming_the_line(
    admin_api, research, method, patterns, detail
):
    if method == "post":
        response = admin_api.post(
            "/cost-centers", {"code": "design", "name": "Design", "body_redact_patterns": patterns}
        )
    else:
        response = admin_api.patch(
            f"/cost-centers/{research.pk}", {"body_redact_patterns": patterns}
        )

    assert response.status_code == 400
    assert response.json() == {"detail": detail, "field": "body_redact_patterns"}
    assert CostCenter.objects.filter(body_redact_patterns=patterns).count() == 0
