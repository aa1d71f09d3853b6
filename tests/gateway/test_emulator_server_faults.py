"""Every injectable fault, observed by a plain HTTP client against the real server."""

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
STREAM = {**HELLO, "stream": True}


@pytest.fixture
def http(emulator):
    with httpx.Client(base_url=emulator.base_url, headers={"x-api-key": KEY}, timeout=10) as client:
        yield client


def read_until_broken(client: httpx.Client, body: dict) -> tuple[bytes, Exception | None]:
    received = b""
    with client.stream("POST", "/v1/messages", json=body) as response:
        try:
            for chunk in response.iter_raw():
                received += chunk
        except httpx.HTTPError as error:
            return received, error
    return received, None


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "message"),
    [
        ("500", 500, "api_error", "Internal server error"),
        ("529", 529, "overloaded_error", "Overloaded"),
        (
            "429",
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        ),
        ("401", 401, "authentication_error", "invalid x-api-key"),
    ],
)
def test_status_fault_answers_with_the_anthropic_error(
    emulator, http, fault, status, error_type, message
):
    emulator.inject_fault(fault)

    failed = http.post("/v1/messages", json=STREAM)
    recovered = http.post("/v1/messages", json=STREAM)

    assert failed.status_code == status
    assert failed.json() == {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": failed.headers["request-id"],
    }
    assert recovered.status_code == 200


def test_429_fault_carries_retry_after(emulator, http):
    emulator.inject_fault("429:3")

    response = http.post("/v1/messages", json=HELLO)

    assert (response.status_code, response.headers["retry-after"]) == (429, "3")


def test_header_fault_applies_to_that_request_only(emulator, http):
    failed = http.post("/v1/messages", json=HELLO, headers={"x-emulator-fault": "529"})
    next_one = http.post("/v1/messages", json=HELLO)

    assert (failed.status_code, next_one.status_code) == (529, 200)
    assert emulator.faults() == []


def test_fault_limited_to_a_key_and_a_count(emulator, http):
    emulator.inject_fault("500", key="sk-victim", times=2)

    bystander = http.post("/v1/messages", json=HELLO)
    victim = [
        http.post("/v1/messages", json=HELLO, headers={"x-api-key": "sk-victim"}).status_code
        for _ in range(3)
    ]

    assert bystander.status_code == 200
    assert victim == [500, 500, 200]


def test_fault_on_count_tokens(emulator, http):
    emulator.inject_fault("529", endpoint="count_tokens")

    message = http.post("/v1/messages", json=HELLO)
    counted = http.post(
        "/v1/messages/count_tokens", json={"model": "m", "messages": HELLO["messages"]}
    )

    assert (message.status_code, counted.status_code) == (200, 529)


def test_drop_mid_stream_closes_the_connection_after_a_delta(emulator, http):
    emulator.inject_fault("drop_mid_stream")

    received, error = read_until_broken(http, STREAM)

    assert isinstance(error, httpx.RemoteProtocolError)
    assert b"event: message_start" in received
    assert received.count(b"event: content_block_delta") == 1
    assert b"message_stop" not in received


def test_connection_is_usable_again_after_a_drop(emulator, http):
    emulator.inject_fault("drop_mid_stream")
    read_until_broken(http, STREAM)

    response = http.post("/v1/messages", json=STREAM)

    assert response.status_code == 200
    assert response.text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_stream_fault_waits_for_a_streaming_request(emulator, http):
    emulator.inject_fault("drop_mid_stream")

    fallback = http.post("/v1/messages", json=HELLO)

    assert fallback.status_code == 200
    assert emulator.faults() == [
        {"fault": "drop_mid_stream", "key": None, "times": 1, "endpoint": "messages"}
    ]


def test_error_event_mid_stream_follows_message_start(emulator, http):
    emulator.inject_fault("error_event_mid_stream")

    response = http.post("/v1/messages", json=STREAM)

    frames = [frame for frame in response.text.split("\n\n") if frame]
    assert response.status_code == 200
    assert [frame.split("\n")[0] for frame in frames] == ["event: message_start", "event: error"]
    assert frames[1] == (
        'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    )


def test_slow_first_byte_delays_the_response_headers(emulator, http):
    emulator.inject_fault("slow_first_byte:300")
    started = time.monotonic()

    response = http.post("/v1/messages", json=HELLO)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_silence_pauses_mid_stream(emulator, http):
    emulator.inject_fault("silence:300")

    with http.stream("POST", "/v1/messages", json=STREAM) as response:
        arrivals = [
            (time.monotonic(), line)
            for line in response.iter_lines()
            if line.startswith("event: content_block_delta")
        ]

    assert len(arrivals) == 5
    assert arrivals[1][0] - arrivals[0][0] >= 0.25


def test_malformed_json_on_a_non_streaming_request(emulator, http):
    emulator.inject_fault("malformed_json")

    response = http.post("/v1/messages", json=HELLO)

    assert (response.status_code, response.headers["content-type"]) == (200, "application/json")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)


def test_malformed_json_in_a_stream_breaks_one_event(emulator, http):
    emulator.inject_fault("malformed_json")

    response = http.post("/v1/messages", json=STREAM)

    unparsable = []
    for frame in response.text.split("\n\n"):
        if frame:
            try:
                orjson.loads(frame.split("data: ", 1)[1])
            except orjson.JSONDecodeError:
                unparsable.append(frame.split("\n")[0])
    assert unparsable == ["event: content_block_delta"]


def test_malformed_sse_sends_unframed_bytes_and_no_message_stop(emulator, http):
    emulator.inject_fault("malformed_sse")

    response = http.post("/v1/messages", json=STREAM)

    assert response.status_code == 200
    assert response.content.startswith(b"event: message_start\n")
    assert b"event content_block_delta\n" in response.content
    assert b"message_stop" not in response.content


def test_invalid_fault_spec_is_rejected_by_the_control_api(emulator):
    with pytest.raises(httpx.HTTPStatusError) as raised:
        emulator.inject_fault("explode")

    assert raised.value.response.json()["error"]["message"] == "fault: unknown fault 'explode'"


def test_reset_mid_stream_aborts_the_connection_after_a_delta(emulator, http):
    emulator.inject_fault("reset_mid_stream")

    received, error = read_until_broken(http, STREAM)

    assert isinstance(error, httpx.ReadError)
    assert "reset" in str(error).lower()
    assert received.count(b"event: content_block_delta") == 1
    assert b"message_stop" not in received


def test_endless_stream_keeps_sending_deltas_until_the_client_hangs_up(emulator, http):
    emulator.inject_fault("endless:10")

    with http.stream("POST", "/v1/messages", json=STREAM) as response:
        deltas = 0
        for line in response.iter_lines():
            deltas += line.startswith("event: content_block_delta")
            if deltas == 50:
                break

    assert deltas == 50
    deadline = time.monotonic() + 5
    while emulator.last_request()["disconnected_at"] is None:
        assert time.monotonic() < deadline, "the emulator never noticed the hang-up"
        time.sleep(0.05)
