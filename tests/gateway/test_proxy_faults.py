"""Upstream and client faults through the real proxy: failover, errors, streams cut short."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from gateway.models import RequestOutcome, UpstreamKey
from tests.gateway.conftest import wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {
    "model": "claude-opus-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello"}],
}


def post(server, secret, body=BODY, headers=None, timeout=30):
    return httpx.post(
        server.base_url + "/v1/messages",
        content=orjson.dumps(body),
        headers={"x-api-key": secret, "content-type": "application/json", **(headers or {})},
        timeout=timeout,
    )


def stream_raw(server, secret, body=BODY, headers=None) -> tuple[httpx.Response, bytes]:
    with httpx.stream(
        "POST",
        server.base_url + "/v1/messages",
        content=orjson.dumps({**body, "stream": True}),
        headers={"x-api-key": secret, "content-type": "application/json", **(headers or {})},
        timeout=30,
    ) as response:
        return response, b"".join(response.iter_raw())


def test_a_529_before_the_first_byte_fails_over_to_the_next_key(
    gatehouse_server, upstream, emulator, alice
):
    UpstreamKey.objects.create(
        provider=upstream.provider, label="team-b", secret="sk-ant-emulator-upstream-0002"
    )
    emulator.inject_fault("529", times=1)

    response = post(gatehouse_server, alice.secret)

    assert response.status_code == 200
    keys_used = [request["headers"]["x-api-key"] for request in emulator.requests()]
    assert len(keys_used) == 2
    assert keys_used[0] != keys_used[1]
    [row] = wait_for_logs(1, user=alice.user)
    assert (row.attempts, row.outcome) == (2, RequestOutcome.OK)


def test_when_every_attempt_fails_the_upstream_error_reaches_the_client_unchanged(
    gatehouse_server, upstream, emulator, alice
):
    emulator.inject_fault("529", times=None)

    response = post(gatehouse_server, alice.secret)

    assert response.status_code == 529
    assert response.json()["error"]["type"] == "overloaded_error"
    assert response.headers["request-id"].startswith("req_emu_")
    [row] = wait_for_logs(1, user=alice.user)
    assert (row.outcome, row.status_code, row.error_type) == (
        RequestOutcome.UPSTREAM_ERROR,
        529,
        "overloaded_error",
    )


def test_an_upstream_429_keeps_its_retry_after(gatehouse_server, upstream, emulator, alice):
    emulator.inject_fault("429", times=None)

    response = post(gatehouse_server, alice.secret)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_an_upstream_400_is_relayed_verbatim_and_not_retried(
    gatehouse_server, upstream, emulator, alice
):
    marked = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
    body = {**BODY, "messages": [{"role": "user", "content": [marked] * 5}]}

    response = post(gatehouse_server, alice.secret, body)

    assert response.status_code == 400
    assert (
        response.json()["error"]["message"]
        == "A maximum of 4 blocks with cache_control may be provided. Found 5."
    )
    assert len(emulator.requests()) == 1


def test_a_stream_cut_mid_body_ends_with_an_error_event_not_a_silent_success(
    gatehouse_server, upstream, emulator, alice
):
    emulator.inject_fault("drop_mid_stream")

    response, raw = stream_raw(gatehouse_server, alice.secret)

    assert response.status_code == 200
    assert raw.startswith(b"event: message_start")
    assert b"event: message_stop" not in raw
    assert raw.endswith(b"\n\n")
    last_event = raw.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert last_event.startswith(b"event: error\ndata: ")
    assert orjson.loads(last_event.split(b"data: ", 1)[1])["error"]["type"] == "api_error"
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.STREAM_ERROR
    assert row.input_tokens > 0


def test_an_upstream_error_event_mid_stream_is_relayed_and_logged(
    gatehouse_server, upstream, emulator, alice
):
    emulator.inject_fault("error_event_mid_stream")

    _, raw = stream_raw(gatehouse_server, alice.secret)

    assert raw.count(b"event: error") == 1
    [row] = wait_for_logs(1, user=alice.user)
    assert (row.outcome, row.error_type) == (RequestOutcome.STREAM_ERROR, "overloaded_error")


def test_upstream_silence_is_filled_with_gateway_pings(
    gatehouse_server_fast_ping, upstream, emulator, alice
):
    emulator.inject_fault("silence:1200")

    direct_pings = 1  # the emulator's own ping
    _, raw = stream_raw(gatehouse_server_fast_ping, alice.secret)

    assert raw.count(b"event: ping\n") >= direct_pings + 2
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    for event in raw.strip(b"\n").split(b"\n\n"):
        assert event.startswith(b"event: ")


def test_a_client_hanging_up_cancels_the_upstream_and_records_client_closed(
    gatehouse_server, upstream, emulator, alice
):
    headers = {"x-emulator-deltas": "100", "x-emulator-delta-delay-ms": "100"}
    with httpx.stream(
        "POST",
        gatehouse_server.base_url + "/v1/messages",
        content=orjson.dumps({**BODY, "stream": True}),
        headers={"x-api-key": alice.secret, "content-type": "application/json", **headers},
        timeout=30,
    ) as response:
        first = next(response.iter_raw())
        hung_up_at = datetime.now(UTC)
    assert first.startswith(b"event: message_start")

    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.CLIENT_CLOSED
    assert (row.finished_at - hung_up_at).total_seconds() < 1.0
    assert row.input_tokens > 0
    deadline = time.monotonic() + 5  # read the emulator's record once it has noted the hang-up
    while (upstream_call := emulator.requests()[0])["disconnected_at"] is None:
        assert time.monotonic() < deadline, "the upstream request was never cancelled"
        time.sleep(0.05)
    assert upstream_call["finished_at"] is None
    assert -0.05 <= upstream_call["disconnected_at"] - hung_up_at.timestamp() < 1.0


def test_a_slow_first_byte_past_the_provider_timeout_gives_504(
    gatehouse_server, upstream, emulator, alice
):
    upstream.provider.read_timeout_s = 0.5
    upstream.provider.save()
    emulator.inject_fault("slow_first_byte:3000")

    started = time.monotonic()
    response = post(gatehouse_server, alice.secret)

    assert time.monotonic() - started < 2.5
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout_error"


def test_an_unreachable_upstream_gives_an_anthropic_shaped_error(gatehouse_server, upstream, alice):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    upstream.provider.base_url = f"http://127.0.0.1:{closed_port}"
    upstream.provider.save()

    response = post(gatehouse_server, alice.secret)

    assert response.status_code == 500
    assert response.json()["error"] == {
        "type": "api_error",
        "message": "Upstream provider 'anthropic' is unreachable (ConnectError).",
    }
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.GATEWAY_ERROR
