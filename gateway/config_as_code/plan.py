"""Compare a validated config with the database, then write only the difference.

Planning reads and never writes, so `--dry-run` is the plan printed; `apply` saves exactly
the rows the plan marked, which keeps a second run of the same file a no-op (no `save()`,
no moved `updated_at`). Cross-references are resolved against the file first, then the
database, and every problem found is reported together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any

from django.db import models
from django.db.models import Prefetch

from accounts.models import CostCenter, User
from gateway.config_as_code.parse import ConfigError, Problem, entry_label
from gateway.config_as_code.schema import (
    GatehouseConfig,
    PriceConfig,
    RouteConfig,
    UpstreamKeyConfig,
)
from gateway.models import ModelPrice, Provider, Route, RouteTarget, UpstreamKey
from gateway.secrets import Secret

# Upstream keys get their own line in the summary: rotating one is a change worth seeing.
PLAN_SECTIONS = ("cost_centers", "users", "providers", "upstream_keys", "routes", "prices")


class Action(StrEnum):
    CREATE = "created"
    UPDATE = "updated"
    UNCHANGED = "unchanged"


@dataclass
class Change:
    """One row the file describes, and what applying the file does to it."""

    section: str
    name: str
    action: Action
    instance: models.Model
    fields: tuple[str, ...] = ()  # the file's names for what differs, for people
    update_fields: tuple[str, ...] = ()  # the model's names for what differs, for save()
    after_save: Callable[[], None] | None = None


@dataclass
class ConfigPlan:
    source: str
    changes: list[Change]

    def count(self, section: str, action: Action) -> int:
        return sum(1 for c in self.changes if c.section == section and c.action is action)

    @property
    def has_changes(self) -> bool:
        return any(change.action is not Action.UNCHANGED for change in self.changes)

    def change_lines(self) -> list[str]:
        """`+ users alice` for a new row, `~ routes haiku: priority` for a changed one."""
        lines = []
        for change in self.changes:
            if change.action is Action.CREATE:
                lines.append(f"+ {change.section} {change.name}")
            elif change.action is Action.UPDATE:
                lines.append(f"~ {change.section} {change.name}: {', '.join(change.fields)}")
        return lines

    def summary_lines(self) -> list[str]:
        lines = []
        totals = dict.fromkeys(Action, 0)
        for section in PLAN_SECTIONS:
            counts = {action: self.count(section, action) for action in Action}
            for action, number in counts.items():
                totals[action] += number
            lines.append(f"{section}: {_counts_text(counts)}")
        lines.append(f"total: {_counts_text(totals)}")
        return lines


def _counts_text(counts: Mapping[Action, int]) -> str:
    return ", ".join(f"{counts[action]} {action.value}" for action in Action)


FieldValues = Sequence[tuple[str, str, Any]]  # (name in the file, model attribute, wanted value)


def _assign(instance: models.Model, values: FieldValues) -> tuple[list[str], list[str]]:
    """Set every attribute that differs; foreign keys compare by primary key."""
    labels: list[str] = []
    attributes: list[str] = []
    for label, attribute, wanted in values:
        field = instance._meta.get_field(attribute)
        if isinstance(field, models.ForeignKey):
            wanted_pk = None if wanted is None else wanted.pk
            is_same = getattr(instance, field.attname) == wanted_pk and (
                wanted is None or wanted_pk is not None
            )
        else:
            is_same = getattr(instance, attribute) == wanted
        if not is_same:
            setattr(instance, attribute, wanted)
            labels.append(label)
            attributes.append(attribute)
    return labels, attributes


class _Planner:
    def __init__(self, config: GatehouseConfig, source: str, environ: Mapping[str, str]) -> None:
        self.config = config
        self.source = source
        self.environ = environ
        self.problems: list[Problem] = []
        self.changes: list[Change] = []
        self.cost_centers: dict[str, CostCenter] = {}
        self.providers: dict[str, Provider] = {}

    def plan(self) -> ConfigPlan:
        self._load_references()
        self._plan_cost_centers()
        self._plan_users()
        self._plan_providers()
        self._plan_routes()
        self._plan_prices()
        if self.problems:
            raise ConfigError(self.source, self.problems)
        self.changes.sort(key=lambda change: PLAN_SECTIONS.index(change.section))
        return ConfigPlan(source=self.source, changes=self.changes)

    def _load_references(self) -> None:
        config = self.config
        codes = {entry.code for entry in config.cost_centers}
        codes |= {entry.cost_center for entry in config.users if entry.cost_center}
        codes |= {code for route in config.routes for code in route.cost_centers}
        self.cost_centers = {cc.code: cc for cc in CostCenter.objects.filter(code__in=codes)}
        names = {entry.name for entry in config.providers}
        names |= {target.provider for route in config.routes for target in route.targets}
        names |= {price.provider for price in config.prices if price.provider}
        self.providers = {p.name: p for p in Provider.objects.filter(name__in=names)}

    def _record(
        self,
        section: str,
        name: str,
        instance: models.Model,
        values: FieldValues,
        *,
        is_new: bool,
        extra_fields: Sequence[str] = (),
        after_save: Callable[[], None] | None = None,
    ) -> None:
        labels, attributes = _assign(instance, values)
        labels.extend(extra_fields)
        if is_new:
            action = Action.CREATE
        elif labels:
            action = Action.UPDATE
        else:
            action = Action.UNCHANGED
        self.changes.append(
            Change(
                section=section,
                name=name,
                action=action,
                instance=instance,
                fields=tuple(labels) if action is Action.UPDATE else (),
                update_fields=tuple(attributes) if action is Action.UPDATE else (),
                after_save=after_save,
            )
        )

    def _plan_cost_centers(self) -> None:
        for entry in self.config.cost_centers:
            existing = self.cost_centers.get(entry.code)
            instance = existing or CostCenter(code=entry.code)
            values = [
                ("name", "name", entry.name),
                ("monthly_budget_usd", "monthly_budget_usd", entry.monthly_budget_usd),
                ("external_billing_code", "external_billing_code", entry.external_billing_code),
                ("contact_email", "contact_email", entry.contact_email),
            ]
            self._record("cost_centers", entry.code, instance, values, is_new=existing is None)
            self.cost_centers[entry.code] = instance

    def _plan_users(self) -> None:
        usernames = [entry.username for entry in self.config.users]
        existing_users = {u.username: u for u in User.objects.filter(username__in=usernames)}
        for index, entry in enumerate(self.config.users):
            cost_center = None
            if entry.cost_center is not None:
                cost_center = self.cost_centers.get(entry.cost_center)
                if cost_center is None:
                    where = entry_label("users", index, entry.username)
                    self._unknown(where, "cost_center", "cost center", entry.cost_center)
                    continue
            existing = existing_users.get(entry.username)
            instance = existing or _new_user(entry.username)
            values = [
                ("email", "email", entry.email),
                ("cost_center", "default_cost_center", cost_center),
                ("is_staff", "is_staff", entry.is_staff),
                ("monthly_budget_usd", "monthly_budget_usd", entry.monthly_budget_usd),
            ]
            self._record("users", entry.username, instance, values, is_new=existing is None)

    def _plan_providers(self) -> None:
        existing_keys = self._existing_upstream_keys()
        for index, entry in enumerate(self.config.providers):
            existing = self.providers.get(entry.name)
            instance = existing or Provider(name=entry.name)
            values = [
                ("kind", "kind", entry.kind.value),
                ("base_url", "base_url", entry.base_url),
                ("options", "options", entry.options),
                ("timeouts.connect_s", "connect_timeout_s", entry.timeouts.connect_s),
                ("timeouts.read_s", "read_timeout_s", entry.timeouts.read_s),
                ("enabled", "is_enabled", entry.enabled),
            ]
            self._record("providers", entry.name, instance, values, is_new=existing is None)
            self.providers[entry.name] = instance
            for key_index, key_entry in enumerate(entry.keys):
                self._plan_upstream_key(index, instance, key_index, key_entry, existing_keys)

    def _existing_upstream_keys(self) -> dict[tuple[int, str], UpstreamKey]:
        names = [entry.name for entry in self.config.providers]
        try:
            return {
                (upstream_key.provider_id, upstream_key.label): upstream_key
                for upstream_key in UpstreamKey.objects.filter(provider__name__in=names)
            }
        except ValueError as error:  # a stored secret that the configured keys cannot decrypt
            self.problems.append(Problem("", "providers", f"stored upstream keys: {error}"))
            return {}

    def _plan_upstream_key(
        self,
        provider_index: int,
        provider: Provider,
        key_index: int,
        entry: UpstreamKeyConfig,
        existing_keys: Mapping[tuple[int, str], UpstreamKey],
    ) -> None:
        secret = self._secret_from_environment(entry.secret_env)
        if secret is None:
            state = "is empty" if entry.secret_env in self.environ else "is not set"
            where = entry_label("providers", provider_index, provider.name)
            message = f"environment variable {entry.secret_env} {state}"
            self.problems.append(Problem(where, f"keys[{key_index}].secret_env", message))
            return
        existing = existing_keys.get((provider.pk, entry.label)) if provider.pk else None
        instance = existing or UpstreamKey(provider=provider, label=entry.label)
        values = [
            ("secret", "secret", Secret(secret)),  # Secret compares by its decrypted value
            ("weight", "weight", entry.weight),
            ("enabled", "is_enabled", entry.enabled),
        ]
        name = f"{provider.name}/{entry.label}"
        self._record("upstream_keys", name, instance, values, is_new=existing is None)

    def _secret_from_environment(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def _plan_routes(self) -> None:
        names = [entry.name for entry in self.config.routes]
        ordered_targets = RouteTarget.objects.select_related("provider").order_by("position")
        existing_routes = {
            route.name: route
            for route in Route.objects.filter(name__in=names).prefetch_related(
                "cost_centers", Prefetch("targets", queryset=ordered_targets)
            )
        }
        for index, entry in enumerate(self.config.routes):
            targets = self._route_targets(index, entry)
            cost_centers = self._route_cost_centers(index, entry)
            if targets is None or cost_centers is None:
                continue
            existing = existing_routes.get(entry.name)
            instance = existing or Route(name=entry.name)
            values = [
                ("match", "model_pattern", entry.match),
                ("priority", "priority", entry.priority),
                ("key_tags", "key_tags", list(entry.key_tags)),
                ("cache.policy", "cache_policy", entry.cache.policy.value),
                ("cache.ttl", "cache_ttl", entry.cache.ttl.value),
                ("enabled", "is_enabled", entry.enabled),
            ]
            is_targets_changed = existing is None or [
                (target.provider.name, target.upstream_model) for target in existing.targets.all()
            ] != [(provider.name, model) for provider, model in targets]
            is_cost_centers_changed = existing is None or {
                cost_center.code for cost_center in existing.cost_centers.all()
            } != {cost_center.code for cost_center in cost_centers}
            extra_fields = [
                label
                for label, is_changed in (
                    ("targets", is_targets_changed),
                    ("cost_centers", is_cost_centers_changed),
                )
                if is_changed
            ]
            after_save = partial(
                _write_route_links,
                instance,
                targets if is_targets_changed else None,
                cost_centers if is_cost_centers_changed else None,
            )
            self._record(
                "routes",
                entry.name,
                instance,
                values,
                is_new=existing is None,
                extra_fields=extra_fields,
                after_save=after_save,
            )

    def _route_targets(self, index: int, entry: RouteConfig) -> list[tuple[Provider, str]] | None:
        targets = []
        for target_index, target in enumerate(entry.targets):
            provider = self.providers.get(target.provider)
            if provider is None:
                where = entry_label("routes", index, entry.name)
                field = f"targets[{target_index}].provider"
                self._unknown(where, field, "provider", target.provider)
            else:
                targets.append((provider, target.upstream_model))
        return targets if len(targets) == len(entry.targets) else None

    def _route_cost_centers(self, index: int, entry: RouteConfig) -> list[CostCenter] | None:
        cost_centers = []
        for code_index, code in enumerate(entry.cost_centers):
            cost_center = self.cost_centers.get(code)
            if cost_center is None:
                where = entry_label("routes", index, entry.name)
                self._unknown(where, f"cost_centers[{code_index}]", "cost center", code)
            else:
                cost_centers.append(cost_center)
        return cost_centers if len(cost_centers) == len(entry.cost_centers) else None

    def _plan_prices(self) -> None:
        models_named = {entry.model for entry in self.config.prices}
        existing_prices = {
            (price.provider_id, price.model, price.effective_from): price
            for price in ModelPrice.objects.filter(model__in=models_named)
        }
        for index, entry in enumerate(self.config.prices):
            provider = None
            if entry.provider is not None:
                provider = self.providers.get(entry.provider)
                if provider is None:
                    where = entry_label("prices", index, entry.model)
                    self._unknown(where, "provider", "provider", entry.provider)
                    continue
            provider_pk = None if provider is None else provider.pk
            existing = None
            if provider is None or provider_pk is not None:
                existing = existing_prices.get((provider_pk, entry.model, entry.effective_from))
            instance = existing or ModelPrice(
                provider=provider, model=entry.model, effective_from=entry.effective_from
            )
            self._record(
                "prices",
                _price_name(entry),
                instance,
                _price_values(entry),
                is_new=existing is None,
            )

    def _unknown(self, where: str, field: str, what: str, value: str) -> None:
        self.problems.append(Problem(where, field, f"unknown {what} '{value}'"))


def _new_user(username: str) -> User:
    """People created from the file sign in later through SSO or an admin-set password."""
    user = User(username=username)
    user.set_unusable_password()
    return user


def _price_name(entry: PriceConfig) -> str:
    return f"{entry.model} @ {entry.provider or 'any'} from {entry.effective_from.isoformat()}"


def _price_values(entry: PriceConfig) -> FieldValues:
    return [
        ("input", "input_per_mtok", entry.input),
        ("output", "output_per_mtok", entry.output),
        ("cache_write_5m", "cache_write_5m_per_mtok", entry.resolved_cache_write_5m()),
        ("cache_write_1h", "cache_write_1h_per_mtok", entry.resolved_cache_write_1h()),
        ("cache_read", "cache_read_per_mtok", entry.resolved_cache_read()),
    ]


def _write_route_links(
    route: Route,
    targets: Sequence[tuple[Provider, str]] | None,
    cost_centers: Sequence[CostCenter] | None,
) -> None:
    """Targets are replaced as a whole: their order is the route's meaning."""
    if targets is not None:
        route.targets.all().delete()
        RouteTarget.objects.bulk_create(
            RouteTarget(route=route, position=position, provider=provider, upstream_model=model)
            for position, (provider, model) in enumerate(targets)
        )
    if cost_centers is not None:
        route.cost_centers.set(cost_centers)


def config_plan(
    config: GatehouseConfig, *, source: str, environ: Mapping[str, str] | None = None
) -> ConfigPlan:
    """Work out what applying `config` would change; reads the database, never writes."""
    return _Planner(config, source, os.environ if environ is None else environ).plan()
