"""Streams are relayed as they arrive; usage is flushed when the server stops."""

from __future__ import annotations

import signal
import time

import httpx
import orjson
import pytest

from gateway.models import RequestLog
from tests.gateway.conftest import UPSTREAM_SECRET, wait_for_logs
from tests.live_servers import start_gatehouse

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {
    "model": "claude-opus-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello"}],
    "stream": True,
}


def test_stream_chunks_reach_the_client_as_they_arrive_not_at_the_end(
    gatehouse_server, upstream, emulator, alice
):
    arrivals: list[tuple[float, bytes]] = []
    started = time.monotonic()
    with httpx.stream(
        "POST",
        gatehouse_server.base_url + "/v1/messages",
        content=orjson.dumps(BODY),
        headers={
            "x-api-key": alice.secret,
            "content-type": "application/json",
            "x-emulator-deltas": "8",
            "x-emulator-delta-delay-ms": "150",
        },
        timeout=30,
    ) as response:
        for chunk in response.iter_raw():
            arrivals.append((time.monotonic() - started, chunk))

    delta_times = [at for at, chunk in arrivals if b"content_block_delta" in chunk]
    total = arrivals[-1][0]
    assert len(delta_times) >= 4
    assert delta_times[0] < total - 0.6
    assert delta_times[-1] - delta_times[0] >= 0.6


def test_rate_limit_headers_and_request_id_come_back_from_upstream(
    gatehouse_server, upstream, emulator, alice
):
    emulator.configure(keys={UPSTREAM_SECRET: {"rpm": 50}})

    response = httpx.post(
        gatehouse_server.base_url + "/v1/messages",
        content=orjson.dumps({**BODY, "stream": False}),
        headers={"x-api-key": alice.secret, "content-type": "application/json"},
    )

    assert response.headers["anthropic-ratelimit-requests-limit"] == "50"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "49"
    assert "anthropic-ratelimit-requests-reset" in response.headers
    assert response.headers["request-id"].startswith("req_emu_")


def test_graceful_shutdown_flushes_every_completed_request_to_the_log(upstream, emulator, alice):
    server = start_gatehouse(
        {"GATEHOUSE_LOG_FLUSH_INTERVAL": "30", "GATEHOUSE_LOG_BATCH_SIZE": "1000"}
    )
    try:
        for _ in range(7):
            response = httpx.post(
                server.base_url + "/v1/messages",
                content=orjson.dumps({**BODY, "stream": False}),
                headers={"x-api-key": alice.secret, "content-type": "application/json"},
            )
            assert response.status_code == 200
        assert RequestLog.objects.filter(user=alice.user).count() == 0
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=20)

    assert len(wait_for_logs(7, timeout_s=2, user=alice.user)) == 7
