"""Shapes of the management API for billing: invoices and their lines."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from ninja import Field, FilterLookup, Schema

from billing.models import Invoice
from config.api_support import Day, FilterInput, ObjectId


class InvoiceLineOut(Schema):
    id: int
    kind: str
    provider_name: str
    model: str
    token_class: str
    user_id: int | None = Field(description="Set on per-user breakdown lines.")
    is_breakdown: bool = Field(
        description="Repeats part of the invoice per user; not added to its total."
    )
    adjusts_period_start: date | None
    quantity: int = Field(description="Tokens.")
    requests: int
    unit_price_per_mtok: Decimal | None
    amount_usd: Decimal | None = Field(description="Null for usage without a price.")
    description: str


class InvoiceOut(Schema):
    id: int
    number: str | None = Field(description="Given when the invoice is finalized.")
    cost_center_id: int
    cost_center_code: str
    period_start: date
    status: Literal["draft", "finalized"]
    currency: str
    total_usd: Decimal
    created_at: datetime
    computed_at: datetime | None
    finalized_at: datetime | None

    @staticmethod
    def resolve_cost_center_code(invoice: Invoice) -> str:
        return invoice.cost_center.code


class InvoiceDetailOut(InvoiceOut):
    lines: list[InvoiceLineOut]

    @staticmethod
    def resolve_lines(invoice: Invoice) -> list[object]:
        return list(invoice.lines.order_by("pk"))


class InvoiceFilters(FilterInput):
    cost_center: Annotated[ObjectId | None, FilterLookup("cost_center_id")] = None
    status: Literal["draft", "finalized"] | None = None
    period_from: Annotated[
        Day | None, FilterLookup("period_start__gte"), Field(description="First month included.")
    ] = None
    period_to: Annotated[
        Day | None, FilterLookup("period_start__lte"), Field(description="Last month included.")
    ] = None
