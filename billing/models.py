"""Money after the fact: daily rollups, monthly invoices and their lines."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
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

    class Meta:
        ordering = ["-period_start", "cost_center__code"]
        constraints = [
            models.UniqueConstraint(
                fields=["cost_center", "period_start"], name="invoice_unique_period"
            )
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
    amount_usd = cost_field(default=0)
    description = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["invoice", "kind", "model", "token_class"]

    def __str__(self) -> str:
        return f"{self.model} {self.token_class} {self.quantity}"
