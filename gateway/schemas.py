"""Shapes of the management API for traffic: providers, upstream keys, routes, prices, the
request log, usage and budgets, and a developer's own overview (`/me`).

An upstream key's secret is write-only: `UpstreamKeyIn`/`Patch` accept it, no `…Out` has it
(`has_secret` says whether one is stored).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.db.models import Q
from ninja import Field, FilterLookup, Schema
from pydantic import AfterValidator, SecretStr, Strict

from accounts.schemas import VirtualKeyOut
from config.api_support import (
    MAX_POSITIVE_INT,
    FilterInput,
    Flag,
    Input,
    ObjectId,
    PerMillionTokens,
    Reference,
    Slug,
    Timestamp,
    omitted,
)
from gateway.config_as_code.schema import HttpUrl, Tag
from gateway.models import RequestLog, RouteTarget, UpstreamKey

ProviderKindName = Literal["anthropic", "bedrock", "vertex", "openai"]
CachePolicyName = Literal["off", "system", "auto"]
CacheTTLName = Literal["5m", "1h"]
ModelId = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")
]
ModelPattern = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9*?\[\]][A-Za-z0-9._:@/*?\[\]-]*$"),
]
Timeout = Annotated[float, Strict(), Field(ge=0.1, le=86400, allow_inf_nan=False)]
Weight = Annotated[int, Strict(), Field(ge=1, le=MAX_POSITIVE_INT)]
Priority = Annotated[int, Strict(), Field(ge=-(2**31), le=2**31 - 1)]
Label = Annotated[str, Field(min_length=1, max_length=100)]
UpstreamSecret = Annotated[SecretStr, Field(min_length=1, max_length=4000)]


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    if len(str(value)) > 10_000:
        raise ValueError("Options are limited to 10,000 characters.")
    return value


Options = Annotated[dict[str, Any], AfterValidator(_json_object)]


# --- Providers


class ProviderOut(Schema):
    id: int
    name: str
    kind: str
    base_url: str
    options: dict[str, Any]
    connect_timeout_s: float
    read_timeout_s: float
    is_enabled: bool
    created_at: datetime
    updated_at: datetime


class ProviderIn(Input):
    name: Slug
    kind: ProviderKindName
    base_url: HttpUrl
    options: Options = Field(default_factory=dict)
    connect_timeout_s: Timeout = 10.0
    read_timeout_s: Timeout = 600.0
    is_enabled: Flag = True


class ProviderPatch(Input):
    name: Slug = omitted()
    kind: ProviderKindName = omitted()
    base_url: HttpUrl = omitted()
    options: Options = omitted()
    connect_timeout_s: Timeout = omitted()
    read_timeout_s: Timeout = omitted()
    is_enabled: Flag = omitted()


class ProviderFilters(FilterInput):
    kind: ProviderKindName | None = None
    is_enabled: bool | None = None
    q: Annotated[
        str | None, FilterLookup(["name__icontains", "base_url__icontains"]), Field(max_length=200)
    ] = None


# --- Upstream keys


class UpstreamKeyOut(Schema):
    id: int
    provider_id: int
    label: str
    has_secret: bool = Field(description="A secret is stored; it is never returned.")
    weight: int
    is_enabled: bool
    health: str
    health_reason: str
    health_changed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_has_secret(upstream_key: UpstreamKey) -> bool:
        return bool(upstream_key.secret)


class UpstreamKeyIn(Input):
    provider_id: Reference
    label: Label
    secret: UpstreamSecret = Field(description="Write-only: stored encrypted, never returned.")
    weight: Weight = 1
    is_enabled: Flag = True


class UpstreamKeyPatch(Input):
    label: Label = omitted()
    secret: UpstreamSecret = omitted(
        description="Write-only: replaces the stored secret and puts the key back in the pool.",
    )
    weight: Weight = omitted()
    is_enabled: Flag = omitted()


class UpstreamKeyFilters(FilterInput):
    provider: Annotated[ObjectId | None, FilterLookup("provider_id")] = None
    is_enabled: bool | None = None
    health: Literal["healthy", "unhealthy"] | None = None


# --- Routes


class RouteTargetOut(Schema):
    position: int
    provider_id: int
    provider_name: str
    upstream_model: str

    @staticmethod
    def resolve_provider_name(target: RouteTarget) -> str:
        return target.provider.name


class RouteTargetIn(Input):
    provider_id: Reference
    upstream_model: Annotated[str, Field(max_length=200)] = Field(
        "", description="The provider's model id; empty: the model the client asked for."
    )


class RouteOut(Schema):
    id: int
    name: str
    priority: int
    model_pattern: str
    cost_center_ids: list[int]
    key_tags: list[str]
    cache_policy: str
    cache_ttl: str
    is_enabled: bool
    targets: list[RouteTargetOut] = Field(description="In order: the primary, then fallbacks.")
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_cost_center_ids(route: Any) -> list[int]:
        return sorted(cost_center.pk for cost_center in route.cost_centers.all())

    @staticmethod
    def resolve_targets(route: Any) -> list[RouteTarget]:
        return sorted(route.targets.all(), key=lambda target: target.position)


class RouteIn(Input):
    name: Slug
    model_pattern: ModelPattern
    targets: list[RouteTargetIn] = Field(min_length=1, max_length=20)
    priority: Priority = 100
    cost_center_ids: list[Reference] = Field(default_factory=list, max_length=200)
    key_tags: list[Tag] = Field(default_factory=list, max_length=50)
    cache_policy: CachePolicyName = "off"
    cache_ttl: CacheTTLName = "5m"
    is_enabled: Flag = True


class RoutePatch(Input):
    name: Slug = omitted()
    model_pattern: ModelPattern = omitted()
    targets: list[RouteTargetIn] = omitted(
        min_length=1, max_length=20, description="Replaces the whole list."
    )
    priority: Priority = omitted()
    cost_center_ids: list[Reference] = omitted(max_length=200)
    key_tags: list[Tag] = omitted(max_length=50)
    cache_policy: CachePolicyName = omitted()
    cache_ttl: CacheTTLName = omitted()
    is_enabled: Flag = omitted()


class RouteFilters(FilterInput):
    is_enabled: bool | None = None
    provider: Annotated[ObjectId | None, FilterLookup("targets__provider_id")] = None
    q: Annotated[
        str | None,
        FilterLookup(["name__icontains", "model_pattern__icontains"]),
        Field(max_length=200),
    ] = None


# --- Prices


class PriceOut(Schema):
    id: int
    provider_id: int | None = Field(description="Null: any provider without a price of its own.")
    model: str
    effective_from: datetime
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_write_5m_per_mtok: Decimal
    cache_write_1h_per_mtok: Decimal
    cache_read_per_mtok: Decimal
    currency: str
    created_at: datetime


class PriceIn(Input):
    provider_id: Reference | None = None
    model: ModelId
    effective_from: Timestamp
    input_per_mtok: PerMillionTokens
    output_per_mtok: PerMillionTokens
    cache_write_5m_per_mtok: PerMillionTokens | None = Field(
        None, description="Default: 1.25 × input."
    )
    cache_write_1h_per_mtok: PerMillionTokens | None = Field(
        None, description="Default: 2 × input."
    )
    cache_read_per_mtok: PerMillionTokens | None = Field(None, description="Default: 0.1 × input.")
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"


class PricePatch(Input):
    """Only for a price not yet in force."""

    provider_id: Reference | None = omitted()
    model: ModelId = omitted()
    effective_from: Timestamp = omitted()
    input_per_mtok: PerMillionTokens = omitted()
    output_per_mtok: PerMillionTokens = omitted()
    cache_write_5m_per_mtok: PerMillionTokens = omitted()
    cache_write_1h_per_mtok: PerMillionTokens = omitted()
    cache_read_per_mtok: PerMillionTokens = omitted()
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = omitted()


class PriceFilters(FilterInput):
    provider: Annotated[ObjectId | None, FilterLookup("provider_id")] = None
    any_provider: bool | None = Field(
        None, description="true: only prices for any provider; false: only provider-specific."
    )
    model: Annotated[str | None, FilterLookup("model__icontains"), Field(max_length=200)] = None
    in_force_at: Timestamp | None = Field(None, description="Rows started by this time.")

    def filter_any_provider(self, any_provider: bool | None) -> Q:
        return Q() if any_provider is None else Q(provider__isnull=any_provider)

    def filter_in_force_at(self, at: datetime | None) -> Q:
        return Q() if at is None else Q(effective_from__lte=at)


# --- The request log


class RequestOut(Schema):
    id: int
    request_id: str
    started_at: datetime
    finished_at: datetime | None
    key_id: str | None = Field(description="The virtual key's public id.")
    user_id: int | None
    cost_center_id: int | None
    session_id: str
    agent_id: str
    user_agent: str
    client_ip: str | None
    endpoint: str
    method: str
    model_requested: str
    model_served: str
    provider_id: int | None
    upstream_key_id: int | None
    route_id: int | None
    is_stream: bool
    status_code: int | None
    outcome: str
    error_type: str
    error_message: str
    stop_reason: str
    attempts: int
    input_tokens: int
    output_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_tokens: int
    cost_usd: Decimal | None
    is_priced: bool
    cache_markers_injected: int
    cache_savings_usd: Decimal | None
    latency_ms: int | None
    ttfb_ms: int | None
    upstream_request_id: str

    @staticmethod
    def resolve_key_id(request_log: RequestLog) -> str | None:
        return request_log.virtual_key.public_id if request_log.virtual_key else None


class RequestFilters(FilterInput):
    since: Annotated[Timestamp | None, FilterLookup("started_at__gte")] = None
    until: Annotated[Timestamp | None, FilterLookup("started_at__lt")] = None
    user: Annotated[ObjectId | None, FilterLookup("user_id")] = None
    key: Annotated[str | None, FilterLookup("virtual_key__public_id"), Field(max_length=32)] = None
    cost_center: Annotated[ObjectId | None, FilterLookup("cost_center_id")] = None
    session: Annotated[str | None, FilterLookup("session_id"), Field(max_length=100)] = None
    model: Annotated[
        str | None, FilterLookup(["model_requested", "model_served"]), Field(max_length=200)
    ] = None
    provider: Annotated[ObjectId | None, FilterLookup("provider_id")] = None
    status: Annotated[int | None, FilterLookup("status_code"), Field(ge=100, le=599)] = None
    outcome: (
        Literal["ok", "upstream_error", "gateway_error", "client_closed", "stream_error"] | None
    ) = None


# --- Usage and budgets


class UsageQuery(FilterInput):
    """Which requests to count; the grouping and date range are separate parameters."""

    user: Annotated[ObjectId | None, FilterLookup("user_id")] = None
    key: Annotated[str | None, FilterLookup("virtual_key__public_id"), Field(max_length=32)] = None
    cost_center: Annotated[ObjectId | None, FilterLookup("cost_center_id")] = None
    provider: Annotated[ObjectId | None, FilterLookup("provider_id")] = None
    model: Annotated[
        str | None, FilterLookup(["model_requested", "model_served"]), Field(max_length=200)
    ] = None


class UsageTotals(Schema):
    requests: int
    error_requests: int
    unpriced_requests: int = Field(description="Without a price in force: not in cost_usd.")
    input_tokens: int
    output_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_tokens: int
    cost_usd: Decimal
    cache_savings_usd: Decimal = Field(description="What prompt caching saved, at list price.")


class UsageRow(UsageTotals):
    group: str | None = Field(
        description="The day (YYYY-MM-DD), the id (key: public id), or the model name; "
        "null for requests without one."
    )
    label: str | None = Field(description="Username, key name, cost center code, provider name.")


class UsageOut(Schema):
    group_by: str
    since: date
    until: date
    rows: list[UsageRow]
    totals: UsageTotals


class BudgetPeriodOut(Schema):
    period: Literal["month", "day"]
    start: datetime
    end: datetime
    budget_usd: Decimal | None = Field(description="Null: no limit.")
    spent_usd: Decimal = Field(description="Recorded spend of requests started this period.")
    reserved_usd: Decimal = Field(description="Held by requests still in flight.")
    remaining_usd: Decimal | None = Field(description="budget − spent − reserved; null: no limit.")


class BudgetOut(Schema):
    scope: Literal["key", "user", "cost_center"]
    id: str = Field(description="The cost center or user id, or the key's public id.")
    name: str
    month: BudgetPeriodOut
    day: BudgetPeriodOut | None = Field(description="Keys only: today's spend and daily budget.")


class MeUserOut(Schema):
    id: int
    username: str
    email: str
    default_cost_center_id: int | None


class MeOut(Schema):
    user: MeUserOut
    keys: list[VirtualKeyOut]
    month_start: datetime
    usage_this_month: UsageTotals
    budgets: list[BudgetOut]
