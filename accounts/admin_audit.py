"""Admin changes land in the same audit trail as API changes (queryable at /api/v1/audit).

Django's admin already reports every add, change and delete — revoke and rotate actions
included — through `log_addition` / `log_change` / `log_deletion`; this mixin records each
of them as an AuditEvent with `via="admin"` too. Change messages list field names only, so
no secret can reach the trail.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from accounts.audit import audit_record
from accounts.models import User

ACTIONS_BY_MESSAGE = {"Revoked.": "revoke", "Rotated the secret.": "rotate"}


def _actor(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


def _changed_fields(message: Any) -> dict[str, Any]:
    if isinstance(message, list):
        fields = sorted(
            {name for entry in message for name in entry.get("changed", {}).get("fields", [])}
        )
        return {"fields": fields} if fields else {}
    return {"message": str(message)} if message else {}


class AuditedAdminMixin:
    def log_addition(self, request: HttpRequest, obj: models.Model, message: Any) -> Any:
        audit_record(actor=_actor(request), via="admin", action="create", obj=obj)
        return super().log_addition(request, obj, message)  # type: ignore[misc]

    def log_change(self, request: HttpRequest, obj: models.Model, message: Any) -> Any:
        action = ACTIONS_BY_MESSAGE.get(message, "update") if isinstance(message, str) else "update"
        audit_record(
            actor=_actor(request),
            via="admin",
            action=action,
            obj=obj,
            changes=_changed_fields(message),
        )
        return super().log_change(request, obj, message)  # type: ignore[misc]

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        for obj in queryset:
            audit_record(actor=_actor(request), via="admin", action="delete", obj=obj)
        return super().log_deletions(request, queryset)  # type: ignore[misc]


class AuditedModelAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """The base of every Gatehouse ModelAdmin."""
