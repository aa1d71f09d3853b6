"""Budget alerts and budget status, through the admission calls the proxy makes.

In-process on purpose: behind the live server the e-mail is sent in the server process,
where the test's locmem outbox cannot see it. The ledger is the in-process one, and the
Redis one too when REDIS_URL is set; counters are rebuilt from the test database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import connections

from accounts.contracts import KeyContext
from accounts.models import CostCenter, VirtualKey
from accounts.selectors import virtual_key_resolve
from gateway.admission.alerts import BudgetAlerts, alert_marker, send_budget_alert
from gateway.admission.budgets import (
    COST_CENTER,
    KEY,
    MONTH,
    USER,
    BudgetStatus,
    budget_scopes,
    period_of,
)
from gateway.admission.gate import Admission, AdmissionControl
from gateway.admission.ledger import LocalLedger, spend_from_database
from gateway.admission.redis_ledger import RedisLedger
from gateway.contracts import PriceRow, Usage
from gateway.errors import GatewayError
from gateway.models import RequestLog
from gateway.pricing import PriceBook
from gateway.routing import RouteSpec, TargetSpec
from gateway.selectors import budget_status, request_spend_in_period

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12"
MODEL = "claude-alert-test"
# Input is free and output costs $100 per million, so max_tokens=1000 reserves exactly
# what the request then costs: $0.10, ten to a $1.00 budget.
BOOK = PriceBook(
    [
        PriceRow(
            price_id=1,
            provider_id=None,
            model=MODEL,
            effective_from=datetime(2025, 1, 1, tzinfo=UTC),
            input_per_mtok=Decimal(0),
            output_per_mtok=Decimal(100),
            cache_write_5m_per_mtok=Decimal(0),
            cache_write_1h_per_mtok=Decimal(0),
            cache_read_per_mtok=Decimal(0),
        )
    ]
)
ROUTE = RouteSpec(
    route_id=1,
    name="default",
    priority=0,
    model_pattern="*",
    cost_center_ids=frozenset(),
    key_tags=frozenset(),
    cache_policy="",
    cache_ttl="",
    targets=(TargetSpec(provider_id=1, provider_name="emulated", upstream_model=""),),
)


@pytest.fixture(params=["local", "redis"])
def make_ledger(request) -> Iterator:
    prefixes: list[str] = []

    def make():
        if request.param == "local":
            return LocalLedger(spend_from_database)
        prefixes.append(f"test-alerts-{uuid.uuid4().hex}")
        return RedisLedger(REDIS_URL, prefix=prefixes[-1], rebuild=spend_from_database)

    yield make
    if prefixes:
        client = redis.Redis.from_url(REDIS_URL)
        for prefix in prefixes:
            for name in client.scan_iter(match=f"{prefix}:*"):
                client.delete(name)
        client.close()


@pytest.fixture(autouse=True)
async def close_connections_of_the_sync_thread():
    """sync_to_async runs the rebuild queries on one shared thread; close its connection."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def alerts() -> BudgetAlerts:
    return BudgetAlerts(prefix=f"test-alerts-{uuid.uuid4().hex}")


def key_with_budget(person, budget: str | None) -> KeyContext:
    VirtualKey.objects.filter(owner=person.user).update(
        monthly_budget_usd=None if budget is None else Decimal(budget)
    )
    context = virtual_key_resolve(person.secret)
    assert context is not None
    return context


async def admit(control: AdmissionControl, key: KeyContext) -> Admission:
    return await control.admit(
        key=key,
        route=ROUTE,
        model=MODEL,
        price_book=BOOK,
        payload={"max_tokens": 1000},
        body_size=200,
        request_id=f"req-{uuid.uuid4().hex}",
        started_at=datetime.now(UTC),
    )


async def settle(control: AdmissionControl, admission: Admission) -> None:
    await control.settle(
        admission,
        usage=Usage(input_tokens=50, output_tokens=1000),
        iterations=(),
        model=MODEL,
        provider_id=1,
    )


async def one_request(control: AdmissionControl, key: KeyContext) -> GatewayError | None:
    """Admit, run for a moment, settle at $0.10; the refusal when it was refused."""
    try:
        admission = await admit(control, key)
    except GatewayError as error:
        return error
    await asyncio.sleep(random.uniform(0, 0.02))
    await settle(control, admission)
    return None


async def test_passing_80_then_100_percent_sends_exactly_two_emails(
    alice, make_ledger, alerts, mailoutbox
):
    key = await sync_to_async(key_with_budget)(alice, "1.00")
    control = AdmissionControl(make_ledger(), alerts)

    refusals = await asyncio.gather(*(one_request(control, key) for _ in range(25)))
    alerts.wait()

    assert refusals.count(None) == 10
    assert {(error.status, error.error_type) for error in refusals if error} == {
        (400, "invalid_request_error")
    }
    assert sorted((mail.subject, mail.to) for mail in mailoutbox) == [
        ("[Gatehouse] Monthly budget of key 'alice laptop': 100% used", ["alice@example.com"]),
        ("[Gatehouse] Monthly budget of key 'alice laptop': 80% used", ["alice@example.com"]),
    ]
    full = next(mail for mail in mailoutbox if "100%" in mail.subject)
    assert "Spent: 1.00 USD of 1.00 USD" in full.body


async def test_a_rebuilt_counter_crossing_again_sends_nothing_new(
    alice, make_ledger, alerts, mailoutbox
):
    key = await sync_to_async(key_with_budget)(alice, "1.00")
    for _restart in range(2):  # a second process, or this one restarted, with fresh counters
        control = AdmissionControl(make_ledger(), alerts)
        await asyncio.gather(*(one_request(control, key) for _ in range(10)))
    alerts.wait()

    assert len(mailoutbox) == 2


async def test_a_cost_center_alert_goes_to_its_contact_not_to_the_member(
    bob, make_ledger, alerts, mailoutbox
):
    await CostCenter.objects.filter(code="research").aupdate(monthly_budget_usd=Decimal("0.50"))
    key = await sync_to_async(key_with_budget)(bob, None)
    control = AdmissionControl(make_ledger(), alerts)

    await asyncio.gather(*(one_request(control, key) for _ in range(8)))
    alerts.wait()

    assert sorted((mail.subject, mail.to) for mail in mailoutbox) == [
        ("[Gatehouse] Monthly budget of cost center 'research': 100% used", ["alice@example.com"]),
        ("[Gatehouse] Monthly budget of cost center 'research': 80% used", ["alice@example.com"]),
    ]


async def test_budget_status_counts_what_is_in_flight_before_it_is_recorded(alice, make_ledger):
    key = await sync_to_async(key_with_budget)(alice, "1.00")
    ledger = make_ledger()
    control = AdmissionControl(ledger, BudgetAlerts(prefix=f"test-{uuid.uuid4().hex}"))
    settled_one = await admit(control, key)
    await settle(control, settled_one)
    await admit(control, key)  # still running

    status = await sync_to_async(budget_status)(KEY, key.key_id, ledger=ledger)

    assert status == BudgetStatus(
        limit=Decimal("1.00"),
        spent=Decimal("0.10"),
        reserved=Decimal("0.10"),
        remaining=Decimal("0.80"),
        period_end=period_of(MONTH, datetime.now(UTC)).end,
    )


def record(person, *, cost: str, started_at: datetime) -> None:
    RequestLog.objects.create(
        request_id=f"req-{uuid.uuid4().hex}",
        started_at=started_at,
        endpoint="/v1/messages",
        virtual_key=person.user.virtual_keys.get(),
        user=person.user,
        cost_center=person.user.default_cost_center,
        cost_usd=Decimal(cost),
        is_priced=True,
    )


def test_budget_status_without_a_counter_reads_the_recorded_spend_of_the_period(alice):
    now = datetime.now(UTC)
    record(alice, cost="0.25", started_at=now)
    record(alice, cost="0.50", started_at=period_of(MONTH, now).start)
    record(alice, cost="7.00", started_at=period_of(MONTH, now).start - timedelta(seconds=1))
    ledger = LocalLedger(spend_from_database)

    research = budget_status(COST_CENTER, alice.user.default_cost_center_id, ledger=ledger)
    user = budget_status(USER, alice.user.pk, ledger=ledger)

    assert research == BudgetStatus(
        limit=Decimal("500.00"),
        spent=Decimal("0.75"),
        reserved=Decimal(0),
        remaining=Decimal("499.25"),
        period_end=period_of(MONTH, now).end,
    )
    assert (user.limit, user.spent, user.remaining) == (None, Decimal("0.75"), None)


@pytest.fixture
def silent_smtp_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in accepted:
        connection.close()


def test_an_smtp_server_that_never_answers_costs_one_alert_the_timeout_and_no_more(
    alice, alerts, settings, silent_smtp_server, caplog
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = silent_smtp_server
    settings.EMAIL_TIMEOUT = 0.5
    key = key_with_budget(alice, "1.00")
    scope = next(s for s in budget_scopes(key, datetime.now(UTC)) if s.scope_type == KEY)

    started = time.monotonic()
    sent = send_budget_alert(scope=scope, percent=80, spent=scope.limit_units, prefix=alerts.prefix)
    elapsed = time.monotonic() - started

    assert sent is False
    assert 0.5 <= elapsed < 5
    assert "Budget alert for Monthly budget of key 'alice laptop' could not be sent" in caplog.text
    # the marker was given back: the next crossing may try again
    assert cache.add(alert_marker(alerts.prefix, scope, 80), 1) is True


def test_email_has_a_timeout_by_default(settings):
    assert settings.EMAIL_TIMEOUT == 10.0


def test_recorded_spend_is_summed_exactly_to_the_last_of_ten_places(alice):
    """SQLite sums decimals in floating point: 10,000 × $1,234.5678901234 came back with the
    tenth place wrong. The sum runs over integers of 1E-10 dollars instead."""
    key = alice.user.virtual_keys.get()
    now = datetime.now(UTC)
    RequestLog.objects.bulk_create(
        RequestLog(
            request_id=f"req-{n}",
            started_at=now,
            endpoint="/v1/messages",
            virtual_key=key,
            cost_usd=Decimal("1234.5678901234"),
            is_priced=True,
        )
        for n in range(10_000)
    )
    month = period_of(MONTH, now)

    spent = request_spend_in_period(
        scope_type=KEY, scope_id=key.pk, start=month.start, end=month.end
    )

    assert spent == Decimal("12345678.9012340000")
