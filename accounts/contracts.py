"""Frozen values that cross from accounts into the async proxy. No model instances."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class KeyContext:
    """Everything the proxy needs to know about an authenticated virtual key."""

    key_id: int
    key_public_id: str
    key_name: str
    user_id: int
    username: str
    cost_center_id: int | None
    cost_center_code: str | None
    allowed_models: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_concurrent: int | None = None
    key_monthly_budget_usd: Decimal | None = None
    key_daily_budget_usd: Decimal | None = None
    user_monthly_budget_usd: Decimal | None = None
    cost_center_monthly_budget_usd: Decimal | None = None
    expires_at: datetime | None = None
    secret_valid_until: datetime | None = field(default=None)
    # Cache policy overrides, '' = inherit (key → cost center → route).
    key_cache_policy: str = ""
    key_cache_ttl: str = ""
    cost_center_cache_policy: str = ""
    cost_center_cache_ttl: str = ""
    # Body logging is the cost center's opt-in; its patterns are redacted on top of credentials.
    log_bodies: bool = False
    body_redact_patterns: tuple[str, ...] = ()
