"""The emulator as a real server: endpoints, auth, control API, recording, pacing."""

import re
import time

import httpx
import orjson
import pytest

KEY = "sk-test-emulator"
HELLO = {
    "model": "claude-opus-5",
    "max_tokens": 256,
    "messages": [{"role": "user", "content": "Say hello"}],
}
REQUEST_ID = re.compile(r"req_emu_[0-9a-f]{24}")


@pytest.fixture
def http(emulator):
    with httpx.Client(base_url=emulator.base_url, headers={"x-api-key": KEY}, timeout=10) as client:
        yield client


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for frame in text.split("\n\n"):
        if not frame:
            continue
        event_line, data_line = frame.split("\n")
        events.append(
            (event_line.removeprefix("event: "), orjson.loads(data_line.removeprefix("data: ")))
        )
    return events


def test_hello_answers_head_with_a_request_id(http):
    response = http.head("/api/hello", headers={"x-api-key": ""})

    assert response.status_code == 200
    assert REQUEST_ID.fullmatch(response.headers["request-id"])


def test_unknown_path_is_a_404_in_anthropic_shape(http):
    response = http.get("/v1/complete")

    assert response.status_code == 404
    assert response.json() == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "Not found: GET /v1/complete"},
        "request_id": response.headers["request-id"],
    }


def test_missing_key_is_a_401_authentication_error(emulator):
    response = httpx.post(f"{emulator.base_url}/v1/messages", json=HELLO)

    assert response.status_code == 401
    assert response.json()["error"] == {
        "type": "authentication_error",
        "message": "x-api-key header is required",
    }
    assert REQUEST_ID.fullmatch(response.json()["request_id"])


def test_bearer_token_is_accepted(emulator):
    response = httpx.post(
        f"{emulator.base_url}/v1/messages", json=HELLO, headers={"authorization": "Bearer sk-b"}
    )

    assert response.status_code == 200


def test_registered_keys_turn_away_other_keys(emulator, http):
    emulator.configure(valid_keys=["sk-good"])

    rejected = http.post("/v1/messages", json=HELLO)
    accepted = http.post("/v1/messages", json=HELLO, headers={"x-api-key": "sk-good"})

    assert (rejected.status_code, rejected.json()["error"]["message"]) == (401, "invalid x-api-key")
    assert accepted.status_code == 200


def test_non_streaming_message_has_the_messages_api_shape(http):
    response = http.post("/v1/messages?beta=true", json=HELLO)

    body = response.json()
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert re.fullmatch(r"msg_emu_[0-9a-f]{24}", body.pop("id"))
    assert body == {
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-5",
        "content": [{"type": "text", "text": "Hello from the emulator: Say hello"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 9,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 9,
            "service_tier": "standard",
        },
    }


def test_streaming_message_follows_the_wire_format(http):
    response = http.post("/v1/messages?beta=true", json={**HELLO, "stream": True})

    events = sse_events(response.text)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(payload["type"] == name for name, payload in events)
    assert "".join(
        payload["delta"]["text"] for name, payload in events if name == "content_block_delta"
    ) == ("Hello from the emulator: Say hello")
    assert events[-2][1]["usage"] == {
        "input_tokens": 9,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 9,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "There was an error parsing the body of the request: it is not valid JSON"),
        (b"[]", "The request body must be a JSON object"),
        (orjson.dumps({"max_tokens": 5, "messages": []}), "model: Field required"),
        (
            orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens: Field required",
        ),
        (
            orjson.dumps({"model": "m", "max_tokens": 5, "messages": []}),
            "messages: List should have at least 1 item",
        ),
        (
            orjson.dumps(
                {"model": "m", "max_tokens": 5, "messages": [{"role": "bot", "content": "x"}]}
            ),
            "messages.0.role: Input should be 'user', 'assistant' or 'system'",
        ),
    ],
)
def test_invalid_requests_are_400_invalid_request_error(http, body, message):
    response = http.post("/v1/messages", content=body)

    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


def test_count_tokens_returns_the_prompt_estimate(http):
    response = http.post(
        "/v1/messages/count_tokens?beta=true",
        json={
            "model": "claude-opus-5",
            "system": "s" * 75,
            "messages": [{"role": "user", "content": "u" * 75}],
        },
    )

    assert response.status_code == 200
    assert response.json() == {"input_tokens": 50}


def test_models_list_pages_with_limit_and_ids(http):
    first = http.get("/v1/models", params={"limit": 3}).json()
    second = http.get("/v1/models", params={"limit": 3, "after_id": first["last_id"]}).json()
    back = http.get("/v1/models", params={"limit": 3, "before_id": second["first_id"]}).json()

    assert [model["id"] for model in first["data"]] == [
        "claude-opus-5",
        "claude-sonnet-5",
        "claude-fable-5",
    ]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (
        "claude-opus-5",
        "claude-fable-5",
        True,
    )
    assert [model["id"] for model in second["data"]] == [
        "claude-opus-4-8",
        "claude-opus-4-7",
        "claude-sonnet-4-6",
    ]
    assert back == {**first, "has_more": False}


def test_models_list_defaults_to_everything_and_retrieve_returns_one(http):
    listing = http.get("/v1/models").json()
    opus = http.get("/v1/models/claude-opus-5").json()
    missing = http.get("/v1/models/claude-imaginary-1")

    assert (len(listing["data"]), listing["has_more"]) == (10, False)
    assert opus == {
        "type": "model",
        "id": "claude-opus-5",
        "display_name": "Claude Opus 5",
        "created_at": "2026-07-24T00:00:00Z",
        "max_input_tokens": 1_000_000,
        "max_tokens": 128_000,
    }
    assert (missing.status_code, missing.json()["error"]["type"]) == (404, "not_found_error")


def test_configured_reply_text_is_used_for_everyone_or_one_key(emulator, http):
    emulator.configure(
        reply_text="Global reply.", keys={"sk-special": {"reply_text": "Special reply."}}
    )

    everyone = http.post("/v1/messages", json=HELLO).json()
    special = http.post("/v1/messages", json=HELLO, headers={"x-api-key": "sk-special"}).json()

    assert everyone["content"] == [{"type": "text", "text": "Global reply."}]
    assert special["content"] == [{"type": "text", "text": "Special reply."}]


def test_requests_are_recorded_with_every_header_and_the_body(emulator, http):
    body = orjson.dumps(HELLO)

    http.post(
        "/v1/messages?beta=true",
        content=body,
        headers={"X-Gw-Tenant": "acme", "anthropic-beta": "a,b"},
    )
    recorded = emulator.last_request()

    assert (recorded["method"], recorded["path"], recorded["query"]) == (
        "POST",
        "/v1/messages",
        "beta=true",
    )
    assert recorded["query_params"] == {"beta": "true"}
    assert recorded["body"] == body.decode()
    assert recorded["headers"]["x-gw-tenant"] == "acme"
    assert recorded["headers"]["anthropic-beta"] == "a,b"
    assert recorded["headers"]["x-api-key"] == KEY
    assert recorded["headers"]["content-length"] == str(len(body))
    assert ["x-gw-tenant", "acme"] in recorded["header_list"]
    assert (recorded["status"], REQUEST_ID.fullmatch(recorded["request_id"]) is not None) == (
        200,
        True,
    )


def test_request_log_keeps_the_last_n_oldest_first(emulator, http):
    emulator.configure(record_limit=2)
    for path in ("/v1/a", "/v1/b", "/v1/c"):
        http.get(path)

    assert [request["path"] for request in emulator.requests()] == ["/v1/b", "/v1/c"]
    assert [request["path"] for request in emulator.requests(limit=1)] == ["/v1/c"]


def test_control_calls_are_not_recorded_and_reset_forgets_everything(emulator, http):
    http.post("/v1/messages", json=HELLO)
    emulator.configure(reply_text="x")

    emulator.reset()

    assert emulator.requests() == []
    assert emulator.config()["reply_text"] is None


def test_deltas_header_sets_the_number_of_text_deltas(http):
    response = http.post(
        "/v1/messages", json={**HELLO, "stream": True}, headers={"x-emulator-deltas": "50"}
    )

    deltas = [
        payload for name, payload in sse_events(response.text) if name == "content_block_delta"
    ]
    assert len(deltas) == 50


def test_deltas_can_be_set_through_the_query_string(http):
    response = http.post(
        "/v1/messages?beta=true&emulator-deltas=12", json={**HELLO, "stream": True}
    )

    assert sum(1 for name, _ in sse_events(response.text) if name == "content_block_delta") == 12


def test_delay_spaces_the_deltas_out(emulator, http):
    emulator.configure(text_deltas=20, delta_delay_ms=20)
    started = time.monotonic()

    with http.stream("POST", "/v1/messages", json={**HELLO, "stream": True}) as response:
        arrival_times = [
            time.monotonic()
            for line in response.iter_lines()
            if line.startswith("event: content_block_delta")
        ]

    assert len(arrival_times) == 20
    assert arrival_times[-1] - arrival_times[0] >= 19 * 0.02 * 0.9
    assert time.monotonic() - started < 5


def test_json_schema_output_answers_with_a_json_object(http):
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    request = {
        **HELLO,
        "tools": [],
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }

    text = http.post("/v1/messages", json=request).json()["content"][0]["text"]

    assert orjson.loads(text) == {"title": "Say hello"}


def test_delay_header_paces_one_request(http):
    headers = {"x-emulator-deltas": "10", "x-emulator-delta-delay-ms": "30"}

    with http.stream(
        "POST", "/v1/messages", json={**HELLO, "stream": True}, headers=headers
    ) as response:
        arrival_times = [
            time.monotonic()
            for line in response.iter_lines()
            if line.startswith("event: content_block_delta")
        ]

    assert len(arrival_times) == 10
    assert arrival_times[-1] - arrival_times[0] >= 9 * 0.03 * 0.9


def test_tool_use_can_be_forced_with_a_fixed_input(emulator, http):
    emulator.configure(tool_use="always", tool_name="Bash", tool_input={"command": "echo hi"})
    tools = [
        {"name": "Read", "input_schema": {"type": "object"}},
        {
            "name": "Bash",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
        },
    ]

    message = http.post("/v1/messages", json={**HELLO, "tools": tools}).json()

    assert message["stop_reason"] == "tool_use"
    assert message["content"][1]["name"] == "Bash"
    assert message["content"][1]["input"] == {"command": "echo hi"}


def test_clock_can_be_read_and_advanced(emulator):
    before = httpx.get(f"{emulator.base_url}/_emulator/clock").json()

    now = emulator.advance_clock(90)

    assert now - before["now"] >= 90
    assert httpx.get(f"{emulator.base_url}/_emulator/clock").json()["offset_seconds"] == 90
