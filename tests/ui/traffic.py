"""Synthetic traffic for the control-room tests: request log rows with known costs, and the
daily rollups the billing job would make of them."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from billing.rollups import rollup_days
from gateway.models import Provider, ProviderKind, RequestLog, RequestOutcome, UpstreamKey

MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")


def utc_today() -> date:
    return timezone.now().astimezone(UTC).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def earlier_today(seconds: float) -> datetime:
    """`seconds` ago, but never before today's UTC midnight (tests run at any hour)."""
    now = timezone.now()
    return max(now - timedelta(seconds=seconds), day_start(now.astimezone(UTC).date()))


def provider(name: str = "anthropic") -> Provider:
    return Provider.objects.create(
        name=name, kind=ProviderKind.ANTHROPIC, base_url="http://127.0.0.1:9"
    )


def upstream_key(on: Provider, label: str = "primary") -> UpstreamKey:
    return UpstreamKey.objects.create(provider=on, label=label, secret="sk-ant-test-upstream")


def request_log(
    *,
    started_at: datetime,
    user: Any = None,
    cost_center: Any = None,
    virtual_key: Any = None,
    provider: Any = None,
    upstream_key: Any = None,
    model: str = MODELS[0],
    cost: str | Decimal | None = "0.0100",
    savings: str | Decimal | None = None,
    status: int = 200,
    outcome: str = RequestOutcome.OK,
    input_tokens: int = 100,
    output_tokens: int = 50,
    cache_read_tokens: int = 0,
    cache_write_5m_tokens: int = 0,
    latency_ms: int | None = 500,
    ttfb_ms: int | None = 100,
    session_id: str = "",
    agent_id: str = "",
) -> RequestLog:
    """An unsaved row; `cost=None` records it as unpriced."""
    return RequestLog(
        request_id=f"req_{uuid.uuid4().hex}",
        started_at=started_at,
        finished_at=started_at + timedelta(milliseconds=latency_ms or 0),
        user=user,
        cost_center=cost_center,
        virtual_key=virtual_key,
        provider=provider,
        upstream_key=upstream_key,
        endpoint="/v1/messages",
        model_requested=model,
        model_served=model,
        status_code=status,
        outcome=outcome,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_5m_tokens=cache_write_5m_tokens,
        cost_usd=Decimal(cost) if cost is not None else None,
        is_priced=cost is not None,
        cache_savings_usd=Decimal(savings) if savings is not None else None,
        latency_ms=latency_ms,
        ttfb_ms=ttfb_ms,
        session_id=session_id,
        agent_id=agent_id,
    )


def save(rows: Iterable[RequestLog]) -> list[RequestLog]:
    return RequestLog.objects.bulk_create(list(rows), batch_size=2000)


def roll_up_past_days() -> int:
    """What the billing job does every few minutes: rollups for every day before today."""
    today = utc_today()
    days = RequestLog.objects.filter(started_at__lt=day_start(today)).dates("started_at", "day")
    return rollup_days(list(days))


def generated_traffic(
    count: int,
    *,
    days: int,
    people: list[tuple[Any, Any, Any]],
    providers: list[Provider],
    seed: int = 7,
) -> list[RequestLog]:
    """`count` rows spread over the last `days` days (today included), deterministic.

    `people` are (user, cost center, virtual key) triples.
    """
    rng = random.Random(seed)
    now = timezone.now()
    today_start = day_start(utc_today())
    rows = []
    for index in range(count):
        user, cost_center, virtual_key = people[index % len(people)]
        day_offset = index % days
        if day_offset == 0:
            started_at = today_start + (now - today_start) * rng.random()
        else:
            started_at = (
                today_start - timedelta(days=day_offset) + timedelta(seconds=rng.randrange(86400))
            )
        failed = rng.random() < 0.03
        rows.append(
            request_log(
                started_at=started_at,
                user=user,
                cost_center=cost_center,
                virtual_key=virtual_key,
                provider=providers[index % len(providers)],
                model=MODELS[index % len(MODELS)],
                cost=f"0.{rng.randrange(1, 99999):05d}",
                savings=f"0.000{rng.randrange(0, 999):03d}",
                status=529 if failed else 200,
                outcome=RequestOutcome.UPSTREAM_ERROR if failed else RequestOutcome.OK,
                input_tokens=rng.randrange(10, 5000),
                output_tokens=rng.randrange(10, 2000),
                cache_read_tokens=rng.randrange(0, 20000),
                latency_ms=rng.randrange(50, 20000),
                ttfb_ms=rng.randrange(20, 2000),
                session_id=f"session-{index % 400:04d}",
                agent_id="" if index % 5 else f"agent-{index % 3}",
            )
        )
    return rows
