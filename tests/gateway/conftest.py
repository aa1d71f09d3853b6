"""Wiring for proxy integration tests: an emulator-backed provider, route and key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest

from gateway.models import (
    ModelPrice,
    Provider,
    ProviderKind,
    RequestLog,
    Route,
    RouteTarget,
    UpstreamKey,
)
from gateway.price_catalog import CATALOG_EFFECTIVE_FROM, catalog_rows

UPSTREAM_SECRET = "sk-ant-emulator-upstream-0001"


def seed_price_catalog() -> None:
    """Transactional tests flush every table, the seeded catalog included; put it back."""
    if ModelPrice.objects.filter(provider__isnull=True).exists():
        return
    ModelPrice.objects.bulk_create(
        ModelPrice(provider=None, effective_from=CATALOG_EFFECTIVE_FROM, **row)
        for row in catalog_rows()
    )


@dataclass
class Upstream:
    provider: Provider
    upstream_key: UpstreamKey
    route: Route


@pytest.fixture
def upstream(transactional_db, emulator) -> Iterator[Upstream]:
    seed_price_catalog()
    provider = Provider.objects.create(
        name="anthropic", kind=ProviderKind.ANTHROPIC, base_url=emulator.base_url
    )
    upstream_key = UpstreamKey.objects.create(
        provider=provider, label="team-a", secret=UPSTREAM_SECRET
    )
    route = Route.objects.create(name="default", model_pattern="claude-*")
    RouteTarget.objects.create(route=route, position=0, provider=provider)
    yield Upstream(provider=provider, upstream_key=upstream_key, route=route)
    wait_for_quiet_log()


def wait_for_quiet_log(quiet_s: float = 0.2, timeout_s: float = 3.0) -> None:
    """Let the server's writer finish this test's rows, so none lands in the next test."""
    deadline = time.monotonic() + timeout_s
    count = RequestLog.objects.count()
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now_count = RequestLog.objects.count()
        if now_count != count:
            count, quiet_since = now_count, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return


def wait_for_logs(count: int, timeout_s: float = 10.0, **filters) -> list[RequestLog]:
    """RequestLog rows are written off the hot path; wait until `count` matching rows exist."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = list(RequestLog.objects.filter(**filters).order_by("started_at"))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def streamed_text(body: bytes) -> tuple[str, list[str]]:
    """The concatenated text deltas of an SSE body, and the event names in order."""
    text: list[str] = []
    names: list[str] = []
    for block in body.split(b"\n\n"):
        if not block.strip():
            continue
        name, data = (line.split(b": ", 1)[1] for line in block.split(b"\n")[:2])
        names.append(name.decode())
        if name == b"content_block_delta":
            text.append(orjson.loads(data)["delta"]["text"])
    return "".join(text), names
