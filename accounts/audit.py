"""The audit trail: one AuditEvent per change, written in the caller's transaction.

Values are stored as JSON; anything that is or looks like a secret is replaced by a marker
before it reaches the row, so the trail can be shown to anyone who may read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.db import models, transaction

from accounts.models import AuditEvent, User

HIDDEN = "(hidden)"
SECRET_FIELDS = frozenset({"secret", "secret_hash", "previous_secret_hash", "password"})


@transaction.atomic
def audit_record(
    *,
    actor: User | None,
    via: str,
    action: str,
    obj: models.Model,
    changes: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Record that `actor` did `action` to `obj`; `changes` maps field → [old, new]."""
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.pk is not None else None,
        via=via,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk)[:64],
        object_repr=_object_repr(obj),
        changes={name: _scrubbed(name, value) for name, value in (changes or {}).items()},
    )


def audit_snapshot(obj: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """The current values of `fields`, ready to compare with `audit_diff`.

    Foreign keys are read by their id, so the snapshot never triggers a query.
    """
    snapshot = {}
    for name in fields:
        field = obj._meta.get_field(name)
        if isinstance(field, models.ManyToManyField):
            snapshot[name] = (
                sorted(related.pk for related in getattr(obj, name).all()) if obj.pk else []
            )
        elif isinstance(field, models.ForeignKey):
            snapshot[name] = getattr(obj, field.attname)
        else:
            snapshot[name] = getattr(obj, name)
    return snapshot


def audit_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Field → [old, new] for every field whose value differs."""
    return {
        name: [before.get(name), value]
        for name, value in after.items()
        if before.get(name) != value
    }


def audit_created(after: Mapping[str, Any]) -> dict[str, list[Any]]:
    return {name: [None, value] for name, value in after.items()}


def _object_repr(obj: models.Model) -> str:
    return str(obj)[:200]


def _scrubbed(name: str, value: Any) -> Any:
    if name in SECRET_FIELDS:
        return [HIDDEN, HIDDEN]
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item) for item in value]
    # Anything else (a gateway.secrets.Secret among them) is not written: its str() may be
    # safe, but nothing here can tell that for a type it does not know.
    return HIDDEN


ModelT = TypeVar("ModelT", bound=models.Model)


@transaction.atomic
def audited_create(*, obj: ModelT, actor: User | None, via: str, fields: Sequence[str]) -> ModelT:
    """Validate and insert `obj`, and record its `fields` as the creation's changes."""
    obj.full_clean()
    obj.save(force_insert=True)
    obj.refresh_from_db()  # what the database kept (decimal places, normalised values)
    audit_record(
        actor=actor,
        via=via,
        action="create",
        obj=obj,
        changes=audit_created(audit_snapshot(obj, fields)),
    )
    return obj


@transaction.atomic
def audited_update(
    *,
    obj: ModelT,
    actor: User | None,
    via: str,
    data: Mapping[str, Any],
    fields: Sequence[str],
    action: str = "update",
) -> ModelT:
    """Apply `data` (field → value, only names in `fields`), validate, save what changed."""
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"Not updatable here: {', '.join(sorted(unknown))}.")
    before = audit_snapshot(obj, fields)
    for name, value in data.items():
        setattr(obj, name, value)
    changed = list(audit_diff(before, audit_snapshot(obj, fields)))
    if not changed:
        return obj
    obj.full_clean()
    auto_now = [
        field.name for field in obj._meta.concrete_fields if getattr(field, "auto_now", False)
    ]
    obj.save(update_fields=[*changed, *auto_now])
    obj.refresh_from_db(fields=[*changed, *auto_now])
    changes = audit_diff(before, audit_snapshot(obj, fields))
    audit_record(actor=actor, via=via, action=action, obj=obj, changes=changes)
    return obj


@transaction.atomic
def audited_delete(*, obj: models.Model, actor: User | None, via: str) -> None:
    """Delete `obj`; the event is written first (it needs the id) and rolls back with a refusal."""
    audit_record(actor=actor, via=via, action="delete", obj=obj)
    obj.delete()
