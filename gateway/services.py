"""Writes on gateway configuration: providers, upstream keys, routes and prices.

Every function validates the row as the admin would (`full_clean`, the models' `clean`),
writes it and records one AuditEvent in the same transaction. The proxy picks changes up at
its next snapshot reload; nothing here talks to it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.audit import (
    audit_created,
    audit_diff,
    audit_record,
    audit_snapshot,
    audited_create,
    audited_delete,
    audited_update,
)
from accounts.models import CostCenter, User
from gateway.models import (
    KeyHealth,
    ModelPrice,
    Provider,
    RequestBody,
    Route,
    RouteTarget,
    UpstreamKey,
)
from gateway.secrets import Secret

PROVIDER_FIELDS = (
    "name",
    "kind",
    "base_url",
    "options",
    "connect_timeout_s",
    "read_timeout_s",
    "is_enabled",
)
UPSTREAM_KEY_FIELDS = ("provider", "label", "secret", "weight", "is_enabled")
UPSTREAM_KEY_UPDATABLE_FIELDS = ("label", "secret", "weight", "is_enabled")
ROUTE_FIELDS = (
    "name",
    "priority",
    "model_pattern",
    "key_tags",
    "cache_policy",
    "cache_ttl",
    "is_enabled",
)
PRICE_FIELDS = (
    "provider",
    "model",
    "effective_from",
    "input_per_mtok",
    "output_per_mtok",
    "cache_write_5m_per_mtok",
    "cache_write_1h_per_mtok",
    "cache_read_per_mtok",
    "currency",
)
PRICE_QUANTUM = Decimal("0.0001")
CACHE_WRITE_5M_MULTIPLIER = Decimal("1.25")
CACHE_WRITE_1H_MULTIPLIER = Decimal("2")
CACHE_READ_MULTIPLIER = Decimal("0.1")


# --- Providers


@transaction.atomic
def provider_create(
    *,
    actor: User | None,
    via: str,
    name: str,
    kind: str,
    base_url: str,
    options: Mapping[str, Any] | None = None,
    connect_timeout_s: float = 10.0,
    read_timeout_s: float = 600.0,
    is_enabled: bool = True,
) -> Provider:
    provider = Provider(
        name=name,
        kind=kind,
        base_url=base_url,
        options=dict(options or {}),
        connect_timeout_s=connect_timeout_s,
        read_timeout_s=read_timeout_s,
        is_enabled=is_enabled,
    )
    return audited_create(obj=provider, actor=actor, via=via, fields=PROVIDER_FIELDS)


@transaction.atomic
def provider_update(
    *, provider: Provider, actor: User | None, via: str, data: Mapping[str, Any]
) -> Provider:
    """Disabling a provider that enabled routes still use is refused (`Provider.clean`)."""
    return audited_update(obj=provider, actor=actor, via=via, data=data, fields=PROVIDER_FIELDS)


@transaction.atomic
def provider_delete(*, provider: Provider, actor: User | None, via: str) -> None:
    """Its upstream keys and prices go with it; a route target pointing here blocks it."""
    audited_delete(obj=provider, actor=actor, via=via)


# --- Upstream keys


@transaction.atomic
def upstream_key_create(
    *,
    actor: User | None,
    via: str,
    provider: Provider,
    label: str,
    secret: str,
    weight: int = 1,
    is_enabled: bool = True,
) -> UpstreamKey:
    upstream_key = UpstreamKey(
        provider=provider,
        label=label,
        secret=secret,
        weight=weight,
        is_enabled=is_enabled,
    )
    return audited_create(obj=upstream_key, actor=actor, via=via, fields=UPSTREAM_KEY_FIELDS)


@transaction.atomic
def upstream_key_update(
    *, upstream_key: UpstreamKey, actor: User | None, via: str, data: Mapping[str, Any]
) -> UpstreamKey:
    """A new secret also puts the key back into the pool: the old one may be why it left."""
    values = dict(data)
    if "secret" in values:
        new_secret = Secret(values.pop("secret"))
        if new_secret != upstream_key.secret:
            values["secret"] = new_secret
            if upstream_key.health != KeyHealth.HEALTHY:
                upstream_key.health = KeyHealth.HEALTHY
                upstream_key.health_reason = ""
                upstream_key.health_changed_at = timezone.now()
                upstream_key.save(update_fields=["health", "health_reason", "health_changed_at"])
    return audited_update(
        obj=upstream_key, actor=actor, via=via, data=values, fields=UPSTREAM_KEY_UPDATABLE_FIELDS
    )


@transaction.atomic
def upstream_key_delete(*, upstream_key: UpstreamKey, actor: User | None, via: str) -> None:
    audited_delete(obj=upstream_key, actor=actor, via=via)


# --- Routes


@dataclass(frozen=True)
class RouteTargetSpec:
    """One step of a route, in order: the first is the primary, the rest are fallbacks."""

    provider: Provider
    upstream_model: str = ""


@transaction.atomic
def route_create(
    *,
    actor: User | None,
    via: str,
    name: str,
    model_pattern: str,
    targets: Sequence[RouteTargetSpec],
    priority: int = 100,
    cost_centers: Sequence[CostCenter] = (),
    key_tags: Sequence[str] = (),
    cache_policy: str = "off",
    cache_ttl: str = "5m",
    is_enabled: bool = True,
) -> Route:
    route = Route(
        name=name,
        priority=priority,
        model_pattern=model_pattern,
        key_tags=list(key_tags),
        cache_policy=cache_policy,
        cache_ttl=cache_ttl,
        is_enabled=is_enabled,
    )
    route.full_clean()
    route.save(force_insert=True)
    route.cost_centers.set(cost_centers)
    _route_targets_replace(route, targets)
    audit_record(
        actor=actor,
        via=via,
        action="create",
        obj=route,
        changes={
            **audit_created(audit_snapshot(route, ROUTE_FIELDS)),
            "cost_centers": [None, _route_cost_center_ids(route)],
            "targets": [None, _route_target_list(route)],
        },
    )
    return route


@transaction.atomic
def route_update(*, route: Route, actor: User | None, via: str, data: Mapping[str, Any]) -> Route:
    """`data` may carry `cost_centers` (replaces the set) and `targets` (replaces the list)."""
    values = dict(data)
    cost_centers = values.pop("cost_centers", None)
    targets = values.pop("targets", None)
    unknown = set(values) - set(ROUTE_FIELDS)
    if unknown:
        raise ValueError(f"Not updatable here: {', '.join(sorted(unknown))}.")

    before = {
        **audit_snapshot(route, ROUTE_FIELDS),
        "cost_centers": _route_cost_center_ids(route),
        "targets": _route_target_list(route),
    }
    for name, value in values.items():
        setattr(route, name, value)
    changed_fields = list(audit_diff(before, audit_snapshot(route, ROUTE_FIELDS)))
    if changed_fields:
        route.full_clean()
        route.save(update_fields=[*changed_fields, "updated_at"])
    if cost_centers is not None:
        route.cost_centers.set(cost_centers)
    if targets is not None and _target_list(targets) != before["targets"]:
        _route_targets_replace(route, targets)
    after = {
        **audit_snapshot(route, ROUTE_FIELDS),
        "cost_centers": _route_cost_center_ids(route),
        "targets": _route_target_list(route),
    }
    changes = audit_diff(before, after)
    if changes:
        if not changed_fields:
            Route.objects.filter(pk=route.pk).update(updated_at=timezone.now())
        audit_record(actor=actor, via=via, action="update", obj=route, changes=changes)
    return route


@transaction.atomic
def route_delete(*, route: Route, actor: User | None, via: str) -> None:
    audited_delete(obj=route, actor=actor, via=via)


def _route_targets_replace(route: Route, targets: Sequence[RouteTargetSpec]) -> None:
    if not targets:
        raise ValidationError({"targets": "A route needs at least one target."})
    route.targets.all().delete()
    for position, spec in enumerate(targets):
        target = RouteTarget(
            route=route,
            position=position,
            provider=spec.provider,
            upstream_model=spec.upstream_model,
        )
        try:
            target.full_clean(exclude=["route"])
        except ValidationError as error:
            raise ValidationError(
                {
                    f"targets[{position}].{_target_field(name)}": messages
                    for name, messages in error.message_dict.items()
                }
            ) from error
        target.save(force_insert=True)


def _target_field(name: str) -> str:
    return "provider_id" if name == "provider" else name


def _target_list(targets: Sequence[RouteTargetSpec]) -> list[list[Any]]:
    return [[spec.provider.pk, spec.upstream_model] for spec in targets]


def _route_target_list(route: Route) -> list[list[Any]]:
    if route.pk is None:
        return []
    return [
        [provider_id, upstream_model]
        for provider_id, upstream_model in route.targets.order_by("position").values_list(
            "provider_id", "upstream_model"
        )
    ]


def _route_cost_center_ids(route: Route) -> list[int]:
    if route.pk is None:
        return []
    return sorted(route.cost_centers.values_list("pk", flat=True))


# --- Prices


@transaction.atomic
def model_price_create(
    *,
    actor: User | None,
    via: str,
    provider: Provider | None,
    model: str,
    effective_from: datetime,
    input_per_mtok: Decimal,
    output_per_mtok: Decimal,
    cache_write_5m_per_mtok: Decimal | None = None,
    cache_write_1h_per_mtok: Decimal | None = None,
    cache_read_per_mtok: Decimal | None = None,
    currency: str = "USD",
) -> ModelPrice:
    """Cache prices left out follow Anthropic's multipliers of the input price."""
    price = ModelPrice(
        provider=provider,
        model=model,
        effective_from=effective_from,
        input_per_mtok=input_per_mtok,
        output_per_mtok=output_per_mtok,
        cache_write_5m_per_mtok=_or_multiple(
            cache_write_5m_per_mtok, input_per_mtok, CACHE_WRITE_5M_MULTIPLIER
        ),
        cache_write_1h_per_mtok=_or_multiple(
            cache_write_1h_per_mtok, input_per_mtok, CACHE_WRITE_1H_MULTIPLIER
        ),
        cache_read_per_mtok=_or_multiple(
            cache_read_per_mtok, input_per_mtok, CACHE_READ_MULTIPLIER
        ),
        currency=currency,
    )
    _refuse_duplicate_price(price)
    return audited_create(obj=price, actor=actor, via=via, fields=PRICE_FIELDS)


@transaction.atomic
def model_price_update(
    *, price: ModelPrice, actor: User | None, via: str, data: Mapping[str, Any]
) -> ModelPrice:
    """Only a price not yet in force, and only to another future start: history stays true."""
    _refuse_in_force(price)
    if "effective_from" in data and data["effective_from"] <= timezone.now():
        raise ValidationError(
            {
                "effective_from": "Move a scheduled price to a time in the future, or add a new price."
            }
        )
    candidate = copy.copy(price)
    for name, value in data.items():
        setattr(candidate, name, value)
    _refuse_duplicate_price(candidate)
    return audited_update(obj=price, actor=actor, via=via, data=data, fields=PRICE_FIELDS)


@transaction.atomic
def model_price_delete(*, price: ModelPrice, actor: User | None, via: str) -> None:
    _refuse_in_force(price)
    audited_delete(obj=price, actor=actor, via=via)


def _refuse_in_force(price: ModelPrice) -> None:
    if price.effective_from <= timezone.now():
        raise ValidationError(
            {
                "effective_from": ValidationError(
                    "This price is in force and part of the record; add a new price with a "
                    "later effective_from instead.",
                    code="conflict",
                )
            }
        )


def _refuse_duplicate_price(price: ModelPrice) -> None:
    same_scope = (
        Q(provider__isnull=True) if price.provider_id is None else Q(provider_id=price.provider_id)
    )
    clash = ModelPrice.objects.filter(
        same_scope, model=price.model, effective_from=price.effective_from
    ).exclude(pk=price.pk)
    if clash.exists():
        scope = price.provider.name if price.provider is not None else "any provider"
        raise ValidationError(
            {
                "effective_from": ValidationError(
                    f"{price.model} on {scope} already has a price from {price.effective_from:%Y-%m-%d %H:%M}.",
                    code="unique",
                )
            }
        )


def _or_multiple(given: Decimal | None, base: Decimal, multiplier: Decimal) -> Decimal:
    if given is not None:
        return given
    return (base * multiplier).quantize(PRICE_QUANTUM)


def request_bodies_delete_expired(
    *, retention_days: int | None = None, batch_size: int = 1000, now: datetime | None = None
) -> int:
    """Delete logged bodies older than the retention period, `batch_size` rows per statement
    (each its own short transaction, so a large backlog never holds a long lock)."""
    days = (
        retention_days if retention_days is not None else settings.GATEHOUSE["BODY_RETENTION_DAYS"]
    )
    cutoff = (now or timezone.now()) - timedelta(days=days)
    expired = RequestBody.objects.filter(created_at__lt=cutoff).order_by("created_at")
    deleted = 0
    while True:
        batch = list(expired.values_list("pk", flat=True)[:batch_size])
        if batch:
            deleted += RequestBody.objects.filter(pk__in=batch).delete()[0]
        if len(batch) < batch_size:
            return deleted
