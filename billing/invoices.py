"""Monthly invoices: drafts recomputed from the request log, months closed into numbered,
immutable invoices, and late usage of closed months carried onto the next open month.

Coverage (docs/billing.md): request log ids are the watermark. Closing a month records the
id up to which the request log was read (`ClosedPeriod.covered_request_id`, also stored on
each of its invoices): rows of that month or earlier with an id up to it are on a finalized
invoice; any such row with a greater id arrived late and lands, as adjustment lines, on the
invoice of the month after the last closed one (the open month). Months close in order and
watermarks never go back, so every request is billed exactly once.

Concurrency: each month's drafts are written under that month's lock, closing holds one lock
for all closings, and a finalized invoice is never written again (recomputing skips it,
`recompute_invoice` refuses it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import CostCenter
from billing import locks
from billing.lines import InvoiceDraft, UsageGroup, build_invoice
from billing.models import ClosedPeriod, Invoice, InvoiceLine, InvoiceStatus
from billing.periods import invoice_number, month_bounds, month_start, months_between, next_month
from billing.selectors import (
    first_usage_period,
    is_period_closed,
    late_usage_groups,
    latest_closed_period,
    period_usage_groups,
    provider_names,
    request_log_watermark,
)
from gateway.selectors import price_book_load


class InvoiceIsFinalized(Exception):
    """A finalized invoice never changes; late usage goes to the next month's invoice."""

    def __init__(self, invoice: Invoice) -> None:
        super().__init__(f"Invoice {invoice.number} is finalized and cannot change.")
        self.invoice = invoice


class PeriodNotOver(ValueError):
    def __init__(self, period: date) -> None:
        super().__init__(f"{period:%Y-%m} has not ended yet; only past months can be closed.")


def recompute_drafts(period: date, *, up_to_id: int | None = None) -> list[Invoice]:
    """Recompute every cost center's draft for `period`; finalized invoices are skipped.

    `up_to_id`: the request log watermark to read up to (read now when not given).
    """
    period = month_start(period)
    if up_to_id is None:
        up_to_id = request_log_watermark()
    with transaction.atomic():
        locks.hold(locks.LockScope.PERIOD, locks.period_key(period))
        return rebuild_drafts(period, up_to_id)


def recompute_invoice(*, invoice_id: int) -> Invoice:
    """Recompute one draft (with its month's other drafts); refuses a finalized invoice."""
    invoice = Invoice.objects.get(pk=invoice_id)
    if invoice.status != InvoiceStatus.DRAFT:
        raise InvoiceIsFinalized(invoice)
    up_to_id = request_log_watermark()
    with transaction.atomic():
        locks.hold(locks.LockScope.PERIOD, locks.period_key(invoice.period_start))
        invoice.refresh_from_db()
        if invoice.status != InvoiceStatus.DRAFT:
            raise InvoiceIsFinalized(invoice)
        rebuild_drafts(invoice.period_start, up_to_id)
    invoice.refresh_from_db()
    return invoice


def close_month(period: date, *, now: datetime | None = None) -> list[Invoice]:
    """Finalize every cost center's invoice for `period` (and for any earlier month not yet
    closed, oldest first). Safe to run twice or at once: a closed month is left alone.

    Returns the month's finalized invoices.
    """
    period = month_start(period)
    now = now or timezone.now()
    if month_bounds(period)[1] > now:
        raise PeriodNotOver(period)
    watermark = request_log_watermark()
    with transaction.atomic():
        locks.hold(locks.LockScope.MONTH_CLOSE)
        latest = latest_closed_period()
        if latest is not None:
            first = next_month(latest.period_start)
            watermark = max(watermark, latest.covered_request_id)
        else:
            first = min(first_usage_period() or period, period)
        for month in months_between(first, period) if first <= period else ():
            locks.hold(locks.LockScope.PERIOD, locks.period_key(month))
            rebuild_drafts(month, watermark)
            _finalize_drafts(month, now)
            ClosedPeriod.objects.create(
                period_start=month, covered_request_id=watermark, closed_at=now
            )
    return list(
        Invoice.objects.filter(period_start=period, status=InvoiceStatus.FINALIZED)
        .select_related("cost_center")
        .order_by("cost_center__code")
    )


def rebuild_drafts(period: date, up_to_id: int) -> list[Invoice]:
    """Rebuild the month's drafts from the request log up to `up_to_id`; the caller holds
    the month's lock (`locks.LockScope.PERIOD`) in an open transaction."""
    if is_period_closed(period):
        return []
    book = price_book_load()
    groups = period_usage_groups(period=period, up_to_id=up_to_id, book=book)
    latest = latest_closed_period()
    if latest is not None and next_month(latest.period_start) == period:
        groups += late_usage_groups(
            before=period, after_id=latest.covered_request_id, up_to_id=up_to_id, book=book
        )
    names = provider_names()
    drafts = Invoice.objects.filter(period_start=period, status=InvoiceStatus.DRAFT)
    cost_center_ids = _billable(groups) | set(drafts.values_list("cost_center_id", flat=True))
    invoices = []
    for cost_center_id in sorted(cost_center_ids):
        draft = build_invoice(cost_center_id, groups, names)
        invoice = _write_draft(period, draft, up_to_id)
        if invoice is not None:
            invoices.append(invoice)
    return invoices


def _billable(groups: Iterable[UsageGroup]) -> set[int]:
    """Cost centers of these groups that exist (the request log keeps no foreign key)."""
    ids = {group.cost_center_id for group in groups}
    return set(CostCenter.objects.filter(pk__in=ids).values_list("pk", flat=True))


def _write_draft(period: date, draft: InvoiceDraft, up_to_id: int) -> Invoice | None:
    invoice, _ = Invoice.objects.select_for_update().get_or_create(
        cost_center_id=draft.cost_center_id, period_start=period
    )
    if invoice.status != InvoiceStatus.DRAFT:
        return None
    invoice.lines.all().delete()
    InvoiceLine.objects.bulk_create(
        [
            InvoiceLine(
                invoice=invoice,
                kind=line.kind,
                provider_name=line.provider_name,
                model=line.model,
                token_class=line.token_class,
                user_id=line.user_id,
                adjusts_period_start=line.adjusts_period,
                quantity=line.quantity,
                unit_price_per_mtok=line.unit_price_per_mtok,
                amount_usd=line.amount_usd,
                requests=line.requests,
                is_breakdown=line.is_breakdown,
                description=line.description,
            )
            for line in draft.lines
        ],
        batch_size=500,
    )
    invoice.total_usd = draft.total_usd
    invoice.requests = draft.requests
    invoice.unpriced_requests = draft.unpriced_requests
    invoice.covered_request_id = up_to_id
    invoice.computed_at = timezone.now()
    invoice.save(
        update_fields=[
            "total_usd",
            "requests",
            "unpriced_requests",
            "covered_request_id",
            "computed_at",
        ]
    )
    return invoice


def _finalize_drafts(period: date, now: datetime) -> None:
    for invoice in (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("cost_center")
        .filter(period_start=period, status=InvoiceStatus.DRAFT)
    ):
        invoice.status = InvoiceStatus.FINALIZED
        invoice.number = invoice_number(period, invoice.cost_center.code)
        invoice.finalized_at = now
        invoice.save(update_fields=["status", "number", "finalized_at"])
