"""Writes on accounts: issuing, rotating and revoking keys and tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts import keys
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
