"""What every router of the management API shares: error bodies, input types, pagination.

Kept apart from `config.api` (which imports the routers) so the routers can import it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar, overload

from django.db.models import Model, QuerySet
from ninja import Field, FilterSchema, Schema
from ninja.schema import DjangoGetter
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Strict,
    field_validator,
    model_validator,
)

MAX_OBJECT_ID = 2**63 - 1
MAX_POSITIVE_INT = 2**31 - 1
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100


class ApiError(Exception):
    """An answer other than success, mapped to `{"detail": …, "field": …}` by `config.api`."""

    def __init__(self, status: int, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field


class ErrorOut(Schema):
    detail: str
    field: str | None = None


class ValidationErrorOut(Schema):
    detail: list[dict[str, Any]]


def responses(status: int, schema: Any, *errors: int) -> dict[int, Any]:
    """The response map of one operation: its success, 400 (e.g. a body that is not JSON),
    401/403, 422, and the other errors it names."""
    mapping: dict[int, Any] = {
        status: schema,
        400: ErrorOut,
        401: ErrorOut,
        403: ErrorOut,
        422: ValidationErrorOut,
    }
    for code in errors:
        mapping[code] = ErrorOut
    return mapping


def _refuse_nul(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL; refuse it at the door rather than fail at the database."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("Text may not contain NUL characters.")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_nul(key)
            _refuse_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_nul(item)
    return value


class Input(Schema):
    """Base for request bodies: a JSON object whose text holds no NUL character."""

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        raw = data._obj if isinstance(data, DjangoGetter) else data
        if not isinstance(raw, Mapping):
            raise ValueError("Send a JSON object.")
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        return _refuse_nul(value)


class FilterInput(FilterSchema):
    """Base for a list's query filters."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        return _refuse_nul(value)


def omitted(**options: Any) -> Any:
    """The default of a PATCH field: it may be left out (and then is not changed), but it
    may be null only where its type says so."""
    return Field(None, **options)


def _iso_text(value: Any) -> Any:
    """Dates and times as ISO 8601 text only, not as numbers taken for Unix timestamps."""
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}", value):
        return value
    raise ValueError("Use ISO 8601, e.g. 2026-01-31 or 2026-01-31T09:30:00Z.")


def _as_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as error:
        raise ValueError("Time is out of range.") from error


# Path and query parameters arrive as text and are converted; body values must have their
# JSON type already (`Reference`, `Count`, `Flag` are strict: no "1" for 1, no 1 for true).
ObjectId = Annotated[int, Field(ge=1, le=MAX_OBJECT_ID)]
Reference = Annotated[int, Strict(), Field(ge=1, le=MAX_OBJECT_ID)]
Count = Annotated[int, Strict(), Field(ge=0, le=MAX_POSITIVE_INT)]
Flag = Annotated[bool, Strict()]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_as_utc)]
Day = Annotated[date, BeforeValidator(_iso_text)]
Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
PerMillionTokens = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=4)]
Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[-a-zA-Z0-9_]+$")]


# --- Pagination: an opaque cursor (base64 of the last id) and a page size.

ItemT = TypeVar("ItemT")


class Page(Schema, Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; null on the last page."
    )


class PageQuery(FilterInput):
    cursor: str | None = Field(None, max_length=40, description="From the previous page.")
    limit: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)


ModelT = TypeVar("ModelT", bound=Model)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        last_id = int(base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii"))
    except (binascii.Error, UnicodeError, ValueError) as error:
        raise ApiError(400, "This cursor was not issued by this API.", field="cursor") from error
    if not 0 <= last_id <= MAX_OBJECT_ID:
        raise ApiError(400, "This cursor was not issued by this API.", field="cursor")
    return last_id


def paginate(
    queryset: QuerySet[ModelT], page: PageQuery, *, newest_first: bool = False
) -> dict[str, Any]:
    """One page of `queryset` in id order (descending with `newest_first`), as a `Page`."""
    queryset = queryset.order_by("-pk" if newest_first else "pk")
    if page.cursor:
        last_id = decode_cursor(page.cursor)
        queryset = (
            queryset.filter(pk__lt=last_id) if newest_first else queryset.filter(pk__gt=last_id)
        )
    rows = list(queryset[: page.limit + 1])
    has_more = len(rows) > page.limit
    rows = rows[: page.limit]
    return {"items": rows, "next_cursor": encode_cursor(rows[-1].pk) if has_more else None}


def get_or_404(queryset: QuerySet[ModelT], what: str, **lookup: Any) -> ModelT:
    """The one row `lookup` names, or a 404 that says which object was missing."""
    found = queryset.filter(**lookup).first()
    if found is None:
        (name, value), *_ = lookup.items()
        raise ApiError(404, f"No {what} with {_lookup_label(name)} {value}.")
    return found


@overload
def get_reference(
    queryset: QuerySet[ModelT], value: None, *, what: str, field: str, lookup: str = "pk"
) -> None: ...


@overload
def get_reference(
    queryset: QuerySet[ModelT], value: int | str, *, what: str, field: str, lookup: str = "pk"
) -> ModelT: ...


def get_reference(
    queryset: QuerySet[ModelT], value: Any, *, what: str, field: str, lookup: str = "pk"
) -> ModelT | None:
    """The row a request body refers to (None stays None), or a 400 naming the field."""
    if value is None:
        return None
    found = queryset.filter(**{lookup: value}).first()
    if found is None:
        raise ApiError(400, f"No {what} with {_lookup_label(lookup)} {value}.", field=field)
    return found


def _lookup_label(lookup: str) -> str:
    name = lookup.split("__")[-1]
    return "id" if name in {"pk", "public_id"} else name.replace("_", " ")
