"""Property: whatever the traffic, an invoice adds up to its requests' recorded costs."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import CostCenter
from billing.exports import csv_text, invoice_csv_rows
from billing.invoices import recompute_drafts
from billing.models import Invoice, UsageRollup
from billing.rollups import rollup_days
from gateway.models import RequestOutcome
from gateway.selectors import price_book_load
from tests.billing.factories import HAIKU, MAY, OPUS, SONNET, price, record, request_log

MODELS = ("claude-opus-5", "claude-sonnet-5", "claude-haiku-4-5", "mystery-model-1")
MONTH_START = datetime(2026, 5, 1, tzinfo=UTC)
MONTH_SECONDS = 31 * 24 * 3600

rates = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("99.9999"), places=4)


def _tokens(rng: random.Random) -> int:
    scale = rng.choice((0, 0, 10, 1_000, 100_000, 2_000_000))
    return rng.randint(0, scale)


def _traffic(rng: random.Random, count: int, cost_centers, users, book):
    rows = []
    for _ in range(count):
        cost_center = rng.choice((*cost_centers, None))
        outcome = rng.choice((RequestOutcome.OK,) * 8 + (RequestOutcome.UPSTREAM_ERROR,))
        is_error = outcome != RequestOutcome.OK
        rows.append(
            request_log(
                # A few rows fall just outside the month on either side.
                started_at=MONTH_START
                + timedelta(seconds=rng.randint(-3600, MONTH_SECONDS + 3600)),
                cost_center=cost_center,
                user=rng.choice(users),
                model=rng.choice(MODELS),
                input_tokens=0 if is_error else _tokens(rng),
                output_tokens=0 if is_error else _tokens(rng),
                cache_write_5m_tokens=0 if is_error else _tokens(rng),
                cache_write_1h_tokens=0 if is_error else _tokens(rng),
                cache_read_tokens=0 if is_error else _tokens(rng),
                web_search_requests=rng.choice((0,) * 9 + (rng.randint(1, 5),)),
                outcome=outcome,
                book=book,
            )
        )
    return rows


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    count=st.integers(min_value=1000, max_value=2500),
    new_haiku=st.tuples(rates, rates, rates, rates, rates),
    change_after=st.integers(min_value=1, max_value=MONTH_SECONDS - 1),
)
def test_each_invoice_total_is_the_sum_of_its_priced_requests_to_the_cent(
    research, ops, alice, bob, charlie, seed, count, new_haiku, change_after
):
    with transaction.atomic():
        lab = CostCenter.objects.create(code="lab", name="Lab", external_billing_code="GL-77")
        price("claude-opus-5", OPUS)
        price("claude-sonnet-5", SONNET)
        price("claude-haiku-4-5", HAIKU)
        price(
            "claude-haiku-4-5",
            tuple(str(rate) for rate in new_haiku),
            effective_from=MONTH_START + timedelta(seconds=change_after),
        )
        rows = _traffic(
            random.Random(seed),
            count,
            (research, ops, lab),
            (alice.user, bob.user, charlie.user, None),
            price_book_load(),
        )
        record(*rows)

        recompute_drafts(MAY)
        rollup_days(MONTH_START.date() + timedelta(days=offset) for offset in range(31))

        in_may = [row for row in rows if row.started_at.month == 5 and row.cost_center]
        for cost_center in (research, ops, lab):
            mine = [row for row in in_may if row.cost_center == cost_center]
            exact = sum((row.cost_usd for row in mine if row.is_priced), Decimal(0))
            invoice = Invoice.objects.get(cost_center=cost_center, period_start=MAY)
            lines = invoice.lines.filter(is_breakdown=False)
            breakdown = invoice.lines.filter(is_breakdown=True)
            exported = list(csv.DictReader(io.StringIO(csv_text(invoice_csv_rows(invoice)))))

            assert invoice.total_usd == exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            assert sum(line.amount_usd for line in lines if line.amount_usd is not None) == exact
            assert (
                sum(line.amount_usd for line in breakdown if line.amount_usd is not None) == exact
            )
            assert sum(Decimal(row["amount"]) for row in exported if row["amount"]) == (
                invoice.total_usd
            )
            assert invoice.requests == len(mine)
            assert invoice.unpriced_requests == sum(1 for row in mine if not row.is_priced)
            assert (
                sum(
                    UsageRollup.objects.filter(cost_center=cost_center).values_list(
                        "cost_usd", flat=True
                    ),
                    Decimal(0),
                )
                == exact
            )
        transaction.set_rollback(True)
