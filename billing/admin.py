"""The control room for money after the fact: rollups, invoices and their lines.

Everything here is computed by the billing jobs (a draft invoice is recomputed, a finalized one
never changes), so the admin only shows it: a hand edit would be overwritten or would falsify
a closed month.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from accounts.admin_audit import AuditedModelAdmin
from accounts.formatting import format_money
from billing.admin_actions import download_invoice_csv, finalize_invoices, recompute_invoices
from billing.models import Invoice, InvoiceLine, UsageRollup


class ViewOnly:
    """Mixed into admins and inlines for rows only the billing jobs write."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UsageRollup)
class UsageRollupAdmin(ViewOnly, AuditedModelAdmin):
    list_display = (
        "day",
        "cost_center",
        "user",
        "provider",
        "model",
        "requests",
        "error_requests",
        "unpriced_requests",
        "tokens",
        "cost",
    )
    list_filter = ("cost_center", "provider")
    search_fields = ("model", "user__username", "cost_center__code")
    list_select_related = ("cost_center", "user", "provider")
    date_hierarchy = "day"
    list_per_page = 100
    show_full_result_count = False

    @admin.display(description="tokens in / out")
    def tokens(self, rollup: UsageRollup) -> str:
        text = f"{rollup.input_tokens:,} / {rollup.output_tokens:,}"
        cached = (
            rollup.cache_read_tokens + rollup.cache_write_5m_tokens + rollup.cache_write_1h_tokens
        )
        return f"{text} (+{cached:,} cache)" if cached else text

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, rollup: UsageRollup) -> str | None:
        return format_money(rollup.cost_usd, 4)


class InvoiceLineInline(ViewOnly, admin.TabularInline):
    model = InvoiceLine
    fields = (
        "kind",
        "provider_name",
        "model",
        "token_class",
        "user",
        "adjusts_period_start",
        "tokens",
        "unit_price",
        "amount",
        "description",
    )
    readonly_fields = fields
    extra = 0

    @admin.display(description="tokens")
    def tokens(self, line: InvoiceLine) -> str:
        return f"{line.quantity:,}"

    @admin.display(description="unit price / Mtok")
    def unit_price(self, line: InvoiceLine) -> str | None:
        return format_money(line.unit_price_per_mtok, 4, line.invoice.currency)

    @admin.display(description="amount")
    def amount(self, line: InvoiceLine) -> str | None:
        return format_money(line.amount_usd, 2, line.invoice.currency)


@admin.register(Invoice)
class InvoiceAdmin(ViewOnly, AuditedModelAdmin):
    list_display = (
        "invoice",
        "cost_center",
        "period",
        "status",
        "total",
        "computed_at",
        "finalized_at",
    )
    list_filter = ("status", "cost_center", "currency")
    search_fields = ("number", "cost_center__code", "cost_center__name")
    list_select_related = ("cost_center",)
    date_hierarchy = "period_start"
    fields = (
        "number",
        "cost_center",
        "period",
        "status",
        "currency",
        "total",
        "created_at",
        "computed_at",
        "finalized_at",
    )
    readonly_fields = fields
    inlines = (InvoiceLineInline,)
    list_per_page = 50
    actions = (finalize_invoices, recompute_invoices, download_invoice_csv)

    @admin.display(description="invoice", ordering="number")
    def invoice(self, invoice: Invoice) -> str:
        return str(invoice)

    @admin.display(description="period", ordering="period_start")
    def period(self, invoice: Invoice) -> str:
        return f"{invoice.period_start:%Y-%m}"

    @admin.display(description="total", ordering="total_usd")
    def total(self, invoice: Invoice) -> str | None:
        return format_money(invoice.total_usd, 2, invoice.currency)


@admin.register(InvoiceLine)
class InvoiceLineAdmin(ViewOnly, AuditedModelAdmin):
    list_display = (
        "invoice",
        "kind",
        "provider_name",
        "model",
        "token_class",
        "user",
        "tokens",
        "unit_price",
        "amount",
    )
    list_filter = ("kind", "token_class", "invoice__status")
    search_fields = ("model", "provider_name", "invoice__number", "invoice__cost_center__code")
    list_select_related = ("invoice", "invoice__cost_center", "user")
    readonly_fields = (
        "invoice",
        "kind",
        "provider_name",
        "model",
        "token_class",
        "user",
        "adjusts_period_start",
        "tokens",
        "unit_price",
        "amount",
        "description",
    )
    fields = readonly_fields
    list_per_page = 100

    @admin.display(description="tokens", ordering="quantity")
    def tokens(self, line: InvoiceLine) -> str:
        return f"{line.quantity:,}"

    @admin.display(description="unit price / Mtok", ordering="unit_price_per_mtok")
    def unit_price(self, line: InvoiceLine) -> str | None:
        return format_money(line.unit_price_per_mtok, 4, line.invoice.currency)

    @admin.display(description="amount", ordering="amount_usd")
    def amount(self, line: InvoiceLine) -> str | None:
        return format_money(line.amount_usd, 2, line.invoice.currency)
