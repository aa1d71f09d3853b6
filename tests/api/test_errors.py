"""Bad input gets a 4xx with the field named, never a 500."""

from __future__ import annotations

import pytest


def test_a_body_that_is_not_json_is_a_400(admin_api, db):
    response = admin_api.client.post(
        "/api/v1/cost-centers",
        data="{not json",
        content_type="application/json",
        headers=admin_api.headers,
    )

    assert response.status_code == 400
    assert response.json() == {"detail": "Cannot parse request body", "field": None}


@pytest.mark.parametrize(
    "body",
    [
        {"code": "nul", "name": "Has a \x00 inside"},
        {"code": "ok", "name": "ok", "monthly_budget_usd": "1.001"},
        {"code": "ok", "name": "ok", "monthly_budget_usd": "-1"},
        {"code": "not a slug", "name": "ok"},
        {"code": "ok", "name": "ok", "cache_policy": "sometimes"},
        {"code": "ok"},
    ],
)
def test_a_body_outside_the_schema_is_a_422(admin_api, db, body):
    assert admin_api.post("/cost-centers", body).status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "/cost-centers/99999999999999999999999",
        "/cost-centers/0",
        "/keys/not-a-key-id",
        "/requests/has%00nul",
    ],
)
def test_an_impossible_id_is_a_4xx(admin_api, db, path):
    assert admin_api.get(path).status_code in {404, 422}


@pytest.mark.parametrize(
    "query",
    [
        {"q": "nul\x00"},
        {"since": "2026-01-01T00:00:00"},  # no time zone
        {"since": "0001-01-01T00:00:00+05:00"},  # before year 1 in UTC
        {"user": "99999999999999999999999"},
    ],
)
def test_an_impossible_filter_is_a_422(admin_api, db, query):
    path = "/users" if "q" in query else "/requests"

    assert admin_api.get(path, **query).status_code == 422


def test_a_json_nul_inside_options_is_refused(admin_api, db):
    response = admin_api.post(
        "/providers",
        {
            "name": "x",
            "kind": "anthropic",
            "base_url": "https://x.example",
            "options": {"region": "eu\u0000"},
        },
    )

    assert response.status_code == 422


def test_an_unknown_reference_in_a_route_target_names_its_position(admin_api, provider):
    response = admin_api.post(
        "/routes",
        {
            "name": "x",
            "model_pattern": "claude-*",
            "targets": [{"provider_id": provider.pk}, {"provider_id": 424242}],
        },
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "No provider with id 424242.",
        "field": "targets[1].provider_id",
    }
