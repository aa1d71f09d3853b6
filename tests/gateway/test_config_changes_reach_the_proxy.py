"""Route changes made in the admin reach a running gateway within its cache TTL, no restart."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from gateway.models import RouteTarget
from tests.live_servers import start_gatehouse, stop_server

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {"model": "claude-opus-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gateway_with_default_ttl(upstream):
    server = start_gatehouse({"GATEHOUSE_CACHE_TTL": "5"})
    yield server
    stop_server(server)


def test_a_route_change_takes_effect_within_five_seconds(
    gateway_with_default_ttl, upstream, emulator, alice
):
    def served_model() -> str:
        response = httpx.post(
            gateway_with_default_ttl.base_url + "/v1/messages",
            content=orjson.dumps(BODY),
            headers={"x-api-key": alice.secret, "content-type": "application/json"},
        )
        assert response.status_code == 200
        return orjson.loads(emulator.last_request()["body"])["model"]

    assert served_model() == "claude-opus-5"
    RouteTarget.objects.filter(route=upstream.route).update(upstream_model="claude-opus-4-8")
    changed_at = time.monotonic()

    while served_model() != "claude-opus-4-8":
        assert time.monotonic() - changed_at < 6.0, "the route change never reached the gateway"
        time.sleep(0.2)
    assert time.monotonic() - changed_at <= 5.5
