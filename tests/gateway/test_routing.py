import dataclasses

import httpx
import pytest

from gateway.errors import GatewayError
from gateway.proxy.exchange import Exchange
from gateway.proxy.forward import UpstreamUnavailable, forward
from gateway.routing import RouteSpec, TargetSpec, model_allowed, select_route
from gateway.snapshot import GatewaySnapshot
from tests.gateway.test_budgets import KEY_CONTEXT


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


async def test_a_route_with_no_target_is_refused_without_any_upstream_attempt():
    exchange = Exchange({"method": "POST"}, "/v1/messages")
    snapshot = GatewaySnapshot(routes=(), providers={}, upstream_keys={})

    async with httpx.AsyncClient() as client:
        with pytest.raises(GatewayError) as refused:
            await forward(
                client=client,
                exchange=exchange,
                snapshot=snapshot,
                route=dataclasses.replace(route("empty", "claude-*"), targets=()),
                key=KEY_CONTEXT,
                endpoint="/v1/messages",
                model="claude-x",
                payload={"model": "claude-x"},
                body=b'{"model":"claude-x"}',
                client_headers=[],
            )

    assert not isinstance(refused.value, UpstreamUnavailable)
    assert (refused.value.error_type, refused.value.message) == (
        "api_error",
        "Route 'empty' has no usable target.",
    )
    assert exchange.row["attempts"] == 0
