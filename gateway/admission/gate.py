"""The proxy's two admission calls: `admit` before forwarding, `settle` when the request ends.

`admit` prices the request's worst case with the price in force for the route's first
target, and asks the ledger for every budget, the rate limits and an in-flight slot in one
step; a refusal is a GatewayError in Anthropic's shape (400 for a budget, which retrying
cannot fix; 429 with retry-after for a rate limit). `settle` prices what the SSE tap or the
response body reported, replaces the reservation with it, and hands that price on for the
request's RequestLog row: priced once, with the book the reservation used, so the budget
ledger and the log agree to the unit, and the recorder's thread does not price the row again.

A model without a price cannot be reserved for: it is admitted with a reservation of 0
(refused only once a budget is already used up), logged with a warning once per process,
and its RequestLog row is unpriced (`is_priced=False`), which the admin shows. Refusing it
instead would stop traffic to every model the catalog has not caught up with yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError, InterfaceError

from accounts.contracts import KeyContext
from gateway.admission.alerts import BudgetAlerts
from gateway.admission.budgets import (
    budget_scopes,
    crossed_thresholds,
    estimate_input_tokens,
    max_tokens_of,
    refusal_message,
    units_ceiling,
    units_of_cost,
    worst_case_cost,
)
from gateway.admission.ledger import (
    BUDGET,
    BudgetClaim,
    Ledger,
    Refusal,
    Reservation,
    shared_ledger,
)
from gateway.admission.limits import RateClaim, refused_message, tokens_to_take, usage_tokens
from gateway.contracts import PriceRow, Usage
from gateway.errors import GatewayError
from gateway.pricing import PriceBook, PricedCost, price_request
from gateway.routing import RouteSpec

logger = logging.getLogger(__name__)


@dataclass
class Admission:
    """One admitted request's hold on the ledger, until it is settled."""

    reservation: Reservation | None  # None: admitted without one (the ledger failed)
    started_at: datetime
    price_book: PriceBook | None
    is_settled: bool = False


class AdmissionControl:
    def __init__(self, ledger: Ledger | None = None, alerts: BudgetAlerts | None = None) -> None:
        self._ledger = ledger
        self._alerts = alerts
        self._unpriced_seen: set[tuple[str, int | None]] = set()
        self._settling: set[asyncio.Future[None]] = set()

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = shared_ledger()
        return self._ledger

    @property
    def alerts(self) -> BudgetAlerts:
        if self._alerts is None:
            self._alerts = BudgetAlerts()
        return self._alerts

    async def admit(
        self,
        *,
        key: KeyContext,
        route: RouteSpec,
        model: str,
        price_book: PriceBook | None,
        payload: dict[str, Any],
        body_size: int,
        request_id: str,
        started_at: datetime,
    ) -> Admission:
        """Reserve the request's worst case and its share of the key's limits, or refuse."""
        max_tokens = max_tokens_of(payload)
        price = self._first_target_price(route, model, price_book, started_at)
        amount = (
            0
            if price is None
            else units_ceiling(
                worst_case_cost(body_size=body_size, max_tokens=max_tokens, price=price)
            )
        )
        rate = RateClaim(
            key_id=key.key_id,
            rpm=key.rpm_limit,
            tpm=key.tpm_limit,
            tokens=tokens_to_take(estimate_input_tokens(body_size) + max_tokens, key.tpm_limit),
            max_concurrent=key.max_concurrent,
        )
        claims = tuple(BudgetClaim(scope, amount) for scope in budget_scopes(key, started_at))
        try:
            outcome = await self.ledger.reserve(request_id, claims, rate)
        except (DatabaseError, InterfaceError):
            logger.exception(
                "Budget counters could not be rebuilt from the database; %s admitted unreserved",
                request_id,
            )
            return Admission(reservation=None, started_at=started_at, price_book=price_book)
        if isinstance(outcome, Refusal):
            raise refusal_error(outcome, rate)
        return Admission(reservation=outcome, started_at=started_at, price_book=price_book)

    async def settle(
        self,
        admission: Admission | None,
        *,
        usage: Usage | None,
        iterations: Sequence[tuple[str | None, Usage]],
        model: str,
        provider_id: int | None,
    ) -> PricedCost | None:
        """Replace the reservation with the true cost, and return that cost (with what caching
        saved) for the request's log row; None when the request used nothing billable or could
        not be priced here (the recorder then prices its row). Never raises but CancelledError,
        and then the settlement still completes (it is shielded from the request's
        cancellation).

        A reservation held in this process is settled at once, with no await and so nothing
        a cancellation could interrupt; only one held in Redis needs a task to shield.
        """
        if admission is None or admission.is_settled:
            return None
        admission.is_settled = True
        reservation = admission.reservation
        try:
            priced = price_of_usage(
                usage=usage,
                iterations=iterations,
                model=model,
                provider_id=provider_id,
                at=admission.started_at,
                book=admission.price_book,
            )
            if reservation is None:
                return priced
            units = cost_units(priced)
            tokens = usage_tokens(usage)
            spent_after = self.ledger.settle_in_process(reservation, cost=units, tokens=tokens)
        except Exception:
            request_id = reservation.request_id if reservation else "an unreserved request"
            logger.exception("Settling %s failed", request_id)
            return None
        if spent_after is not None:
            self._alert_crossings(reservation, units, spent_after)
            return priced
        task = asyncio.ensure_future(self._settle_shared(reservation, cost=units, tokens=tokens))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        await asyncio.shield(task)
        return priced

    async def _settle_shared(self, reservation: Reservation, *, cost: int, tokens: int) -> None:
        try:
            spent_after = await self.ledger.settle(reservation, cost=cost, tokens=tokens)
        except Exception:
            logger.exception("Settling %s failed", reservation.request_id)
            return
        self._alert_crossings(reservation, cost, spent_after)

    def _alert_crossings(
        self, reservation: Reservation, units: int, spent_after: tuple[int | None, ...]
    ) -> None:
        """One alert per threshold the settled cost carried a budget's spend across."""
        if not units:
            return
        for claim, after in zip(reservation.budgets, spent_after, strict=True):
            limit = claim.scope.limit_units
            if after is None or limit is None:
                continue
            for percent in crossed_thresholds(limit=limit, before=after - units, after=after):
                self.alerts.notify(scope=claim.scope, percent=percent, spent=after)

    def _first_target_price(
        self, route: RouteSpec, model: str, book: PriceBook | None, at: datetime
    ) -> PriceRow | None:
        if not route.targets:
            return None
        target = route.targets[0]
        priced_model = target.upstream_model or model
        price = book.lookup(priced_model, target.provider_id, at) if book is not None else None
        if price is None and (priced_model, target.provider_id) not in self._unpriced_seen:
            self._unpriced_seen.add((priced_model, target.provider_id))
            logger.warning(
                "No price for model %r on provider %s: its requests are admitted without a "
                "budget reservation and logged unpriced",
                priced_model,
                target.provider_name,
            )
        return price


def price_of_usage(
    *,
    usage: Usage | None,
    iterations: Sequence[tuple[str | None, Usage]],
    model: str,
    provider_id: int | None,
    at: datetime,
    book: PriceBook | None,
) -> PricedCost | None:
    """What a request that started `at` cost, and what caching saved it, as its RequestLog
    row keeps them; None when it used nothing billable or there is no price book."""
    if book is None or ((usage is None or usage == Usage()) and not iterations):
        return None
    return price_request(
        usage=usage or Usage(),
        iterations=tuple(iterations),
        model=model,
        provider_id=provider_id,
        at=at,
        book=book,
    )


def cost_units(priced: PricedCost | None) -> int:
    """What the ledger settles for a priced request, in units; 0 when nothing is priced."""
    return 0 if priced is None or priced.cost_usd is None else units_of_cost(priced.cost_usd)


def refusal_error(refusal: Refusal, rate: RateClaim) -> GatewayError:
    if refusal.kind == BUDGET and refusal.scope is not None:
        return GatewayError(
            "invalid_request_error",
            refusal_message(
                refusal.scope,
                spent=refusal.spent,
                reserved=refusal.reserved,
                amount=refusal.amount,
            ),
        )
    retry_after = refusal.retry_after_s
    return GatewayError(
        "rate_limit_error",
        refused_message(refusal.kind, rate, retry_after),
        headers={"retry-after": str(retry_after)},
    )
