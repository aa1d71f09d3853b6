"""Reads on accounts: resolving a presented secret into a KeyContext."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts import keys
from accounts.contracts import KeyContext
from accounts.models import ManagementToken, VirtualKey


def virtual_key_resolve(secret: str) -> KeyContext | None:
    """The key a secret belongs to, if it is active; None for unknown, revoked or expired.

    The row is found by its visible prefix and the hash compared in constant time, so the
    lookup does not reveal through timing how much of a guessed secret was right.
    """
    if not secret.startswith(keys.VIRTUAL_KEY_PREFIX):
        return None
    prefix = keys.visible_prefix(secret)
    now = timezone.now()
    candidates = (
        VirtualKey.objects.select_related("owner", "cost_center", "owner__default_cost_center")
        .filter(Q(prefix=prefix) | Q(previous_prefix=prefix, previous_secret_valid_until__gt=now))
        .filter(revoked_at__isnull=True, owner__is_active=True)
    )
    for virtual_key in candidates:
        valid_until = None
        if not keys.secret_matches(secret, virtual_key.secret_hash):
            valid_until = virtual_key.previous_secret_valid_until
            in_grace = valid_until is not None and valid_until > now
            if not (in_grace and keys.secret_matches(secret, virtual_key.previous_secret_hash)):
                continue
        if virtual_key.expires_at is not None and virtual_key.expires_at <= now:
            return None
        cost_center = virtual_key.effective_cost_center
        return KeyContext(
            key_id=virtual_key.pk,
            key_public_id=virtual_key.public_id,
            key_name=virtual_key.name,
            user_id=virtual_key.owner_id,
            username=virtual_key.owner.username,
            cost_center_id=cost_center.pk if cost_center else None,
            cost_center_code=cost_center.code if cost_center else None,
            allowed_models=tuple(virtual_key.allowed_models or ()),
            tags=tuple(virtual_key.tags or ()),
            rpm_limit=virtual_key.rpm_limit,
            tpm_limit=virtual_key.tpm_limit,
            max_concurrent=virtual_key.max_concurrent,
            key_monthly_budget_usd=virtual_key.monthly_budget_usd,
            key_daily_budget_usd=virtual_key.daily_budget_usd,
            user_monthly_budget_usd=virtual_key.owner.monthly_budget_usd,
            cost_center_monthly_budget_usd=cost_center.monthly_budget_usd if cost_center else None,
            expires_at=virtual_key.expires_at,
            secret_valid_until=valid_until,
            key_cache_policy=virtual_key.cache_policy,
            key_cache_ttl=virtual_key.cache_ttl,
            cost_center_cache_policy=cost_center.cache_policy if cost_center else "",
            cost_center_cache_ttl=cost_center.cache_ttl if cost_center else "",
            log_bodies=cost_center.log_bodies if cost_center else False,
            body_redact_patterns=cost_center.body_redact_pattern_list if cost_center else (),
        )
    return None


def management_token_resolve(secret: str) -> ManagementToken | None:
    if not secret.startswith(keys.MANAGEMENT_TOKEN_PREFIX):
        return None
    for token in ManagementToken.objects.select_related("owner").filter(
        prefix=keys.visible_prefix(secret)
    ):
        if (
            keys.secret_matches(secret, token.secret_hash)
            and token.is_usable
            and token.owner.is_active
        ):
            return token
    return None


# --- Developer self-service: a person's own keys


def active_virtual_keys_q(prefix: str = "") -> Q:
    """Keys (or, with a relation prefix, related keys) neither revoked nor expired now."""
    now = timezone.now()
    return Q(**{f"{prefix}revoked_at__isnull": True}) & (
        Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})
    )


def virtual_keys_owned_by(owner_id: int) -> QuerySet[VirtualKey]:
    """Every key of one person, newest first; revoked and expired ones included."""
    return VirtualKey.objects.filter(owner_id=owner_id).order_by("-created_at", "-pk")


def active_virtual_key_count(owner_id: int) -> int:
    return virtual_keys_owned_by(owner_id).filter(active_virtual_keys_q()).count()
