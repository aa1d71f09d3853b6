"""The in-process picture of routes, providers, upstream keys and prices.

The proxy never queries the database per request in steady state: it reads this snapshot,
which is reloaded at most every GATEHOUSE_CACHE_TTL seconds (5 s by default), so a change
made in the admin reaches every process within that time without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.conf import settings

from gateway.database_watch import DATABASE_ERRORS, STALE_WAIT_S, DatabaseWatch
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
    """Holds the current snapshot; one task reloads it when stale, the rest keep going.

    While a reload is running, a snapshot at most one TTL past due is served at once; an
    older one waits for the reload, but never longer than STALE_WAIT_S. When the database
    fails, the last snapshot is kept (routes, keys and prices as last seen) and served without
    waiting; a single reload every DATABASE_RETRY_S probes the database until one succeeds.
    """

    def __init__(self, ttl_s: float | None = None) -> None:
        self.ttl_s = ttl_s if ttl_s is not None else settings.GATEHOUSE["CACHE_TTL_S"]
        self._snapshot: GatewaySnapshot | None = None
        self._reload: asyncio.Future[GatewaySnapshot] | None = None
        self._database = DatabaseWatch(
            what="the routing snapshot",
            serving="the previous routes, keys and prices are kept",
        )
        # Closes a connection a failed query left broken before the next reload uses it.
        self._load = database_sync_to_async(snapshot_load)

    def invalidate(self) -> None:
        self._snapshot = None

    async def get(self) -> GatewaySnapshot:
        snapshot = self._snapshot
        now = time.monotonic()
        if snapshot is not None and self._database.is_down:
            # Nobody waits on a database that failed: one reload at a time probes it.
            if self._reload is None and self._database.probe_due():
                self._start_reload()
            return snapshot
        if snapshot is not None and (
            now - snapshot.loaded_at < self.ttl_s
            or (self._reload is not None and now - snapshot.loaded_at < 2 * self.ttl_s)
        ):
            return snapshot
        reload = self._reload or self._start_reload()
        if snapshot is None:
            return await asyncio.shield(reload)
        try:
            return await asyncio.wait_for(asyncio.shield(reload), STALE_WAIT_S)
        except (TimeoutError, *DATABASE_ERRORS):
            return snapshot

    def _start_reload(self) -> asyncio.Future[GatewaySnapshot]:
        reload = asyncio.ensure_future(self._reloaded())
        self._reload = reload
        reload.add_done_callback(self._reload_done)
        return reload

    async def _reloaded(self) -> GatewaySnapshot:
        try:
            snapshot = await self._load()
        except DATABASE_ERRORS as error:
            self._database.failed(error)
            raise
        self._database.answered()
        self._snapshot = snapshot
        return snapshot

    def _reload_done(self, reload: asyncio.Future[GatewaySnapshot]) -> None:
        self._reload = None
        if not reload.cancelled():
            reload.exception()  # retrieved: waiters that gave up must not leave it unlogged
