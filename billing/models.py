"""Money after the fact: daily rollups, monthly invoices and their lines."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import CostCenter, VirtualKey
from gateway.models import Provider, cost_field


def money_field(**options: Any) -> models.DecimalField:
    """Invoice money: cents."""
    return models.DecimalField(max_digits=14, decimal_places=2, **options)


class UsageRollup(models.Model):
    """One day of usage for one (cost center, user, key, provider, model)."""

    day = models.DateField(db_index=True)
    cost_center = models.ForeignKey(
        CostCenter, null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
    )
    virtual_key = models.ForeignKey(
        VirtualKey, null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False
    )
    provider = models.ForeignKey(
        Provider, null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False
    )
    model = models.CharField(max_length=200, blank=True)
    requests = models.PositiveIntegerField(default=0)
    error_requests = models.PositiveIntegerField(default=0)
    unpriced_requests = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_5m_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = cost_field(default=0)
    cache_savings_usd = cost_field(default=0)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day"]
        indexes = [models.Index(fields=["cost_center", "day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.model}"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    FINALIZED = "finalized", "Finalized"


class Invoice(models.Model):
    """One cost center, one calendar month (UTC). A finalized invoice never changes."""

    cost_center = models.ForeignKey(CostCenter, on_delete=models.PROTECT, related_name="invoices")
    period_start = models.DateField(help_text="First day of the month.")
    number = models.CharField(max_length=32, unique=True, null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    currency = models.CharField(max_length=3, default="USD")
    total_usd = money_field(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    computed_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    requests = models.PositiveIntegerField(
        default=0, help_text="Requests billed here, late ones for closed months included."
    )
    unpriced_requests = models.PositiveIntegerField(
        default=0, help_text="Requests without a price in force: listed, not in the total."
    )
    covered_request_id = models.PositiveBigIntegerField(
        default=0,
        help_text="Request log rows up to this id are on this invoice or an earlier one.",
    )

    class Meta:
        ordering = ["-period_start", "cost_center__code"]
        constraints = [
            models.UniqueConstraint(
                fields=["cost_center", "period_start"], name="invoice_unique_period"
            ),
            models.CheckConstraint(
                condition=Q(status=InvoiceStatus.DRAFT) | Q(number__isnull=False),
                name="invoice_finalized_has_number",
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"draft {self.cost_center.code} {self.period_start:%Y-%m}"


class LineKind(models.TextChoices):
    USAGE = "usage", "Usage"
    ADJUSTMENT = "adjustment", "Adjustment for a closed month"


class TokenClass(models.TextChoices):
    INPUT = "input", "Input"
    OUTPUT = "output", "Output"
    CACHE_WRITE_5M = "cache_write_5m", "Cache write (5m)"
    CACHE_WRITE_1H = "cache_write_1h", "Cache write (1h)"
    CACHE_READ = "cache_read", "Cache read"
    OTHER = "other", "Other charges (web search, per-iteration models)"


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    kind = models.CharField(max_length=16, choices=LineKind.choices, default=LineKind.USAGE)
    provider_name = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=200)
    token_class = models.CharField(max_length=16, choices=TokenClass.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        help_text="Set on per-user breakdown lines.",
    )
    adjusts_period_start = models.DateField(null=True, blank=True)
    quantity = models.PositiveBigIntegerField(default=0, help_text="Tokens.")
    unit_price_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True
    )
    amount_usd = cost_field(
        null=True,
        blank=True,
        default=0,
        help_text="quantity × unit price / 1,000,000, exact. Empty for unpriced usage.",
    )
    requests = models.PositiveIntegerField(default=0, help_text="Requests behind this line.")
    is_breakdown = models.BooleanField(
        default=False,
        help_text="Per-user breakdown: repeats part of the invoice, not added to its total.",
    )
    description = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["invoice", "kind", "model", "token_class"]

    def __str__(self) -> str:
        return f"{self.model} {self.token_class} {self.quantity}"


class ClosedPeriod(models.Model):
    """A month whose invoices are finalized, for every cost center at once.

    Rows of the request log with an id up to `covered_request_id` that started in this month
    or earlier are on a finalized invoice; later ones land on the next open month's invoice
    as adjustment lines. See docs/billing.md.
    """

    period_start = models.DateField(unique=True, help_text="First day of the month.")
    covered_request_id = models.PositiveBigIntegerField()
    closed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-period_start"]

    def __str__(self) -> str:
        return f"{self.period_start:%Y-%m} closed"


class RollupWatermark(models.Model):
    """The request log id up to which usage rollups have been brought up to date."""

    name = models.CharField(max_length=32, unique=True)
    request_id = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} @ {self.request_id}"


class InvoiceExport(models.Model):
    """A month's invoices as CSV: one file per cost center, and one (no cost center) for all."""

    period_start = models.DateField()
    cost_center = models.ForeignKey(
        CostCenter,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="invoice_exports",
        help_text="Empty: every cost center in one file.",
    )
    file = models.FileField(upload_to="billing/exports/", max_length=300)
    rows = models.PositiveIntegerField(default=0)
    total_usd = money_field(default=0)
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-period_start", "cost_center__code"]
        constraints = [
            models.UniqueConstraint(
                fields=["period_start", "cost_center"],
                condition=Q(cost_center__isnull=False),
                name="invoice_export_unique_per_cost_center",
            ),
            models.UniqueConstraint(
                fields=["period_start"],
                condition=Q(cost_center__isnull=True),
                name="invoice_export_unique_all",
            ),
        ]

    def __str__(self) -> str:
        scope = self.cost_center.code if self.cost_center is not None else "all"
        return f"{self.period_start:%Y-%m} {scope}"
