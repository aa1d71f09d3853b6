"""A Vertex route end to end: Daphne running Gatehouse, the Vertex emulator upstream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest

from gateway.models import Provider, ProviderKind, RequestOutcome, Route, RouteTarget, UpstreamKey
from tests.gateway.conftest import seed_price_catalog, wait_for_logs, wait_for_quiet_log

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {
    "model": "claude-haiku-4-5-20251001",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello"}],
}


@dataclass
class VertexUpstream:
    provider: Provider
    upstream_key: UpstreamKey
    route: Route


@pytest.fixture
def vertex_route(transactional_db, vertex_emulator) -> Iterator[VertexUpstream]:
    seed_price_catalog()
    provider = Provider.objects.create(
        name="vertex",
        kind=ProviderKind.VERTEX,
        base_url=vertex_emulator.api_root,
        options={"project": vertex_emulator.project, "region": "us-east5"},
    )
    upstream_key = UpstreamKey.objects.create(
        provider=provider, label="gcp-sa", secret=vertex_emulator.upstream_secret()
    )
    route = Route.objects.create(name="vertex", model_pattern="claude-*")
    RouteTarget.objects.create(route=route, position=0, provider=provider)
    yield VertexUpstream(provider=provider, upstream_key=upstream_key, route=route)
    wait_for_quiet_log()


def post(server, secret, body, *, path="/v1/messages", headers=None):
    return httpx.post(
        server.base_url + path,
        content=orjson.dumps(body),
        headers={
            "x-api-key": secret,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            **(headers or {}),
        },
        timeout=30,
    )


def predictions(emulator) -> list[dict]:
    return [request for request in emulator.requests() if request["path"] != "/token"]


def test_vertex_message_through_the_proxy_is_anthropic_json_and_priced(
    gatehouse_server, vertex_route, vertex_emulator, alice
):
    response = post(
        gatehouse_server, alice.secret, BODY, headers={"anthropic-beta": "context-1m-2025-08-07"}
    )

    assert response.status_code == 200
    message = response.json()
    assert message["type"] == "message"
    assert message["model"] == "claude-haiku-4-5-20251001"
    [forwarded] = predictions(vertex_emulator)
    assert forwarded["path"] == (
        "/v1/projects/gatehouse-test/locations/us-east5/publishers/anthropic/models/"
        "claude-haiku-4-5@20251001:rawPredict"
    )
    assert orjson.loads(forwarded["body"]) == {
        "max_tokens": 64,
        "messages": BODY["messages"],
        "anthropic_version": "vertex-2023-10-16",
    }
    assert forwarded["headers"]["anthropic-beta"] == "context-1m-2025-08-07"
    assert forwarded["headers"]["authorization"].startswith("Bearer ya29.emu.")
    assert alice.secret not in str(forwarded)
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.OK
    assert row.provider_id == vertex_route.provider.pk
    assert row.model_served == "claude-haiku-4-5-20251001"
    assert row.input_tokens == message["usage"]["input_tokens"]
    assert row.output_tokens == message["usage"]["output_tokens"]
    assert row.is_priced is True
    assert row.cost_usd > 0


def test_vertex_stream_through_the_proxy_is_the_upstream_sse_and_usage_is_recorded(
    gatehouse_server, vertex_route, vertex_emulator, alice
):
    with httpx.stream(
        "POST",
        gatehouse_server.base_url + "/v1/messages?beta=true",
        content=orjson.dumps({**BODY, "stream": True}),
        headers={"x-api-key": alice.secret, "content-type": "application/json"},
        timeout=30,
    ) as response:
        raw = b"".join(response.iter_raw())

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert raw.startswith(b"event: message_start\ndata: ")
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    [forwarded] = predictions(vertex_emulator)
    assert forwarded["path"].endswith("/models/claude-haiku-4-5@20251001:streamRawPredict")
    [row] = wait_for_logs(1, user=alice.user)
    assert row.is_stream is True
    assert row.outcome == RequestOutcome.OK
    assert row.output_tokens > 0
    assert row.stop_reason == "end_turn"
    assert row.is_priced is True


def test_a_google_error_through_the_proxy_is_anthropic_shaped(
    gatehouse_server, vertex_route, vertex_emulator, alice
):
    vertex_emulator.inject_fault("google:400")

    response = post(gatehouse_server, alice.secret, BODY)

    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "Request contains an invalid argument.",
    }
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.UPSTREAM_ERROR
    assert row.error_type == "invalid_request_error"


def test_vertex_count_tokens_through_the_proxy(
    gatehouse_server, vertex_route, vertex_emulator, alice
):
    body = {"model": BODY["model"], "messages": BODY["messages"]}

    response = post(gatehouse_server, alice.secret, body, path="/v1/messages/count_tokens")

    assert response.status_code == 200
    assert set(response.json()) == {"input_tokens"}
    assert response.json()["input_tokens"] > 0
    [forwarded] = predictions(vertex_emulator)
    assert forwarded["path"].endswith("/models/count-tokens:rawPredict")
    assert orjson.loads(forwarded["body"])["model"] == "claude-haiku-4-5@20251001"


def test_the_gateway_reuses_its_vertex_token_across_requests(
    gatehouse_server, vertex_route, vertex_emulator, alice
):
    first = post(gatehouse_server, alice.secret, BODY)
    second = post(gatehouse_server, alice.secret, BODY)

    assert (first.status_code, second.status_code) == (200, 200)
    [one, two] = predictions(vertex_emulator)
    assert one["headers"]["authorization"] == two["headers"]["authorization"]
    assert len(vertex_emulator.token_requests()) <= 1
