"""Writes on accounts: issuing, rotating and revoking keys and tokens."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts import keys
from accounts.audit import (
    audit_created,
    audit_record,
    audit_snapshot,
    audited_create,
    audited_delete,
    audited_update,
)
from accounts.models import CostCenter, ManagementToken, TokenScope, User, VirtualKey


@dataclass(frozen=True, repr=False)
class IssuedVirtualKey:
    virtual_key: VirtualKey
    secret: str

    def __repr__(self) -> str:
        return f"IssuedVirtualKey({self.virtual_key.public_id})"


@dataclass(frozen=True, repr=False)
class IssuedManagementToken:
    token: ManagementToken
    secret: str

    def __repr__(self) -> str:
        return f"IssuedManagementToken({self.token.public_id})"


@transaction.atomic
def virtual_key_issue(
    *,
    owner: User,
    name: str = "",
    cost_center: CostCenter | None = None,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_concurrent: int | None = None,
    monthly_budget_usd: Decimal | None = None,
    daily_budget_usd: Decimal | None = None,
    tags: list[str] | None = None,
) -> IssuedVirtualKey:
    issued = keys.generate_secret(keys.VIRTUAL_KEY_PREFIX)
    virtual_key = VirtualKey.objects.create(
        public_id=keys.generate_public_id("vk"),
        name=name or f"{owner.username}'s key",
        owner=owner,
        cost_center=cost_center,
        prefix=issued.prefix,
        secret_hash=issued.secret_hash,
        expires_at=expires_at,
        allowed_models=list(allowed_models or []),
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        max_concurrent=max_concurrent,
        monthly_budget_usd=monthly_budget_usd,
        daily_budget_usd=daily_budget_usd,
        tags=list(tags or []),
    )
    return IssuedVirtualKey(virtual_key=virtual_key, secret=issued.secret)


@transaction.atomic
def virtual_key_revoke(*, virtual_key: VirtualKey) -> VirtualKey:
    if virtual_key.revoked_at is None:
        virtual_key.revoked_at = timezone.now()
        virtual_key.save(update_fields=["revoked_at"])
    return virtual_key


@transaction.atomic
def virtual_key_rotate(
    *, virtual_key: VirtualKey, grace: timedelta = timedelta(hours=24)
) -> IssuedVirtualKey:
    """Give the key a new secret; the old one keeps working for `grace`."""
    issued = keys.generate_secret(keys.VIRTUAL_KEY_PREFIX)
    virtual_key.previous_secret_hash = virtual_key.secret_hash
    virtual_key.previous_prefix = virtual_key.prefix
    virtual_key.previous_secret_valid_until = timezone.now() + grace
    virtual_key.secret_hash = issued.secret_hash
    virtual_key.prefix = issued.prefix
    virtual_key.save(
        update_fields=[
            "previous_secret_hash",
            "previous_prefix",
            "previous_secret_valid_until",
            "secret_hash",
            "prefix",
        ]
    )
    return IssuedVirtualKey(virtual_key=virtual_key, secret=issued.secret)


@transaction.atomic
def management_token_issue(
    *, owner: User, scope: str = TokenScope.READ, name: str = "", expires_at: datetime | None = None
) -> IssuedManagementToken:
    if scope not in TokenScope.values:
        raise ValueError(
            f"Unknown scope {scope!r}; expected one of {', '.join(TokenScope.values)}."
        )
    issued = keys.generate_secret(keys.MANAGEMENT_TOKEN_PREFIX)
    token = ManagementToken.objects.create(
        public_id=keys.generate_public_id("mt"),
        name=name,
        owner=owner,
        scope=scope,
        prefix=issued.prefix,
        secret_hash=issued.secret_hash,
        expires_at=expires_at,
    )
    return IssuedManagementToken(token=token, secret=issued.secret)


@transaction.atomic
def management_token_revoke(*, token: ManagementToken) -> ManagementToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


# --- Writes with an audit trail, for the management API and the admin. Each records one
# AuditEvent (`via` says where the change came from) in the same transaction.

COST_CENTER_FIELDS = (
    "code",
    "name",
    "external_billing_code",
    "contact_email",
    "monthly_budget_usd",
    "is_active",
    "cache_policy",
    "cache_ttl",
    "log_bodies",
    "body_redact_patterns",
)
USER_FIELDS = (
    "username",
    "email",
    "first_name",
    "last_name",
    "default_cost_center",
    "monthly_budget_usd",
    "max_active_keys",
    "is_active",
)
VIRTUAL_KEY_FIELDS = (
    "name",
    "owner",
    "cost_center",
    "expires_at",
    "allowed_models",
    "rpm_limit",
    "tpm_limit",
    "max_concurrent",
    "monthly_budget_usd",
    "daily_budget_usd",
    "tags",
    "cache_policy",
    "cache_ttl",
)
VIRTUAL_KEY_UPDATABLE_FIELDS = tuple(name for name in VIRTUAL_KEY_FIELDS if name != "owner")
_GENERATED_KEY_FIELDS = ["public_id", "prefix", "secret_hash"]


@transaction.atomic
def cost_center_create(
    *,
    actor: User | None,
    via: str,
    code: str,
    name: str,
    external_billing_code: str = "",
    contact_email: str = "",
    monthly_budget_usd: Decimal | None = None,
    is_active: bool = True,
    cache_policy: str = "",
    cache_ttl: str = "",
    log_bodies: bool = False,
    body_redact_patterns: str = "",
) -> CostCenter:
    cost_center = CostCenter(
        code=code,
        name=name,
        external_billing_code=external_billing_code,
        contact_email=contact_email,
        monthly_budget_usd=monthly_budget_usd,
        is_active=is_active,
        cache_policy=cache_policy,
        cache_ttl=cache_ttl,
        log_bodies=log_bodies,
        body_redact_patterns=body_redact_patterns,
    )
    return audited_create(obj=cost_center, actor=actor, via=via, fields=COST_CENTER_FIELDS)


@transaction.atomic
def cost_center_update(
    *, cost_center: CostCenter, actor: User | None, via: str, data: Mapping[str, Any]
) -> CostCenter:
    return audited_update(
        obj=cost_center, actor=actor, via=via, data=data, fields=COST_CENTER_FIELDS
    )


@transaction.atomic
def cost_center_delete(*, cost_center: CostCenter, actor: User | None, via: str) -> None:
    """Delete a cost center nothing refers to; otherwise ProtectedError names the blockers
    (deactivate it instead)."""
    audited_delete(obj=cost_center, actor=actor, via=via)


@transaction.atomic
def user_create(
    *,
    actor: User | None,
    via: str,
    username: str,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    default_cost_center: CostCenter | None = None,
    monthly_budget_usd: Decimal | None = None,
    max_active_keys: int = 5,
    is_active: bool = True,
) -> User:
    """A user without a password: they sign in however the site lets them set one."""
    user = User(
        username=username,
        email=User.objects.normalize_email(email),
        first_name=first_name,
        last_name=last_name,
        default_cost_center=default_cost_center,
        monthly_budget_usd=monthly_budget_usd,
        max_active_keys=max_active_keys,
        is_active=is_active,
    )
    user.set_unusable_password()
    return audited_create(obj=user, actor=actor, via=via, fields=USER_FIELDS)


@transaction.atomic
def user_update(*, user: User, actor: User | None, via: str, data: Mapping[str, Any]) -> User:
    return audited_update(obj=user, actor=actor, via=via, data=data, fields=USER_FIELDS)


@transaction.atomic
def user_deactivate(*, user: User, actor: User | None, via: str) -> User:
    """The user's keys stop authenticating at once; their history stays."""
    return audited_update(
        obj=user,
        actor=actor,
        via=via,
        data={"is_active": False},
        fields=USER_FIELDS,
        action="deactivate",
    )


@transaction.atomic
def virtual_key_issue_audited(
    *,
    actor: User | None,
    via: str,
    owner: User,
    name: str = "",
    cost_center: CostCenter | None = None,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_concurrent: int | None = None,
    monthly_budget_usd: Decimal | None = None,
    daily_budget_usd: Decimal | None = None,
    tags: list[str] | None = None,
    cache_policy: str = "",
    cache_ttl: str = "",
) -> IssuedVirtualKey:
    """`virtual_key_issue`, validated first and recorded in the audit trail."""
    options: dict[str, Any] = {
        "cost_center": cost_center,
        "expires_at": expires_at,
        "allowed_models": list(allowed_models or []),
        "rpm_limit": rpm_limit,
        "tpm_limit": tpm_limit,
        "max_concurrent": max_concurrent,
        "monthly_budget_usd": monthly_budget_usd,
        "daily_budget_usd": daily_budget_usd,
        "tags": list(tags or []),
    }
    VirtualKey(
        owner=owner,
        name=name or f"{owner.username}'s key",
        cache_policy=cache_policy,
        cache_ttl=cache_ttl,
        **options,
    ).full_clean(exclude=_GENERATED_KEY_FIELDS, validate_unique=False)
    issued = virtual_key_issue(owner=owner, name=name, **options)
    virtual_key = issued.virtual_key
    if cache_policy or cache_ttl:
        virtual_key.cache_policy = cache_policy
        virtual_key.cache_ttl = cache_ttl
        virtual_key.save(update_fields=["cache_policy", "cache_ttl"])
    audit_record(
        actor=actor,
        via=via,
        action="issue",
        obj=virtual_key,
        changes=audit_created(audit_snapshot(virtual_key, VIRTUAL_KEY_FIELDS)),
    )
    return issued


@transaction.atomic
def virtual_key_update(
    *, virtual_key: VirtualKey, actor: User | None, via: str, data: Mapping[str, Any]
) -> VirtualKey:
    """Change a key's name, cost center, limits or budgets; never its owner or secret."""
    return audited_update(
        obj=virtual_key, actor=actor, via=via, data=data, fields=VIRTUAL_KEY_UPDATABLE_FIELDS
    )


@transaction.atomic
def virtual_key_revoke_audited(
    *, virtual_key: VirtualKey, actor: User | None, via: str
) -> VirtualKey:
    """`virtual_key_revoke`, recorded once: revoking a revoked key changes nothing."""
    if virtual_key.revoked_at is not None:
        return virtual_key
    virtual_key = virtual_key_revoke(virtual_key=virtual_key)
    audit_record(
        actor=actor,
        via=via,
        action="revoke",
        obj=virtual_key,
        changes={"revoked_at": [None, virtual_key.revoked_at]},
    )
    return virtual_key


@transaction.atomic
def virtual_key_rotate_audited(
    *, virtual_key: VirtualKey, actor: User | None, via: str, grace: timedelta
) -> IssuedVirtualKey:
    """`virtual_key_rotate` for a key that is still usable, recorded in the audit trail."""
    if virtual_key.revoked_at is not None:
        raise ValidationError(
            {"id": ValidationError("A revoked key cannot be rotated.", code="conflict")}
        )
    old_prefix = virtual_key.prefix
    issued = virtual_key_rotate(virtual_key=virtual_key, grace=grace)
    audit_record(
        actor=actor,
        via=via,
        action="rotate",
        obj=issued.virtual_key,
        changes={
            "prefix": [old_prefix, issued.virtual_key.prefix],
            "previous_secret_valid_until": [
                None,
                issued.virtual_key.previous_secret_valid_until,
            ],
        },
    )
    return issued
