"""The request log, usage aggregates and budgets over the API (all read-only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.api.conftest import CALLERS, expected_status, log_request

JAN = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def traffic(alice, bob, charlie, provider):
    """Five requests in January 2026: alice 2 (one failed), bob 1, charlie 2 (one unpriced)."""
    return [
        log_request(
            alice,
            started_at=JAN,
            provider=provider,
            session_id="s-1",
            cache_read_tokens=1000,
            cache_savings_usd="0.0027000000",
        ),
        log_request(
            alice,
            started_at=JAN + timedelta(days=1),
            provider=provider,
            status_code=529,
            outcome="upstream_error",
            cost="0",
        ),
        log_request(
            bob, started_at=JAN + timedelta(days=1), model="claude-haiku-4-5", cost="0.0020000000"
        ),
        log_request(charlie, started_at=JAN + timedelta(days=2), cost="0.1234567891"),
        log_request(charlie, started_at=JAN + timedelta(days=40), cost=None, model="mystery"),
    ]


@pytest.mark.parametrize("name", CALLERS)
@pytest.mark.parametrize(
    "path",
    ["/requests", "/requests/{request_id}", "/usage", "/budgets"],
)
def test_request_usage_and_budget_endpoints_follow_the_permission_matrix(
    caller, traffic, name, path
):
    response = caller(name).get(path.format(request_id=traffic[0].request_id))

    assert response.status_code == expected_status(name, ok=200, write=False)


@pytest.mark.parametrize("name", ["admin_token", "read_token", "staff_session"])
def test_the_request_log_is_read_only(caller, traffic, name):
    assert caller(name).post("/requests", {}).status_code == 405


def test_requests_are_listed_newest_first_and_paged(admin_api, traffic):
    first = admin_api.get("/requests", limit=3).json()
    rest = admin_api.get("/requests", limit=3, cursor=first["next_cursor"]).json()

    ids = [item["request_id"] for item in first["items"] + rest["items"]]
    assert ids == [row.request_id for row in reversed(traffic)]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"user": "alice"}, [1, 0]),
        ({"key": "bob"}, [2]),
        ({"cost_center": "ops"}, [4, 3]),
        ({"session": "s-1"}, [0]),
        ({"model": "claude-haiku-4-5"}, [2]),
        ({"status": 529}, [1]),
        ({"outcome": "upstream_error"}, [1]),
        ({"since": "2026-01-11T00:00:00Z", "until": "2026-01-13T00:00:00Z"}, [3, 2, 1]),
        ({"provider": "anthropic"}, [1, 0]),
    ],
)
def test_requests_filter(admin_api, traffic, alice, bob, query, expected):
    names = {
        "alice": alice.user.pk,
        "bob": bob.user.virtual_keys.get().public_id,
        "ops": traffic[3].cost_center_id,
        "anthropic": traffic[0].provider_id,
    }
    params = {key: names.get(value, value) for key, value in query.items()}

    items = admin_api.get("/requests", **params).json()["items"]

    assert [item["request_id"] for item in items] == [traffic[i].request_id for i in expected]


def test_one_request_by_its_request_id(admin_api, traffic, alice):
    body = admin_api.get(f"/requests/{traffic[0].request_id}").json()

    assert (body["key_id"], body["user_id"], body["cost_usd"], body["cache_read_tokens"]) == (
        alice.user.virtual_keys.get().public_id,
        alice.user.pk,
        "0.0100000000",
        1000,
    )


def test_usage_by_user_sums_requests_tokens_cost_and_savings(admin_api, traffic):
    body = admin_api.get("/usage", group_by="user", since="2026-01-01", until="2026-01-31").json()

    rows = {row["label"]: row for row in body["rows"]}
    assert set(rows) == {"alice", "bob", "charlie"}
    assert (rows["alice"]["requests"], rows["alice"]["error_requests"]) == (2, 1)
    assert rows["alice"]["cost_usd"] == "0.0100000000"
    assert rows["alice"]["cache_savings_usd"] == "0.0027000000"
    assert rows["alice"]["cache_read_tokens"] == 1000
    assert rows["charlie"]["cost_usd"] == "0.1234567891"
    assert body["totals"]["requests"] == 4
    assert body["totals"]["cost_usd"] == "0.1354567891"
    assert body["totals"]["input_tokens"] == 400


def test_usage_by_day_and_by_model(admin_api, traffic):
    by_day = admin_api.get("/usage", group_by="day", since="2026-01-01", until="2026-02-28").json()
    by_model = admin_api.get(
        "/usage", group_by="model", since="2026-01-01", until="2026-02-28"
    ).json()

    assert [(row["group"], row["requests"]) for row in by_day["rows"]] == [
        ("2026-01-10", 1),
        ("2026-01-11", 2),
        ("2026-01-12", 1),
        ("2026-02-19", 1),
    ]
    models = {row["group"]: (row["requests"], row["unpriced_requests"]) for row in by_model["rows"]}
    assert models == {
        "claude-haiku-4-5": (1, 0),
        "claude-sonnet-4-5": (3, 0),
        "mystery": (1, 1),
    }


def test_usage_filters_by_cost_center(admin_api, traffic):
    ops = traffic[3].cost_center_id

    body = admin_api.get(
        "/usage", group_by="key", cost_center=ops, since="2026-01-01", until="2026-12-31"
    ).json()

    assert [(row["label"], row["requests"]) for row in body["rows"]] == [("charlie laptop", 2)]


def test_usage_refuses_a_range_that_ends_before_it_starts(admin_api, db):
    response = admin_api.get("/usage", since="2026-02-01", until="2026-01-01")

    assert response.status_code == 400
    assert response.json() == {"detail": "until is before since.", "field": "until"}


def test_budgets_show_this_months_spend_against_each_budget(admin_api, alice, bob, research):
    now = timezone.now()
    log_request(alice, started_at=now, cost="120.5000000000")
    log_request(bob, started_at=now, cost="30.0000000000")
    log_request(bob, started_at=now - timedelta(days=40), cost="999")

    body = admin_api.get("/budgets", scope="cost_center").json()

    assert len(body["items"]) == 1
    item = body["items"][0]
    assert (item["scope"], item["id"], item["name"]) == (
        "cost_center",
        str(research.pk),
        "research",
    )
    assert (item["month"]["budget_usd"], item["month"]["spent_usd"]) == ("500.00", "150.5000000000")
    assert item["month"]["remaining_usd"] == "349.5000000000"
    assert item["day"] is None


def test_key_budgets_include_today(admin_api, alice):
    key = alice.user.virtual_keys.get()
    key.daily_budget_usd = 5
    key.save()
    log_request(alice, started_at=timezone.now(), cost="2.0000000000")

    item = admin_api.get("/budgets", scope="key").json()["items"][0]

    assert item["id"] == key.public_id
    assert item["month"]["budget_usd"] is None
    assert (item["day"]["budget_usd"], item["day"]["remaining_usd"]) == ("5.00", "3.0000000000")


def test_budgets_include_what_requests_in_flight_have_reserved(admin_api, alice, research):
    from asgiref.sync import async_to_sync

    from gateway.admission import ledger
    from gateway.admission.budgets import COST_CENTER, MONTH, BudgetScope, period_of, units_of_cost
    from gateway.admission.limits import RateClaim

    log_request(alice, started_at=timezone.now(), cost="100.0000000000")
    scope = BudgetScope(
        COST_CENTER,
        research.pk,
        "research",
        period_of(MONTH, timezone.now()),
        research.monthly_budget_usd,
    )
    claim = ledger.BudgetClaim(scope=scope, amount=units_of_cost(Decimal("25")))
    rate = RateClaim(key_id=0, rpm=None, tpm=None, tokens=0, max_concurrent=None)
    async_to_sync(ledger.shared_ledger().reserve)("req_in_flight", [claim], rate)

    month = admin_api.get("/budgets", scope="cost_center").json()["items"][0]["month"]

    assert (month["spent_usd"], month["reserved_usd"], month["remaining_usd"]) == (
        "100.0000000000",
        "25.0000000000",
        "375.0000000000",
    )
