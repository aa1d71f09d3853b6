"""Routes with their ordered targets, and the price catalog, over the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from gateway.models import KeyHealth, ModelPrice, Provider, Route, UpstreamKey
from tests.api.conftest import CALLERS, expected_status


@pytest.fixture
def fallback(db) -> Provider:
    provider = Provider.objects.create(
        name="bedrock", kind="bedrock", base_url="https://bedrock.example"
    )
    UpstreamKey.objects.create(provider=provider, label="aws", secret="aws-secret")
    return provider


@pytest.fixture
def future_price(provider) -> ModelPrice:
    return ModelPrice.objects.create(
        provider=provider,
        model="claude-next",
        effective_from=timezone.now() + timedelta(days=30),
        input_per_mtok=4,
        output_per_mtok=20,
        cache_write_5m_per_mtok=5,
        cache_write_1h_per_mtok=8,
        cache_read_per_mtok="0.4",
    )


@pytest.mark.parametrize("name", CALLERS)
@pytest.mark.parametrize(
    ("method", "path", "body", "ok", "write"),
    [
        ("get", "/routes", None, 200, False),
        ("get", "/routes/{route}", None, 200, False),
        (
            "post",
            "/routes",
            {"name": "haiku", "model_pattern": "claude-haiku-*", "targets": "{targets}"},
            201,
            True,
        ),
        ("patch", "/routes/{route}", {"priority": 10}, 200, True),
        ("delete", "/routes/{route}", None, 204, True),
        ("get", "/prices", None, 200, False),
        ("get", "/prices/{price}", None, 200, False),
        (
            "post",
            "/prices",
            {
                "model": "claude-x",
                "effective_from": "2030-01-01T00:00:00Z",
                "input_per_mtok": "1",
                "output_per_mtok": "5",
            },
            201,
            True,
        ),
        ("patch", "/prices/{future_price}", {"output_per_mtok": "21"}, 200, True),
        ("delete", "/prices/{future_price}", None, 204, True),
    ],
)
def test_route_and_price_endpoints_follow_the_permission_matrix(
    caller, route, price, future_price, provider, name, method, path, body, ok, write
):
    if body and body.get("targets") == "{targets}":
        body = {**body, "targets": [{"provider_id": provider.pk}]}
    url = path.format(route=route.pk, price=price.pk, future_price=future_price.pk)

    response = caller(name).call(method, url, body)

    assert response.status_code == expected_status(name, ok=ok, write=write)


def test_create_a_route_with_ordered_targets(admin_api, provider, upstream_key, fallback, research):
    response = admin_api.post(
        "/routes",
        {
            "name": "sonnet",
            "model_pattern": "claude-sonnet-*",
            "priority": 10,
            "cost_center_ids": [research.pk],
            "targets": [
                {"provider_id": provider.pk},
                {"provider_id": fallback.pk, "upstream_model": "anthropic.claude-sonnet-4-5"},
            ],
        },
    )

    assert response.status_code == 201
    body = response.json()
    assert [(t["position"], t["provider_name"], t["upstream_model"]) for t in body["targets"]] == [
        (0, "anthropic", ""),
        (1, "bedrock", "anthropic.claude-sonnet-4-5"),
    ]
    assert body["cost_center_ids"] == [research.pk]
    event = AuditEvent.objects.get(object_type="gateway.route")
    assert event.changes["targets"] == [
        None,
        [[provider.pk, ""], [fallback.pk, "anthropic.claude-sonnet-4-5"]],
    ]


def test_a_target_on_a_provider_without_a_healthy_key_is_a_400_naming_the_target(
    admin_api, provider, upstream_key
):
    UpstreamKey.objects.update(health=KeyHealth.UNHEALTHY)

    response = admin_api.post(
        "/routes",
        {"name": "x", "model_pattern": "claude-*", "targets": [{"provider_id": provider.pk}]},
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Provider 'anthropic' has no enabled, healthy upstream key.",
        "field": "targets[0].provider_id",
    }
    assert not Route.objects.filter(name="x").exists()


def test_a_route_without_targets_is_refused(admin_api, db):
    response = admin_api.post("/routes", {"name": "x", "model_pattern": "claude-*", "targets": []})

    assert response.status_code == 422


def test_patch_replaces_the_target_list_in_the_order_given(admin_api, route, fallback):
    provider_id = route.targets.get().provider_id

    response = admin_api.patch(
        f"/routes/{route.pk}",
        {"targets": [{"provider_id": fallback.pk}, {"provider_id": provider_id}]},
    )

    assert response.status_code == 200
    assert [t["provider_name"] for t in response.json()["targets"]] == ["bedrock", "anthropic"]
    assert AuditEvent.objects.get().changes == {
        "targets": [[[provider_id, ""]], [[fallback.pk, ""], [provider_id, ""]]]
    }


def test_routes_filter_by_provider(admin_api, route, fallback):
    Route.objects.create(name="other", model_pattern="gpt-*")

    found = admin_api.get("/routes", provider=route.targets.get().provider_id).json()["items"]

    assert [item["name"] for item in found] == ["default"]


def test_a_bad_model_pattern_is_refused(admin_api, provider, upstream_key):
    response = admin_api.post(
        "/routes",
        {"name": "x", "model_pattern": "claude *", "targets": [{"provider_id": provider.pk}]},
    )

    assert response.status_code == 422


def test_a_price_without_cache_prices_gets_anthropics_multipliers(admin_api, db):
    response = admin_api.post(
        "/prices",
        {
            "model": "claude-x",
            "effective_from": "2030-01-01T00:00:00Z",
            "input_per_mtok": "3",
            "output_per_mtok": "15",
        },
    )

    assert response.status_code == 201
    body = response.json()
    assert body["provider_id"] is None
    assert (
        body["cache_write_5m_per_mtok"],
        body["cache_write_1h_per_mtok"],
        body["cache_read_per_mtok"],
    ) == ("3.7500", "6.0000", "0.3000")


def test_a_second_price_for_the_same_model_and_start_is_a_409(admin_api, price):
    response = admin_api.post(
        "/prices",
        {
            "provider_id": price.provider_id,
            "model": price.model,
            "effective_from": "2025-01-01T00:00:00Z",
            "input_per_mtok": "1",
            "output_per_mtok": "1",
        },
    )

    assert response.status_code == 409
    assert response.json() == {
        "detail": "claude-test-1 on anthropic already has a price from 2025-01-01 00:00.",
        "field": "effective_from",
    }


def test_a_price_in_force_cannot_be_changed_or_deleted(admin_api, price):
    changed = admin_api.patch(f"/prices/{price.pk}", {"output_per_mtok": "1"})
    deleted = admin_api.delete(f"/prices/{price.pk}")

    assert (changed.status_code, deleted.status_code) == (409, 409)
    assert changed.json()["field"] == "effective_from"
    price.refresh_from_db()
    assert price.output_per_mtok == 15


def test_a_scheduled_price_can_be_changed(admin_api, future_price):
    response = admin_api.patch(f"/prices/{future_price.pk}", {"output_per_mtok": "18.5"})

    assert response.status_code == 200
    assert response.json()["output_per_mtok"] == "18.5000"
    assert AuditEvent.objects.get().changes == {"output_per_mtok": ["20.0000", "18.5000"]}


def test_prices_filter_by_model_and_time(admin_api, price, future_price):
    at = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    in_force = admin_api.get("/prices", provider=price.provider_id, in_force_at=at)
    next_ones = admin_api.get("/prices", model="next")
    catalog = admin_api.get("/prices", any_provider="true", limit=500)

    assert [item["model"] for item in in_force.json()["items"]] == ["claude-test-1"]
    assert [item["model"] for item in next_ones.json()["items"]] == ["claude-next"]
    assert catalog.json()["items"]
    assert {item["provider_id"] for item in catalog.json()["items"]} == {None}
