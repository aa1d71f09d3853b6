"""A Bedrock route end to end: Daphne running Gatehouse, the Bedrock emulator upstream."""

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
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello"}],
}


@dataclass
class BedrockUpstream:
    provider: Provider
    upstream_key: UpstreamKey
    route: Route


@pytest.fixture
def bedrock_route(transactional_db, bedrock_emulator) -> Iterator[BedrockUpstream]:
    seed_price_catalog()
    provider = Provider.objects.create(
        name="bedrock",
        kind=ProviderKind.BEDROCK,
        base_url=bedrock_emulator.base_url,
        options={"region": bedrock_emulator.region},
    )
    upstream_key = UpstreamKey.objects.create(
        provider=provider, label="aws-team-a", secret=bedrock_emulator.upstream_secret()
    )
    route = Route.objects.create(name="bedrock", model_pattern="claude-*")
    RouteTarget.objects.create(route=route, position=0, provider=provider)
    yield BedrockUpstream(provider=provider, upstream_key=upstream_key, route=route)
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


def stream(server, secret, body) -> tuple[httpx.Response, bytes]:
    with httpx.stream(
        "POST",
        server.base_url + "/v1/messages?beta=true",
        content=orjson.dumps({**body, "stream": True}),
        headers={"x-api-key": secret, "content-type": "application/json"},
        timeout=30,
    ) as response:
        raw = b"".join(response.iter_raw())
    return response, raw


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    events = []
    for frame in raw.decode().split("\n\n"):
        if frame:
            event_line, data_line = frame.split("\n")
            events.append(
                (event_line.removeprefix("event: "), orjson.loads(data_line.removeprefix("data: ")))
            )
    return events


def test_bedrock_message_through_the_proxy_is_anthropic_json_and_priced(
    gatehouse_server, bedrock_route, bedrock_emulator, alice
):
    response = post(
        gatehouse_server, alice.secret, BODY, headers={"anthropic-beta": "context-1m-2025-08-07"}
    )

    assert response.status_code == 200
    message = response.json()
    assert message["type"] == "message"
    assert message["model"] == "claude-sonnet-4-5-20250929"
    forwarded = bedrock_emulator.last_request()
    assert forwarded["path"] == "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"
    assert orjson.loads(forwarded["body"]) == {
        "max_tokens": 64,
        "messages": BODY["messages"],
        "anthropic_beta": ["context-1m-2025-08-07"],
        "anthropic_version": "bedrock-2023-05-31",
    }
    assert forwarded["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert "x-api-key" not in forwarded["headers"]
    assert alice.secret not in str(forwarded)
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.OK
    assert row.provider_id == bedrock_route.provider.pk
    assert row.upstream_key_id == bedrock_route.upstream_key.pk
    assert row.model_served == "claude-sonnet-4-5-20250929"
    assert row.input_tokens == message["usage"]["input_tokens"]
    assert row.output_tokens == message["usage"]["output_tokens"]
    assert row.is_priced is True
    assert row.cost_usd > 0


def test_bedrock_stream_through_the_proxy_is_anthropic_sse_and_usage_is_recorded(
    gatehouse_server, bedrock_route, bedrock_emulator, alice
):
    response, raw = stream(gatehouse_server, alice.secret, BODY)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw)
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    final_usage = next(payload for name, payload in events if name == "message_delta")["usage"]
    [row] = wait_for_logs(1, user=alice.user)
    assert row.is_stream is True
    assert row.outcome == RequestOutcome.OK
    assert row.provider_id == bedrock_route.provider.pk
    assert row.output_tokens == final_usage["output_tokens"]
    assert row.input_tokens == final_usage["input_tokens"]
    assert row.stop_reason == "end_turn"
    assert row.is_priced is True


def test_bedrock_validation_error_through_the_proxy_is_an_anthropic_400(
    gatehouse_server, bedrock_route, bedrock_emulator, alice
):
    bedrock_emulator.inject_fault("ValidationException")

    response = post(gatehouse_server, alice.secret, BODY)

    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "Malformed input request, please reformat your input and try again.",
    }
    assert "x-amzn-errortype" not in response.headers
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.UPSTREAM_ERROR
    assert row.status_code == 400
    assert row.error_type == "invalid_request_error"


def test_bedrock_throttling_mid_stream_is_an_error_event_and_a_stream_error_row(
    gatehouse_server, bedrock_route, bedrock_emulator, alice
):
    bedrock_emulator.inject_fault("exception_mid_stream:throttlingException")

    response, raw = stream(gatehouse_server, alice.secret, BODY)

    assert response.status_code == 200
    name, payload = sse_events(raw)[-1]
    assert name == "error"
    assert payload == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "Too many tokens, please wait before trying again.",
        },
    }
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.STREAM_ERROR
    assert row.error_type == "rate_limit_error"


def test_bedrock_count_tokens_through_the_proxy_answers_in_anthropic_shape(
    gatehouse_server, bedrock_route, bedrock_emulator, alice
):
    body = {"model": BODY["model"], "messages": BODY["messages"]}

    response = post(gatehouse_server, alice.secret, body, path="/v1/messages/count_tokens")

    assert response.status_code == 200
    assert set(response.json()) == {"input_tokens"}
    assert response.json()["input_tokens"] > 0
    assert bedrock_emulator.last_request()["path"] == (
        "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/count-tokens"
    )
