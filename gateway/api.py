"""Management API for traffic: providers, upstream keys, routes, prices, the request log,
usage, budgets, and `/me` for a developer's own keys and spend."""

from __future__ import annotations

from typing import Any, Literal

from django.http import HttpRequest
from django.utils import timezone
from ninja import Path, Query, Router, Status

from accounts.api_auth import MANAGE, SELF, principal_of
from accounts.models import CostCenter
from config.api_support import (
    ApiError,
    Day,
    ObjectId,
    Page,
    PageQuery,
    get_or_404,
    get_reference,
    paginate,
    responses,
)
from gateway import reports, services
from gateway.models import ModelPrice, Provider, RequestLog, Route, UpstreamKey
from gateway.schemas import (
    BudgetOut,
    MeOut,
    PriceFilters,
    PriceIn,
    PriceOut,
    PricePatch,
    ProviderFilters,
    ProviderIn,
    ProviderOut,
    ProviderPatch,
    RequestFilters,
    RequestOut,
    RouteFilters,
    RouteIn,
    RouteOut,
    RoutePatch,
    RouteTargetIn,
    UpstreamKeyFilters,
    UpstreamKeyIn,
    UpstreamKeyOut,
    UpstreamKeyPatch,
    UsageOut,
    UsageQuery,
)

VIA = "api"
MAX_USAGE_DAYS = 366

me = Router(auth=SELF, tags=["me"])
providers = Router(auth=MANAGE, tags=["providers"])
upstream_keys = Router(auth=MANAGE, tags=["upstream keys"])
routes = Router(auth=MANAGE, tags=["routes"])
prices = Router(auth=MANAGE, tags=["prices"])
requests = Router(auth=MANAGE, tags=["requests"])
usage = Router(auth=MANAGE, tags=["usage"])
budgets = Router(auth=MANAGE, tags=["budgets"])


# --- Me


@me.get("", response=responses(200, MeOut))
def get_me(request: HttpRequest) -> reports.Overview:
    """Your keys, your usage this month and what is left of every budget you count against."""
    return reports.user_overview(principal_of(request).user)


# --- Providers


def _provider(provider_id: int) -> Provider:
    return get_or_404(Provider.objects.all(), "provider", pk=provider_id)


@providers.get("", response=responses(200, Page[ProviderOut]))
def list_providers(
    request: HttpRequest, filters: Query[ProviderFilters], page: Query[PageQuery]
) -> dict[str, Any]:
    return paginate(filters.filter(Provider.objects.all()), page)


@providers.get("/{provider_id}", response=responses(200, ProviderOut, 404))
def get_provider(request: HttpRequest, provider_id: Path[ObjectId]) -> Provider:
    return _provider(provider_id)


@providers.post("", response=responses(201, ProviderOut, 409))
def create_provider(request: HttpRequest, body: ProviderIn) -> Status[Provider]:
    provider = services.provider_create(
        actor=principal_of(request).actor, via=VIA, **body.model_dump()
    )
    return Status(201, provider)


@providers.patch("/{provider_id}", response=responses(200, ProviderOut, 404, 409))
def update_provider(
    request: HttpRequest, provider_id: Path[ObjectId], body: ProviderPatch
) -> Provider:
    return services.provider_update(
        provider=_provider(provider_id),
        actor=principal_of(request).actor,
        via=VIA,
        data=body.model_dump(exclude_unset=True),
    )


@providers.delete("/{provider_id}", response=responses(204, None, 404, 409))
def delete_provider(request: HttpRequest, provider_id: Path[ObjectId]) -> Status[None]:
    """Its upstream keys and prices go with it; 409 while a route still targets it."""
    services.provider_delete(
        provider=_provider(provider_id), actor=principal_of(request).actor, via=VIA
    )
    return Status(204, None)


# --- Upstream keys


def _upstream_key(upstream_key_id: int) -> UpstreamKey:
    return get_or_404(UpstreamKey.objects.all(), "upstream key", pk=upstream_key_id)


def _upstream_key_data(body: UpstreamKeyIn | UpstreamKeyPatch, *, partial: bool) -> dict[str, Any]:
    data = body.model_dump(exclude_unset=partial, exclude={"secret", "provider_id"})
    if "secret" in body.model_fields_set or not partial:
        data["secret"] = body.secret.get_secret_value()
    if isinstance(body, UpstreamKeyIn):
        data["provider"] = get_reference(
            Provider.objects.all(), body.provider_id, what="provider", field="provider_id"
        )
    return data


@upstream_keys.get("", response=responses(200, Page[UpstreamKeyOut]))
def list_upstream_keys(
    request: HttpRequest, filters: Query[UpstreamKeyFilters], page: Query[PageQuery]
) -> dict[str, Any]:
    return paginate(filters.filter(UpstreamKey.objects.all()), page)


@upstream_keys.get("/{upstream_key_id}", response=responses(200, UpstreamKeyOut, 404))
def get_upstream_key(request: HttpRequest, upstream_key_id: Path[ObjectId]) -> UpstreamKey:
    return _upstream_key(upstream_key_id)


@upstream_keys.post("", response=responses(201, UpstreamKeyOut, 409))
def create_upstream_key(request: HttpRequest, body: UpstreamKeyIn) -> Status[UpstreamKey]:
    """The secret is stored encrypted and never returned: the response says `has_secret`."""
    upstream_key = services.upstream_key_create(
        actor=principal_of(request).actor, via=VIA, **_upstream_key_data(body, partial=False)
    )
    return Status(201, upstream_key)


@upstream_keys.patch("/{upstream_key_id}", response=responses(200, UpstreamKeyOut, 404, 409))
def update_upstream_key(
    request: HttpRequest, upstream_key_id: Path[ObjectId], body: UpstreamKeyPatch
) -> UpstreamKey:
    return services.upstream_key_update(
        upstream_key=_upstream_key(upstream_key_id),
        actor=principal_of(request).actor,
        via=VIA,
        data=_upstream_key_data(body, partial=True),
    )


@upstream_keys.delete("/{upstream_key_id}", response=responses(204, None, 404))
def delete_upstream_key(request: HttpRequest, upstream_key_id: Path[ObjectId]) -> Status[None]:
    services.upstream_key_delete(
        upstream_key=_upstream_key(upstream_key_id), actor=principal_of(request).actor, via=VIA
    )
    return Status(204, None)


# --- Routes


def _routes() -> Any:
    return Route.objects.prefetch_related("cost_centers", "targets__provider")


def _route(route_id: int) -> Route:
    return get_or_404(_routes(), "route", pk=route_id)


def _route_data(fields: dict[str, Any], targets: list[RouteTargetIn] | None) -> dict[str, Any]:
    if targets is not None:
        fields["targets"] = [
            services.RouteTargetSpec(
                provider=get_reference(
                    Provider.objects.all(),
                    target.provider_id,
                    what="provider",
                    field=f"targets[{position}].provider_id",
                ),
                upstream_model=target.upstream_model,
            )
            for position, target in enumerate(targets)
        ]
    if "cost_center_ids" in fields:
        fields["cost_centers"] = [
            get_reference(
                CostCenter.objects.all(),
                cost_center_id,
                what="cost center",
                field=f"cost_center_ids[{position}]",
            )
            for position, cost_center_id in enumerate(fields.pop("cost_center_ids"))
        ]
    return fields


@routes.get("", response=responses(200, Page[RouteOut]))
def list_routes(
    request: HttpRequest, filters: Query[RouteFilters], page: Query[PageQuery]
) -> dict[str, Any]:
    return paginate(filters.filter(_routes()).distinct(), page)


@routes.get("/{route_id}", response=responses(200, RouteOut, 404))
def get_route(request: HttpRequest, route_id: Path[ObjectId]) -> Route:
    return _route(route_id)


@routes.post("", response=responses(201, RouteOut, 409))
def create_route(request: HttpRequest, body: RouteIn) -> Status[Route]:
    route = services.route_create(
        actor=principal_of(request).actor,
        via=VIA,
        **_route_data(body.model_dump(exclude={"targets"}), body.targets),
    )
    return Status(201, _route(route.pk))


@routes.patch("/{route_id}", response=responses(200, RouteOut, 404, 409))
def update_route(request: HttpRequest, route_id: Path[ObjectId], body: RoutePatch) -> Route:
    """`targets`, when given, replaces the whole ordered list; `cost_center_ids` the whole set."""
    route = services.route_update(
        route=_route(route_id),
        actor=principal_of(request).actor,
        via=VIA,
        data=_route_data(
            body.model_dump(exclude_unset=True, exclude={"targets"}),
            body.targets if "targets" in body.model_fields_set else None,
        ),
    )
    return _route(route.pk)


@routes.delete("/{route_id}", response=responses(204, None, 404))
def delete_route(request: HttpRequest, route_id: Path[ObjectId]) -> Status[None]:
    services.route_delete(route=_route(route_id), actor=principal_of(request).actor, via=VIA)
    return Status(204, None)


# --- Prices


def _price(price_id: int) -> ModelPrice:
    return get_or_404(ModelPrice.objects.all(), "price", pk=price_id)


def _price_data(fields: dict[str, Any]) -> dict[str, Any]:
    if "provider_id" in fields:
        fields["provider"] = get_reference(
            Provider.objects.all(), fields.pop("provider_id"), what="provider", field="provider_id"
        )
    return fields


@prices.get("", response=responses(200, Page[PriceOut]))
def list_prices(
    request: HttpRequest, filters: Query[PriceFilters], page: Query[PageQuery]
) -> dict[str, Any]:
    return paginate(filters.filter(ModelPrice.objects.all()), page)


@prices.get("/{price_id}", response=responses(200, PriceOut, 404))
def get_price(request: HttpRequest, price_id: Path[ObjectId]) -> ModelPrice:
    return _price(price_id)


@prices.post("", response=responses(201, PriceOut, 409))
def create_price(request: HttpRequest, body: PriceIn) -> Status[ModelPrice]:
    price = services.model_price_create(
        actor=principal_of(request).actor, via=VIA, **_price_data(body.model_dump())
    )
    return Status(201, price)


@prices.patch("/{price_id}", response=responses(200, PriceOut, 404, 409))
def update_price(request: HttpRequest, price_id: Path[ObjectId], body: PricePatch) -> ModelPrice:
    """Only a price not yet in force; one in force is part of the record (409)."""
    return services.model_price_update(
        price=_price(price_id),
        actor=principal_of(request).actor,
        via=VIA,
        data=_price_data(body.model_dump(exclude_unset=True)),
    )


@prices.delete("/{price_id}", response=responses(204, None, 404, 409))
def delete_price(request: HttpRequest, price_id: Path[ObjectId]) -> Status[None]:
    """Only a price not yet in force (409 otherwise)."""
    services.model_price_delete(price=_price(price_id), actor=principal_of(request).actor, via=VIA)
    return Status(204, None)


# --- The request log


@requests.get("", response=responses(200, Page[RequestOut]))
def list_requests(
    request: HttpRequest, filters: Query[RequestFilters], page: Query[PageQuery]
) -> dict[str, Any]:
    """Newest first."""
    rows = filters.filter(RequestLog.objects.select_related("virtual_key"))
    return paginate(rows, page, newest_first=True)


@requests.get("/{request_id}", response=responses(200, RequestOut, 404))
def get_request(
    request: HttpRequest,
    request_id: str = Path(..., pattern=r"^[A-Za-z0-9_.:-]{1,64}$"),
) -> RequestLog:
    return get_or_404(
        RequestLog.objects.select_related("virtual_key"), "request", request_id=request_id
    )


# --- Usage and budgets


@usage.get("", response=responses(200, UsageOut))
def get_usage(
    request: HttpRequest,
    filters: Query[UsageQuery],
    group_by: Literal["day", "user", "key", "cost_center", "model", "provider"] = "day",
    since: Day | None = None,
    until: Day | None = None,
) -> dict[str, Any]:
    """Requests, tokens by class, cost and cache savings per group over days `since` … `until`
    (UTC, both included; default: this month so far)."""
    today = timezone.now().date()
    since = since or today.replace(day=1)
    until = until or today
    if until < since:
        raise ApiError(400, "until is before since.", field="until")
    if (until - since).days >= MAX_USAGE_DAYS:
        raise ApiError(400, f"At most {MAX_USAGE_DAYS} days at once.", field="until")
    rows = filters.filter(reports.requests_between(since=since, until=until))
    return {
        "group_by": group_by,
        "since": since,
        "until": until,
        "rows": reports.usage_by(rows, group_by=group_by),
        "totals": reports.usage_totals(rows),
    }


@budgets.get("", response=responses(200, Page[BudgetOut]))
def list_budgets(
    request: HttpRequest,
    page: Query[PageQuery],
    scope: Literal["key", "user", "cost_center"] = "cost_center",
) -> dict[str, Any]:
    """This month's spend (and for keys, today's) against each budget that is set, for one
    scope at a time, with what requests in flight have reserved."""
    result = paginate(reports.budgeted(scope), page)
    result["items"] = reports.budget_statuses(scope, result["items"])
    return result
