"""What a request cost, from its usage and the price in force when it started. Pure, no ORM.

All arithmetic is `Decimal` in a context that raises instead of rounding, so a cost is
exact to the last digit; it is rounded only when shown or invoiced (`quantize_cost`).
Formula: anthropic-protocol.md §5, prices per million tokens (§8), web search $10 per 1,000.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    localcontext,
)

from gateway.contracts import PriceRow, Usage

TOKENS_PER_PRICE_UNIT = Decimal(1_000_000)
WEB_SEARCH_USD = Decimal("0.01")
COST_PLACES = Decimal("1E-10")  # RequestLog.cost_usd has decimal_places=10

# Large enough for any realistic count × price; Inexact traps anything it cannot hold.
_EXACT = Context(prec=60, rounding=ROUND_HALF_EVEN, traps=[Inexact, InvalidOperation])
# Passed to `quantize` as an argument, which reads it and never installs it anywhere.
_HALF_UP = Context(prec=60, rounding=ROUND_HALF_UP)

_TRAILING_DATE = re.compile(r"-(\d{8})$")
_VERTEX_DATE = re.compile(r"@(\d{8})$")


def cost_of(usage: Usage, price: PriceRow) -> Decimal:
    """The exact USD cost of `usage` at `price`: each token class at its own rate.

    Runs up to three times a request (its reservation, its settlement, its log row), and most
    usages have no cache writes, reads or web searches: a class with no tokens adds nothing,
    so it is skipped (a zero count is never priced, so its rate is never read)."""
    with localcontext(_EXACT):
        per_mtok = (
            _tokens(usage.input_tokens) * price.input_per_mtok
            + _tokens(usage.output_tokens) * price.output_per_mtok
        )
        if usage.cache_write_5m_tokens:
            per_mtok += _tokens(usage.cache_write_5m_tokens) * price.cache_write_5m_per_mtok
        if usage.cache_write_1h_tokens:
            per_mtok += _tokens(usage.cache_write_1h_tokens) * price.cache_write_1h_per_mtok
        if usage.cache_read_tokens:
            per_mtok += _tokens(usage.cache_read_tokens) * price.cache_read_per_mtok
        cost = per_mtok / TOKENS_PER_PRICE_UNIT
        if usage.web_search_requests:
            cost += _tokens(usage.web_search_requests) * WEB_SEARCH_USD
        return cost


def savings_from_cache(usage: Usage, price: PriceRow) -> Decimal:
    """What caching saved: the cost had every cached token been plain input, minus the cost.

    Negative when cache writes (1.25× or 2× input) outweighed the reads (0.1× input).
    """
    if not (usage.cache_read_tokens or usage.cache_write_5m_tokens or usage.cache_write_1h_tokens):
        return Decimal(0)  # nothing was cached: the two costs are the same
    uncached = Usage(
        input_tokens=usage.total_input_tokens,
        output_tokens=usage.output_tokens,
        web_search_requests=usage.web_search_requests,
    )
    with localcontext(_EXACT):
        return cost_of(uncached, price) - cost_of(usage, price)


def quantize_cost(cost: Decimal) -> Decimal:
    """Round (half up) to the 10 places RequestLog keeps; for display and invoices, not sums."""
    return cost.quantize(COST_PLACES, context=_HALF_UP)


@functools.lru_cache(maxsize=4096)  # looked up several times per request, for few models
def model_id_candidates(model: str) -> tuple[str, ...]:
    """The ids a model is priced under, most specific first.

    `claude-haiku-4-5-20251001` → itself, then `claude-haiku-4-5`; Vertex's
    `claude-haiku-4-5@20251001` → itself, `claude-haiku-4-5-20251001`, `claude-haiku-4-5`.
    """
    candidates = [model]
    vertex = _VERTEX_DATE.search(model)
    if vertex:
        base = model[: vertex.start()]
        candidates += [f"{base}-{vertex.group(1)}", base]
    elif _TRAILING_DATE.search(model):
        candidates.append(_TRAILING_DATE.sub("", model))
    return tuple(dict.fromkeys(candidate for candidate in candidates if candidate))


class PriceBook:
    """Every price row, indexed for "which row was in force for this model at this time"."""

    def __init__(self, rows: Iterable[PriceRow]) -> None:
        by_scope: dict[tuple[str, int | None], list[PriceRow]] = {}
        for row in rows:
            by_scope.setdefault((row.model, row.provider_id), []).append(row)
        self._rows = {
            scope: sorted(scope_rows, key=lambda row: row.effective_from)
            for scope, scope_rows in by_scope.items()
        }

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._rows.values())

    def lookup(self, model: str, provider_id: int | None, at: datetime) -> PriceRow | None:
        """The row in force at `at`: the greatest `effective_from` not after `at`.

        A provider's own price beats the any-provider list price under every id variant,
        so a provider that priced the alias `claude-sonnet-4-5` is not undercut by the
        list price of the dated `claude-sonnet-4-5-20250929` it actually served.
        """
        scopes: Sequence[int | None] = (provider_id, None) if provider_id is not None else (None,)
        for scope in scopes:
            for candidate in model_id_candidates(model):
                row = self._in_force(self._rows.get((candidate, scope), ()), at)
                if row is not None:
                    return row
        return None

    @staticmethod
    def _in_force(rows: Sequence[PriceRow], at: datetime) -> PriceRow | None:
        index = bisect.bisect_right(rows, at, key=lambda row: row.effective_from)
        return rows[index - 1] if index else None


@dataclass(frozen=True)
class PricedCost:
    """A request's cost; `cost_usd` is None (never 0) when some part had no price."""

    cost_usd: Decimal | None
    is_priced: bool
    price_ids: tuple[int, ...] = ()
    cache_savings_usd: Decimal | None = None


UNPRICED = PricedCost(cost_usd=None, is_priced=False)


def cost_columns(priced: PricedCost) -> dict[str, Decimal | bool | None]:
    """The RequestLog columns a price fills: the cost and what caching saved, rounded to the
    row's places; a cost some part of which had no price stays None."""
    columns: dict[str, Decimal | bool | None] = {
        "cost_usd": quantize_cost(priced.cost_usd) if priced.cost_usd is not None else None,
        "is_priced": priced.is_priced,
    }
    if priced.cache_savings_usd is not None:
        columns["cache_savings_usd"] = quantize_cost(priced.cache_savings_usd)
    return columns


def price_request(
    *,
    usage: Usage,
    iterations: Sequence[tuple[str | None, Usage]],
    model: str,
    provider_id: int | None,
    at: datetime,
    book: PriceBook | None,
    with_savings: bool = True,
) -> PricedCost:
    """Price a whole request with the rows in force at `at` (when it started); without
    `with_savings`, `cache_savings_usd` is left at zero (settling needs the cost alone).

    With `iterations`, each is priced with its own model (or `model` when it names none)
    and their sum is billed, since the top-level totals leave out compaction and advisor
    iterations; web searches, reported only at the top level, are added once.
    """
    if book is None:
        return UNPRICED
    parts = iterations or ((model, usage),)
    cost = savings = Decimal(0)
    price_ids: list[int] = []
    for part_model, part_usage in parts:
        price = book.lookup(part_model or model, provider_id, at)
        if price is None:
            return UNPRICED
        if price.price_id not in price_ids:
            price_ids.append(price.price_id)
        with localcontext(_EXACT):
            cost += cost_of(part_usage, price)
            if with_savings:
                savings += savings_from_cache(part_usage, price)
    if iterations:
        with localcontext(_EXACT):
            cost += _tokens(usage.web_search_requests) * WEB_SEARCH_USD
    return PricedCost(
        cost_usd=cost, is_priced=True, price_ids=tuple(price_ids), cache_savings_usd=savings
    )


def _tokens(count: int) -> Decimal:
    """A count as a Decimal; a float here would be a bug upstream, so it is refused."""
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"Token counts are integers, got {type(count).__name__}.")
    return Decimal(count)
