"""Writes on billing that people trigger (the admin, the API); the jobs call invoices.py."""

from __future__ import annotations

from django.db import transaction

from accounts.audit import audit_record
from accounts.models import User
from billing.invoices import close_month
from billing.models import Invoice, InvoiceStatus


class InvoiceAlreadyFinalized(Exception):
    def __init__(self, invoice: Invoice) -> None:
        super().__init__(f"Invoice {invoice.number} is already finalized.")
        self.invoice = invoice


def invoice_finalize(*, invoice: Invoice, actor: User | None, via: str) -> Invoice:
    """Close the invoice's month (every cost center's draft for it, as a month closes as a
    whole) and record who did it. Raises PeriodNotOver for a month still running."""
    if invoice.status == InvoiceStatus.FINALIZED:
        raise InvoiceAlreadyFinalized(invoice)
    audit_finalized(close_month(invoice.period_start), actor=actor, via=via)
    return Invoice.objects.select_related("cost_center").get(pk=invoice.pk)


@transaction.atomic
def audit_finalized(invoices: list[Invoice], *, actor: User | None, via: str) -> None:
    for closed in invoices:
        audit_record(
            actor=actor,
            via=via,
            action="finalize",
            obj=closed,
            changes={
                "status": [InvoiceStatus.DRAFT, InvoiceStatus.FINALIZED],
                "number": [None, closed.number],
            },
        )
