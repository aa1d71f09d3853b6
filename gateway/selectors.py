"""Reads on gateway: prices, detached from the ORM as `PriceRow`s."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from gateway.contracts import PriceRow
from gateway.models import ModelPrice
from gateway.pricing import PriceBook, model_id_candidates

_PRICE_FIELDS = (
    "pk",
    "provider_id",
    "model",
    "effective_from",
    "input_per_mtok",
    "output_per_mtok",
    "cache_write_5m_per_mtok",
    "cache_write_1h_per_mtok",
    "cache_read_per_mtok",
)

_ROW_FIELDS = ("price_id", *_PRICE_FIELDS[1:])


def price_book_load() -> PriceBook:
    """Every price row in one query; the recorder caches the book for a few seconds."""
    return PriceBook(_price_rows(ModelPrice.objects.all()))


def model_price_in_force(*, model: str, provider_id: int | None, at: datetime) -> PriceRow | None:
    """The row that prices `model` on `provider_id` at `at`, by the same rules as PriceBook."""
    provider_scope = Q(provider__isnull=True)
    if provider_id is not None:
        provider_scope |= Q(provider_id=provider_id)
    rows = ModelPrice.objects.filter(
        provider_scope, model__in=model_id_candidates(model), effective_from__lte=at
    )
    return PriceBook(_price_rows(rows)).lookup(model, provider_id, at)


def _price_rows(queryset: QuerySet[ModelPrice]) -> list[PriceRow]:
    return [
        PriceRow(**dict(zip(_ROW_FIELDS, values, strict=True)))
        for values in queryset.values_list(*_PRICE_FIELDS)
    ]
