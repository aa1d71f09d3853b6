"""Shapes of the management API for accounts: cost centers, users, virtual keys, the audit log.

`…In` bodies create, `…Patch` bodies change only the fields they carry, `…Out` is what comes
back. No schema here has a field for a secret's hash; only `VirtualKeyIssuedOut` carries a
secret, in the one response that creates or rotates it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.db.models import Q
from django.utils import timezone
from ninja import Field, FilterLookup, Schema
from pydantic import Strict

from accounts.models import AuditEvent, VirtualKey
from config.api_support import (
    Count,
    FilterInput,
    Flag,
    Input,
    Money,
    ObjectId,
    Reference,
    Slug,
    Timestamp,
    omitted,
)

CacheOverride = Literal["", "off", "system", "auto"]
CacheTTLOverride = Literal["", "5m", "1h"]
Username = Annotated[str, Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9_.@+-]+$")]
Email = Annotated[str, Field(max_length=254)]
PersonName = Annotated[str, Field(max_length=150)]
ModelGlob = Annotated[str, Field(min_length=1, max_length=200)]
Tag = Annotated[str, Field(min_length=1, max_length=100)]
RedactPatterns = Annotated[
    str,
    Field(
        max_length=10_000,
        description="Regular expressions, one per line, redacted from logged bodies.",
    ),
]


# --- Cost centers


class CostCenterOut(Schema):
    id: int
    code: str
    name: str
    external_billing_code: str
    contact_email: str
    monthly_budget_usd: Decimal | None
    is_active: bool
    cache_policy: str
    cache_ttl: str
    log_bodies: bool
    body_redact_patterns: str
    created_at: datetime


class CostCenterIn(Input):
    code: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)]
    external_billing_code: Annotated[str, Field(max_length=100)] = ""
    contact_email: Email = ""
    monthly_budget_usd: Money | None = None
    is_active: Flag = True
    cache_policy: CacheOverride = ""
    cache_ttl: CacheTTLOverride = ""
    log_bodies: Flag = False
    body_redact_patterns: RedactPatterns = ""


class CostCenterPatch(Input):
    code: Slug = omitted()
    name: Annotated[str, Field(min_length=1, max_length=200)] = omitted()
    external_billing_code: Annotated[str, Field(max_length=100)] = omitted()
    contact_email: Email = omitted()
    monthly_budget_usd: Money | None = omitted()
    is_active: Flag = omitted()
    cache_policy: CacheOverride = omitted()
    cache_ttl: CacheTTLOverride = omitted()
    log_bodies: Flag = omitted()
    body_redact_patterns: RedactPatterns = omitted()


class CostCenterFilters(FilterInput):
    is_active: bool | None = None
    q: Annotated[
        str | None, FilterLookup(["code__icontains", "name__icontains"]), Field(max_length=200)
    ] = None


# --- Users


class UserOut(Schema):
    id: int
    username: str
    email: str
    first_name: str
    last_name: str
    default_cost_center_id: int | None
    monthly_budget_usd: Decimal | None
    max_active_keys: int
    is_active: bool
    is_staff: bool
    date_joined: datetime
    last_login: datetime | None


class UserIn(Input):
    username: Username
    email: Email = ""
    first_name: PersonName = ""
    last_name: PersonName = ""
    default_cost_center_id: Reference | None = None
    monthly_budget_usd: Money | None = None
    max_active_keys: Count = 5
    is_active: Flag = True


class UserPatch(Input):
    username: Username = omitted()
    email: Email = omitted()
    first_name: PersonName = omitted()
    last_name: PersonName = omitted()
    default_cost_center_id: Reference | None = omitted()
    monthly_budget_usd: Money | None = omitted()
    max_active_keys: Count = omitted()
    is_active: Flag = omitted()


class UserFilters(FilterInput):
    is_active: bool | None = None
    is_staff: bool | None = None
    cost_center: Annotated[ObjectId | None, FilterLookup("default_cost_center_id")] = None
    q: Annotated[
        str | None,
        FilterLookup(["username__icontains", "email__icontains"]),
        Field(max_length=200),
    ] = None


# --- Virtual keys


class VirtualKeyOut(Schema):
    id: str = Field(description="The key's stable public id (vk_…); never the secret.")
    name: str
    owner_id: int
    cost_center_id: int | None
    prefix: str = Field(description="The first characters of the secret, to recognise it by.")
    state: Literal["active", "revoked", "expired"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    previous_secret_valid_until: datetime | None
    allowed_models: list[str]
    tags: list[str]
    rpm_limit: int | None
    tpm_limit: int | None
    max_concurrent: int | None
    monthly_budget_usd: Decimal | None
    daily_budget_usd: Decimal | None
    cache_policy: str
    cache_ttl: str

    @staticmethod
    def resolve_id(virtual_key: VirtualKey) -> str:
        return virtual_key.public_id

    @staticmethod
    def resolve_state(virtual_key: VirtualKey) -> str:
        return str(virtual_key.state.value)


class VirtualKeyIssuedOut(VirtualKeyOut):
    secret: str = Field(description="Shown in this response only; store it now.")


class VirtualKeyIn(Input):
    owner_id: Reference
    name: Annotated[str, Field(max_length=200)] = ""
    cost_center_id: Reference | None = Field(
        None, description="Overrides the owner's default cost center."
    )
    expires_at: Timestamp | None = None
    allowed_models: list[ModelGlob] = Field(default_factory=list, max_length=100)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    rpm_limit: Count | None = None
    tpm_limit: Count | None = None
    max_concurrent: Count | None = None
    monthly_budget_usd: Money | None = None
    daily_budget_usd: Money | None = None
    cache_policy: CacheOverride = ""
    cache_ttl: CacheTTLOverride = ""


class VirtualKeyPatch(Input):
    name: Annotated[str, Field(min_length=1, max_length=200)] = omitted()
    cost_center_id: Reference | None = omitted()
    expires_at: Timestamp | None = omitted()
    allowed_models: list[ModelGlob] = omitted(max_length=100)
    tags: list[Tag] = omitted(max_length=50)
    rpm_limit: Count | None = omitted()
    tpm_limit: Count | None = omitted()
    max_concurrent: Count | None = omitted()
    monthly_budget_usd: Money | None = omitted()
    daily_budget_usd: Money | None = omitted()
    cache_policy: CacheOverride = omitted()
    cache_ttl: CacheTTLOverride = omitted()


class VirtualKeyRotateIn(Input):
    grace_hours: Annotated[int, Strict()] = Field(
        24, ge=0, le=24 * 90, description="How long the old secret keeps working."
    )


class VirtualKeyFilters(FilterInput):
    owner: Annotated[ObjectId | None, FilterLookup("owner_id")] = None
    cost_center: Annotated[ObjectId | None, FilterLookup("cost_center_id")] = None
    state: Literal["active", "revoked", "expired"] | None = None
    q: Annotated[
        str | None, FilterLookup(["name__icontains", "prefix__startswith"]), Field(max_length=200)
    ] = None

    def filter_state(self, state: str | None) -> Q:
        now = timezone.now()
        if state == "active":
            return Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        if state == "revoked":
            return Q(revoked_at__isnull=False)
        if state == "expired":
            return Q(revoked_at__isnull=True, expires_at__lte=now)
        return Q()


# --- The audit log


class AuditEventOut(Schema):
    id: int
    at: datetime
    actor_id: int | None
    actor_username: str | None
    via: str
    action: str
    object_type: str
    object_id: str
    object_repr: str
    changes: dict[str, Any]

    @staticmethod
    def resolve_actor_username(event: AuditEvent) -> str | None:
        return event.actor.username if event.actor is not None else None


class AuditEventFilters(FilterInput):
    since: Annotated[Timestamp | None, FilterLookup("at__gte")] = None
    until: Annotated[Timestamp | None, FilterLookup("at__lt")] = None
    actor: Annotated[ObjectId | None, FilterLookup("actor_id")] = None
    via: Annotated[str | None, Field(max_length=16)] = None
    action: Annotated[str | None, Field(max_length=32)] = None
    object_type: Annotated[str | None, Field(max_length=64)] = None
    object_id: Annotated[str | None, Field(max_length=64)] = None
