"""A proxied request is priced once: its settlement prices it, with the price book its
reservation used, and its RequestLog row carries that price; the recorder prices only the
rows nobody settled (rejections, other endpoints, a request with no price book)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.contracts import Usage
from gateway.models import RequestLog
from gateway.pricing import PricedCost
from gateway.proxy.exchange import Exchange
from gateway.recorder import RequestRecorder

SCOPE = {"type": "http", "method": "POST", "client": ("127.0.0.1", 50000)}
USAGE = Usage(input_tokens=100, output_tokens=50, web_search_requests=1)
ITERATIONS = ((None, Usage(input_tokens=100, output_tokens=50)),)
SETTLED = PricedCost(
    cost_usd=Decimal("0.42431234567"),
    is_priced=True,
    price_ids=(1,),
    cache_savings_usd=Decimal("0.01"),
)


def exchange(priced: PricedCost | None) -> Exchange:
    done = Exchange(SCOPE, "/v1/messages")
    done.row["model_requested"] = done.row["model_served"] = "claude-no-such-model"
    done.usage = USAGE
    done.iterations = ITERATIONS
    done.priced = priced
    return done


def test_a_settled_request_carries_its_cost_and_not_what_pricing_it_would_take():
    row = exchange(SETTLED).finish()

    assert (row["cost_usd"], row["is_priced"], row["cache_savings_usd"]) == (
        Decimal("0.4243123457"),  # rounded half up to the column's 10 places
        True,
        Decimal("0.0100000000"),
    )
    assert "web_search_requests" not in row
    assert "iterations" not in row
    assert (row["input_tokens"], row["output_tokens"]) == (100, 50)


def test_an_unsettled_request_carries_what_the_recorder_needs_to_price_it():
    row = exchange(None).finish()

    assert "cost_usd" not in row
    assert row["web_search_requests"] == 1
    assert row["iterations"] == [
        {
            "model": None,
            "input_tokens": 100,
            "output_tokens": 50,
            "cache_write_5m_tokens": 0,
            "cache_write_1h_tokens": 0,
            "cache_read_tokens": 0,
            "web_search_requests": 0,
        }
    ]


@pytest.mark.django_db(transaction=True)
def test_the_recorder_keeps_the_settled_price_and_prices_only_unsettled_rows(tmp_path):
    settled = exchange(SETTLED)
    unsettled = exchange(None)
    recorder = RequestRecorder(batch_size=10, flush_interval_s=60.0, spool_dir=tmp_path)
    recorder.record(settled.finish())
    recorder.record(unsettled.finish())
    recorder.flush_now()
    recorder.stop()

    kept = RequestLog.objects.get(request_id=settled.request_id)
    priced_here = RequestLog.objects.get(request_id=unsettled.request_id)
    assert (kept.cost_usd, kept.is_priced, kept.cache_savings_usd) == (
        Decimal("0.4243123457"),
        True,
        Decimal("0.0100000000"),
    )
    # The recorder's own book has no price for this model: the row is logged unpriced.
    assert (priced_here.cost_usd, priced_here.is_priced) == (None, False)
