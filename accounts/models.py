"""Who: users, cost centers, virtual keys and management tokens."""

from __future__ import annotations

from typing import Any

import regex
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone


def money_field(**options: Any) -> models.DecimalField:
    return models.DecimalField(
        max_digits=14, decimal_places=2, validators=[MinValueValidator(0)], **options
    )


class CachePolicyOverride(models.TextChoices):
    """Blank means: inherit (key → cost center → route)."""

    INHERIT = "", "Inherit"
    OFF = "off", "Off"
    SYSTEM = "system", "Tools and system prompt"
    AUTO = "auto", "Tools, system and rolling conversation"


class CacheTTLOverride(models.TextChoices):
    INHERIT = "", "Inherit"
    FIVE_MINUTES = "5m", "5 minutes"
    ONE_HOUR = "1h", "1 hour"


def redact_pattern_lines(text: str) -> tuple[str, ...]:
    """The regular expressions of a one-per-line field; blank lines and outer spaces ignored."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def validate_redact_patterns(text: str) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        pattern = line.strip()
        if not pattern:
            continue
        try:
            compiled = regex.compile(pattern)  # the engine gateway.body_log redacts with
        except regex.error as error:
            raise ValidationError(
                f"Line {number} is not a valid regular expression: {error}.", code="invalid"
            ) from None
        if compiled.match(""):
            raise ValidationError(
                f"Line {number} matches the empty string; a pattern must match some text.",
                code="invalid",
            )


class CostCenter(models.Model):
    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    external_billing_code = models.CharField(
        max_length=100,
        blank=True,
        help_text="The code finance uses for this cost center (ERP, GL).",
    )
    contact_email = models.EmailField(blank=True, help_text="Receives budget alerts.")
    monthly_budget_usd = money_field(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    cache_policy = models.CharField(
        max_length=8,
        choices=CachePolicyOverride.choices,
        default=CachePolicyOverride.INHERIT,
        blank=True,
    )
    cache_ttl = models.CharField(
        max_length=4, choices=CacheTTLOverride.choices, default=CacheTTLOverride.INHERIT, blank=True
    )
    log_bodies = models.BooleanField(
        default=False,
        verbose_name="log prompt and response bodies",
        help_text="Keep each request's prompt and response, redacted, for the retention period.",
    )
    body_redact_patterns = models.TextField(
        blank=True,
        validators=[validate_redact_patterns],
        help_text="Regular expressions, one per line, replaced by [REDACTED] in logged bodies "
        "(credentials always are).",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"

    @property
    def body_redact_pattern_list(self) -> tuple[str, ...]:
        return redact_pattern_lines(self.body_redact_patterns)


class User(AbstractUser):
    default_cost_center = models.ForeignKey(
        CostCenter, null=True, blank=True, on_delete=models.PROTECT, related_name="members"
    )
    monthly_budget_usd = money_field(null=True, blank=True)
    max_active_keys = models.PositiveIntegerField(
        default=5, help_text="How many active keys this user may issue for themselves."
    )

    def __str__(self) -> str:
        return self.username


class KeyState(models.TextChoices):
    ACTIVE = "active", "Active"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"


class VirtualKey(models.Model):
    """A developer's personal credential for the proxy. Only the hash of the secret is kept."""

    public_id = models.CharField(max_length=32, unique=True, editable=False)
    name = models.CharField(max_length=200)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="virtual_keys"
    )
    cost_center = models.ForeignKey(
        CostCenter,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="virtual_keys",
        help_text="Overrides the owner's default cost center.",
    )
    prefix = models.CharField(max_length=32, db_index=True, editable=False)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    previous_secret_hash = models.CharField(
        max_length=64, blank=True, db_index=True, editable=False
    )
    previous_secret_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    previous_prefix = models.CharField(max_length=32, blank=True, db_index=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        help_text='Glob patterns, e.g. ["claude-sonnet-*"]. Empty: all models.',
    )
    rpm_limit = models.PositiveIntegerField(
        null=True, blank=True, verbose_name="requests per minute"
    )
    tpm_limit = models.PositiveIntegerField(null=True, blank=True, verbose_name="tokens per minute")
    max_concurrent = models.PositiveIntegerField(null=True, blank=True)
    monthly_budget_usd = money_field(null=True, blank=True)
    daily_budget_usd = money_field(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    cache_policy = models.CharField(
        max_length=8,
        choices=CachePolicyOverride.choices,
        default=CachePolicyOverride.INHERIT,
        blank=True,
    )
    cache_ttl = models.CharField(
        max_length=4, choices=CacheTTLOverride.choices, default=CacheTTLOverride.INHERIT, blank=True
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "virtual key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def state(self) -> KeyState:
        if self.revoked_at is not None:
            return KeyState.REVOKED
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return KeyState.EXPIRED
        return KeyState.ACTIVE

    @property
    def effective_cost_center(self) -> CostCenter | None:
        return self.cost_center or self.owner.default_cost_center


class TokenScope(models.TextChoices):
    READ = "read", "Read"
    ADMIN = "admin", "Admin"


class ManagementToken(models.Model):
    """A bearer token for the REST management API."""

    public_id = models.CharField(max_length=32, unique=True, editable=False)
    name = models.CharField(max_length=200, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="management_tokens"
    )
    scope = models.CharField(max_length=8, choices=TokenScope.choices, default=TokenScope.READ)
    prefix = models.CharField(max_length=32, db_index=True, editable=False)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name or self.public_id} ({self.scope})"

    @property
    def is_usable(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class AuditEvent(models.Model):
    """Who created, changed, revoked or rotated what, and when — through the admin or the API."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
    )
    via = models.CharField(max_length=16, help_text="admin, api, command or config")
    action = models.CharField(
        max_length=32, help_text="create, update, delete, revoke, rotate, finalize …"
    )
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(
        default=dict, blank=True, help_text="Field → [old, new]; secrets never."
    )

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return (
            f"{self.at:%Y-%m-%d %H:%M} {self.via} {self.action} {self.object_type}:{self.object_id}"
        )
