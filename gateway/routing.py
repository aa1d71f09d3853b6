"""Which provider(s) a request goes to: pure matching over a snapshot of the routes."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class TargetSpec:
    provider_id: int
    provider_name: str
    upstream_model: str  # '' = the model the client asked for


@dataclass(frozen=True)
class RouteSpec:
    route_id: int
    name: str
    priority: int
    model_pattern: str
    cost_center_ids: frozenset[int]
    key_tags: frozenset[str]
    cache_policy: str
    cache_ttl: str
    targets: tuple[TargetSpec, ...]

    def applies_to(self, model: str, cost_center_id: int | None, key_tags: tuple[str, ...]) -> bool:
        if not fnmatchcase(model, self.model_pattern):
            return False
        if self.cost_center_ids and cost_center_id not in self.cost_center_ids:
            return False
        return not (self.key_tags and not self.key_tags.intersection(key_tags))


def model_allowed(model: str, allowed_patterns: tuple[str, ...]) -> bool:
    """An empty allow-list means every model."""
    return not allowed_patterns or any(fnmatchcase(model, pattern) for pattern in allowed_patterns)


def select_route(
    routes: tuple[RouteSpec, ...], model: str, cost_center_id: int | None, key_tags: tuple[str, ...]
) -> RouteSpec | None:
    """The first route, by priority then name, whose conditions hold. Routes come pre-sorted."""
    for route in routes:
        if route.applies_to(model, cost_center_id, key_tags):
            return route
    return None
