"""Cache injection through the real proxy: the billed cost in the request log proves it."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from django.db.models import Sum

from accounts.models import VirtualKey
from gateway.models import RequestLog
from tests.gateway.conftest import wait_for_logs
from tests.gateway.test_caching_replay import (
    MODEL,
    SECONDS_BETWEEN_TURNS,
    claude_code_session,
    sdk_agent_session,
)

pytestmark = pytest.mark.django_db(transaction=True)
TURNS = 50


def sender(server, secret, emulator):
    http = httpx.Client(
        base_url=server.base_url,
        headers={"x-api-key": secret, "anthropic-version": "2023-06-01"},
        timeout=30,
    )

    def send(body):
        response = http.post("/v1/messages", json=body)
        assert response.status_code == 200, response.text
        emulator.advance_clock(SECONDS_BETWEEN_TURNS)
        return response.json()

    return send


def billed(user) -> Decimal:
    return RequestLog.objects.filter(user=user).aggregate(total=Sum("cost_usd"))["total"]


def test_auto_policy_bills_a_fifty_turn_session_at_least_sixty_percent_less_than_off(
    gatehouse_server, upstream, emulator, alice, bob
):
    upstream.route.cache_policy = "auto"
    upstream.route.save()
    VirtualKey.objects.filter(owner=alice.user).update(cache_policy="off")

    sdk_agent_session(sender(gatehouse_server, alice.secret, emulator), turns=TURNS)
    sdk_agent_session(sender(gatehouse_server, bob.secret, emulator), turns=TURNS)

    off_rows = wait_for_logs(TURNS, user=alice.user)
    auto_rows = wait_for_logs(TURNS, user=bob.user)
    assert [row.cache_markers_injected for row in off_rows] == [0] * TURNS
    assert [row.cache_markers_injected for row in auto_rows] == [3] + [4] * (TURNS - 1)
    assert all(row.model_served == MODEL and row.is_priced for row in off_rows + auto_rows)
    assert billed(bob.user) <= billed(alice.user) * Decimal("0.4"), (
        billed(bob.user),
        billed(alice.user),
    )
    savings = RequestLog.objects.filter(user=bob.user).aggregate(total=Sum("cache_savings_usd"))[
        "total"
    ]
    assert savings > 0


def test_with_claude_code_markers_the_gateway_never_exceeds_four_or_costs_more(
    gatehouse_server, upstream, emulator, alice, bob
):
    upstream.route.cache_policy = "auto"
    upstream.route.save()
    VirtualKey.objects.filter(owner=alice.user).update(cache_policy="off")

    for person in (alice, bob):
        for conversation in ("1c9", "e8f"):
            claude_code_session(
                sender(gatehouse_server, person.secret, emulator),
                conversation=conversation,
                turns=8,
            )

    wait_for_logs(16, user=alice.user)
    wait_for_logs(16, user=bob.user)
    forwarded = [request["body"] for request in emulator.requests()]
    assert max(body.count('"cache_control"') for body in forwarded) == 4
    assert billed(bob.user) <= billed(alice.user)
