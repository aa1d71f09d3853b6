"""Traffic: providers, upstream keys, routes, prices and the request log."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import CostCenter, VirtualKey
from gateway.secrets import EncryptedSecretField


def price_field(**options: Any) -> models.DecimalField:
    return models.DecimalField(
        max_digits=12, decimal_places=4, validators=[MinValueValidator(0)], **options
    )


def cost_field(**options: Any) -> models.DecimalField:
    return models.DecimalField(max_digits=20, decimal_places=10, **options)


model_id_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$", "A model id: letters, digits and . _ : @ / - only."
)
model_pattern_validator = RegexValidator(
    r"^[A-Za-z0-9*?\[\]][A-Za-z0-9._:@/*?\[\]-]*$", "A glob on model ids, e.g. claude-haiku-*."
)


class ProviderKind(models.TextChoices):
    ANTHROPIC = "anthropic", "Anthropic (or Anthropic-compatible)"
    BEDROCK = "bedrock", "Amazon Bedrock"
    VERTEX = "vertex", "Google Vertex AI"
    OPENAI = "openai", "OpenAI-compatible"


class Provider(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=ProviderKind.choices)
    base_url = models.URLField(max_length=500)
    options = models.JSONField(default=dict, blank=True, help_text="e.g. region, project.")
    connect_timeout_s = models.FloatField(default=10.0, validators=[MinValueValidator(0.1)])
    read_timeout_s = models.FloatField(default=600.0, validators=[MinValueValidator(0.1)])
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.pk and not self.is_enabled:
            routes = sorted(
                Route.objects.filter(is_enabled=True, targets__provider=self)
                .values_list("name", flat=True)
                .distinct()
            )
            if routes:
                raise ValidationError(
                    {
                        "is_enabled": f"Enabled routes still send traffic here: {', '.join(routes)}. Change them first."
                    }
                )


class KeyHealth(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy (taken out of the pool)"


class UpstreamKey(models.Model):
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="upstream_keys")
    label = models.CharField(max_length=100)
    secret = EncryptedSecretField()
    weight = models.PositiveIntegerField(default=1)
    is_enabled = models.BooleanField(default=True)
    health = models.CharField(max_length=16, choices=KeyHealth.choices, default=KeyHealth.HEALTHY)
    health_reason = models.CharField(max_length=500, blank=True)
    health_changed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name", "label"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "label"], name="upstream_key_unique_label")
        ]

    def __str__(self) -> str:
        return f"{self.provider.name}/{self.label}"


class CachePolicy(models.TextChoices):
    OFF = "off", "Off"
    SYSTEM = "system", "Tools and system prompt"
    AUTO = "auto", "Tools, system and rolling conversation"


class CacheTTL(models.TextChoices):
    FIVE_MINUTES = "5m", "5 minutes"
    ONE_HOUR = "1h", "1 hour"


class Route(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    priority = models.IntegerField(default=100, help_text="Lower numbers are tried first.")
    model_pattern = models.CharField(
        max_length=200,
        validators=[model_pattern_validator],
        help_text='Glob on the model field, e.g. "claude-haiku-*".',
    )
    cost_centers = models.ManyToManyField(
        CostCenter,
        blank=True,
        related_name="routes",
        help_text="Only for these cost centers (empty: all).",
    )
    key_tags = models.JSONField(
        default=list, blank=True, help_text="Only for keys carrying one of these tags."
    )
    cache_policy = models.CharField(
        max_length=8, choices=CachePolicy.choices, default=CachePolicy.OFF
    )
    cache_ttl = models.CharField(
        max_length=4, choices=CacheTTL.choices, default=CacheTTL.FIVE_MINUTES
    )
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.model_pattern})"


class RouteTarget(models.Model):
    """One step of a route: the primary target is position 0, fallbacks follow."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="targets")
    position = models.PositiveIntegerField(default=0)
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="route_targets")
    upstream_model = models.CharField(
        max_length=200,
        blank=True,
        validators=[model_id_validator],
        help_text="The provider's model id; empty: the model the client asked for.",
    )

    class Meta:
        ordering = ["route", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["route", "position"], name="route_target_unique_position"
            )
        ]

    def __str__(self) -> str:
        return f"{self.route.name}#{self.position} → {self.provider.name}"

    def clean(self) -> None:
        provider = Provider.objects.filter(pk=self.provider_id).first()
        if provider is None:
            return
        if not provider.is_enabled:
            raise ValidationError({"provider": f"Provider '{provider.name}' is disabled."})
        if not provider.upstream_keys.filter(is_enabled=True, health=KeyHealth.HEALTHY).exists():
            raise ValidationError(
                {"provider": f"Provider '{provider.name}' has no enabled, healthy upstream key."}
            )


class ModelPrice(models.Model):
    """USD per million tokens, in force from `effective_from` until the next row for the same model."""

    provider = models.ForeignKey(
        Provider,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="prices",
        help_text="Empty: applies to every provider that has no price of its own.",
    )
    model = models.CharField(max_length=200)
    effective_from = models.DateTimeField()
    input_per_mtok = price_field()
    output_per_mtok = price_field()
    cache_write_5m_per_mtok = price_field()
    cache_write_1h_per_mtok = price_field()
    cache_read_per_mtok = price_field()
    currency = models.CharField(max_length=3, default="USD")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "effective_from"],
                condition=Q(provider__isnull=False),
                name="model_price_unique_per_provider",
            ),
            models.UniqueConstraint(
                fields=["model", "effective_from"],
                condition=Q(provider__isnull=True),
                name="model_price_unique_any_provider",
            ),
        ]
        indexes = [models.Index(fields=["model", "effective_from"])]

    def __str__(self) -> str:
        scope = self.provider.name if self.provider is not None else "any"
        return f"{self.model} @ {scope} from {self.effective_from:%Y-%m-%d}"


class RequestOutcome(models.TextChoices):
    OK = "ok", "OK"
    UPSTREAM_ERROR = "upstream_error", "Upstream error"
    GATEWAY_ERROR = "gateway_error", "Rejected by the gateway"
    CLIENT_CLOSED = "client_closed", "Client closed"
    STREAM_ERROR = "stream_error", "Failed mid-stream"


class RequestLog(models.Model):
    """One row per proxied request: who, what, how much, how fast. Narrow and kept long."""

    request_id = models.CharField(max_length=64, unique=True)
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    virtual_key = models.ForeignKey(
        VirtualKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="requests",
        db_constraint=False,
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="requests",
        db_constraint=False,
    )
    cost_center = models.ForeignKey(
        CostCenter,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="requests",
        db_constraint=False,
    )
    session_id = models.CharField(max_length=100, blank=True, db_index=True)
    agent_id = models.CharField(max_length=100, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    endpoint = models.CharField(max_length=100)
    method = models.CharField(max_length=8, default="POST")
    model_requested = models.CharField(max_length=200, blank=True)
    model_served = models.CharField(max_length=200, blank=True)
    provider = models.ForeignKey(
        Provider,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="requests",
        db_constraint=False,
    )
    upstream_key = models.ForeignKey(
        UpstreamKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="requests",
        db_constraint=False,
    )
    route = models.ForeignKey(
        Route,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="requests",
        db_constraint=False,
    )
    is_stream = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(
        max_length=16, choices=RequestOutcome.choices, default=RequestOutcome.OK
    )
    error_type = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    stop_reason = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_write_5m_tokens = models.PositiveIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cost_usd = cost_field(null=True, blank=True, help_text="Empty when the model has no price.")
    is_priced = models.BooleanField(default=False)
    cache_markers_injected = models.PositiveSmallIntegerField(default=0)
    cache_savings_usd = cost_field(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttfb_ms = models.PositiveIntegerField(
        null=True, blank=True, verbose_name="time to first byte (ms)"
    )
    upstream_request_id = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["cost_center", "started_at"]),
            models.Index(fields=["virtual_key", "started_at"]),
            models.Index(fields=["user", "started_at"]),
        ]

    def __str__(self) -> str:
        return self.request_id


class RequestBody(models.Model):
    """The prompt and response of one request, for cost centers that opted in.

    Redacted before it is stored, kept apart from the narrow RequestLog and deleted after
    GATEHOUSE_BODY_RETENTION_DAYS. `request_id` is the RequestLog's.
    """

    request_id = models.CharField(max_length=64, unique=True)
    cost_center = models.ForeignKey(
        CostCenter,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="request_bodies",
        db_constraint=False,
    )
    created_at = models.DateTimeField(db_index=True)
    request_text = models.TextField(blank=True)
    response_text = models.TextField(blank=True)
    is_request_truncated = models.BooleanField(default=False)
    is_response_truncated = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "request body"

    def __str__(self) -> str:
        return self.request_id
