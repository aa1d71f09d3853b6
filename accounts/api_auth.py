"""Who may call the management API, and the one place that decides what they may do.

Three credentials are recognised:

- a management token (`gh_mgmt_…`) as `Authorization: Bearer`: scope `read` may make GET
  requests, scope `admin` may do everything;
- a logged-in staff member's session cookie: everything, with Django's CSRF check on writes;
- a developer's own virtual key (`gh_live_…`) as `Authorization: Bearer` or `x-api-key`:
  only `/api/v1/me`.

The auth classes only find out who is calling; `authorize` decides, for every operation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from ninja.errors import AuthorizationError, HttpError
from ninja.security import APIKeyCookie, APIKeyHeader, HttpBearer
from ninja.utils import check_csrf

from accounts import keys
from accounts.models import TokenScope, User
from accounts.selectors import management_token_resolve, virtual_key_resolve

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Access(StrEnum):
    """What an operation needs: the management surface, or only the caller's own data."""

    MANAGE = "manage"
    SELF = "self"


class CredentialKind(StrEnum):
    MANAGEMENT_TOKEN = "management_token"
    STAFF_SESSION = "staff_session"
    VIRTUAL_KEY = "virtual_key"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: `request.auth` in every endpoint."""

    kind: CredentialKind
    user: User
    scope: str  # TokenScope for tokens; admin for staff sessions; "" for virtual keys
    virtual_key_id: int | None = None

    @property
    def actor(self) -> User:
        """Whom the audit trail names for a write."""
        return self.user


def principal_of(request: HttpRequest) -> Principal:
    """The caller of an operation, as its auth class found it."""
    principal: Principal = request.auth  # type: ignore[attr-defined]
    return principal


def authorize(principal: Principal, *, method: str, access: Access) -> None:
    """The permission check: raise 403 unless `principal` may make this request."""
    if principal.kind is CredentialKind.VIRTUAL_KEY:
        if access is Access.SELF:
            return
        raise AuthorizationError(message="A virtual key may only call /api/v1/me.")
    if method.upper() in SAFE_METHODS or principal.scope == TokenScope.ADMIN:
        return
    raise AuthorizationError(
        message="This token has the read scope: it may only make GET requests."
    )


def principal_from_secret(secret: str) -> Principal | None:
    """A management token or a virtual key; None for anything else (unknown, revoked, expired)."""
    if secret.startswith(keys.MANAGEMENT_TOKEN_PREFIX):
        token = management_token_resolve(secret)
        if token is None:
            return None
        return Principal(CredentialKind.MANAGEMENT_TOKEN, user=token.owner, scope=token.scope)
    if secret.startswith(keys.VIRTUAL_KEY_PREFIX):
        context = virtual_key_resolve(secret)
        if context is None:
            return None
        user = User.objects.filter(pk=context.user_id, is_active=True).first()
        if user is None:
            return None
        return Principal(
            CredentialKind.VIRTUAL_KEY, user=user, scope="", virtual_key_id=context.key_id
        )
    return None


def _authorized(
    principal: Principal | None, request: HttpRequest, access: Access
) -> Principal | None:
    if principal is not None:
        authorize(principal, method=request.method or "GET", access=access)
    return principal


class BearerToken(HttpBearer):
    """`Authorization: Bearer gh_mgmt_…` (or a developer's `gh_live_…`, for /me)."""

    def __init__(self, access: Access) -> None:
        super().__init__()
        self.access = access

    def authenticate(self, request: HttpRequest, token: str) -> Principal | None:
        return _authorized(principal_from_secret(token.strip()), request, self.access)


class VirtualKeyHeader(APIKeyHeader):
    """`x-api-key: gh_live_…`, the header the Anthropic SDKs send."""

    param_name = "x-api-key"

    def __init__(self, access: Access) -> None:
        super().__init__()
        self.access = access

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        if not key or not key.startswith(keys.VIRTUAL_KEY_PREFIX):
            return None
        return _authorized(principal_from_secret(key.strip()), request, self.access)


class StaffSession(APIKeyCookie):
    """A logged-in staff member's Django session. Writes must pass the CSRF check.

    Unlike ninja's `SessionAuth`, the CSRF check runs only once the session is known to be
    a staff member's, so a token-authenticated write is never refused for a missing CSRF token.
    """

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self, access: Access) -> None:
        super().__init__(csrf=True)
        self.access = access

    def _get_key(self, request: HttpRequest) -> str | None:
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        user = getattr(request, "user", None)
        if user is None or not (user.is_authenticated and user.is_active and user.is_staff):
            return None
        exempt = getattr(request, "_ninja_csrf_exempt", False)
        if (request.method or "GET").upper() not in SAFE_METHODS and not exempt:
            if check_csrf(request) is not None:
                raise HttpError(
                    403, "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken."
                )
        principal = Principal(CredentialKind.STAFF_SESSION, user=user, scope=TokenScope.ADMIN)
        return _authorized(principal, request, self.access)


def api_auth(access: Access) -> list[Any]:
    """The auth callbacks for an operation that needs `access`; the first that knows the caller wins."""
    return [BearerToken(access), VirtualKeyHeader(access), StaffSession(access)]


MANAGE = api_auth(Access.MANAGE)
SELF = api_auth(Access.SELF)


def docs_access_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The OpenAPI document and docs page: staff sessions, and management tokens of any scope
    (the API's own clients need its schema); everyone else goes to the admin login."""
    staff_view = staff_member_required(view)

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() == "bearer" and secret.strip().startswith(keys.MANAGEMENT_TOKEN_PREFIX):
            if principal_from_secret(secret.strip()) is not None:
                return view(request, *args, **kwargs)
        return staff_view(request, *args, **kwargs)

    return wrapper
