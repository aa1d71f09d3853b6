"""Writes a developer makes on their own keys from the self-service pages.

Issuing is capped by `User.max_active_keys`. The owner's row is locked first, so two issue
requests sent at once by the same person are counted one after the other and cannot both
slip under the cap.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import KeyState, User, VirtualKey
from accounts.selectors import active_virtual_key_count
from accounts.services import (
    IssuedVirtualKey,
    virtual_key_issue_audited,
    virtual_key_revoke_audited,
    virtual_key_rotate_audited,
)

VIA = "self-service"
ROTATION_GRACE = timedelta(hours=24)


class KeyLimitReached(ValidationError):
    pass


@transaction.atomic
def own_virtual_key_issue(*, owner: User, name: str = "") -> IssuedVirtualKey:
    User.objects.select_for_update().filter(pk=owner.pk).values_list("pk", flat=True).get()
    active = active_virtual_key_count(owner.pk)
    if active >= owner.max_active_keys:
        raise KeyLimitReached(
            f"You already have {active} active keys, the most you may hold. "
            "Revoke one you no longer use first.",
            code="key_limit",
        )
    return virtual_key_issue_audited(actor=owner, via=VIA, owner=owner, name=name)


@transaction.atomic
def own_virtual_key_rotate(*, owner: User, virtual_key: VirtualKey) -> IssuedVirtualKey:
    """A new secret; the old one keeps working for `ROTATION_GRACE` so nothing breaks mid-task."""
    _check_owner(owner, virtual_key)
    if virtual_key.state != KeyState.ACTIVE:
        raise ValidationError(
            "A revoked or expired key cannot be rotated; issue a new one.", code="not_active"
        )
    return virtual_key_rotate_audited(
        virtual_key=virtual_key, actor=owner, via=VIA, grace=ROTATION_GRACE
    )


@transaction.atomic
def own_virtual_key_revoke(*, owner: User, virtual_key: VirtualKey) -> VirtualKey:
    _check_owner(owner, virtual_key)
    return virtual_key_revoke_audited(virtual_key=virtual_key, actor=owner, via=VIA)


def _check_owner(owner: User, virtual_key: VirtualKey) -> None:
    if virtual_key.owner_id != owner.pk:
        raise PermissionError("Only a key's owner changes it from the self-service pages.")
