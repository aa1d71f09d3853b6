"""Request log rows and prices for billing tests, priced the way the recorder prices them."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from gateway.contracts import Usage
from gateway.models import ModelPrice, RequestLog, RequestOutcome
from gateway.pricing import price_request, quantize_cost
from gateway.selectors import price_book_load

MAY = date(2026, 5, 1)
JUNE = date(2026, 6, 1)
JULY = date(2026, 7, 1)

# input, 5m write, 1h write, cache read, output (USD per million tokens)
OPUS = ("5", "6.25", "10", "0.50", "25")
SONNET = ("2", "2.50", "4", "0.20", "10")
HAIKU = ("1", "1.25", "2", "0.10", "5")
HAIKU_CHEAPER = ("0.8", "1.00", "1.6", "0.08", "4")


def at(day: int, hour: int = 12, minute: int = 0, *, month: int = 5) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def price(
    model: str,
    rates: tuple[str, str, str, str, str],
    *,
    effective_from: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    provider: Any = None,
) -> ModelPrice:
    inp, write_5m, write_1h, read, out = (Decimal(rate) for rate in rates)
    return ModelPrice.objects.create(
        provider=provider,
        model=model,
        effective_from=effective_from,
        input_per_mtok=inp,
        cache_write_5m_per_mtok=write_5m,
        cache_write_1h_per_mtok=write_1h,
        cache_read_per_mtok=read,
        output_per_mtok=out,
    )


def standard_prices() -> None:
    price("claude-opus-5", OPUS)
    price("claude-sonnet-5", SONNET)
    price("claude-haiku-4-5", HAIKU)


def request_log(
    *,
    started_at: datetime,
    cost_center: Any = None,
    user: Any = None,
    virtual_key: Any = None,
    provider: Any = None,
    model: str = "claude-sonnet-5",
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_write_5m_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    cache_read_tokens: int = 0,
    web_search_requests: int = 0,
    outcome: str = RequestOutcome.OK,
    status_code: int = 200,
    book: Any = None,
) -> RequestLog:
    """An unsaved row, priced with the price book as the recorder prices one."""
    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_write_5m_tokens=cache_write_5m_tokens,
        cache_write_1h_tokens=cache_write_1h_tokens,
        cache_read_tokens=cache_read_tokens,
        web_search_requests=web_search_requests,
    )
    if usage == Usage():
        cost, is_priced, savings = Decimal(0), True, None
    else:
        priced = price_request(
            usage=usage,
            iterations=(),
            model=model,
            provider_id=provider.pk if provider is not None else None,
            at=started_at,
            book=book or price_book_load(),
        )
        cost = quantize_cost(priced.cost_usd) if priced.cost_usd is not None else None
        is_priced = priced.is_priced
        savings = (
            quantize_cost(priced.cache_savings_usd)
            if priced.cache_savings_usd is not None
            else None
        )
    return RequestLog(
        request_id=f"req_{uuid.uuid4().hex}",
        started_at=started_at,
        finished_at=started_at,
        cost_center=cost_center,
        user=user,
        virtual_key=virtual_key,
        provider=provider,
        endpoint="/v1/messages",
        model_requested=model,
        model_served=model,
        status_code=status_code,
        outcome=outcome,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_write_5m_tokens=cache_write_5m_tokens,
        cache_write_1h_tokens=cache_write_1h_tokens,
        cache_read_tokens=cache_read_tokens,
        cost_usd=cost,
        is_priced=is_priced,
        cache_savings_usd=savings,
    )


def record(*rows: RequestLog) -> list[RequestLog]:
    return RequestLog.objects.bulk_create(rows, batch_size=500)


def record_one(**fields: Any) -> RequestLog:
    return record(request_log(**fields))[0]
