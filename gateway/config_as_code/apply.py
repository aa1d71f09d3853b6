"""Applying a plan: save exactly the rows it marked, in one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from django.db import DataError, IntegrityError, models, transaction

from gateway.config_as_code.parse import ConfigError, Problem, config_load
from gateway.config_as_code.plan import Action, ConfigPlan, config_plan


def _fields_to_save(instance: models.Model, update_fields: Sequence[str]) -> list[str]:
    """`auto_now` only moves when `updated_at` is in `update_fields`: a changed row says so."""
    field_names = list(update_fields)
    if any(field.name == "updated_at" for field in instance._meta.concrete_fields):
        field_names.append("updated_at")
    return field_names


@transaction.atomic
def config_apply(plan: ConfigPlan) -> None:
    """Write what `plan` marked; call it in the transaction that made the plan."""
    for change in plan.changes:
        if change.action is Action.UNCHANGED:
            continue
        if change.action is Action.CREATE:
            change.instance.save()
        else:
            field_names = _fields_to_save(change.instance, change.update_fields)
            if field_names:
                change.instance.save(update_fields=field_names)
        if change.after_save is not None:
            change.after_save()


def config_apply_file(
    path: Path | str, *, dry_run: bool = False, environ: Mapping[str, str] | None = None
) -> ConfigPlan:
    """Validate, plan and (unless `dry_run`) apply a file in one transaction: all or nothing."""
    source = str(path)
    config = config_load(path)
    try:
        with transaction.atomic():
            plan = config_plan(config, source=source, environ=environ)
            if not dry_run:
                config_apply(plan)
    except (IntegrityError, DataError) as error:
        problem = Problem("", "", f"the database rejected the change: {error}")
        raise ConfigError(source, [problem]) from error
    return plan
