"""Management API for billing: invoices, their lines and their CSV."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Path, Query, Router

from accounts.api_auth import MANAGE, principal_of
from billing.exports import invoice_csv_response
from billing.invoices import PeriodNotOver
from billing.models import Invoice
from billing.schemas import InvoiceDetailOut, InvoiceFilters, InvoiceOut
from billing.services import InvoiceAlreadyFinalized, invoice_finalize
from config.api_support import (
    ApiError,
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


@invoices.post("/{invoice_id}/finalize", response=responses(200, InvoiceOut, 404, 409))
def finalize_invoice(request: HttpRequest, invoice_id: Path[ObjectId]) -> Invoice:
    invoice = _invoice(invoice_id)
    try:
        return invoice_finalize(invoice=invoice, actor=principal_of(request).actor, via="api")
    except InvoiceAlreadyFinalized as error:
        raise ApiError(409, str(error), field="status") from None
    except PeriodNotOver:
        raise ApiError(
            409,
            f"{invoice.period_start:%Y-%m} is not over yet; it can be finalized from the 1st.",
            field="period",
        ) from None
