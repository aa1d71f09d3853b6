"""The in-process picture of routes, providers, upstream keys and prices.

The proxy never queries the database per request in steady state: it reads this snapshot,
which is reloaded at most every GATEHOUSE_CACHE_TTL seconds (5 s by default), so a change
made in the admin reaches every process within that time without a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError

from gateway.models import KeyHealth, Provider, Route, UpstreamKey
from gateway.pricing import PriceBook
from gateway.routing import RouteSpec, TargetSpec
from gateway.secrets import Secret
from gateway.selectors import price_book_load

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderSpec:
    provider_id: int
    name: str
    kind: str
    base_url: str
    options: dict
    connect_timeout_s: float
    read_timeout_s: float
    is_enabled: bool


@dataclass(frozen=True, repr=False)
class UpstreamKeySpec:
    upstream_key_id: int
    provider_id: int
    label: str
    secret: Secret
    weight: int

    def __repr__(self) -> str:
        return f"UpstreamKeySpec({self.provider_id}/{self.label})"


@dataclass(frozen=True)
class GatewaySnapshot:
    routes: tuple[RouteSpec, ...]
    providers: dict[int, ProviderSpec]
    upstream_keys: dict[int, tuple[UpstreamKeySpec, ...]]  # by provider id, healthy and enabled
    known_models: tuple[str, ...] = field(default=())
    loaded_at: float = 0.0
    price_book: PriceBook | None = None  # admission prices each request's worst case


def snapshot_load() -> GatewaySnapshot:
    providers = {
        provider.pk: ProviderSpec(
            provider_id=provider.pk,
            name=provider.name,
            kind=provider.kind,
            base_url=provider.base_url.rstrip("/"),
            options=dict(provider.options or {}),
            connect_timeout_s=provider.connect_timeout_s,
            read_timeout_s=provider.read_timeout_s,
            is_enabled=provider.is_enabled,
        )
        for provider in Provider.objects.all()
    }
    routes = tuple(
        RouteSpec(
            route_id=route.pk,
            name=route.name,
            priority=route.priority,
            model_pattern=route.model_pattern,
            cost_center_ids=frozenset(cost_center.pk for cost_center in route.cost_centers.all()),
            key_tags=frozenset(route.key_tags or ()),
            cache_policy=route.cache_policy,
            cache_ttl=route.cache_ttl,
            targets=tuple(
                TargetSpec(
                    provider_id=target.provider_id,
                    provider_name=target.provider.name,
                    upstream_model=target.upstream_model,
                )
                for target in route.targets.all()
            ),
        )
        for route in Route.objects.filter(is_enabled=True).prefetch_related(
            "cost_centers", "targets__provider"
        )
    )
    keys: dict[int, list[UpstreamKeySpec]] = {}
    for upstream_key in UpstreamKey.objects.filter(is_enabled=True, health=KeyHealth.HEALTHY):
        keys.setdefault(upstream_key.provider_id, []).append(
            UpstreamKeySpec(
                upstream_key_id=upstream_key.pk,
                provider_id=upstream_key.provider_id,
                label=upstream_key.label,
                secret=upstream_key.secret,
                weight=max(upstream_key.weight, 1),
            )
        )
    from gateway.models import ModelPrice

    known_models = tuple(sorted(set(ModelPrice.objects.values_list("model", flat=True))))
    return GatewaySnapshot(
        routes=routes,
        providers=providers,
        upstream_keys={provider_id: tuple(specs) for provider_id, specs in keys.items()},
        known_models=known_models,
        loaded_at=time.monotonic(),
        price_book=price_book_load(),
    )


class SnapshotCache:
    """Holds the current snapshot; one coroutine reloads it when stale, the rest keep going."""

    def __init__(self, ttl_s: float | None = None) -> None:
        self.ttl_s = ttl_s if ttl_s is not None else settings.GATEHOUSE["CACHE_TTL_S"]
        self._snapshot: GatewaySnapshot | None = None
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._snapshot = None

    async def get(self) -> GatewaySnapshot:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() - snapshot.loaded_at < self.ttl_s:
            return snapshot
        if (
            snapshot is not None
            and self._lock.locked()
            and time.monotonic() - snapshot.loaded_at < 2 * self.ttl_s
        ):
            # Someone is reloading; a snapshot at most one TTL past due is good enough meanwhile.
            return snapshot
        async with self._lock:
            current = self._snapshot
            if current is not None and time.monotonic() - current.loaded_at < self.ttl_s:
                return current
            try:
                self._snapshot = await sync_to_async(snapshot_load)()
            except DatabaseError:
                if current is None:
                    raise
                # The database is away: route with what we knew, and try again next time.
                logger.warning(
                    "Snapshot reload failed; keeping the previous routes, keys and prices"
                )
                self._snapshot = dataclasses.replace(current, loaded_at=time.monotonic())
            return self._snapshot
