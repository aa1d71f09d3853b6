"""Management API for billing: invoices, their lines and their CSV."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Path, Query, Router

from accounts.api_auth import MANAGE
from billing.exports import invoice_csv_response
from billing.models import Invoice
from billing.schemas import InvoiceDetailOut, InvoiceFilters, InvoiceOut
from config.api_support import (
    ErrorOut,
    ObjectId,
    Page,
    PageQuery,
    ValidationErrorOut,
    get_or_404,
    paginate,
    responses,
)

invoices = Router(auth=MANAGE, tags=["invoices"])


def _invoice(invoice_id: int) -> Invoice:
    return get_or_404(Invoice.objects.select_related("cost_center"), "invoice", pk=invoice_id)


@invoices.get("", response=responses(200, Page[InvoiceOut]))
def list_invoices(
    request: HttpRequest, filters: Query[InvoiceFilters], page: Query[PageQuery]
) -> dict[str, Any]:
    return paginate(filters.filter(Invoice.objects.select_related("cost_center")), page)


@invoices.get("/{invoice_id}", response=responses(200, InvoiceDetailOut, 404))
def get_invoice(request: HttpRequest, invoice_id: Path[ObjectId]) -> Invoice:
    return _invoice(invoice_id)


@invoices.get(
    "/{invoice_id}/csv",
    response={
        400: ErrorOut,
        401: ErrorOut,
        403: ErrorOut,
        404: ErrorOut,
        422: ValidationErrorOut,
    },
    openapi_extra={
        "responses": {
            200: {
                "description": "The invoice's lines as CSV (amounts in cents).",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        }
    },
)
def download_invoice_csv(request: HttpRequest, invoice_id: Path[ObjectId]) -> HttpResponse:
    return invoice_csv_response(_invoice(invoice_id))
