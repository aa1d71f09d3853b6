"""GET /metrics: the process gauges operators (and the leak checks) read, and who may."""

from __future__ import annotations

import httpx
import orjson
import pytest

from accounts.models import TokenScope
from accounts.services import management_token_issue, management_token_revoke
from gateway.proxy.metrics import (
    OutcomeCounter,
    Sample,
    is_direct_loopback,
    metrics_refusal,
    parse,
    render,
    spooled,
    upstream_connections,
)
from gateway.proxy.upstream_client import build_upstream_client

GAUGES = (
    "gatehouse_requests_in_flight",
    "gatehouse_asyncio_tasks",
    "process_resident_memory_bytes",
    "process_open_fds",
    "gatehouse_recorder_queue_rows",
    "gatehouse_recorder_spooled_files",
    "gatehouse_recorder_spooled_rows",
    'gatehouse_upstream_connections{state="in_use"}',
    'gatehouse_upstream_connections{state="idle"}',
    'gatehouse_requests_total{outcome="ok"}',
    'gatehouse_requests_total{outcome="upstream_error"}',
    'gatehouse_requests_total{outcome="gateway_error"}',
    'gatehouse_requests_total{outcome="client_closed"}',
    'gatehouse_requests_total{outcome="stream_error"}',
)
STREAM = {
    "model": "claude-opus-5",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "Say hello"}],
}


# --- pure parts ---------------------------------------------------------------------------------


def test_render_describes_each_metric_once_and_puts_labels_in_braces():
    samples = [
        Sample("gatehouse_asyncio_tasks", "gauge", "Tasks.", 7),
        Sample("gatehouse_requests_total", "counter", "Done.", 3, (("outcome", "ok"),)),
        Sample("gatehouse_requests_total", "counter", "Done.", 0, (("outcome", 'a"b'),)),
        Sample("process_cpu_ratio", "gauge", "Ratio.", 0.25),
    ]

    assert render(samples).decode() == (
        "# HELP gatehouse_asyncio_tasks Tasks.\n"
        "# TYPE gatehouse_asyncio_tasks gauge\n"
        "gatehouse_asyncio_tasks 7\n"
        "# HELP gatehouse_requests_total Done.\n"
        "# TYPE gatehouse_requests_total counter\n"
        'gatehouse_requests_total{outcome="ok"} 3\n'
        'gatehouse_requests_total{outcome="a\\"b"} 0\n'
        "# HELP process_cpu_ratio Ratio.\n"
        "# TYPE process_cpu_ratio gauge\n"
        "process_cpu_ratio 0.25\n"
    )


def test_parse_reads_back_what_render_wrote():
    samples = [
        Sample("gatehouse_asyncio_tasks", "gauge", "Tasks.", 7),
        Sample("gatehouse_requests_total", "counter", "Done.", 3, (("outcome", "ok"),)),
    ]

    assert parse(render(samples).decode()) == {
        "gatehouse_asyncio_tasks": 7.0,
        'gatehouse_requests_total{outcome="ok"}': 3.0,
    }


def test_outcome_counter_counts_each_outcome_apart():
    counter = OutcomeCounter()
    for outcome in ("ok", "ok", "stream_error"):
        counter.count(outcome)

    assert dict(counter.finished) == {"ok": 2, "stream_error": 1}


def test_spooled_counts_files_and_the_rows_in_them(tmp_path):
    (tmp_path / "1-a.jsonl").write_bytes(b'{"request_id":"a"}\n{"request_id":"b"}\n')
    (tmp_path / "2-b.jsonl").write_bytes(b'{"request_id":"c"}\n')
    (tmp_path / ".3-c.tmp").write_bytes(b'{"request_id":"d"}\n')  # still being written

    assert spooled(tmp_path) == (2, 3)
    assert spooled(tmp_path / "missing") == (0, 0)


@pytest.mark.parametrize(
    ("client", "headers", "expected"),
    [
        (("127.0.0.1", 50000), [], True),
        (("127.8.9.10", 50000), [], True),
        (("::1", 50000, 0, 0), [], True),
        (("10.1.2.3", 50000), [], False),
        (("127.0.0.1", 50000), [(b"x-forwarded-for", b"203.0.113.9")], False),
        (("127.0.0.1", 50000), [(b"X-Real-IP", b"203.0.113.9")], False),
        (("127.0.0.1", 50000), [(b"forwarded", b"for=203.0.113.9")], False),
        (None, [], False),
        (("unix-socket", 0), [], False),
    ],
)
def test_only_a_loopback_client_not_behind_a_proxy_counts_as_direct_loopback(
    client, headers, expected
):
    assert is_direct_loopback({"client": client, "headers": headers}) is expected


async def test_without_loopback_access_a_local_caller_still_needs_a_management_token():
    scope = {"client": ("127.0.0.1", 50000), "headers": []}

    refused = await metrics_refusal(scope, None, loopback_open=False)
    with_virtual_key = await metrics_refusal(scope, "Bearer gh_live_abc", loopback_open=False)
    let_in = await metrics_refusal(scope, None, loopback_open=True)

    assert (refused.status, refused.error_type) == (401, "authentication_error")
    assert (with_virtual_key.status, with_virtual_key.error_type) == (401, "authentication_error")
    assert let_in is None


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_upstream_connections_are_counted_in_use_while_read_then_idle(emulator, transport):
    client = build_upstream_client(transport_name=transport, read_timeout_s=10.0)
    try:
        assert upstream_connections(client) == (0, 0)
        request = client.build_request(
            "POST",
            emulator.base_url + "/v1/messages",
            content=orjson.dumps(STREAM),
            headers={
                "x-api-key": "sk-test",
                "content-type": "application/json",
                "x-emulator-deltas": "3",
                "x-emulator-delta-delay-ms": "100",
            },
        )
        response = await client.send(request, stream=True)
        in_use = upstream_connections(client)
        await response.aread()
        await response.aclose()

        assert in_use == (1, 0)
        assert upstream_connections(client) == (0, 1)
    finally:
        await client.aclose()


# --- served by a running gateway --------------------------------------------------------------


def scrape(server, **headers) -> httpx.Response:
    return httpx.get(server.base_url + "/metrics", headers=headers, timeout=10)


def test_a_loopback_client_reads_every_gauge_in_prometheus_text(gatehouse_server):
    response = scrape(gatehouse_server)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    gauges = parse(response.text)
    assert set(GAUGES) <= set(gauges)
    assert gauges["process_resident_memory_bytes"] > 10_000_000
    assert gauges["process_open_fds"] > 0
    assert gauges["gatehouse_asyncio_tasks"] >= 1  # this scrape's own


def test_head_answers_without_a_body_and_other_methods_get_405(gatehouse_server):
    head = httpx.head(gatehouse_server.base_url + "/metrics", timeout=10)
    post = httpx.post(gatehouse_server.base_url + "/metrics", timeout=10)

    assert (head.status_code, head.content) == (200, b"")
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"
    assert post.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("credential", "status"),
    [
        ("none", 401),
        ("virtual_key", 401),
        ("revoked_token", 401),
        ("read_token", 200),
        ("admin_token", 200),
    ],
)
def test_a_caller_behind_a_proxy_needs_a_usable_management_token(
    gatehouse_server, staff, alice, credential, status
):
    secrets = {
        "none": None,
        "virtual_key": alice.secret,
        "read_token": management_token_issue(owner=staff, scope=TokenScope.READ).secret,
        "admin_token": management_token_issue(owner=staff, scope=TokenScope.ADMIN).secret,
    }
    revoked = management_token_issue(owner=staff, scope=TokenScope.READ)
    management_token_revoke(token=revoked.token)
    secrets["revoked_token"] = revoked.secret
    headers = {"x-forwarded-for": "203.0.113.9"}
    if secrets[credential] is not None:
        headers["authorization"] = f"Bearer {secrets[credential]}"

    response = scrape(gatehouse_server, **headers)

    assert response.status_code == status
    if status == 401:
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == "authentication_error"
    else:
        assert "gatehouse_asyncio_tasks" in parse(response.text)


@pytest.mark.django_db(transaction=True)
def test_a_stream_is_in_flight_with_its_upstream_connection_in_use_then_counted_by_outcome(
    gatehouse_server, upstream, emulator, alice
):
    before = parse(scrape(gatehouse_server).text)
    headers = {
        "x-api-key": alice.secret,
        "content-type": "application/json",
        "x-emulator-deltas": "20",
        "x-emulator-delta-delay-ms": "50",
    }
    with httpx.stream(
        "POST",
        gatehouse_server.base_url + "/v1/messages",
        content=orjson.dumps(STREAM),
        headers=headers,
        timeout=30,
    ) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        during = parse(scrape(gatehouse_server).text)
        rest = b"".join(chunks)
    assert first.startswith(b"event: message_start")
    assert rest.endswith(b'data: {"type":"message_stop"}\n\n')
    after = parse(scrape(gatehouse_server).text)

    assert during["gatehouse_requests_in_flight"] == 1
    assert during['gatehouse_upstream_connections{state="in_use"}'] == 1
    assert after["gatehouse_requests_in_flight"] == 0
    assert after['gatehouse_upstream_connections{state="in_use"}'] == 0
    ok = 'gatehouse_requests_total{outcome="ok"}'
    assert after[ok] == before[ok] + 1
