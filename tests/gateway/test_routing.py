from gateway.routing import RouteSpec, TargetSpec, model_allowed, select_route


def route(name, pattern, priority=100, cost_centers=(), tags=()):
    return RouteSpec(
        route_id=hash(name) % 1000,
        name=name,
        priority=priority,
        model_pattern=pattern,
        cost_center_ids=frozenset(cost_centers),
        key_tags=frozenset(tags),
        cache_policy="off",
        cache_ttl="5m",
        targets=(TargetSpec(provider_id=1, provider_name="anthropic", upstream_model=""),),
    )


def test_first_matching_route_in_priority_order_wins():
    routes = (route("haiku", "claude-haiku-*", 10), route("default", "claude-*", 100))
    assert select_route(routes, "claude-haiku-4-5", None, ()).name == "haiku"
    assert select_route(routes, "claude-opus-5", None, ()).name == "default"
    assert select_route(routes, "gpt-5", None, ()) is None


def test_route_limited_to_cost_centers_and_tags_only_applies_to_them():
    routes = (
        route("research-only", "claude-*", 10, cost_centers={7}, tags={"beta"}),
        route("default", "claude-*"),
    )
    assert select_route(routes, "claude-opus-5", 7, ("beta",)).name == "research-only"
    assert select_route(routes, "claude-opus-5", 7, ()).name == "default"
    assert select_route(routes, "claude-opus-5", 8, ("beta",)).name == "default"


def test_empty_allow_list_allows_every_model_and_patterns_restrict():
    assert model_allowed("claude-opus-5", ()) is True
    assert model_allowed("claude-opus-5", ("claude-sonnet-*",)) is False
    assert model_allowed("claude-sonnet-5", ("claude-sonnet-*",)) is True
