"""The proxy's admission calls, without a server: pricing the worst case, unpriced models,
refusals in Anthropic's shape, and a settlement that survives the request's cancellation."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts.contracts import KeyContext
from gateway.admission.alerts import BudgetAlerts
from gateway.admission.budgets import KEY, MONTH, BudgetScope, period_of, units_ceiling
from gateway.admission.gate import Admission, AdmissionControl, cost_units, price_of_usage
from gateway.admission.ledger import CounterState, LocalLedger
from gateway.contracts import PriceRow, Usage
from gateway.errors import GatewayError
from gateway.pricing import PriceBook, cost_columns
from gateway.routing import RouteSpec, TargetSpec

NOW = datetime.now(UTC)
PROVIDER_ID = 7


def price(model: str, provider_id: int | None, input_usd: str, output_usd: str) -> PriceRow:
    return PriceRow(
        price_id=hash((model, provider_id)) % 10_000,
        provider_id=provider_id,
        model=model,
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
        input_per_mtok=Decimal(input_usd),
        output_per_mtok=Decimal(output_usd),
        cache_write_5m_per_mtok=Decimal(input_usd) * Decimal("1.25"),
        cache_write_1h_per_mtok=Decimal(input_usd) * 2,
        cache_read_per_mtok=Decimal(input_usd) / 10,
    )


BOOK = PriceBook(
    [
        price("claude-opus-5", None, "5", "25"),
        price("claude-opus-5", PROVIDER_ID, "6", "30"),  # this provider charges more
    ]
)


def route(upstream_model: str = "") -> RouteSpec:
    return RouteSpec(
        route_id=1,
        name="default",
        priority=0,
        model_pattern="*",
        cost_center_ids=frozenset(),
        key_tags=frozenset(),
        cache_policy="",
        cache_ttl="",
        targets=(
            TargetSpec(provider_id=PROVIDER_ID, provider_name="p", upstream_model=upstream_model),
            TargetSpec(provider_id=99, provider_name="fallback", upstream_model=""),
        ),
    )


def key(**limits) -> KeyContext:
    return KeyContext(
        key_id=5,
        key_public_id="vk_5",
        key_name="ci",
        user_id=6,
        username="ci-bot",
        cost_center_id=None,
        cost_center_code=None,
        **limits,
    )


def month_of_key(limit: str | None) -> BudgetScope:
    return BudgetScope(
        KEY, 5, "ci", period_of(MONTH, NOW), None if limit is None else Decimal(limit)
    )


async def no_spend_yet(scope: BudgetScope) -> int:
    return 0


def control() -> tuple[AdmissionControl, LocalLedger]:
    ledger = LocalLedger(no_spend_yet)
    return AdmissionControl(ledger, BudgetAlerts(prefix="test-gate")), ledger


async def admit(gate: AdmissionControl, context: KeyContext, **overrides):
    arguments = {
        "key": context,
        "route": route("claude-opus-5"),
        "model": "opus-alias",
        "price_book": BOOK,
        "payload": {"max_tokens": 1000},
        "body_size": 4000,
        "request_id": f"req-{uuid.uuid4().hex}",
        "started_at": NOW,
    }
    return await gate.admit(**{**arguments, **overrides})


async def test_the_worst_case_is_priced_for_the_first_targets_model_and_provider():
    gate, ledger = control()

    await admit(gate, key(key_monthly_budget_usd=Decimal("1.00")))

    # 1,000 input tokens at this provider's $6/M and 1,000 output at $30/M.
    assert ledger.read(month_of_key("1.00")) == CounterState(
        spent=0, reserved=units_ceiling(Decimal("0.036"))
    )


async def test_a_budget_refusal_is_a_400_invalid_request_naming_the_budget():
    gate, _ = control()

    with pytest.raises(GatewayError) as refused:
        await admit(gate, key(key_monthly_budget_usd=Decimal("0.00")))

    assert (refused.value.status, refused.value.error_type, refused.value.headers) == (
        400,
        "invalid_request_error",
        {},
    )
    assert refused.value.message == (
        "Monthly budget of key 'ci' (0.00 USD) is exhausted; it resets at "
        f"{period_of(MONTH, NOW).end:%Y-%m-%dT%H:%M:%SZ}."
    )


async def test_a_rate_refusal_is_a_429_with_retry_after():
    gate, _ = control()
    limited = key(max_concurrent=1)
    await admit(gate, limited, request_id="first")

    with pytest.raises(GatewayError) as refused:
        await admit(gate, limited, request_id="second")

    assert (refused.value.status, refused.value.error_type, refused.value.headers) == (
        429,
        "rate_limit_error",
        {"retry-after": "1"},
    )


async def test_tokens_per_minute_reserve_the_body_estimate_plus_max_tokens():
    gate, _ = control()
    limited = key(tpm_limit=4000)
    await admit(gate, limited, request_id="first", body_size=4000)  # 1,000 + 1,000 tokens

    with pytest.raises(GatewayError) as refused:
        await admit(gate, limited, request_id="second", body_size=8120)  # 2,030 + 1,000

    # 1,030 tokens short at 4,000 a minute: 15.45 s.
    assert refused.value.message == (
        "This key's limit of 4000 tokens per minute is reached (this request may use 3030); "
        "retry in 16 s."
    )


async def test_an_unpriced_model_is_admitted_without_a_reservation_and_flagged_once(caplog):
    gate, ledger = control()
    budgeted = key(key_monthly_budget_usd=Decimal("0.01"))

    with caplog.at_level(logging.WARNING, logger="gateway.admission.gate"):
        first = await admit(gate, budgeted, route=route(), model="claude-next", request_id="a")
        await admit(gate, budgeted, route=route(), model="claude-next", request_id="b")
    await gate.settle(
        first,
        usage=Usage(input_tokens=10, output_tokens=10),
        iterations=(),
        model="claude-next",
        provider_id=PROVIDER_ID,
    )

    assert ledger.read(month_of_key("0.01")) == CounterState(spent=0, reserved=0)
    assert caplog.text.count("No price for model 'claude-next' on provider p") == 1


async def test_an_unpriced_model_is_refused_once_the_budget_is_used_up():
    spent_everything = LocalLedger(lambda scope: _spent(units_ceiling(Decimal("0.01"))))
    gate = AdmissionControl(spent_everything, BudgetAlerts(prefix="test-gate"))

    with pytest.raises(GatewayError) as refused:
        await admit(
            gate,
            key(key_monthly_budget_usd=Decimal("0.01")),
            route=route(),
            model="claude-next",
        )

    assert refused.value.message.startswith("Monthly budget of key 'ci' (0.01 USD) is exhausted")


async def _spent(units: int) -> int:
    return units


class SharedStoreLedger(LocalLedger):
    """A ledger whose reservations live elsewhere (as in Redis): settling must be awaited."""

    def __init__(self, rebuild) -> None:
        super().__init__(rebuild)
        self.store_answers = asyncio.Event()

    def settle_in_process(self, reservation, *, cost, tokens):
        return None

    async def settle(self, reservation, *, cost, tokens):
        await self.store_answers.wait()
        return await super().settle(reservation, cost=cost, tokens=tokens)


async def test_a_settlement_completes_even_when_the_request_is_cancelled_again():
    ledger = SharedStoreLedger(no_spend_yet)
    gate = AdmissionControl(ledger, BudgetAlerts(prefix="test-gate"))
    admission = await admit(gate, key(key_monthly_budget_usd=Decimal("1.00")))
    settling = asyncio.ensure_future(
        gate.settle(
            admission,
            usage=Usage(input_tokens=100, output_tokens=100),
            iterations=(),
            model="claude-opus-5",
            provider_id=PROVIDER_ID,
        )
    )
    await asyncio.sleep(0)

    settling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await settling
    assert ledger.read(month_of_key("1.00")).reserved > 0  # still settling, in its own task
    ledger.store_answers.set()
    for _ in range(100):
        await asyncio.sleep(0)

    # 100 input at $6/M, 100 output at $30/M.
    assert ledger.read(month_of_key("1.00")) == CounterState(
        spent=units_ceiling(Decimal("0.0036")), reserved=0
    )


async def test_a_reservation_held_in_process_is_settled_without_suspending():
    gate, ledger = control()
    admission = await admit(gate, key(key_monthly_budget_usd=Decimal("1.00")))
    settling = gate.settle(
        admission,
        usage=Usage(input_tokens=100, output_tokens=100),
        iterations=(),
        model="claude-opus-5",
        provider_id=PROVIDER_ID,
    )

    # One step runs it to the end: no await inside, so no cancellation can cut it short.
    with pytest.raises(StopIteration):
        settling.send(None)
    assert ledger.read(month_of_key("1.00")) == CounterState(
        spent=units_ceiling(Decimal("0.0036")), reserved=0
    )


async def test_settling_twice_counts_once():
    gate, ledger = control()
    admission = await admit(gate, key(key_monthly_budget_usd=Decimal("1.00")))
    for _ in range(2):
        await gate.settle(
            admission,
            usage=Usage(output_tokens=1000),
            iterations=(),
            model="claude-opus-5",
            provider_id=None,
        )

    assert ledger.read(month_of_key("1.00")) == CounterState(
        spent=units_ceiling(Decimal("0.025")), reserved=0
    )


def test_the_settled_cost_is_the_row_cost_rounded_to_the_rows_places():
    usage = Usage(input_tokens=3, output_tokens=7, cache_write_1h_tokens=11, cache_read_tokens=13)
    priced = price_of_usage(
        usage=usage, iterations=(), model="claude-opus-5", provider_id=None, at=NOW, book=BOOK
    )

    # 3×5 + 7×25 + 11×10 + 13×0.5 = 306.5 per million, rounded to the row's 10 places.
    assert cost_units(priced) == units_ceiling(Decimal("0.0003065"))
    assert cost_columns(priced)["cost_usd"] == Decimal("0.0003065000")
    # The 24 cached tokens as plain input at $5/M: 120 per million, against 116.5 paid.
    assert cost_columns(priced)["cache_savings_usd"] == Decimal("0.0000035000")


def test_nothing_billable_or_no_price_book_leaves_the_row_to_the_recorder():
    usage = Usage(input_tokens=3)
    arguments = {"iterations": (), "model": "claude-opus-5", "provider_id": None, "at": NOW}

    assert price_of_usage(usage=None, book=BOOK, **arguments) is None
    assert price_of_usage(usage=Usage(), book=BOOK, **arguments) is None
    assert price_of_usage(usage=usage, book=None, **arguments) is None
    assert cost_units(None) == 0


def test_a_model_without_a_price_settles_nothing_and_is_logged_unpriced():
    priced = price_of_usage(
        usage=Usage(input_tokens=3), iterations=(), model="x", provider_id=None, at=NOW, book=BOOK
    )

    assert cost_units(priced) == 0
    assert cost_columns(priced) == {"cost_usd": None, "is_priced": False}


async def test_settling_hands_the_settled_price_with_its_cache_savings_to_the_row():
    gate, ledger = control()
    admission = await admit(gate, key(key_monthly_budget_usd=Decimal("1.00")))

    priced = await gate.settle(
        admission,
        usage=Usage(input_tokens=100, output_tokens=100, cache_read_tokens=1000),
        iterations=(),
        model="claude-opus-5",
        provider_id=PROVIDER_ID,
    )

    # 100 input at $6/M, 100 output at $30/M, 1,000 read at $0.60/M: 0.0042; the reads as
    # plain input would have cost 0.006, so caching saved 0.0054.
    assert priced is not None
    assert cost_columns(priced) == {
        "cost_usd": Decimal("0.0042000000"),
        "is_priced": True,
        "cache_savings_usd": Decimal("0.0054000000"),
    }
    assert ledger.read(month_of_key("1.00")).spent == cost_units(priced)


async def test_a_request_admitted_without_a_reservation_is_still_priced_for_its_row():
    gate, _ = control()
    admission = Admission(reservation=None, started_at=NOW, price_book=BOOK)

    priced = await gate.settle(
        admission,
        usage=Usage(output_tokens=1000),
        iterations=(),
        model="claude-opus-5",
        provider_id=None,
    )

    assert priced is not None
    assert priced.cost_usd == Decimal("0.025")
    assert (
        await gate.settle(
            admission, usage=Usage(output_tokens=1), iterations=(), model="x", provider_id=None
        )
        is None
    )  # settled already
