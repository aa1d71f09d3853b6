"""Admin actions on invoices, as plain functions for `InvoiceAdmin.actions` (wired in admin.py).

Invoices close a month at a time, for every cost center at once (late usage is tracked per
month, see billing/invoices.py), so "finalize" closes the months of the selected invoices.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accounts.models import User
from billing.exports import csv_text, invoice_csv_response, invoice_csv_rows
from billing.invoices import close_month, recompute_drafts
from billing.models import Invoice, InvoiceStatus
from billing.periods import month_bounds
from billing.services import audit_finalized


@admin.action(description="Finalize: close the months of the selected drafts (all cost centers)")
def finalize_invoices(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
    periods = sorted(
        set(queryset.filter(status=InvoiceStatus.DRAFT).values_list("period_start", flat=True))
    )
    if not periods:
        modeladmin.message_user(
            request, "The selected invoices are already finalized.", messages.WARNING
        )
        return
    now = timezone.now()
    for period in periods:
        if month_bounds(period)[1] > now:
            modeladmin.message_user(
                request, f"{period:%Y-%m} has not ended yet; it cannot be closed.", messages.ERROR
            )
            continue
        closed = close_month(period, now=now)
        audit_finalized(
            closed, actor=request.user if isinstance(request.user, User) else None, via="admin"
        )
        modeladmin.message_user(
            request,
            f"{period:%Y-%m} closed: {len(closed)} invoice{'s' if len(closed) != 1 else ''} "
            "finalized.",
            messages.SUCCESS,
        )


@admin.action(description="Recompute the selected drafts from the request log")
def recompute_invoices(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
    periods = sorted(
        set(queryset.filter(status=InvoiceStatus.DRAFT).values_list("period_start", flat=True))
    )
    skipped = queryset.exclude(status=InvoiceStatus.DRAFT).count()
    for period in periods:
        recompute_drafts(period)
    modeladmin.message_user(
        request,
        f"Recomputed the drafts of {len(periods)} month{'s' if len(periods) != 1 else ''}"
        + (
            f"; {skipped} finalized invoice{'s' if skipped != 1 else ''} left as they are."
            if skipped
            else "."
        ),
        messages.SUCCESS,
    )


@admin.action(description="Download as CSV")
def download_invoice_csv(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet[Invoice]
) -> HttpResponse:
    invoices = list(
        queryset.select_related("cost_center").order_by("period_start", "cost_center__code")
    )
    if len(invoices) == 1:
        return invoice_csv_response(invoices[0])
    rows = [row for invoice in invoices for row in invoice_csv_rows(invoice)]
    response = HttpResponse(csv_text(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="invoices.csv"'
    return response
