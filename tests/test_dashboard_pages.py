"""Object pages of the control room: cost center, user, key and upstream key panels, and
the view of one Claude Code session."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User, VirtualKey
from accounts.services import virtual_key_issue
from billing.models import Invoice, InvoiceStatus
from gateway.models import KeyHealth, RequestLog, RequestOutcome
from tests.ui.traffic import (
    day_start,
    earlier_today,
    generated_traffic,
    provider,
    request_log,
    roll_up_past_days,
    save,
    upstream_key,
    utc_today,
)

pytestmark = pytest.mark.django_db

PANEL_MAX_QUERIES = 20


def key_of(person) -> VirtualKey:
    return VirtualKey.objects.get(owner=person.user)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def clerk_client(client, db):
    """Staff who may edit people and keys but not read the request log."""
    clerk = User.objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(
        *Permission.objects.filter(
            codename__in=[
                "change_costcenter",
                "change_user",
                "change_virtualkey",
                "change_upstreamkey",
            ]
        )
    )
    client.force_login(clerk)
    return client


def test_cost_center_page_shows_budget_members_keys_and_invoices(
    staff_client, alice, bob, research
):
    save(
        [
            request_log(
                started_at=earlier_today(60),
                user=alice.user,
                cost_center=research,
                virtual_key=key_of(alice),
                cost="120.0000",
            ),
            request_log(
                started_at=earlier_today(50),
                user=bob.user,
                cost_center=research,
                virtual_key=key_of(bob),
                cost="310.5000",
            ),
        ]
    )
    Invoice.objects.create(
        cost_center=research,
        period_start=date(2025, 4, 1),
        status=InvoiceStatus.FINALIZED,
        number="GH-202504-research",
        finalized_at=timezone.now(),
        total_usd=Decimal("812.40"),
    )

    response = staff_client.get(f"/admin/accounts/costcenter/{research.pk}/change/")

    page = response.content.decode()
    overview = response.context["overview"]
    assert overview.budget.spent_usd == Decimal("430.5000")
    assert overview.budget.remaining_usd == Decimal("69.5000")
    assert overview.budget.level == "warn"
    assert [(item.user.username, item.usage.cost_usd) for item in overview.members] == [
        ("bob", Decimal("310.5000")),
        ("alice", Decimal("120.0000")),
    ]
    assert {item.virtual_key.name for item in overview.keys} == {"alice laptop", "bob laptop"}
    assert "<strong>$430.50</strong> of $500.00 (86.1%) · $69.50 left" in page
    assert "GH-202504-research" in page
    assert "$812.40" in page
    assert 'id="cost-center-months"' in page
    assert overview.monthly[-1][1].cost_usd == Decimal("430.5000")
    assert len(overview.monthly) == 12


def test_user_page_shows_budget_sparkline_and_keys(staff_client, alice, research):
    alice.user.monthly_budget_usd = Decimal("100.00")
    alice.user.save()
    save(
        [
            request_log(
                started_at=earlier_today(10),
                user=alice.user,
                cost_center=research,
                virtual_key=key_of(alice),
                cost="150.0000",
            )
        ]
    )

    response = staff_client.get(f"/admin/accounts/user/{alice.user.pk}/change/")

    overview = response.context["overview"]
    assert overview.budget.level == "over"
    assert overview.budget.remaining_usd == Decimal(0)
    assert overview.last_30_days.days[-1][1].cost_usd == Decimal("150.0000")
    assert [item.usage.cost_usd for item in overview.keys] == [Decimal("150.0000")]
    assert b'data-chart="sparkline"' in response.content
    assert b'data-level="over"' in response.content


def test_key_page_shows_sparkline_budgets_and_limits(staff_client, alice, research):
    virtual_key = key_of(alice)
    virtual_key.monthly_budget_usd = Decimal("50.00")
    virtual_key.daily_budget_usd = Decimal("10.00")
    virtual_key.rpm_limit = 60
    virtual_key.last_used_at = timezone.now()
    virtual_key.save()
    yesterday = utc_today() - timedelta(days=1)
    save(
        [
            request_log(
                started_at=earlier_today(10),
                user=alice.user,
                virtual_key=virtual_key,
                cost_center=research,
                cost="4.0000",
            ),
            request_log(
                started_at=day_start(yesterday) + timedelta(hours=12),
                user=alice.user,
                virtual_key=virtual_key,
                cost_center=research,
                cost="6.0000",
            ),
        ]
    )
    roll_up_past_days()

    response = staff_client.get(f"/admin/accounts/virtualkey/{virtual_key.pk}/change/")

    overview = response.context["overview"]
    days = dict(overview.last_30_days.days)
    assert days[utc_today()].cost_usd == Decimal("4.0000")
    assert days[yesterday].cost_usd == Decimal("6.0000")
    assert overview.daily_budget.spent_usd == Decimal("4.0000")
    assert overview.daily_budget.remaining_usd == Decimal("6.0000")
    page = response.content.decode()
    assert "<strong>$4.00</strong> of $10.00 (40.0%) · $6.00 left" in page
    assert 'id="key-limits"' in page
    assert "<td>60</td>" in page
    assert 'id="key-sparkline"' in page


def test_upstream_key_page_shows_health_and_recent_429s(staff_client, alice):
    anthropic = provider()
    key = upstream_key(anthropic)
    key.health = KeyHealth.UNHEALTHY
    key.health_reason = "401 from upstream"
    key.health_changed_at = timezone.now()
    key.save()
    now = timezone.now()
    save(
        [
            request_log(
                started_at=now - timedelta(minutes=5),
                upstream_key=key,
                status=429,
                outcome=RequestOutcome.UPSTREAM_ERROR,
                user=alice.user,
                session_id="sess-429",
            ),
            request_log(
                started_at=now - timedelta(hours=3),
                upstream_key=key,
                status=429,
                outcome=RequestOutcome.UPSTREAM_ERROR,
            ),
            request_log(
                started_at=now - timedelta(hours=30),
                upstream_key=key,
                status=429,
                outcome=RequestOutcome.UPSTREAM_ERROR,
            ),
            request_log(started_at=now - timedelta(minutes=1), upstream_key=key),
        ]
    )

    response = staff_client.get(f"/admin/gateway/upstreamkey/{key.pk}/change/")

    activity = response.context["activity"]
    assert (activity.rate_limited_1h, activity.rate_limited_24h, activity.requests_24h) == (1, 2, 3)
    assert len(activity.recent_rate_limited) == 3
    page = response.content.decode()
    assert 'data-testid="rate-limited-1h">1<' in page
    assert "Unhealthy (taken out of the pool)" in page
    assert "401 from upstream" in page
    assert 'href="/admin/sessions/sess-429/"' in page
    assert "sk-ant-test-upstream" not in page


def test_panels_are_hidden_from_staff_who_may_not_read_traffic(clerk_client, alice, research):
    for url in (
        f"/admin/accounts/costcenter/{research.pk}/change/",
        f"/admin/accounts/user/{alice.user.pk}/change/",
        f"/admin/accounts/virtualkey/{key_of(alice).pk}/change/",
    ):
        response = clerk_client.get(url)
        assert response.status_code == 200, url
        assert b"gh-panels" not in response.content, url


def test_add_pages_have_no_panel(staff_client):
    response = staff_client.get("/admin/accounts/costcenter/add/")

    assert response.status_code == 200
    assert b"gh-panels" not in response.content


def test_object_pages_cost_a_fixed_number_of_queries(staff_client, research, ops):
    people = []
    for index in range(10):
        user = User.objects.create_user(f"dev{index}", default_cost_center=research)
        people.append((user, research, virtual_key_issue(owner=user).virtual_key))
    providers = [provider("anthropic")]
    save(generated_traffic(300, days=40, people=people, providers=providers))
    roll_up_past_days()
    urls = [
        f"/admin/accounts/costcenter/{research.pk}/change/",
        f"/admin/accounts/user/{people[0][0].pk}/change/",
        f"/admin/accounts/virtualkey/{people[0][2].pk}/change/",
    ]
    small = []
    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(url).status_code == 200
        small.append(len(queries))

    save(generated_traffic(5000, days=40, people=people, providers=providers, seed=3))
    roll_up_past_days()

    for url, expected in zip(urls, small, strict=True):
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(url).status_code == 200
        assert len(queries) == expected <= PANEL_MAX_QUERIES, url


# --- One Claude Code session


@pytest.fixture
def session(alice, research):
    common = {
        "user": alice.user,
        "cost_center": research,
        "virtual_key": key_of(alice),
        "session_id": "0b7c1f9e-session",
    }
    save(
        [
            request_log(
                started_at=earlier_today(300),
                cost="0.1000",
                input_tokens=1000,
                cache_write_5m_tokens=4000,
                output_tokens=200,
                latency_ms=900,
                **common,
            ),
            request_log(
                started_at=earlier_today(200),
                cost="0.0500",
                input_tokens=200,
                cache_read_tokens=4000,
                output_tokens=100,
                savings="0.0100",
                agent_id="agent-explore",
                latency_ms=400,
                **common,
            ),
            request_log(
                started_at=earlier_today(100),
                cost=None,
                input_tokens=0,
                output_tokens=0,
                status=529,
                outcome=RequestOutcome.UPSTREAM_ERROR,
                agent_id="agent-explore",
                latency_ms=50,
                **common,
            ),
            request_log(started_at=earlier_today(50), cost="1.0000", session_id="other"),
        ]
    )
    return common["session_id"]


def test_session_view_shows_requests_subagents_tokens_cost_and_cache(staff_client, session):
    response = staff_client.get(f"/admin/sessions/{session}/")

    assert response.status_code == 200
    detail = response.context["detail"]
    assert (detail.requests, detail.error_requests, detail.unpriced_requests) == (3, 1, 1)
    assert detail.cost_usd == Decimal("0.1500")
    assert detail.cache_savings_usd == Decimal("0.0100")
    assert [(item.label, item.tokens) for item in detail.tokens] == [
        ("Input", 1200),
        ("Cache write (5m)", 4000),
        ("Cache write (1h)", 0),
        ("Cache read", 4000),
        ("Output", 300),
    ]
    assert detail.cache_hit_ratio == Decimal(4000) / Decimal(9200)
    assert [(agent.label, agent.requests) for agent in detail.agents] == [
        ("main conversation", 1),
        ("agent-explore", 2),
    ]
    assert detail.usernames == ["alice"]
    assert [len(series["points"]) for series in response.context["timeline"]["series"]] == [1, 2]
    page = response.content.decode()
    assert 'data-testid="session-cost">$0.15<' in page
    assert 'data-testid="session-cache-ratio">43.5%<' in page
    assert page.count("<tr data-request-id=") == 3
    assert "$0.1000" in page
    assert "unpriced" in page
    assert 'id="session-timeline"' in page


def test_unknown_session_is_404(staff_client, db):
    assert staff_client.get("/admin/sessions/no-such-session/").status_code == 404


def test_session_view_is_for_staff_who_may_read_traffic(client, clerk_client, alice, session):
    assert clerk_client.get(f"/admin/sessions/{session}/").status_code == 403
    client.force_login(alice.user)
    response = client.get(f"/admin/sessions/{session}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_request_log_rows_link_to_their_session(staff_client, session):
    listing = staff_client.get("/admin/gateway/requestlog/").content.decode()
    row = RequestLog.objects.filter(session_id=session).first()
    detail = staff_client.get(f"/admin/gateway/requestlog/{row.pk}/change/").content.decode()

    link = f'<a href="/admin/sessions/{session}/" title="{session}">'
    assert f"{link}0b7c1f9e…</a>" in listing
    assert f"{link}{session}</a>" in detail
