"""Admission through the real proxy (Daphne) to the emulator: budgets that hold under 50
concurrent streams, per-key rate limits, and reservations released however a request ends.

The ledger lives in the server process: in-process by default, Redis when REDIS_URL is set
(then two gateway processes also share one budget).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from decimal import ROUND_CEILING, Decimal

import httpx
import orjson
import pytest
import redis
from django.utils import timezone

from accounts.models import CostCenter, VirtualKey
from gateway.admission.budgets import (
    KEY,
    MONTH,
    BudgetScope,
    period_of,
    reset_text,
    units_of_cost,
    worst_case_cost,
)
from gateway.admission.ledger import CounterState
from gateway.admission.redis_ledger import RedisLedger
from gateway.contracts import PriceRow, Usage
from gateway.models import RequestOutcome
from gateway.pricing import cost_of, quantize_cost
from gateway.selectors import model_price_in_force
from tests.gateway.conftest import UPSTREAM_SECRET, wait_for_logs
from tests.live_servers import start_gatehouse, stop_server

pytestmark = pytest.mark.django_db(transaction=True)

# The machine always runs Redis (CI starts it); the default-database run uses db 12.
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12"
MODEL = "claude-opus-5"
MAX_TOKENS = 400
# Longer than any max_tokens here, so every answer is cut at max_tokens: its exact cost is
# known before it is sent.
LONG_REPLY = "lorem ipsum dolor " * 200
BODY = {
    "model": MODEL,
    "max_tokens": MAX_TOKENS,
    "messages": [{"role": "user", "content": "Tell me a long story"}],
}
CENT = Decimal("0.01")
# The gap the probe leaves: one input token at $5 per million.
PROBE_GRANULARITY = Decimal("0.000005")


def raw(body: dict, *, stream: bool) -> bytes:
    return orjson.dumps({**body, "stream": stream})


def headers(secret: str) -> dict[str, str]:
    return {"x-api-key": secret, "content-type": "application/json"}


def post(server, secret: str, body: dict = BODY) -> httpx.Response:
    return httpx.post(
        server.base_url + "/v1/messages",
        content=raw(body, stream=False),
        headers=headers(secret),
        timeout=30,
    )


def price_of(upstream) -> PriceRow:
    price = model_price_in_force(model=MODEL, provider_id=upstream.provider.pk, at=timezone.now())
    assert price is not None
    return price


def cost_at_the_emulator(emulator, body: dict, price: PriceRow) -> Decimal:
    """What `body` costs: the emulator's deterministic usage at the catalog price, asked of
    the emulator directly (not through the gateway)."""
    response = httpx.post(
        emulator.base_url + "/v1/messages",
        content=raw(body, stream=False),
        headers={**headers(UPSTREAM_SECRET), "anthropic-version": "2023-06-01"},
        timeout=30,
    )
    usage = response.json()["usage"]
    assert usage["output_tokens"] == body["max_tokens"]
    return quantize_cost(
        cost_of(
            Usage(input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"]),
            price,
        )
    )


def stream_worst_case(price: PriceRow) -> Decimal:
    return worst_case_cost(
        body_size=len(raw(BODY, stream=True)), max_tokens=MAX_TOKENS, price=price
    )


def set_key(person, **fields) -> None:
    VirtualKey.objects.filter(owner=person.user).update(**fields)


async def _stream_concurrently(
    base_urls: list[str], secret: str, count: int
) -> list[tuple[int, bytes]]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(n: int) -> tuple[int, bytes]:
            async with client.stream(
                "POST",
                base_urls[n % len(base_urls)] + "/v1/messages",
                content=raw(BODY, stream=True),
                headers=headers(secret),
            ) as response:
                return response.status_code, await response.aread()

        return await asyncio.gather(*(one(n) for n in range(count)))


def stream_concurrently(base_urls: list[str], secret: str, count: int) -> list[tuple[int, bytes]]:
    return asyncio.run(_stream_concurrently(base_urls, secret, count))


def assert_the_budget_held(results, rows, *, budget, actual, worst, forwarded) -> Decimal:
    """Checks shared by the one- and two-process runs; returns the recorded spend."""
    admitted = [body for status, body in results if status == 200]
    assert len(admitted) > 0, sorted({(status, body[:300]) for status, body in results})
    refused = [(status, orjson.loads(body)) for status, body in results if status != 200]
    reset = reset_text(period_of(MONTH, timezone.now()))

    # Until the first wave settles nothing else is held, so at least this many fit.
    assert len(admitted) >= int(budget // worst)
    assert len(admitted) + len(refused) == len(results)
    assert refused, "the budget fits about ten, so most of the fifty must be refused"
    for body in admitted:
        assert body.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    for status, document in refused:
        assert status == 400
        assert document["error"]["type"] == "invalid_request_error"
        message = document["error"]["message"]
        assert message.startswith(f"Monthly budget of key 'alice laptop' ({budget} USD) ")
        assert message.endswith(f"resets at {reset}.")

    spent = sum(row.cost_usd for row in rows if row.cost_usd is not None)
    assert spent <= budget
    assert spent == actual * len(admitted)
    assert Counter((row.outcome, row.status_code) for row in rows) == Counter(
        {
            (RequestOutcome.OK, 200): len(admitted),
            (RequestOutcome.GATEWAY_ERROR, 400): len(refused),
        }
    )
    assert forwarded == len(admitted)
    return spent


def probe_body(remaining: Decimal, price: PriceRow) -> tuple[dict, Decimal]:
    """The request whose worst case comes closest to `remaining` without passing it."""
    best: tuple[dict, Decimal] | None = None
    per_output_token = price.output_per_mtok / 1_000_000
    most = int(remaining / per_output_token)
    for max_tokens in range(max(1, most - 40), most + 1):
        for padding in range(24):  # 24 bytes: six input tokens, every step of the price
            body = {
                "model": MODEL,
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": "probe" + "x" * padding}],
            }
            worst = worst_case_cost(
                body_size=len(raw(body, stream=False)), max_tokens=max_tokens, price=price
            )
            if worst <= remaining and (best is None or worst > best[1]):
                best = (body, worst)
    assert best is not None
    return best


def assert_nothing_left_reserved(server, person, *, budget, spent, price) -> None:
    """Through the server: a request whose worst case takes all but a few millionths of a
    dollar of what is left is admitted, so the server's ledger holds no reservation (one
    would be a whole worst case, about a cent) and counts no more than the recorded spend."""
    raised = budget + CENT  # room for the probe, however little the fifty left
    set_key(person, monthly_budget_usd=raised)
    body, worst = probe_body(raised - spent, price)
    assert raised - spent - worst < PROBE_GRANULARITY

    response = post(server, person.secret, body)

    assert response.status_code == 200, response.text


def test_fifty_concurrent_streams_never_spend_more_than_the_key_budget(
    gatehouse_server, upstream, emulator, alice
):
    emulator.configure(reply_text=LONG_REPLY, text_deltas=5, delta_delay_ms=150)
    price = price_of(upstream)
    actual = cost_at_the_emulator(emulator, BODY, price)
    worst = stream_worst_case(price)
    budget = (actual * 10).quantize(CENT, rounding=ROUND_CEILING)
    assert actual <= worst < budget < actual * 11  # about ten fit
    set_key(alice, monthly_budget_usd=budget)

    results = stream_concurrently([gatehouse_server.base_url], alice.secret, 50)

    rows = wait_for_logs(50, user=alice.user)
    spent = assert_the_budget_held(
        results,
        rows,
        budget=budget,
        actual=actual,
        worst=worst,
        forwarded=len(emulator.requests()) - 1,  # less the calibration request
    )
    assert_nothing_left_reserved(gatehouse_server, alice, budget=budget, spent=spent, price=price)


@pytest.fixture
def two_gateways_on_one_redis(django_db_setup, django_db_blocker):
    """Two gateway processes sharing Redis, as two machines behind a load balancer would."""
    prefix = f"gatehouse-test-admission-{os.getpid()}"
    with django_db_blocker.unblock():
        servers = [
            start_gatehouse({"GATEHOUSE_REDIS_PREFIX": prefix, "REDIS_URL": REDIS_URL})
            for _ in range(2)
        ]
    yield prefix, servers
    for server in servers:
        stop_server(server)
    client = redis.Redis.from_url(REDIS_URL)
    for name in client.scan_iter(match=f"{prefix}:*"):
        client.delete(name)
    client.close()


def test_two_gateway_processes_share_one_budget_through_redis(
    two_gateways_on_one_redis, upstream, emulator, alice
):
    prefix, servers = two_gateways_on_one_redis
    emulator.configure(reply_text=LONG_REPLY, text_deltas=5, delta_delay_ms=150)
    price = price_of(upstream)
    actual = cost_at_the_emulator(emulator, BODY, price)
    worst = stream_worst_case(price)
    budget = (actual * 10).quantize(CENT, rounding=ROUND_CEILING)
    set_key(alice, monthly_budget_usd=budget)

    results = stream_concurrently([server.base_url for server in servers], alice.secret, 50)

    rows = wait_for_logs(50, user=alice.user)
    spent = assert_the_budget_held(
        results,
        rows,
        budget=budget,
        actual=actual,
        worst=worst,
        forwarded=len(emulator.requests()) - 1,
    )
    key_id = alice.user.virtual_keys.get().pk
    scope = BudgetScope(KEY, key_id, "", period_of(MONTH, timezone.now()), None)
    view = RedisLedger(REDIS_URL, prefix=prefix, rebuild=None)  # type: ignore[arg-type]
    assert view.read(scope) == CounterState(spent=units_of_cost(spent), reserved=0)
    client = redis.Redis.from_url(REDIS_URL)
    holds = [field for field in client.hkeys(view.counter_key(scope)) if field.startswith(b"h:")]
    client.close()
    assert holds == []


def test_a_request_the_budget_cannot_cover_is_refused_before_it_reaches_upstream(
    gatehouse_server, upstream, emulator, alice
):
    CostCenter.objects.filter(code="research").update(monthly_budget_usd=Decimal("0.00"))

    response = post(gatehouse_server, alice.secret)
    counted = httpx.post(
        gatehouse_server.base_url + "/v1/messages/count_tokens",
        content=orjson.dumps({"model": MODEL, "messages": BODY["messages"]}),
        headers=headers(alice.secret),
        timeout=30,
    )

    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "Monthly budget of cost center 'research' (0.00 USD) is exhausted; "
        f"it resets at {reset_text(period_of(MONTH, timezone.now()))}.",
    }
    assert counted.status_code == 200  # counting tokens is free: no budget applies
    assert [request["path"] for request in emulator.requests()] == ["/v1/messages/count_tokens"]
    rows = wait_for_logs(2, user=alice.user)
    refused = next(row for row in rows if row.endpoint == "/v1/messages")
    assert (refused.outcome, refused.status_code, refused.error_type, refused.attempts) == (
        RequestOutcome.GATEWAY_ERROR,
        400,
        "invalid_request_error",
        0,
    )
    assert refused.cost_usd == 0


def test_a_key_over_its_requests_per_minute_gets_429_with_retry_after(
    gatehouse_server, upstream, emulator, alice
):
    set_key(alice, rpm_limit=2)

    statuses = [post(gatehouse_server, alice.secret).status_code for _ in range(2)]
    refused = post(gatehouse_server, alice.secret)

    assert statuses == [200, 200]
    assert refused.status_code == 429
    retry_after = refused.headers["retry-after"]
    assert retry_after in ("29", "30")  # a minute per two requests, less the time they took
    assert refused.json()["error"] == {
        "type": "rate_limit_error",
        "message": f"This key's limit of 2 requests per minute is reached; retry in {retry_after} s.",
    }
    assert refused.headers["request-id"].startswith("req_gh_")
    assert len(emulator.requests()) == 2


def test_a_key_at_its_concurrency_limit_gets_429_until_its_request_finishes(
    gatehouse_server, upstream, emulator, alice
):
    set_key(alice, max_concurrent=1)
    emulator.configure(text_deltas=5, delta_delay_ms=200)

    with httpx.stream(
        "POST",
        gatehouse_server.base_url + "/v1/messages",
        content=raw(BODY, stream=True),
        headers=headers(alice.secret),
        timeout=30,
    ) as first:
        chunks = first.iter_raw()
        next(chunks)  # admitted, and streaming
        second = post(gatehouse_server, alice.secret)
        rest = b"".join(chunks)
    wait_for_logs(2, user=alice.user)  # a row is written only after its request settled
    third = post(gatehouse_server, alice.secret)

    assert rest.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert (second.status_code, second.headers["retry-after"]) == (429, "1")
    assert second.json()["error"]["type"] == "rate_limit_error"
    assert third.status_code == 200


@pytest.fixture
def room_for_one_request(upstream, alice):
    """A key whose budget and concurrency allow one streamed request at a time, not two."""
    price = price_of(upstream)
    worst = stream_worst_case(price)
    budget = worst.quantize(CENT, rounding=ROUND_CEILING)
    assert worst <= budget < 2 * worst
    set_key(alice, monthly_budget_usd=budget, max_concurrent=1)
    return budget


def test_a_client_hang_up_releases_its_reservation_and_its_slot(
    gatehouse_server, upstream, emulator, alice, room_for_one_request
):
    emulator.configure(reply_text=LONG_REPLY, text_deltas=20, delta_delay_ms=200)

    with httpx.stream(
        "POST",
        gatehouse_server.base_url + "/v1/messages",
        content=raw(BODY, stream=True),
        headers=headers(alice.secret),
        timeout=30,
    ) as response:
        next(response.iter_raw())
    # Leaving the block closes the connection four seconds before the stream would end.
    [gone] = wait_for_logs(1, user=alice.user)
    emulator.configure(text_deltas=1, delta_delay_ms=0)
    again = post(gatehouse_server, alice.secret)

    assert gone.outcome == RequestOutcome.CLIENT_CLOSED
    assert gone.cost_usd > 0  # the input and what was streamed before the hang-up
    assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    ("fault", "stream"),
    [("529", False), ("drop_mid_stream", True), ("error_event_mid_stream", True)],
)
def test_an_upstream_failure_releases_its_reservation_and_its_slot(
    gatehouse_server, upstream, emulator, alice, room_for_one_request, fault, stream
):
    emulator.configure(reply_text=LONG_REPLY)
    emulator.inject_fault(fault, times=None)

    failed = httpx.post(
        gatehouse_server.base_url + "/v1/messages",
        content=raw(BODY, stream=stream),
        headers=headers(alice.secret),
        timeout=30,
    )
    [row] = wait_for_logs(1, user=alice.user)
    emulator.clear_faults()
    again = post(gatehouse_server, alice.secret)

    assert (failed.status_code, row.outcome) in (
        (529, RequestOutcome.UPSTREAM_ERROR),
        (200, RequestOutcome.STREAM_ERROR),
    )
    assert again.status_code == 200, again.text
