"""The proxy's endpoints, bad input, and attribution, through the real server."""

from __future__ import annotations

import re

import httpx
import orjson
import pytest

from accounts.models import VirtualKey
from accounts.services import virtual_key_revoke
from gateway.models import RequestLog, RequestOutcome
from tests.gateway.conftest import wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {
    "model": "claude-opus-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello"}],
}
SESSION = "3d03682c-acd8-4c1b-bbcf-7b176184d3a9"


def call(server, method, path, *, secret=None, content=None, headers=None):
    all_headers = {"content-type": "application/json", **(headers or {})}
    if secret:
        all_headers["x-api-key"] = secret
    return httpx.request(
        method, server.base_url + path, content=content, headers=all_headers, timeout=30
    )


def assert_anthropic_error(response, status, error_type, message=None):
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["request_id"] == response.headers["request-id"]
    if message is not None:
        assert body["error"]["message"] == message


def test_head_api_hello_answers_200_without_a_key(gatehouse_server):
    assert httpx.head(gatehouse_server.base_url + "/api/hello").status_code == 200


def test_unknown_paths_get_404_and_wrong_methods_405_in_anthropic_shape(
    gatehouse_server, upstream, alice
):
    assert_anthropic_error(
        call(gatehouse_server, "POST", "/v1/complete", secret=alice.secret), 404, "not_found_error"
    )
    wrong_method = call(gatehouse_server, "GET", "/v1/messages", secret=alice.secret)
    assert_anthropic_error(
        wrong_method, 405, "invalid_request_error", "Method GET not allowed on /v1/messages."
    )
    assert wrong_method.headers["allow"] == "POST"
    assert_anthropic_error(
        call(gatehouse_server, "DELETE", "/v1/models", secret=alice.secret),
        405,
        "invalid_request_error",
    )


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b"{not json", "application/json", None),
        (b"\xff\xfe\x00", "application/json", "Request body is not valid UTF-8."),
        (b'"a string"', "application/json", "Request body must be a JSON object."),
        (b'{"max_tokens": 10}', "application/json", "model: Field required"),
        (b'{"model": ["x"]}', "application/json", "model: Input should be a non-empty string"),
        (orjson.dumps(BODY), "text/plain", "Content-Type must be application/json."),
    ],
)
def test_bad_input_gets_a_400_is_not_forwarded_and_is_logged(
    gatehouse_server, upstream, emulator, alice, content, content_type, message
):
    response = call(
        gatehouse_server,
        "POST",
        "/v1/messages",
        secret=alice.secret,
        content=content,
        headers={"content-type": content_type},
    )

    assert_anthropic_error(response, 400, "invalid_request_error", message)
    assert emulator.requests() == []
    [row] = wait_for_logs(1, user=alice.user)
    assert (row.outcome, row.status_code, row.error_type) == (
        RequestOutcome.GATEWAY_ERROR,
        400,
        "invalid_request_error",
    )


def test_a_body_over_the_limit_gets_413_request_too_large(
    gatehouse_server_fast_ping, upstream, emulator, alice
):
    big = orjson.dumps({**BODY, "padding": "x" * 200_000})

    response = call(
        gatehouse_server_fast_ping, "POST", "/v1/messages", secret=alice.secret, content=big
    )

    assert_anthropic_error(response, 413, "request_too_large")
    assert emulator.requests() == []


def test_a_model_outside_the_keys_patterns_gets_403(gatehouse_server, upstream, emulator, alice):
    VirtualKey.objects.filter(owner=alice.user).update(allowed_models=["claude-haiku-*"])

    response = call(
        gatehouse_server, "POST", "/v1/messages", secret=alice.secret, content=orjson.dumps(BODY)
    )

    assert_anthropic_error(
        response, 403, "permission_error", "This key may not use model 'claude-opus-5'."
    )
    assert emulator.requests() == []


def test_a_model_with_no_route_gets_404_naming_the_model(
    gatehouse_server, upstream, emulator, alice
):
    response = call(
        gatehouse_server,
        "POST",
        "/v1/messages",
        secret=alice.secret,
        content=orjson.dumps({**BODY, "model": "gpt-5"}),
    )

    assert_anthropic_error(
        response, 404, "not_found_error", "No route for model 'gpt-5' on this gateway."
    )


def test_revoked_key_gets_401(gatehouse_server, upstream, alice):
    virtual_key_revoke(virtual_key=VirtualKey.objects.get(owner=alice.user))

    response = call(
        gatehouse_server, "POST", "/v1/messages", secret=alice.secret, content=orjson.dumps(BODY)
    )

    assert_anthropic_error(response, 401, "authentication_error", "Invalid API key.")


def test_both_credential_headers_with_different_keys_get_401(
    gatehouse_server, upstream, alice, bob
):
    response = call(
        gatehouse_server,
        "POST",
        "/v1/messages",
        secret=alice.secret,
        content=orjson.dumps(BODY),
        headers={"authorization": f"Bearer {bob.secret}"},
    )

    assert_anthropic_error(response, 401, "authentication_error")


def test_count_tokens_is_forwarded_to_the_provider_and_costs_nothing(
    gatehouse_server, upstream, emulator, alice
):
    response = call(
        gatehouse_server,
        "POST",
        "/v1/messages/count_tokens?beta=true",
        secret=alice.secret,
        content=orjson.dumps(BODY),
    )

    assert response.status_code == 200
    assert set(response.json()) == {"input_tokens"}
    assert emulator.last_request()["path"] == "/v1/messages/count_tokens"
    [row] = wait_for_logs(1, user=alice.user)
    assert (row.endpoint, row.cost_usd, row.input_tokens) == ("/v1/messages/count_tokens", 0, 0)


def test_models_lists_only_what_the_key_may_use_with_pagination(gatehouse_server, upstream, alice):
    VirtualKey.objects.filter(owner=alice.user).update(allowed_models=["claude-sonnet-*"])

    first = call(gatehouse_server, "GET", "/v1/models?limit=2", secret=alice.secret).json()
    rest = call(
        gatehouse_server,
        "GET",
        f"/v1/models?limit=1000&after_id={first['last_id']}",
        secret=alice.secret,
    ).json()

    ids = [model["id"] for model in first["data"] + rest["data"]]
    assert ids
    assert all(model_id.startswith("claude-sonnet-") for model_id in ids)
    assert "claude-sonnet-5" in ids
    assert first["has_more"] is True
    assert rest["has_more"] is False
    assert first["first_id"] == ids[0]
    assert first["data"][0]["type"] == "model"
    one = call(gatehouse_server, "GET", "/v1/models/claude-sonnet-5", secret=alice.secret)
    assert one.json()["id"] == "claude-sonnet-5"
    assert_anthropic_error(
        call(gatehouse_server, "GET", "/v1/models/claude-opus-5", secret=alice.secret),
        404,
        "not_found_error",
    )


def test_session_and_subagent_ids_are_recorded(gatehouse_server, upstream, emulator, alice):
    call(
        gatehouse_server,
        "POST",
        "/v1/messages",
        secret=alice.secret,
        content=orjson.dumps(BODY),
        headers={"x-claude-code-session-id": SESSION, "x-claude-code-agent-id": "agent-7"},
    )
    user_id = f'{{"device_id":"{"a" * 64}","account_uuid":"","session_id":"{SESSION}"}}'
    call(
        gatehouse_server,
        "POST",
        "/v1/messages",
        secret=alice.secret,
        content=orjson.dumps({**BODY, "metadata": {"user_id": user_id}}),
    )

    rows = wait_for_logs(2, user=alice.user)
    assert [(row.session_id, row.agent_id) for row in rows] == [(SESSION, "agent-7"), (SESSION, "")]


def test_every_request_gets_exactly_one_log_row(gatehouse_server, upstream, emulator, alice):
    for _ in range(5):
        call(
            gatehouse_server,
            "POST",
            "/v1/messages",
            secret=alice.secret,
            content=orjson.dumps(BODY),
        )
    call(gatehouse_server, "POST", "/v1/messages", secret=alice.secret, content=b"nope")

    rows = wait_for_logs(6, user=alice.user)

    assert len(rows) == 6
    assert len({row.request_id for row in rows}) == 6
    assert RequestLog.objects.filter(user=alice.user).count() == 6


def _normalise(raw: bytes) -> bytes:
    return re.sub(rb"(msg|req)_emu_[0-9a-f]+", rb"\1_ID", raw)


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({**BODY}, {}),
        ({**BODY, "stream": True}, {}),
        (
            {
                **BODY,
                "stream": True,
                "tools": [
                    {"name": "Read", "description": "read", "input_schema": {"type": "object"}}
                ],
                "messages": [{"role": "user", "content": "use the tool please"}],
            },
            {},
        ),
        ({**BODY, "stream": True, "thinking": {"type": "enabled", "budget_tokens": 1024}}, {}),
        ({**BODY, "thinking": {"type": "enabled", "budget_tokens": 1024}}, {}),
        ({**BODY, "stream": True}, {"x-emulator-fault": "error_event_mid_stream"}),
        ({**BODY}, {"x-emulator-fault": "529"}),
    ],
    ids=[
        "text",
        "text-stream",
        "tool-use-stream",
        "thinking-stream",
        "thinking",
        "error-event",
        "error-529",
    ],
)
def test_client_receives_the_same_bytes_through_the_gateway_as_directly(
    gatehouse_server, upstream, emulator, alice, body, headers
):
    def fetch(base_url, secret):
        with httpx.stream(
            "POST",
            base_url + "/v1/messages",
            content=orjson.dumps(body),
            headers={"x-api-key": secret, "content-type": "application/json", **headers},
            timeout=30,
        ) as response:
            return (
                response.status_code,
                response.headers.get("content-type"),
                b"".join(response.iter_raw()),
            )

    direct = fetch(emulator.base_url, "sk-direct")
    through = fetch(gatehouse_server.base_url, alice.secret)

    assert through[:2] == direct[:2]
    assert _normalise(through[2]) == _normalise(direct[2])
