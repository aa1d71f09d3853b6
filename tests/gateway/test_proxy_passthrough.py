"""The proxy end to end: Daphne in a subprocess, the emulator as the upstream."""

from __future__ import annotations

import httpx
import orjson
import pytest

from gateway.models import RequestOutcome
from tests.gateway.conftest import UPSTREAM_SECRET, wait_for_logs

BODY = {
    "model": "claude-opus-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello"}],
}
pytestmark = pytest.mark.django_db(transaction=True)


def post(server, secret, body, *, path="/v1/messages", headers=None, **kwargs):
    return httpx.post(
        server.base_url + path,
        content=orjson.dumps(body) if not isinstance(body, bytes) else body,
        headers={
            "x-api-key": secret,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            **(headers or {}),
        },
        timeout=30,
        **kwargs,
    )


def test_non_stream_message_is_relayed_and_logged(gatehouse_server, upstream, emulator, alice):
    response = post(gatehouse_server, alice.secret, BODY)

    assert response.status_code == 200
    document = response.json()
    assert document["type"] == "message"
    assert document["model"] == "claude-opus-5"
    assert response.headers["request-id"].startswith("req_")
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.OK
    assert row.status_code == 200
    assert row.input_tokens == document["usage"]["input_tokens"]
    assert row.output_tokens == document["usage"]["output_tokens"]
    assert row.is_priced is True
    assert row.cost_usd > 0
    assert row.provider_id == upstream.provider.pk
    assert row.upstream_key_id == upstream.upstream_key.pk
    assert row.cost_center.code == "research"
    assert row.upstream_request_id == response.headers["request-id"]


def test_body_is_forwarded_byte_for_byte_with_the_upstream_key_instead_of_the_clients(
    gatehouse_server, upstream, emulator, alice
):
    raw = b'{"model":"claude-opus-5",  "max_tokens":64,"messages":[{"role":"user","content":"Say hello"}],"zzz":1}'
    response = post(
        gatehouse_server,
        alice.secret,
        raw,
        headers={
            "anthropic-beta": "interleaved-thinking-2025-05-14,made-up-beta-2099-01-01",
            "x-custom": "kept",
        },
    )

    assert response.status_code == 200
    forwarded = emulator.last_request()
    assert forwarded["body"] == raw.decode()
    assert forwarded["headers"]["x-api-key"] == UPSTREAM_SECRET
    assert "authorization" not in forwarded["headers"]
    assert (
        forwarded["headers"]["anthropic-beta"]
        == "interleaved-thinking-2025-05-14,made-up-beta-2099-01-01"
    )
    assert forwarded["headers"]["anthropic-version"] == "2023-06-01"
    assert forwarded["headers"]["x-custom"] == "kept"
    assert alice.secret not in str(forwarded)


def test_streamed_message_arrives_as_upstream_sse_and_usage_is_recorded(
    gatehouse_server, upstream, emulator, alice
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
    [row] = wait_for_logs(1, user=alice.user)
    assert row.is_stream is True
    assert row.outcome == RequestOutcome.OK
    assert row.output_tokens > 0
    assert row.stop_reason == "end_turn"
    assert row.ttfb_ms is not None


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Missing credential"),
        ({"x-api-key": "gh_live_unknown"}, "Invalid API key."),
        ({"authorization": "Bearer gh_live_nope"}, "Invalid API key."),
    ],
)
def test_requests_without_a_valid_key_get_401_in_anthropic_shape(
    gatehouse_server, upstream, headers, message
):
    response = httpx.post(
        gatehouse_server.base_url + "/v1/messages",
        content=orjson.dumps(BODY),
        headers={"content-type": "application/json", **headers},
    )

    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["message"].startswith(message)
    assert body["request_id"] == response.headers["request-id"]
    assert body["request_id"].startswith("req_gh_")
