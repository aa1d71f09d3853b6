"""The management API: one NinjaAPI mounting each app's routers under /api/v1.

Errors are mapped to HTTP here, once: `{"detail": "…", "field": "…"}` with 400 for bad
input, 404 for a missing object, 409 for a conflict with what is stored; 422 (ninja's
validation) for a body or query that does not fit the schema; 401/403 from `api_auth`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ObjectDoesNotExist, ValidationError
from django.db import IntegrityError
from django.db.models import Model, ProtectedError, RestrictedError
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.errors import ValidationError as SchemaValidationError

from accounts import api as accounts_api
from accounts.api_auth import docs_access_required
from billing import api as billing_api
from config.api_support import ApiError
from gateway import api as gateway_api

api = NinjaAPI(
    title="Gatehouse management API",
    version="1",
    urls_namespace="api",
    docs_decorator=docs_access_required,
    description=(
        "Automates what the admin does. Authenticate with `Authorization: Bearer gh_mgmt_…` "
        "(scope read: GET only; admin: everything), or a staff session. A developer's own "
        "virtual key may call `/me` only."
    ),
)

api.add_router("/me", gateway_api.me)
api.add_router("/cost-centers", accounts_api.cost_centers)
api.add_router("/users", accounts_api.users)
api.add_router("/keys", accounts_api.virtual_keys)
api.add_router("/providers", gateway_api.providers)
api.add_router("/upstream-keys", gateway_api.upstream_keys)
api.add_router("/routes", gateway_api.routes)
api.add_router("/prices", gateway_api.prices)
api.add_router("/requests", gateway_api.requests)
api.add_router("/usage", gateway_api.usage)
api.add_router("/budgets", gateway_api.budgets)
api.add_router("/invoices", billing_api.invoices)
api.add_router("/audit", accounts_api.audit)


@api.get("/health", auth=None, tags=["meta"])
def health(request: HttpRequest) -> dict[str, str]:
    return {"status": "ok"}


CONFLICT_CODES = frozenset({"unique", "unique_together", "conflict"})


def error_response(
    request: HttpRequest, status: int, detail: str, field: str | None
) -> HttpResponse:
    return api.create_response(request, {"detail": detail, "field": field}, status=status)


@api.exception_handler(ApiError)
def handle_api_error(request: HttpRequest, error: ApiError) -> HttpResponse:
    return error_response(request, error.status, error.detail, error.field)


@api.exception_handler(HttpError)
def handle_http_error(request: HttpRequest, error: HttpError) -> HttpResponse:
    """401/403 from `api_auth`, 400 for a body that is not JSON: the same shape as the rest."""
    return error_response(request, error.status_code, str(error), None)


@api.exception_handler(ValidationError)
def handle_validation_error(request: HttpRequest, error: ValidationError) -> HttpResponse:
    """A service refused the values: 409 when they clash with stored rows, else 400."""
    if hasattr(error, "error_dict"):
        field, errors = next(iter(error.error_dict.items()))
    else:
        field, errors = NON_FIELD_ERRORS, error.error_list
    codes = {item.code for item in errors}
    messages = " ".join(message for item in errors for message in item.messages)
    status = 409 if codes & CONFLICT_CODES else 400
    return error_response(request, status, messages, None if field == NON_FIELD_ERRORS else field)


@api.exception_handler(ProtectedError)
@api.exception_handler(RestrictedError)
def handle_protected_error(
    request: HttpRequest, error: ProtectedError | RestrictedError
) -> HttpResponse:
    blockers = (
        error.protected_objects if isinstance(error, ProtectedError) else error.restricted_objects
    )
    return error_response(request, 409, f"Still in use by {_describe(blockers)}.", None)


@api.exception_handler(IntegrityError)
def handle_integrity_error(request: HttpRequest, error: IntegrityError) -> HttpResponse:
    """A race the services' checks could not see (two writers at once)."""
    return error_response(
        request, 409, "This conflicts with a row written at the same time; try again.", None
    )


@api.exception_handler(ObjectDoesNotExist)
def handle_missing(request: HttpRequest, error: ObjectDoesNotExist) -> HttpResponse:
    return error_response(request, 404, str(error) or "Not found.", None)


@api.exception_handler(SchemaValidationError)
def handle_schema_error(request: HttpRequest, error: SchemaValidationError) -> HttpResponse:
    """Ninja's 422, without echoing the input back: it may be an upstream secret."""
    errors = [
        {key: value for key, value in item.items() if key in {"type", "loc", "msg"}}
        for item in error.errors
    ]
    return api.create_response(request, {"detail": errors}, status=422)


def _describe(objects: Any) -> str:
    """`2 users (alice, bob); 1 virtual key (alice laptop (gh_live_ab…))`, at most 5 named each."""
    by_kind: dict[str, list[Model]] = defaultdict(list)
    for obj in objects:
        by_kind[str(obj._meta.verbose_name)].append(obj)
    parts = []
    for kind, rows in sorted(by_kind.items()):
        noun = kind if len(rows) == 1 else str(rows[0]._meta.verbose_name_plural)
        labels = sorted(str(row) for row in rows)  # the database returns them in any order
        names = ", ".join(labels[:5]) + (", …" if len(labels) > 5 else "")
        parts.append(f"{len(rows)} {noun} ({names})")
    return "; ".join(parts)
