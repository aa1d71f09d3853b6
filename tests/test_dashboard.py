"""The admin home dashboard: what it computes (rollups for past days, the request log for
today), who sees it, and how many queries it costs whatever the size of the log."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User, VirtualKey
from billing.dashboard import control_room
from billing.models import UsageRollup
from billing.rollups import rollup_days
from gateway.dashboard import percentiles, requests_on, sessions_on
from gateway.models import RequestLog, RequestOutcome
from tests.ui.traffic import (
    earlier_today,
    generated_traffic,
    provider,
    request_log,
    roll_up_past_days,
    save,
    utc_today,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
JUNE = date(2025, 6, 1)
MAY = date(2025, 5, 1)
DASHBOARD_MAX_QUERIES = 15


def at(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2025, month, day, hour, 0, tzinfo=UTC)


def key_of(person) -> VirtualKey:
    return VirtualKey.objects.get(owner=person.user)


@pytest.fixture
def june(alice, bob, charlie, research, ops):
    """Traffic of May and June 2025 as seen on June 15 at noon: past days rolled up."""
    anthropic, bedrock = provider("anthropic"), provider("bedrock")
    alice_key, bob_key, charlie_key = key_of(alice), key_of(bob), key_of(charlie)
    save(
        [
            # May (another month)
            request_log(
                started_at=at(5, 31),
                user=alice.user,
                cost_center=research,
                virtual_key=alice_key,
                provider=anthropic,
                cost="7.0000",
            ),
            # June, past days
            request_log(
                started_at=at(6, 3),
                user=alice.user,
                cost_center=research,
                virtual_key=alice_key,
                provider=anthropic,
                cost="100.0000",
                savings="3.0000",
                input_tokens=1000,
                cache_read_tokens=3000,
            ),
            request_log(
                started_at=at(6, 10),
                user=bob.user,
                cost_center=research,
                virtual_key=bob_key,
                provider=bedrock,
                model="claude-haiku-4-5",
                cost="20.0000",
                input_tokens=500,
                status=529,
                outcome=RequestOutcome.UPSTREAM_ERROR,
            ),
            request_log(
                started_at=at(6, 10, 11),
                user=charlie.user,
                cost_center=ops,
                virtual_key=charlie_key,
                provider=anthropic,
                cost="5.5000",
                input_tokens=500,
            ),
            # June 15, today
            request_log(
                started_at=at(6, 15, 9),
                user=alice.user,
                cost_center=research,
                virtual_key=alice_key,
                provider=anthropic,
                cost="300.0000",
                savings="1.0000",
                input_tokens=2000,
                cache_read_tokens=2000,
                cache_write_5m_tokens=1000,
                session_id="sess-a",
                agent_id="",
                latency_ms=100,
                ttfb_ms=10,
            ),
            request_log(
                started_at=at(6, 15, 10),
                user=alice.user,
                cost_center=research,
                virtual_key=alice_key,
                provider=anthropic,
                cost=None,
                input_tokens=0,
                output_tokens=0,
                session_id="sess-a",
                agent_id="agent-1",
                latency_ms=200,
                ttfb_ms=20,
            ),
            request_log(
                started_at=at(6, 15, 11),
                user=None,
                cost_center=None,
                provider=None,
                cost="0.2500",
                input_tokens=0,
                output_tokens=0,
                status=401,
                outcome=RequestOutcome.GATEWAY_ERROR,
                latency_ms=300,
                ttfb_ms=None,
            ),
        ]
    )
    rollup_days([date(2025, 5, 31), date(2025, 6, 3), date(2025, 6, 10)])
    # A stale rollup of today (the job ran this morning): today comes from the log instead.
    UsageRollup.objects.create(
        day=date(2025, 6, 15), cost_center=research, requests=1, cost_usd=Decimal("999")
    )
    return {"anthropic": anthropic, "bedrock": bedrock}


def test_month_totals_are_past_rollups_plus_todays_requests(june):
    room = control_room(period=JUNE, now=NOW)

    assert room.totals.cost_usd == Decimal("425.7500")
    assert room.totals.requests == 6
    assert room.totals.unpriced_requests == 1
    assert room.totals.error_requests == 2
    assert room.totals.error_rate == Decimal(2) / Decimal(6)
    assert room.today_usage.cost_usd == Decimal("300.2500")


def test_cache_hit_ratio_is_cache_reads_over_all_input_tokens(june):
    room = control_room(period=JUNE, now=NOW)

    # input 1000+500+500+2000 = 4000, cache reads 3000+2000 = 5000, cache writes 1000
    assert room.totals.cache_hit_ratio == Decimal(5000) / Decimal(10000)
    assert room.totals.cache_savings_usd == Decimal("4.0000")


def test_spend_per_cost_center_against_its_budget(june, research, ops):
    room = control_room(period=JUNE, now=NOW)

    rows = {row.budget.label: row.budget for row in room.spend_by_cost_center}
    assert rows["research"].spent_usd == Decimal("420.0000")
    assert rows["research"].budget_usd == Decimal("500.00")
    assert rows["research"].remaining_usd == Decimal("80.0000")
    assert rows["research"].level == "warn"
    assert rows["ops"].spent_usd == Decimal("5.5000")
    assert rows["ops"].budget_usd is None
    assert rows["no cost center"].spent_usd == Decimal("0.2500")


def test_daily_spend_covers_the_thirty_days_up_to_today(june):
    room = control_room(period=JUNE, now=NOW)

    days = dict(room.daily)
    assert len(room.daily) == 30
    assert room.daily[0][0] == date(2025, 5, 17)
    assert room.daily[-1][0] == date(2025, 6, 15)
    assert days[date(2025, 5, 31)].cost_usd == Decimal("7.0000")
    assert days[date(2025, 6, 3)].cost_usd == Decimal("100.0000")
    assert days[date(2025, 6, 10)].cost_usd == Decimal("25.5000")
    assert days[date(2025, 6, 15)].cost_usd == Decimal("300.2500")
    assert days[date(2025, 6, 14)].cost_usd == Decimal(0)
    assert room.chart_data()["daily"]["cost"][-1] == 300.25


def test_breakdowns_by_model_provider_user_and_key(june, alice, bob, charlie):
    room = control_room(period=JUNE, now=NOW)

    assert [(item.label, item.usage.cost_usd) for item in room.by_model] == [
        ("claude-sonnet-4-5", Decimal("405.7500")),
        ("claude-haiku-4-5", Decimal("20.0000")),
    ]
    assert [(item.label, item.usage.cost_usd) for item in room.by_provider] == [
        ("anthropic", Decimal("405.5000")),
        ("bedrock", Decimal("20.0000")),
        ("(no provider)", Decimal("0.2500")),
    ]
    assert [(item.label, item.usage.cost_usd) for item in room.top_users] == [
        ("alice", Decimal("400.0000")),
        ("bob", Decimal("20.0000")),
        ("charlie", Decimal("5.5000")),
        ("(no user)", Decimal("0.2500")),
    ]
    assert [(item.label, item.detail) for item in room.top_keys[:3]] == [
        ("alice laptop", f"{key_of(alice).prefix}… · alice"),
        ("bob laptop", f"{key_of(bob).prefix}… · bob"),
        ("charlie laptop", f"{key_of(charlie).prefix}… · charlie"),
    ]


def test_latency_percentiles_and_sessions_are_today_only(june):
    room = control_room(period=JUNE, now=NOW)

    assert room.latency == {50: 200, 95: 300}
    assert room.ttfb == {50: 10, 95: 20}
    assert room.sessions_today == 1
    [session] = room.recent_sessions
    assert (session.session_id, session.username, session.requests, session.agents) == (
        "sess-a",
        "alice",
        2,
        1,
    )
    assert session.cost_usd == Decimal("300.0000")


def test_filtering_by_cost_center_narrows_every_figure(june, ops):
    room = control_room(period=JUNE, cost_center_id=ops.pk, now=NOW)

    assert room.cost_center == ops
    assert room.totals.cost_usd == Decimal("5.5000")
    assert [row.budget.label for row in room.spend_by_cost_center] == ["ops"]
    assert [item.label for item in room.top_users] == ["charlie"]
    assert room.latency == {50: None, 95: None}
    assert room.sessions_today == 0


def test_a_past_month_ends_its_daily_series_on_its_last_day(june):
    room = control_room(period=MAY, now=NOW)

    assert room.totals.cost_usd == Decimal("7.0000")
    assert room.daily[-1][0] == date(2025, 5, 31)
    assert room.today_usage.cost_usd == Decimal(0)


def test_nearest_rank_percentiles():
    rows = [
        request_log(started_at=earlier_today(index), latency_ms=latency, ttfb_ms=None)
        for index, latency in enumerate([700, 100, 300, 1000, 200, 500, 900, 400, 800, 600])
    ]
    save(rows)

    result = percentiles(requests_on(utc_today()), "latency_ms", (50, 90, 95, 100))

    assert result == {50: 500, 90: 900, 95: 1000, 100: 1000}
    assert percentiles(requests_on(utc_today()), "ttfb_ms") == {50: None, 95: None}


def test_sessions_today_counts_distinct_sessions(alice):
    save(
        request_log(started_at=earlier_today(seconds), user=alice.user, session_id=session)
        for seconds, session in [(10, "one"), (20, "one"), (30, "two"), (40, "")]
    )

    total, recent = sessions_on(utc_today())

    assert total == 2
    assert [summary.session_id for summary in recent] == ["one", "two"]


# --- The page


def test_staff_see_the_dashboard_with_money_in_dollars(client, staff, alice, research):
    save(
        [
            request_log(
                started_at=earlier_today(60),
                user=alice.user,
                cost_center=research,
                virtual_key=key_of(alice),
                cost="12.3456",
                session_id="s-1",
            ),
            request_log(
                started_at=earlier_today(30),
                user=alice.user,
                cost_center=research,
                virtual_key=key_of(alice),
                cost="0.0044",
                session_id="s-1",
            ),
        ]
    )
    client.force_login(staff)

    response = client.get("/admin/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="month-spend">$12.35<' in page
    assert '<tr data-cost-center="research">' in page
    assert "$487.65" in page  # what is left of research's $500.00
    assert 'id="control-room-data"' in page
    assert "vendor/chartjs/chart.umd.min.js" in page
    assert 'href="/admin/sessions/s-1/"' in page
    assert 'href="/admin/live/"' in page
    assert "Cost centers" in page  # the admin's own app list is still there
    assert '<time class="local-time" datetime="' in page


def test_dashboard_filters_by_month_and_cost_center(client, staff, research, ops, charlie):
    save(
        [
            request_log(
                started_at=earlier_today(5), user=charlie.user, cost_center=ops, cost="2.0000"
            )
        ]
    )
    client.force_login(staff)

    response = client.get("/admin/", {"cost_center": ops.pk, "month": "2020-01"})

    room = response.context["dashboard"]
    assert room.cost_center == ops
    assert room.period == date(2020, 1, 1)
    assert room.totals.cost_usd == Decimal(0)
    this_month = client.get("/admin/", {"cost_center": ops.pk}).context["dashboard"]
    assert this_month.totals.cost_usd == Decimal("2.0000")


def test_nonsense_filters_fall_back_to_this_month_and_every_cost_center(client, staff):
    client.force_login(staff)

    response = client.get("/admin/", {"month": "next year", "cost_center": "ops"})

    room = response.context["dashboard"]
    assert room.cost_center is None
    assert room.is_current_month


def test_the_dashboard_is_for_staff_only(client, alice):
    client.force_login(alice.user)

    response = client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_who_may_not_read_the_request_log_get_the_plain_index(client, db):
    clerk = User.objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_costcenter"))
    client.force_login(clerk)

    response = client.get("/admin/")

    assert response.status_code == 200
    assert "dashboard" not in response.context
    assert b"control-room-data" not in response.content


# --- Query bounds


@pytest.fixture
def population(research, ops):
    """Twenty people with a key each, in two cost centers, and two providers."""
    from accounts.services import virtual_key_issue

    people = []
    for index in range(20):
        cost_center = research if index % 2 else ops
        user = User.objects.create_user(f"dev{index:02d}", default_cost_center=cost_center)
        virtual_key = virtual_key_issue(owner=user, name=f"dev{index:02d} laptop").virtual_key
        people.append((user, cost_center, virtual_key))
    return people, [provider("anthropic"), provider("bedrock")]


def dashboard_queries(client, **params) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/admin/", params)
    assert response.status_code == 200
    assert "dashboard" in response.context
    return len(queries)


def test_dashboard_queries_do_not_grow_with_the_request_log(
    client, staff, population, django_assert_max_num_queries
):
    people, providers = population
    client.force_login(staff)
    save(generated_traffic(200, days=35, people=people, providers=providers))
    roll_up_past_days()
    small = dashboard_queries(client)
    small_filtered = dashboard_queries(client, cost_center=people[0][1].pk)

    save(generated_traffic(50_000, days=35, people=people, providers=providers, seed=11))
    roll_up_past_days()
    assert RequestLog.objects.count() == 50_200
    assert UsageRollup.objects.exists()

    with django_assert_max_num_queries(DASHBOARD_MAX_QUERIES):
        response = client.get("/admin/")
    assert response.context["dashboard"].totals.requests > 0
    assert dashboard_queries(client) == small
    assert dashboard_queries(client, cost_center=people[0][1].pk) == small_filtered
    with django_assert_max_num_queries(DASHBOARD_MAX_QUERIES):
        client.get(
            "/admin/", {"month": (utc_today().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")}
        )


def test_dashboard_figures_match_the_request_log(client, staff, population):
    """Rollups for past days plus the log for today add up to the log itself."""
    people, providers = population
    client.force_login(staff)
    save(generated_traffic(3000, days=45, people=people, providers=providers))
    roll_up_past_days()
    month_start = datetime.combine(utc_today().replace(day=1), datetime.min.time(), tzinfo=UTC)
    month = RequestLog.objects.filter(started_at__gte=month_start)
    expected_cost = sum((row.cost_usd for row in month.filter(is_priced=True)), Decimal(0))

    room = client.get("/admin/").context["dashboard"]

    assert room.totals.requests == month.count()
    assert room.totals.cost_usd == expected_cost
    assert room.totals.error_requests == month.exclude(outcome=RequestOutcome.OK).count()
    assert room.totals.cache_read_tokens == sum(row.cache_read_tokens for row in month)
