"""Management API for accounts: cost centers, users, virtual keys and the audit log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.http import HttpRequest
from ninja import Path, Query, Router, Status

from accounts import services
from accounts.api_auth import MANAGE, principal_of
from accounts.models import AuditEvent, CostCenter, User, VirtualKey
from accounts.schemas import (
    AuditEventFilters,
    AuditEventOut,
    CostCenterFilters,
    CostCenterIn,
    CostCenterOut,
    CostCenterPatch,
    UserFilters,
    UserIn,
    UserOut,
    UserPatch,
    VirtualKeyFilters,
    VirtualKeyIn,
    VirtualKeyIssuedOut,
    VirtualKeyOut,
    VirtualKeyPatch,
    VirtualKeyRotateIn,
)
from config.api_support import (
    ObjectId,
    Page,
    PageQuery,
    get_or_404,
    get_reference,
    paginate,
    responses,
)

VIA = "api"
KeyId = Path(..., pattern=r"^vk_[0-9a-f]{16}$", description="The key's public id, vk_…")

cost_centers = Router(auth=MANAGE, tags=["cost centers"])
users = Router(auth=MANAGE, tags=["users"])
virtual_keys = Router(auth=MANAGE, tags=["keys"])
audit = Router(auth=MANAGE, tags=["audit"])


class IssuedView:
    """A virtual key as the one response that shows its secret sees it."""

    def __init__(self, issued: services.IssuedVirtualKey) -> None:
        self._virtual_key = issued.virtual_key
        self.secret = issued.secret

    def __getattr__(self, name: str) -> Any:
        return getattr(self._virtual_key, name)


# --- Cost centers


@cost_centers.get("", response=responses(200, Page[CostCenterOut]))
def list_cost_centers(
    request: HttpRequest, filters: Query[CostCenterFilters], page: Query[PageQuery]
) -> dict[str, Any]:
    return paginate(filters.filter(CostCenter.objects.all()), page)


@cost_centers.get("/{cost_center_id}", response=responses(200, CostCenterOut, 404))
def get_cost_center(request: HttpRequest, cost_center_id: Path[ObjectId]) -> CostCenter:
    return get_or_404(CostCenter.objects.all(), "cost center", pk=cost_center_id)


@cost_centers.post("", response=responses(201, CostCenterOut, 409))
def create_cost_center(request: HttpRequest, body: CostCenterIn) -> Status[CostCenter]:
    cost_center = services.cost_center_create(
        actor=principal_of(request).actor, via=VIA, **body.model_dump()
    )
    return Status(201, cost_center)


@cost_centers.patch("/{cost_center_id}", response=responses(200, CostCenterOut, 404, 409))
def update_cost_center(
    request: HttpRequest, cost_center_id: Path[ObjectId], body: CostCenterPatch
) -> CostCenter:
    cost_center = get_or_404(CostCenter.objects.all(), "cost center", pk=cost_center_id)
    return services.cost_center_update(
        cost_center=cost_center,
        actor=principal_of(request).actor,
        via=VIA,
        data=body.model_dump(exclude_unset=True),
    )


@cost_centers.delete("/{cost_center_id}", response=responses(204, None, 404, 409))
def delete_cost_center(request: HttpRequest, cost_center_id: Path[ObjectId]) -> Status[None]:
    """Only a cost center nothing refers to; otherwise 409 names what does
    (set `is_active` to false instead)."""
    cost_center = get_or_404(CostCenter.objects.all(), "cost center", pk=cost_center_id)
    services.cost_center_delete(cost_center=cost_center, actor=principal_of(request).actor, via=VIA)
    return Status(204, None)


# --- Users


def _user_data(fields: dict[str, Any]) -> dict[str, Any]:
    if "default_cost_center_id" in fields:
        fields["default_cost_center"] = get_reference(
            CostCenter.objects.all(),
            fields.pop("default_cost_center_id"),
            what="cost center",
            field="default_cost_center_id",
        )
    return fields


@users.get("", response=responses(200, Page[UserOut]))
def list_users(
    request: HttpRequest, filters: Query[UserFilters], page: Query[PageQuery]
) -> dict[str, Any]:
    return paginate(filters.filter(User.objects.all()), page)


@users.get("/{user_id}", response=responses(200, UserOut, 404))
def get_user(request: HttpRequest, user_id: Path[ObjectId]) -> User:
    return get_or_404(User.objects.all(), "user", pk=user_id)


@users.post("", response=responses(201, UserOut, 409))
def create_user(request: HttpRequest, body: UserIn) -> Status[User]:
    user = services.user_create(
        actor=principal_of(request).actor, via=VIA, **_user_data(body.model_dump())
    )
    return Status(201, user)


@users.patch("/{user_id}", response=responses(200, UserOut, 404, 409))
def update_user(request: HttpRequest, user_id: Path[ObjectId], body: UserPatch) -> User:
    user = get_or_404(User.objects.all(), "user", pk=user_id)
    return services.user_update(
        user=user,
        actor=principal_of(request).actor,
        via=VIA,
        data=_user_data(body.model_dump(exclude_unset=True)),
    )


@users.delete("/{user_id}", response=responses(200, UserOut, 404))
def deactivate_user(request: HttpRequest, user_id: Path[ObjectId]) -> User:
    """Users are deactivated, never deleted: their requests and invoices keep naming them."""
    user = get_or_404(User.objects.all(), "user", pk=user_id)
    return services.user_deactivate(user=user, actor=principal_of(request).actor, via=VIA)


# --- Virtual keys


def _key_data(fields: dict[str, Any]) -> dict[str, Any]:
    if "owner_id" in fields:
        fields["owner"] = get_reference(
            User.objects.all(), fields.pop("owner_id"), what="user", field="owner_id"
        )
    if "cost_center_id" in fields:
        fields["cost_center"] = get_reference(
            CostCenter.objects.all(),
            fields.pop("cost_center_id"),
            what="cost center",
            field="cost_center_id",
        )
    return fields


def _virtual_key(key_id: str) -> VirtualKey:
    return get_or_404(VirtualKey.objects.all(), "virtual key", public_id=key_id)


@virtual_keys.get("", response=responses(200, Page[VirtualKeyOut]))
def list_virtual_keys(
    request: HttpRequest, filters: Query[VirtualKeyFilters], page: Query[PageQuery]
) -> dict[str, Any]:
    return paginate(filters.filter(VirtualKey.objects.all()), page)


@virtual_keys.get("/{key_id}", response=responses(200, VirtualKeyOut, 404))
def get_virtual_key(request: HttpRequest, key_id: str = KeyId) -> VirtualKey:
    return _virtual_key(key_id)


@virtual_keys.post("", response=responses(201, VirtualKeyIssuedOut, 409))
def issue_virtual_key(request: HttpRequest, body: VirtualKeyIn) -> Status[IssuedView]:
    """The response carries the secret; it is never shown again."""
    issued = services.virtual_key_issue_audited(
        actor=principal_of(request).actor, via=VIA, **_key_data(body.model_dump())
    )
    return Status(201, IssuedView(issued))


@virtual_keys.patch("/{key_id}", response=responses(200, VirtualKeyOut, 404, 409))
def update_virtual_key(
    request: HttpRequest, body: VirtualKeyPatch, key_id: str = KeyId
) -> VirtualKey:
    return services.virtual_key_update(
        virtual_key=_virtual_key(key_id),
        actor=principal_of(request).actor,
        via=VIA,
        data=_key_data(body.model_dump(exclude_unset=True)),
    )


@virtual_keys.post("/{key_id}/revoke", response=responses(200, VirtualKeyOut, 404))
def revoke_virtual_key(request: HttpRequest, key_id: str = KeyId) -> VirtualKey:
    return services.virtual_key_revoke_audited(
        virtual_key=_virtual_key(key_id), actor=principal_of(request).actor, via=VIA
    )


@virtual_keys.post("/{key_id}/rotate", response=responses(200, VirtualKeyIssuedOut, 404, 409))
def rotate_virtual_key(
    request: HttpRequest, body: VirtualKeyRotateIn, key_id: str = KeyId
) -> IssuedView:
    """A new secret, shown in this response only; the old one works for `grace_hours` more."""
    issued = services.virtual_key_rotate_audited(
        virtual_key=_virtual_key(key_id),
        actor=principal_of(request).actor,
        via=VIA,
        grace=timedelta(hours=body.grace_hours),
    )
    return IssuedView(issued)


# --- The audit log


@audit.get("", response=responses(200, Page[AuditEventOut]))
def list_audit_events(
    request: HttpRequest, filters: Query[AuditEventFilters], page: Query[PageQuery]
) -> dict[str, Any]:
    events = filters.filter(AuditEvent.objects.select_related("actor"))
    return paginate(events, page, newest_first=True)
