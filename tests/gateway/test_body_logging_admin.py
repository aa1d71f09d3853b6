"""Body logging in the control room: the cost center switch, and the bodies, read-only."""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone

from accounts.models import CostCenter
from gateway.models import RequestBody, RequestLog


def staff_client_for(client, staff):
    client.force_login(staff)
    return client


def cost_center_form(**values) -> dict[str, object]:
    return {
        "code": "research",
        "name": "Research",
        "monthly_budget_usd": "500.00",
        "is_active": "on",
        "cache_policy": "",
        "cache_ttl": "",
        **values,
    }


def test_a_cost_center_turns_body_logging_on_with_patterns_in_the_admin(client, staff, research):
    staff_client = staff_client_for(client, staff)

    response = staff_client.post(
        reverse("admin:accounts_costcenter_change", args=[research.pk]),
        cost_center_form(log_bodies="on", body_redact_patterns="ACME-\\d{6}\r\nINTERNAL-\\d+"),
    )
    listing = staff_client.get(reverse("admin:accounts_costcenter_changelist"), {"log_bodies": 1})

    assert response.status_code == 302
    research.refresh_from_db()
    assert (research.log_bodies, research.body_redact_pattern_list) == (
        True,
        ("ACME-\\d{6}", "INTERNAL-\\d+"),
    )
    assert [cost_center.code for cost_center in listing.context["cl"].result_list] == ["research"]


def test_the_admin_refuses_a_pattern_that_does_not_compile_and_says_which_line(
    client, staff, research
):
    staff_client = staff_client_for(client, staff)

    response = staff_client.post(
        reverse("admin:accounts_costcenter_change", args=[research.pk]),
        cost_center_form(log_bodies="on", body_redact_patterns="fine\n[unclosed"),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "body_redact_patterns": [
            "Line 2 is not a valid regular expression: unterminated character set at position 9."
        ]
    }
    assert CostCenter.objects.get(pk=research.pk).log_bodies is False


def test_a_request_log_links_to_its_bodies_shown_read_only_and_escaped(client, staff, research):
    staff_client = staff_client_for(client, staff)
    now = timezone.now()
    log = RequestLog.objects.create(
        request_id="req_logged", started_at=now, endpoint="/v1/messages", cost_center=research
    )
    body = RequestBody.objects.create(
        request_id="req_logged",
        cost_center=research,
        created_at=now,
        request_text='{"content": "<b>[REDACTED]</b>"}',
        response_text="event: message_stop",
        is_response_truncated=True,
    )
    body_url = reverse("admin:gateway_requestbody_change", args=[body.pk])

    log_page = staff_client.get(reverse("admin:gateway_requestlog_change", args=[log.pk]))
    body_page = staff_client.get(body_url)
    add = staff_client.get(reverse("admin:gateway_requestbody_add"))
    delete = staff_client.post(
        reverse("admin:gateway_requestbody_delete", args=[body.pk]), {"post": "yes"}
    )

    assert f'<a href="{body_url}">View the logged bodies</a>' in log_page.text
    assert body_page.context["title"] == "View request body"
    assert "{&quot;content&quot;: &quot;&lt;b&gt;[REDACTED]&lt;/b&gt;&quot;}" in body_page.text
    assert "<b>[REDACTED]</b>" not in body_page.text
    log_url = reverse("admin:gateway_requestlog_change", args=[log.pk])
    assert f'<a href="{log_url}">req_logged</a>' in body_page.text
    assert (add.status_code, delete.status_code) == (403, 403)
    assert RequestBody.objects.filter(pk=body.pk).exists()


def test_a_request_log_without_logged_bodies_shows_no_link(client, staff):
    staff_client = staff_client_for(client, staff)
    log = RequestLog.objects.create(
        request_id="req_plain", started_at=timezone.now(), endpoint="/v1/messages"
    )

    page = staff_client.get(reverse("admin:gateway_requestlog_change", args=[log.pk]))

    assert page.status_code == 200
    assert "View the logged bodies" not in page.text
