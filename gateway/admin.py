"""The control room for traffic: providers and their key pools, routes, prices, the request log.

Changes here reach the proxy through its snapshot, reloaded every few seconds; nothing in this
module talks to the proxy directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import Count, Q, QuerySet, URLField
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from accounts.admin_audit import AuditedModelAdmin
from accounts.formatting import format_money
from gateway.forms import UpstreamKeyForm
from gateway.models import (
    KeyHealth,
    ModelPrice,
    Provider,
    RequestBody,
    RequestLog,
    Route,
    RouteTarget,
    UpstreamKey,
)
from gateway.upstream_health import upstream_key_mark_healthy

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec as Fieldsets


# Forms on these pages carry upstream secrets (inline fields have numbered names, so all of
# them): keep every POST value out of error reports.
hide_post_from_error_reports = method_decorator(sensitive_post_parameters())


def secret_status(upstream_key: UpstreamKey) -> str:
    return "•••• set" if upstream_key.secret else "not set"


class UpstreamKeyInline(admin.TabularInline):
    model = UpstreamKey
    form = UpstreamKeyForm
    fields = ("label", "secret", "weight", "is_enabled", "health", "health_reason")
    readonly_fields = ("health", "health_reason")
    extra = 1
    show_change_link = True


@admin.register(Provider)
class ProviderAdmin(AuditedModelAdmin):
    list_display = ("name", "kind", "base_url", "pool", "is_enabled", "updated_at")
    list_filter = ("kind", "is_enabled")
    search_fields = ("name", "base_url")
    readonly_fields = ("created_at", "updated_at")
    formfield_overrides = {URLField: {"assume_scheme": "https"}}
    inlines = (UpstreamKeyInline,)
    list_per_page = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet[Provider]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                key_total=Count("upstream_keys"),
                usable_key_total=Count(
                    "upstream_keys",
                    filter=Q(
                        upstream_keys__is_enabled=True,
                        upstream_keys__health=KeyHealth.HEALTHY,
                    ),
                ),
            )
        )

    @hide_post_from_error_reports
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.display(description="usable keys", ordering="usable_key_total")
    def pool(self, provider: Any) -> str:
        return f"{provider.usable_key_total} of {provider.key_total}"


@admin.register(UpstreamKey)
class UpstreamKeyAdmin(AuditedModelAdmin):
    form = UpstreamKeyForm
    list_display = (
        "label",
        "provider",
        "secret_display",
        "weight",
        "is_enabled",
        "health",
        "health_reason",
        "health_changed_at",
    )
    list_filter = ("provider", "health", "is_enabled")
    search_fields = ("label", "provider__name")
    list_select_related = ("provider",)
    autocomplete_fields = ("provider",)
    fieldsets = (
        (None, {"fields": ("provider", "label", "secret", "weight", "is_enabled")}),
        ("Health", {"fields": ("health", "health_reason", "health_changed_at")}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = ("health", "health_reason", "health_changed_at", "created_at", "updated_at")
    actions = ("mark_healthy",)
    list_per_page = 50

    @hide_post_from_error_reports
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.display(description="secret")
    def secret_display(self, upstream_key: UpstreamKey) -> str:
        return secret_status(upstream_key)

    @admin.action(description="Mark healthy (put back into the pool)", permissions=["change"])
    def mark_healthy(self, request: HttpRequest, queryset: QuerySet[UpstreamKey]) -> None:
        unhealthy = list(queryset.exclude(health=KeyHealth.HEALTHY).values_list("pk", flat=True))
        for upstream_key_id in unhealthy:
            upstream_key_mark_healthy(upstream_key_id=upstream_key_id)
        restored = len(unhealthy)
        noun = "key" if restored == 1 else "keys"
        self.message_user(request, f"Marked {restored} {noun} healthy.", messages.SUCCESS)


class RouteTargetInline(admin.TabularInline):
    model = RouteTarget
    fields = ("position", "provider", "upstream_model")
    ordering = ("position",)
    autocomplete_fields = ("provider",)
    extra = 1


@admin.register(Route)
class RouteAdmin(AuditedModelAdmin):
    list_display = (
        "name",
        "priority",
        "model_pattern",
        "targets_display",
        "cache_policy",
        "cache_ttl",
        "is_enabled",
    )
    list_filter = ("is_enabled", "cache_policy", "cost_centers")
    search_fields = ("name", "model_pattern")
    autocomplete_fields = ("cost_centers",)
    readonly_fields = ("created_at", "updated_at")
    inlines = (RouteTargetInline,)
    list_per_page = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet[Route]:
        return super().get_queryset(request).prefetch_related("targets__provider")

    @admin.display(description="targets (in order)")
    def targets_display(self, route: Route) -> str:
        steps = sorted(route.targets.all(), key=lambda target: target.position)
        return " → ".join(
            f"{target.provider.name}:{target.upstream_model}"
            if target.upstream_model
            else target.provider.name
            for target in steps
        )


PRICE_FIELDS = (
    "input_per_mtok",
    "output_per_mtok",
    "cache_write_5m_per_mtok",
    "cache_write_1h_per_mtok",
    "cache_read_per_mtok",
)


@admin.register(ModelPrice)
class ModelPriceAdmin(AuditedModelAdmin):
    """Prices already in force are read-only, so the record of what a model cost on a given
    day stays true; a new price is a new row with a later `effective_from`."""

    list_display = (
        "model",
        "provider_display",
        "effective_from",
        "input_price",
        "output_price",
        "cache_write_5m_price",
        "cache_write_1h_price",
        "cache_read_price",
    )
    list_filter = ("provider", "currency")
    search_fields = ("model",)
    list_select_related = ("provider",)
    autocomplete_fields = ("provider",)
    date_hierarchy = "effective_from"
    fields = ("provider", "model", "effective_from", *PRICE_FIELDS, "currency", "created_at")
    list_per_page = 100

    def get_readonly_fields(
        self, request: HttpRequest, obj: ModelPrice | None = None
    ) -> tuple[str, ...]:
        if obj is not None and obj.effective_from <= timezone.now():
            return self.fields
        return ("created_at",)

    def has_delete_permission(self, request: HttpRequest, obj: ModelPrice | None = None) -> bool:
        in_force = obj is not None and obj.effective_from <= timezone.now()
        return not in_force and super().has_delete_permission(request, obj)

    @admin.display(description="provider", ordering="provider__name")
    def provider_display(self, price: ModelPrice) -> str:
        return price.provider.name if price.provider is not None else "any provider"

    @admin.display(description="input / Mtok", ordering="input_per_mtok")
    def input_price(self, price: ModelPrice) -> str | None:
        return format_money(price.input_per_mtok, 4, price.currency)

    @admin.display(description="output / Mtok", ordering="output_per_mtok")
    def output_price(self, price: ModelPrice) -> str | None:
        return format_money(price.output_per_mtok, 4, price.currency)

    @admin.display(description="cache write 5m / Mtok", ordering="cache_write_5m_per_mtok")
    def cache_write_5m_price(self, price: ModelPrice) -> str | None:
        return format_money(price.cache_write_5m_per_mtok, 4, price.currency)

    @admin.display(description="cache write 1h / Mtok", ordering="cache_write_1h_per_mtok")
    def cache_write_1h_price(self, price: ModelPrice) -> str | None:
        return format_money(price.cache_write_1h_per_mtok, 4, price.currency)

    @admin.display(description="cache read / Mtok", ordering="cache_read_per_mtok")
    def cache_read_price(self, price: ModelPrice) -> str | None:
        return format_money(price.cache_read_per_mtok, 4, price.currency)


class ReadOnlyAdmin(AuditedModelAdmin):
    """For records the system writes: people may look, never add, edit or delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


REQUEST_LOG_FIELDSETS: Fieldsets = (
    (
        "Who",
        {
            "fields": (
                "request_id",
                "user",
                "cost_center",
                "virtual_key",
                "session_link",
                "agent_id",
                "user_agent",
                "client_ip",
            )
        },
    ),
    (
        "What",
        {
            "fields": (
                "endpoint",
                "method",
                "model_requested",
                "model_served",
                "provider",
                "upstream_key",
                "route",
                "is_stream",
                "cache_markers_injected",
            )
        },
    ),
    (
        "Outcome",
        {
            "fields": (
                "outcome",
                "status_code",
                "error_type",
                "error_message",
                "stop_reason",
                "attempts",
                "upstream_request_id",
                "body_link",
            )
        },
    ),
    (
        "Usage and cost",
        {
            "fields": (
                "input_tokens",
                "output_tokens",
                "cache_write_5m_tokens",
                "cache_write_1h_tokens",
                "cache_read_tokens",
                "cost",
                "cache_savings",
            )
        },
    ),
    ("Timing", {"fields": ("started_at", "finished_at", "latency", "ttfb_ms")}),
)


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "user",
        "cost_center",
        "model_display",
        "status_code",
        "outcome",
        "tokens",
        "cost",
        "latency",
        "session_short",
    )
    list_filter = ("outcome", "provider", "cost_center", "is_stream", "is_priced")
    search_fields = (
        "=request_id",
        "=session_id",
        "=upstream_request_id",
        "user__username",
        "model_requested",
        "model_served",
    )
    list_select_related = ("user", "cost_center")
    date_hierarchy = "started_at"
    fieldsets = REQUEST_LOG_FIELDSETS
    readonly_fields = flatten_fieldsets(REQUEST_LOG_FIELDSETS)
    list_per_page = 100
    # Counting millions of rows on every page view is the slow part of a big log.
    show_full_result_count = False

    @admin.display(description="model", ordering="model_served")
    def model_display(self, log: RequestLog) -> str:
        if log.model_served and log.model_served != log.model_requested:
            return f"{log.model_requested} → {log.model_served}"
        return log.model_requested or log.model_served

    @admin.display(description="tokens in / out")
    def tokens(self, log: RequestLog) -> str:
        text = f"{log.input_tokens:,} / {log.output_tokens:,}"
        cached = log.cache_read_tokens + log.cache_write_5m_tokens + log.cache_write_1h_tokens
        return f"{text} (+{cached:,} cache)" if cached else text

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, log: RequestLog) -> str | None:
        if not log.is_priced or log.cost_usd is None:
            return "unpriced"
        return format_money(log.cost_usd, 4)

    @admin.display(description="cache savings", ordering="cache_savings_usd")
    def cache_savings(self, log: RequestLog) -> str | None:
        return format_money(log.cache_savings_usd, 4)

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, log: RequestLog) -> str | None:
        return f"{log.latency_ms:,} ms" if log.latency_ms is not None else None

    @admin.display(description="prompt and response")
    def body_link(self, log: RequestLog) -> str | None:
        """Kept only when the cost center logs bodies, and only for the retention period."""
        body_id = (
            RequestBody.objects.filter(request_id=log.request_id)
            .values_list("pk", flat=True)
            .first()
        )
        if body_id is None:
            return None
        url = reverse("admin:gateway_requestbody_change", args=[body_id])
        return format_html('<a href="{}">View the logged bodies</a>', url)

    @admin.display(description="session")
    def session_link(self, log: RequestLog) -> str | None:
        """Opens the session view: every request of this Claude Code session."""
        return self._session_link(log, log.session_id)

    @admin.display(description="session")
    def session_short(self, log: RequestLog) -> str | None:
        return self._session_link(log, f"{log.session_id[:8]}…")

    def _session_link(self, log: RequestLog, text: str) -> str | None:
        if not log.session_id:
            return None
        url = reverse("session_detail", args=[log.session_id])
        return format_html('<a href="{}" title="{}">{}</a>', url, log.session_id, text)


@admin.register(RequestBody)
class RequestBodyAdmin(ReadOnlyAdmin):
    """Prompts and responses of cost centers that log bodies, already redacted."""

    list_display = (
        "created_at",
        "request_id",
        "cost_center",
        "is_request_truncated",
        "is_response_truncated",
    )
    list_filter = ("cost_center",)
    search_fields = ("=request_id",)
    list_select_related = ("cost_center",)
    date_hierarchy = "created_at"
    fields = (
        "request_log_link",
        "cost_center",
        "created_at",
        "is_request_truncated",
        "request_display",
        "is_response_truncated",
        "response_display",
    )
    readonly_fields = fields
    list_per_page = 100
    show_full_result_count = False

    @admin.display(description="request")
    def request_log_link(self, body: RequestBody) -> str:
        log_id = (
            RequestLog.objects.filter(request_id=body.request_id)
            .values_list("pk", flat=True)
            .first()
        )
        if log_id is None:
            return body.request_id
        url = reverse("admin:gateway_requestlog_change", args=[log_id])
        return format_html('<a href="{}">{}</a>', url, body.request_id)

    @admin.display(description="request body")
    def request_display(self, body: RequestBody) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', body.request_text)

    @admin.display(description="response body")
    def response_display(self, body: RequestBody) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', body.response_text)
