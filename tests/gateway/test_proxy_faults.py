"""Upstream and client faults through the real proxy: failover, errors, streams cut short.

Every upstream fault is checked three ways: what the client sees (DESIGN.md §5), the one
RequestLog row it leaves, and that the gateway is back to its footprint afterwards (no
asyncio task left behind, no upstream or client connection leaked), counted from outside
the process through /metrics and its sockets. The fault server runs once per upstream
transport, with a short ping interval and maximum stream duration.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import anthropic
import httpx
import orjson
import pytest

from gateway.models import RequestLog, RequestOutcome, UpstreamKey
from tests.gateway.conftest import wait_for_logs, wait_for_quiet_log
from tests.gateway.footprint import Footprint, assert_back_to, quiet_footprint
from tests.live_servers import LiveServer, start_gatehouse, stop_server

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {
    "model": "claude-opus-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello"}],
}
PING_INTERVAL_S = 0.2
MAX_STREAM_DURATION_S = 1.5
GATEWAY_PING = b'event: ping\ndata: {"type": "ping"}\n\n'


@pytest.fixture(scope="module", params=["aiohttp", "httpx"])
def gatehouse(request, django_db_setup, django_db_blocker) -> Iterator[LiveServer]:
    """A Gatehouse on the given upstream transport, with short fuses for stream faults."""
    with django_db_blocker.unblock():
        server = start_gatehouse(
            {
                "GATEHOUSE_UPSTREAM_TRANSPORT": request.param,
                "GATEHOUSE_PING_INTERVAL": str(PING_INTERVAL_S),
                "GATEHOUSE_MAX_STREAM_DURATION_S": str(MAX_STREAM_DURATION_S),
            }
        )
    yield server
    stop_server(server)


@dataclass
class LeakCheck:
    server: LiveServer
    upstream_url: str
    baseline: Footprint

    def assert_nothing_leaked(self) -> None:
        assert_back_to(self.baseline, self.server, self.upstream_url)


@pytest.fixture
def leaks(gatehouse, upstream, emulator, bob) -> LeakCheck:
    """The gateway's footprint once warm (client, pool and lazy tasks exist), as bob's traffic
    left it; alice's requests are the ones under test."""
    assert post(gatehouse, bob.secret).status_code == 200
    assert stream_raw(gatehouse, bob.secret)[0].status_code == 200
    baseline = quiet_footprint(gatehouse, emulator.base_url)
    emulator.clear_requests()
    return LeakCheck(gatehouse, emulator.base_url, baseline)


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


def events(raw: bytes) -> list[tuple[str, bytes]]:
    """(event name, data) of every event in a raw SSE body."""
    parsed = []
    for frame in raw.strip(b"\n").split(b"\n\n"):
        name, _, data = frame.partition(b"\ndata: ")
        assert name.startswith(b"event: "), frame
        parsed.append((name[7:].decode(), data))
    return parsed


def final_error(raw: bytes) -> dict:
    name, data = events(raw)[-1]
    assert name == "error"
    document = orjson.loads(data)
    assert document["type"] == "error"
    return document["error"]


def the_only_row(person) -> RequestLog:
    """The one RequestLog row of this person's request, once the writer has gone quiet."""
    [row] = wait_for_logs(1, user=person.user)
    wait_for_quiet_log()
    assert RequestLog.objects.filter(user=person.user).count() == 1
    return row


# --- statuses from upstream ---------------------------------------------------------------


def test_a_529_before_the_first_byte_fails_over_to_the_next_key(
    gatehouse, upstream, emulator, alice, leaks
):
    UpstreamKey.objects.create(
        provider=upstream.provider, label="team-b", secret="sk-ant-emulator-upstream-0002"
    )
    emulator.inject_fault("529", times=1)

    response = post(gatehouse, alice.secret)

    assert response.status_code == 200
    keys_used = [request["headers"]["x-api-key"] for request in emulator.requests()]
    assert len(keys_used) == 2
    assert keys_used[0] != keys_used[1]
    row = the_only_row(alice)
    assert (row.attempts, row.outcome) == (2, RequestOutcome.OK)
    leaks.assert_nothing_leaked()


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "message"),
    [
        ("529", 529, "overloaded_error", "Overloaded"),
        ("500", 500, "api_error", "Internal server error"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_when_every_attempt_fails_the_upstream_error_reaches_the_client_unchanged(
    gatehouse, upstream, emulator, alice, leaks, fault, status, error_type, message, stream
):
    emulator.inject_fault(fault, times=None)

    response = post(gatehouse, alice.secret, {**BODY, "stream": stream})

    assert response.status_code == status
    assert response.json() == {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": response.headers["request-id"],
    }
    assert response.headers["request-id"].startswith("req_emu_")
    row = the_only_row(alice)
    assert (row.outcome, row.status_code, row.error_type) == (
        RequestOutcome.UPSTREAM_ERROR,
        status,
        error_type,
    )
    leaks.assert_nothing_leaked()


def test_an_upstream_429_keeps_its_retry_after(gatehouse, upstream, emulator, alice, leaks):
    emulator.inject_fault("429", times=None)

    response = post(gatehouse, alice.secret)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "rate_limit_error"
    row = the_only_row(alice)
    assert (row.outcome, row.status_code, row.error_type) == (
        RequestOutcome.UPSTREAM_ERROR,
        429,
        "rate_limit_error",
    )
    leaks.assert_nothing_leaked()


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


# --- connections that fail ------------------------------------------------------------------


def test_an_unreachable_upstream_gives_an_anthropic_shaped_error(gatehouse, upstream, alice, leaks):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    upstream.provider.base_url = f"http://127.0.0.1:{closed_port}"
    upstream.provider.save()

    response = post(gatehouse, alice.secret)

    assert response.status_code == 500
    assert response.json()["error"] == {
        "type": "api_error",
        "message": "Upstream provider 'anthropic' is unreachable (ConnectError).",
    }
    row = the_only_row(alice)
    assert (row.outcome, row.status_code, row.error_type) == (
        RequestOutcome.UPSTREAM_ERROR,
        500,
        "api_error",
    )
    leaks.assert_nothing_leaked()


@pytest.mark.parametrize("fault", ["drop_mid_stream", "reset_mid_stream"])
def test_a_stream_cut_mid_body_ends_with_an_error_event_not_a_silent_success(
    gatehouse, upstream, emulator, alice, leaks, fault
):
    emulator.inject_fault(fault)

    response, raw = stream_raw(gatehouse, alice.secret)

    assert response.status_code == 200
    assert [name for name, _ in events(raw)] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "error",
    ]
    assert final_error(raw)["type"] == "api_error"
    row = the_only_row(alice)
    assert (row.outcome, row.error_type) == (RequestOutcome.STREAM_ERROR, "api_error")
    assert row.input_tokens > 0
    leaks.assert_nothing_leaked()


def test_an_upstream_error_event_mid_stream_is_relayed_and_logged(
    gatehouse, upstream, emulator, alice, leaks
):
    emulator.inject_fault("error_event_mid_stream")

    _, raw = stream_raw(gatehouse, alice.secret)

    assert raw.count(b"event: error") == 1
    assert final_error(raw) == {"type": "overloaded_error", "message": "Overloaded"}
    row = the_only_row(alice)
    assert (row.outcome, row.error_type) == (RequestOutcome.STREAM_ERROR, "overloaded_error")
    leaks.assert_nothing_leaked()


# --- upstreams too slow, too quiet or never done --------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_slow_first_byte_past_the_provider_timeout_gives_504(
    gatehouse, upstream, emulator, alice, leaks, stream
):
    upstream.provider.read_timeout_s = 0.5
    upstream.provider.save()
    emulator.inject_fault("slow_first_byte:3000")

    started = time.monotonic()
    response = post(gatehouse, alice.secret, {**BODY, "stream": stream})

    assert time.monotonic() - started < 2.5
    assert response.status_code == 504
    assert response.json()["error"] == {
        "type": "timeout_error",
        "message": "Upstream provider 'anthropic' did not answer in time.",
    }
    row = the_only_row(alice)
    assert (row.outcome, row.status_code, row.error_type) == (
        RequestOutcome.UPSTREAM_ERROR,
        504,
        "timeout_error",
    )
    leaks.assert_nothing_leaked()


def test_upstream_silence_is_filled_with_gateway_pings(gatehouse, upstream, emulator, alice, leaks):
    emulator.inject_fault("silence:1200")

    _, raw = stream_raw(gatehouse, alice.secret)

    assert raw.count(GATEWAY_PING) >= 2
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert all(name != "error" for name, _ in events(raw))
    assert the_only_row(alice).outcome == RequestOutcome.OK
    leaks.assert_nothing_leaked()


def test_an_upstream_silent_past_the_read_timeout_gets_pings_then_a_timeout_error_event(
    gatehouse, upstream, emulator, alice, leaks
):
    upstream.provider.read_timeout_s = 0.8
    upstream.provider.save()
    emulator.inject_fault("silence:5000")

    response, raw = stream_raw(gatehouse, alice.secret)

    assert response.status_code == 200
    names = [name for name, _ in events(raw)]
    assert names[:4] == ["message_start", "content_block_start", "ping", "content_block_delta"]
    assert names[-1] == "error"
    assert set(names[4:-1]) == {"ping"}
    assert raw.count(GATEWAY_PING) >= 2
    assert final_error(raw) == {
        "type": "timeout_error",
        "message": "Upstream stream failed: ReadTimeout.",
    }
    row = the_only_row(alice)
    assert (row.outcome, row.error_type) == (RequestOutcome.STREAM_ERROR, "timeout_error")
    assert row.input_tokens > 0
    leaks.assert_nothing_leaked()


def test_an_endless_stream_is_cut_at_the_maximum_duration_with_an_error_event(
    gatehouse, upstream, emulator, alice, leaks
):
    emulator.inject_fault("endless:50")

    response, raw = stream_raw(gatehouse, alice.secret)

    assert response.status_code == 200
    names = [name for name, _ in events(raw)]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names.count("content_block_delta") > 5
    assert "message_stop" not in names
    assert final_error(raw) == {
        "type": "timeout_error",
        "message": f"The stream exceeded the gateway's maximum duration of {MAX_STREAM_DURATION_S:g} s.",
    }
    row = the_only_row(alice)
    assert (row.outcome, row.error_type) == (RequestOutcome.STREAM_ERROR, "timeout_error")
    assert row.input_tokens > 0
    assert f"Stream {row.request_id} ended with an error event" in gatehouse.log_text()
    deadline = time.monotonic() + 5
    while emulator.last_request()["disconnected_at"] is None:
        assert time.monotonic() < deadline, "the endless upstream request was never closed"
        time.sleep(0.05)
    leaks.assert_nothing_leaked()


# --- upstreams that answer garbage ------------------------------------------------------------


def test_a_malformed_json_body_from_upstream_gives_an_anthropic_shaped_500(
    gatehouse, upstream, emulator, alice, leaks
):
    emulator.inject_fault("malformed_json")

    response = post(gatehouse, alice.secret)

    assert response.status_code == 500
    assert response.json()["error"] == {
        "type": "api_error",
        "message": "Upstream provider answered with a malformed JSON body.",
    }
    row = the_only_row(alice)
    assert (row.outcome, row.status_code, row.error_type) == (
        RequestOutcome.UPSTREAM_ERROR,
        500,
        "api_error",
    )
    leaks.assert_nothing_leaked()


def test_broken_json_in_an_upstream_event_is_not_relayed_and_ends_the_stream_with_an_error(
    gatehouse, upstream, emulator, alice, leaks
):
    emulator.inject_fault("malformed_json")

    response, raw = stream_raw(gatehouse, alice.secret)

    assert response.status_code == 200
    assert [name for name, _ in events(raw)] == [
        "message_start",
        "content_block_start",
        "ping",
        "error",
    ]
    assert final_error(raw) == {
        "type": "api_error",
        "message": "Upstream sent invalid JSON in a content_block_delta event.",
    }
    row = the_only_row(alice)
    assert (row.outcome, row.error_type) == (RequestOutcome.STREAM_ERROR, "api_error")
    assert row.input_tokens > 0
    leaks.assert_nothing_leaked()


def test_garbage_lines_from_upstream_are_not_relayed_and_end_the_stream_with_an_error(
    gatehouse, upstream, emulator, alice, leaks
):
    emulator.inject_fault("malformed_sse")

    response, raw = stream_raw(gatehouse, alice.secret)

    assert response.status_code == 200
    assert b"not an event stream" not in raw
    assert [name for name, _ in events(raw)] == ["message_start", "error"]
    assert final_error(raw) == {
        "type": "api_error",
        "message": "Upstream sent a line that is not an SSE field.",
    }
    row = the_only_row(alice)
    assert (row.outcome, row.error_type) == (RequestOutcome.STREAM_ERROR, "api_error")
    leaks.assert_nothing_leaked()


# --- the client ---------------------------------------------------------------------------------


def test_a_client_hanging_up_cancels_the_upstream_and_records_client_closed(
    gatehouse, upstream, emulator, alice, leaks
):
    headers = {"x-emulator-deltas": "100", "x-emulator-delta-delay-ms": "100"}
    with httpx.stream(
        "POST",
        gatehouse.base_url + "/v1/messages",
        content=orjson.dumps({**BODY, "stream": True}),
        headers={"x-api-key": alice.secret, "content-type": "application/json", **headers},
        timeout=30,
    ) as response:
        first = next(response.iter_raw())
        hung_up_at = datetime.now(UTC)
    assert first.startswith(b"event: message_start")

    row = the_only_row(alice)
    assert row.outcome == RequestOutcome.CLIENT_CLOSED
    assert (row.finished_at - hung_up_at).total_seconds() < 1.0
    assert row.input_tokens > 0
    deadline = time.monotonic() + 5  # read the emulator's record once it has noted the hang-up
    while (upstream_call := emulator.requests()[0])["disconnected_at"] is None:
        assert time.monotonic() < deadline, "the upstream request was never cancelled"
        time.sleep(0.05)
    assert upstream_call["finished_at"] is None
    assert -0.05 <= upstream_call["disconnected_at"] - hung_up_at.timestamp() < 1.0
    leaks.assert_nothing_leaked()


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        ("drop_mid_stream", "api_error"),
        ("reset_mid_stream", "api_error"),
        ("error_event_mid_stream", "overloaded_error"),
        ("malformed_json", "api_error"),
        ("malformed_sse", "api_error"),
    ],
)
def test_the_anthropic_sdk_raises_its_api_error_on_every_broken_stream(
    gatehouse_server, upstream, emulator, alice, fault, error_type
):
    emulator.inject_fault(fault)
    sdk = anthropic.Anthropic(
        base_url=gatehouse_server.base_url, api_key=alice.secret, max_retries=0, timeout=30
    )

    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        sdk.messages.stream(**BODY) as stream,
    ):
        for _ in stream:
            pass

    assert raised.value.body["error"]["type"] == error_type
    assert the_only_row(alice).outcome == RequestOutcome.STREAM_ERROR
    sdk.close()
