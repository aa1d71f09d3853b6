"""Invoices as CSV for finance: one file per cost center and month, and one for all of them.

Columns are documented in docs/billing.md. Amounts are in cents, apportioned so that each
invoice's rows add up to its total exactly (`billing.lines.cents_summing_to`); per-user
breakdown lines are not exported (they repeat the invoice's lines).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from django.core.files.base import ContentFile
from django.db import transaction
from django.http import FileResponse, HttpResponse
from django.utils import timezone

from billing import locks
from billing.lines import cents_summing_to
from billing.models import Invoice, InvoiceExport, InvoiceLine
from billing.periods import month_start

CSV_COLUMNS = (
    "invoice_number",
    "period",
    "cost_center_code",
    "external_billing_code",
    "model",
    "token_class",
    "quantity",
    "unit_price_per_mtok",
    "amount",
    "currency",
    "kind",
    "adjusts_period",
    "provider",
    "description",
)


def invoice_csv_rows(invoice: Invoice) -> list[list[str]]:
    """The invoice's lines (not the per-user breakdown) as CSV rows, amounts in cents."""
    lines = list(invoice.lines.filter(is_breakdown=False).order_by("pk"))
    cents = line_cents(invoice, lines)
    cost_center = invoice.cost_center
    return [
        [
            invoice.number or "",
            f"{invoice.period_start:%Y-%m}",
            cost_center.code,
            cost_center.external_billing_code,
            line.model,
            line.token_class,
            str(line.quantity),
            "" if line.unit_price_per_mtok is None else f"{line.unit_price_per_mtok:.4f}",
            f"{cents[line.pk]:.2f}" if line.pk in cents else "",
            invoice.currency,
            line.kind,
            f"{line.adjusts_period_start:%Y-%m}" if line.adjusts_period_start else "",
            line.provider_name,
            line.description,
        ]
        for line in lines
    ]


def line_cents(invoice: Invoice, lines: Iterable[InvoiceLine]) -> dict[int, Decimal]:
    """Each priced line's amount in cents, by line id, adding up to the invoice's total."""
    amounts = {line.pk: line.amount_usd for line in lines if line.amount_usd is not None}
    cents = cents_summing_to(list(amounts.values()), invoice.total_usd)
    return dict(zip(amounts, cents, strict=True))


def csv_text(rows: Iterable[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


def invoice_csv_filename(invoice: Invoice) -> str:
    name = invoice.number or f"draft-{invoice.period_start:%Y%m}-{invoice.cost_center.code}"
    return f"{name}.csv"


def invoice_csv_response(invoice: Invoice) -> HttpResponse:
    """The invoice as a CSV download (for the admin and the API)."""
    response = HttpResponse(
        csv_text(invoice_csv_rows(invoice)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{invoice_csv_filename(invoice)}"'
    return response


def invoice_export_response(export: InvoiceExport) -> FileResponse:
    """A stored export as a download."""
    return FileResponse(
        export.file.open("rb"),
        as_attachment=True,
        filename=export.file.name.rsplit("/", 1)[-1],
        content_type="text/csv; charset=utf-8",
    )


def month_invoices(period: date) -> list[Invoice]:
    return list(
        Invoice.objects.filter(period_start=month_start(period))
        .select_related("cost_center")
        .order_by("cost_center__code")
    )


def export_month(period: date) -> list[InvoiceExport]:
    """Write (or rewrite) the month's CSV files: one per invoice, then one for all.

    Idempotent: files have fixed names and are replaced under the month's export lock, so
    running it twice, or twice at once, leaves one set of files with the same content.
    """
    period = month_start(period)
    with transaction.atomic():
        locks.hold(locks.LockScope.EXPORT, locks.period_key(period))
        invoices = month_invoices(period)
        exports = [
            _store(period, invoice.cost_center_id, invoice_csv_filename(invoice), [invoice])
            for invoice in invoices
        ]
        exports.append(_store(period, None, f"GH-{period:%Y%m}-all.csv", invoices))
    return exports


def _store(
    period: date, cost_center_id: int | None, filename: str, invoices: list[Invoice]
) -> InvoiceExport:
    rows = [row for invoice in invoices for row in invoice_csv_rows(invoice)]
    content = csv_text(rows).encode()
    export = InvoiceExport.objects.filter(
        period_start=period, cost_center_id=cost_center_id
    ).first() or InvoiceExport(period_start=period, cost_center_id=cost_center_id)
    name = f"{period:%Y-%m}/{filename}"
    field = InvoiceExport._meta.get_field("file")
    path = field.generate_filename(export, name)  # type: ignore[union-attr]
    if export.file and export.file.name != path:
        export.file.delete(save=False)
    if export.file.storage.exists(path):
        export.file.storage.delete(path)
    export.file.save(name, ContentFile(content), save=False)
    export.rows = len(rows)
    export.total_usd = sum((invoice.total_usd for invoice in invoices), Decimal(0))
    export.sha256 = hashlib.sha256(content).hexdigest()
    export.created_at = timezone.now()
    export.save()
    return export
