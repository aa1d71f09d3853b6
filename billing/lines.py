"""Usage groups → invoice lines, and the rounding rules of an invoice. Pure, no ORM.

Rounding (docs/billing.md):
- A line's amount is quantity × unit price / 1,000,000, exact (prices have 4 places, so an
  amount has at most 10: the places `InvoiceLine.amount_usd` keeps).
- The invoice total is the exact sum of its lines, rounded half up to cents once, at the end.
- On paper (CSV) every amount is in cents; the lines' cents are apportioned by largest
  remainder so that they add up to the total exactly (`cents_summing_to`).

The lines of an invoice add up exactly to the request log's recorded costs: whatever part of a
recorded cost its token lines at the listed unit prices do not explain (web searches, models
of `usage.iterations`, a price row edited after the request was recorded) is one `other` line
per model, never dropped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation

from gateway.contracts import PriceRow

CENT = Decimal("0.01")
TOKENS_PER_PRICE_UNIT = Decimal(1_000_000)
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])

# Token class → the PriceRow field that prices it, in the order lines are listed.
PRICED_CLASSES: tuple[tuple[str, str], ...] = (
    ("input", "input_per_mtok"),
    ("cache_write_5m", "cache_write_5m_per_mtok"),
    ("cache_write_1h", "cache_write_1h_per_mtok"),
    ("cache_read", "cache_read_per_mtok"),
    ("output", "output_per_mtok"),
)
OTHER = "other"
USAGE = "usage"
ADJUSTMENT = "adjustment"
UNEXPLAINED_DESCRIPTION = (
    "Recorded cost beyond the token lines at these unit prices "
    "(web search, per-iteration models, repricing)."
)
_CLASS_ORDER = {name: index for index, (name, _) in enumerate((*PRICED_CLASSES, (OTHER, "")))}


@dataclass(frozen=True)
class TokenCounts:
    input: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output: int = 0

    def of(self, token_class: str) -> int:
        value: int = getattr(self, token_class)
        return value

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(
            *(self.of(name) + other.of(name) for name, _ in PRICED_CLASSES),
        )


@dataclass(frozen=True)
class UsageGroup:
    """Requests of one cost center that bill alike: same user, provider, model and price.

    `price` is the row in force when they started (None: no row prices them now);
    `is_priced` and `cost` are what the request log recorded; `adjusts_period` is set for
    requests of an already-closed month that arrived after it was invoiced.
    """

    cost_center_id: int
    user_id: int | None
    provider_id: int | None
    model: str
    price: PriceRow | None
    is_priced: bool
    requests: int
    tokens: TokenCounts
    cost: Decimal
    adjusts_period: date | None = None


@dataclass(frozen=True)
class LineDraft:
    kind: str
    adjusts_period: date | None
    provider_name: str
    model: str
    token_class: str
    quantity: int
    unit_price_per_mtok: Decimal | None
    amount_usd: Decimal | None
    user_id: int | None = None
    is_breakdown: bool = False
    requests: int = 0
    description: str = ""


@dataclass(frozen=True)
class InvoiceDraft:
    cost_center_id: int
    lines: tuple[LineDraft, ...]
    exact_total_usd: Decimal
    total_usd: Decimal
    requests: int
    unpriced_requests: int


@dataclass
class _Section:
    """The lines of one (kind, adjusted month, provider, model) while they are summed up."""

    priced: dict[tuple[str, Decimal], int] = field(default_factory=lambda: defaultdict(int))
    unpriced: TokenCounts = TokenCounts()
    unpriced_requests: int = 0
    unexplained: Decimal = Decimal(0)


def line_amount(quantity: int, unit_price_per_mtok: Decimal) -> Decimal:
    return _EXACT.divide(
        _EXACT.multiply(Decimal(quantity), unit_price_per_mtok), TOKENS_PER_PRICE_UNIT
    )


def round_total(amount: Decimal) -> Decimal:
    """Cents, half up: the only place an invoice rounds."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP, context=Context(prec=60))


def build_invoice(
    cost_center_id: int, groups: Iterable[UsageGroup], provider_names: Mapping[int, str]
) -> InvoiceDraft:
    """The invoice lines (and the per-user breakdown) of one cost center's usage groups."""
    groups = [group for group in groups if group.cost_center_id == cost_center_id]
    lines = _lines(groups, provider_names, user_id=None, is_breakdown=False)
    by_user: dict[int | None, list[UsageGroup]] = defaultdict(list)
    for group in groups:
        by_user[group.user_id].append(group)
    breakdown = [
        line
        for user_id in sorted(by_user, key=lambda user_id: (user_id is None, user_id or 0))
        for line in _lines(by_user[user_id], provider_names, user_id=user_id, is_breakdown=True)
    ]
    exact_total = sum_exact(line.amount_usd for line in lines if line.amount_usd is not None)
    return InvoiceDraft(
        cost_center_id=cost_center_id,
        lines=(*lines, *breakdown),
        exact_total_usd=exact_total,
        total_usd=round_total(exact_total),
        requests=sum(group.requests for group in groups),
        unpriced_requests=sum(group.requests for group in groups if not group.is_priced),
    )


def _lines(
    groups: Sequence[UsageGroup],
    provider_names: Mapping[int, str],
    *,
    user_id: int | None,
    is_breakdown: bool,
) -> list[LineDraft]:
    sections: dict[tuple[str, date | None, str, str], _Section] = defaultdict(_Section)
    for group in groups:
        kind = USAGE if group.adjusts_period is None else ADJUSTMENT
        provider_name = provider_names.get(group.provider_id, "") if group.provider_id else ""
        section = sections[(kind, group.adjusts_period, provider_name, group.model)]
        if not group.is_priced:
            section.unpriced += group.tokens
            section.unpriced_requests += group.requests
            continue
        explained = Decimal(0)
        if group.price is not None:
            for token_class, price_field in PRICED_CLASSES:
                quantity = group.tokens.of(token_class)
                unit_price: Decimal = getattr(group.price, price_field)
                if quantity:
                    section.priced[(token_class, unit_price)] += quantity
                    explained = _EXACT.add(explained, line_amount(quantity, unit_price))
        section.unexplained = _EXACT.add(
            section.unexplained, _EXACT.subtract(group.cost, explained)
        )

    lines: list[LineDraft] = []
    for key, section in sorted(sections.items(), key=_section_order):
        lines.extend(_section_lines(key, section, user_id=user_id, is_breakdown=is_breakdown))
    return lines


def _section_order(item: tuple[tuple[str, date | None, str, str], _Section]) -> tuple:
    kind, adjusts_period, provider_name, model = item[0]
    return (kind != USAGE, adjusts_period or date.min, provider_name, model)


def _section_lines(
    key: tuple[str, date | None, str, str],
    section: _Section,
    *,
    user_id: int | None,
    is_breakdown: bool,
) -> list[LineDraft]:
    kind, adjusts_period, provider_name, model = key

    def line(
        token_class: str,
        quantity: int,
        unit_price: Decimal | None,
        amount: Decimal | None,
        requests: int = 0,
        description: str = "",
    ) -> LineDraft:
        return LineDraft(
            kind=kind,
            adjusts_period=adjusts_period,
            provider_name=provider_name,
            model=model,
            token_class=token_class,
            quantity=quantity,
            unit_price_per_mtok=unit_price,
            amount_usd=amount,
            user_id=user_id,
            is_breakdown=is_breakdown,
            requests=requests,
            description=description,
        )

    lines = [
        line(token_class, quantity, unit_price, line_amount(quantity, unit_price))
        for (token_class, unit_price), quantity in sorted(
            section.priced.items(), key=lambda item: (_CLASS_ORDER[item[0][0]], item[0][1])
        )
    ]
    if section.unexplained:
        lines.append(line(OTHER, 0, None, section.unexplained, description=UNEXPLAINED_DESCRIPTION))
    if section.unpriced_requests:
        count = section.unpriced_requests
        description = (
            f"{count} request{'s' if count != 1 else ''} without a price in force: not billed."
        )
        classes = [name for name, _ in PRICED_CLASSES if section.unpriced.of(name)] or ["input"]
        lines.extend(
            line(name, section.unpriced.of(name), None, None, count, description)
            for name in classes
        )
    return lines


def sum_exact(amounts: Iterable[Decimal]) -> Decimal:
    total = Decimal(0)
    for amount in amounts:
        total = _EXACT.add(total, amount)
    return total


def cents_summing_to(amounts: Sequence[Decimal], total: Decimal) -> list[Decimal]:
    """Each amount in cents, such that the cents add up to `total` (itself in cents).

    Every amount is rounded down to a cent, then the cents still missing go one each to the
    amounts that lost the most in rounding (ties: the earlier line). `total` must be the
    half-up rounding of the exact sum, which keeps the missing cents between 0 and the number
    of amounts.
    """
    floors = [
        amount.quantize(CENT, rounding=ROUND_FLOOR, context=Context(prec=60)) for amount in amounts
    ]
    missing = (total - sum_exact(floors)) / CENT
    if missing != missing.to_integral_value() or not 0 <= missing <= len(amounts):
        raise ValueError(f"{total} is not the rounded sum of these {len(amounts)} amounts.")
    by_remainder = sorted(
        range(len(amounts)), key=lambda index: (-(amounts[index] - floors[index]), index)
    )
    for index in by_remainder[: int(missing)]:
        floors[index] += CENT
    return floors
