"""The control room in a real browser: sign in, issue a key (its secret shown exactly once),
the dashboard's charts drawn with the numbers of the database, and one session's page."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import Sum

from accounts import keys
from accounts.formatting import format_money
from accounts.models import VirtualKey
from billing.dashboard import utc_today
from gateway.models import RequestLog
from tests.ui.conftest import painted_pixels, screenshot, sign_in_to_admin
from tests.ui.traffic import (
    MODELS,
    day_start,
    earlier_today,
    generated_traffic,
    provider,
    request_log,
    roll_up_past_days,
    save,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHARTS = ("#chart-daily", "#chart-models", "#chart-providers")


def test_issuing_a_key_shows_its_secret_exactly_once(page, gatehouse_server, staff, alice):
    sign_in_to_admin(page, gatehouse_server, "root-admin", "admin-password")
    page.goto(gatehouse_server.base_url + "/admin/accounts/virtualkey/add/")
    page.click(".field-owner .select2-selection")
    page.fill(".select2-search__field", "alice")
    page.click(".select2-results__option:has-text('alice')")
    page.fill("#id_name", "browser key")

    with page.expect_navigation() as navigation:
        page.click("input[type=submit][value='Issue key']")

    assert "no-store" in navigation.value.headers["cache-control"]
    secret = page.inner_text("code.secret").strip()
    issued = VirtualKey.objects.get(name="browser key")
    assert issued.owner == alice.user
    assert keys.secret_matches(secret, issued.secret_hash)
    assert f"export ANTHROPIC_API_KEY={secret}" in page.inner_text("pre")

    with page.expect_navigation():
        page.reload()  # a reload of a POST's result sends the same POST again
    assert secret not in page.content()
    assert "This form was already saved" in page.content()

    page.goto(gatehouse_server.base_url + "/admin/accounts/virtualkey/")
    listing = page.content()
    assert secret not in listing
    assert f"{issued.prefix}…" in listing
    page.goto(gatehouse_server.base_url + f"/admin/accounts/virtualkey/{issued.pk}/change/")
    assert secret not in page.content()
    assert f"{issued.prefix}…" in page.content()
    page.reload()
    assert secret not in page.content()
    assert VirtualKey.objects.filter(name="browser key").count() == 1


@pytest.fixture
def month_of_traffic(alice, bob, charlie, research, ops):
    people = [
        (person.user, cost_center, VirtualKey.objects.get(owner=person.user))
        for person, cost_center in ((alice, research), (bob, research), (charlie, ops))
    ]
    save(
        generated_traffic(
            600, days=40, people=people, providers=[provider("anthropic"), provider("bedrock")]
        )
    )
    roll_up_past_days()


def test_dashboard_draws_its_charts_with_the_numbers_of_the_database(
    page, gatehouse_server, staff, month_of_traffic
):
    month = RequestLog.objects.filter(started_at__gte=day_start(utc_today().replace(day=1)))
    month_cost = sum((row.cost_usd for row in month.filter(is_priced=True)), Decimal(0))
    tokens = month.aggregate(
        read=Sum("cache_read_tokens"),
        uncached=Sum("input_tokens"),
        written=Sum("cache_write_5m_tokens"),
    )
    cache_ratio = Decimal(tokens["read"]) / (
        tokens["read"] + tokens["uncached"] + tokens["written"]
    )
    sessions_today = (
        RequestLog.objects.filter(started_at__gte=day_start(utc_today()))
        .exclude(session_id="")
        .values("session_id")
        .distinct()
        .count()
    )

    sign_in_to_admin(page, gatehouse_server, "root-admin", "admin-password")
    for chart in CHARTS:
        page.wait_for_selector(f"{chart}[data-drawn='1']")

    for chart in CHARTS:
        assert painted_pixels(page, chart) > 1000, chart
    assert page.inner_text("[data-testid=month-spend]") == format_money(month_cost, 2)
    assert page.inner_text("[data-testid=cache-ratio]") == f"{cache_ratio * 100:.1f}%"
    assert page.inner_text("[data-testid=sessions-today]") == f"{sessions_today:,}"
    assert page.locator("#top-users tbody tr").count() == 3
    dashboard_text = page.inner_text("#control-room")
    assert all(model in dashboard_text for model in MODELS)
    assert_times_are_local(page)
    screenshot(page, "dashboard.png")


def assert_times_are_local(page) -> None:
    """Paris is never at UTC: the text is local, the hover title keeps UTC."""
    first = page.locator("time.local-time[data-localized]").first
    assert first.get_attribute("title").endswith(" UTC")
    assert not first.inner_text().endswith("UTC")


def test_session_page_shows_the_session_with_its_timeline(
    page, gatehouse_server, staff, alice, research
):
    common = {
        "user": alice.user,
        "cost_center": research,
        "virtual_key": VirtualKey.objects.get(owner=alice.user),
        "session_id": "5e55-browser-session",
    }
    save(
        [
            request_log(
                started_at=earlier_today(600 - 40 * index),
                cost=f"0.0{index + 1}00",
                input_tokens=300,
                cache_read_tokens=4000 * index,
                cache_write_5m_tokens=4000 if index == 0 else 0,
                agent_id="" if index % 3 else f"agent-{index}",
                latency_ms=400 + 150 * index,
                **common,
            )
            for index in range(8)
        ]
    )
    expected_cost = sum(
        (row.cost_usd for row in RequestLog.objects.filter(session_id=common["session_id"])),
        Decimal(0),
    )

    sign_in_to_admin(page, gatehouse_server, "root-admin", "admin-password")
    page.goto(gatehouse_server.base_url + "/admin/gateway/requestlog/")
    page.locator(f"a[href='/admin/sessions/{common['session_id']}/']").first.click()
    page.wait_for_selector("#chart-timeline[data-drawn='1']")

    assert painted_pixels(page, "#chart-timeline") > 1000
    assert page.inner_text("[data-testid=session-cost]") == format_money(expected_cost, 2)
    assert page.inner_text("[data-testid=session-requests]") == "8"
    assert page.locator("#session-requests tbody tr").count() == 8
    assert_times_are_local(page)
    screenshot(page, "session.png")
