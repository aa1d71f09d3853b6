"""Prompt caching and rate limits through the real emulator server."""

import httpx
import pytest

KEY = "sk-test-emulator"
FIVE_MINUTES = {"type": "ephemeral"}


@pytest.fixture
def http(emulator):
    with httpx.Client(base_url=emulator.base_url, headers={"x-api-key": KEY}, timeout=10) as client:
        yield client


def text_block(tokens: int, char: str = "a", **extra) -> dict:
    """A text block whose canonical JSON is exactly `4 * tokens` bytes."""
    return {"type": "text", "text": char * (4 * tokens - 25), **extra}


def cached_request(*, system_marker=FIVE_MINUTES, **extra) -> dict:
    return {
        "model": "claude-opus-5",
        "max_tokens": 100,
        "system": [text_block(2000, "s", cache_control=system_marker)],
        "messages": [{"role": "user", "content": [text_block(10, "q")]}],
        **extra,
    }


def usage_of(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    return {
        "input_tokens": usage["input_tokens"],
        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
        "cache_read_input_tokens": usage["cache_read_input_tokens"],
        **usage["cache_creation"],
    }


def test_cache_write_then_read_within_the_ttl(http):
    written = usage_of(http.post("/v1/messages", json=cached_request()))
    read = usage_of(http.post("/v1/messages", json=cached_request()))

    assert written == {
        "input_tokens": 10,
        "cache_creation_input_tokens": 2000,
        "cache_read_input_tokens": 0,
        "ephemeral_5m_input_tokens": 2000,
        "ephemeral_1h_input_tokens": 0,
    }
    assert read == {
        "input_tokens": 10,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2000,
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 0,
    }


def test_cache_expires_when_the_clock_passes_the_ttl(emulator, http):
    http.post("/v1/messages", json=cached_request())

    emulator.advance_clock(301)
    usage = usage_of(http.post("/v1/messages", json=cached_request()))

    assert (usage["cache_read_input_tokens"], usage["ephemeral_5m_input_tokens"]) == (0, 2000)


def test_one_hour_cache_survives_five_minutes(emulator, http):
    one_hour = {"type": "ephemeral", "ttl": "1h"}
    written = usage_of(http.post("/v1/messages", json=cached_request(system_marker=one_hour)))

    emulator.advance_clock(1800)
    read = usage_of(http.post("/v1/messages", json=cached_request(system_marker=one_hour)))

    assert written["ephemeral_1h_input_tokens"] == 2000
    assert read["cache_read_input_tokens"] == 2000


def test_cache_is_per_key(http):
    http.post("/v1/messages", json=cached_request())

    other = usage_of(
        http.post("/v1/messages", json=cached_request(), headers={"x-api-key": "sk-other"})
    )

    assert other["cache_read_input_tokens"] == 0


def test_keys_in_one_workspace_share_the_cache(emulator, http):
    emulator.configure(
        keys={KEY: {"workspace": "wrkspc_a"}, "sk-colleague": {"workspace": "wrkspc_a"}}
    )
    http.post("/v1/messages", json=cached_request())

    colleague = usage_of(
        http.post("/v1/messages", json=cached_request(), headers={"x-api-key": "sk-colleague"})
    )

    assert colleague["cache_read_input_tokens"] == 2000


def test_minimum_cacheable_tokens_is_configurable(emulator, http):
    emulator.configure(min_cacheable_tokens=4096)

    usage = usage_of(http.post("/v1/messages", json=cached_request()))

    assert (usage["input_tokens"], usage["cache_creation_input_tokens"]) == (2010, 0)


def test_streamed_usage_reports_the_cache_split_in_message_start(http):
    http.post("/v1/messages", json=cached_request())

    response = http.post("/v1/messages", json=cached_request(stream=True))
    start = response.text.split("\n\n")[0]

    assert (
        '"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":2000' in start
    )
    assert '"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0}' in start


def test_more_than_four_cache_markers_is_a_400(http):
    request = cached_request()
    request["messages"][0]["content"] = [
        text_block(10, cache_control=FIVE_MINUTES) for _ in range(4)
    ]

    response = http.post("/v1/messages", json=request)

    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "A maximum of 4 blocks with cache_control may be provided. Found 5.",
    }


def test_one_hour_marker_after_a_five_minute_marker_is_a_400(http):
    request = cached_request()
    request["messages"][0]["content"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}

    response = http.post("/v1/messages", json=request)

    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "A ttl='1h' cache_control block must not come after a ttl='5m' cache_control block",
    }


def test_rate_limit_gives_429_with_retry_after_and_headers(emulator, http):
    emulator.configure(keys={KEY: {"rpm": 2}})
    request = cached_request()

    first = http.post("/v1/messages", json=request)
    second = http.post("/v1/messages", json=request)
    limited = http.post("/v1/messages", json=request)

    assert first.headers["anthropic-ratelimit-requests-limit"] == "2"
    assert first.headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert second.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert limited.headers["retry-after"] == "60"
    assert limited.headers["anthropic-ratelimit-requests-remaining"] == "0"
    for family in ("requests", "tokens", "input-tokens", "output-tokens"):
        for part in ("limit", "remaining", "reset"):
            assert f"anthropic-ratelimit-{family}-{part}" in limited.headers


def test_rate_limit_window_frees_after_a_minute(emulator, http):
    emulator.configure(keys={KEY: {"rpm": 1}})
    http.post("/v1/messages", json=cached_request())

    emulator.advance_clock(60)
    response = http.post("/v1/messages", json=cached_request())

    assert response.status_code == 200


def test_rate_limit_is_per_key(emulator, http):
    emulator.configure(keys={KEY: {"rpm": 1}})
    http.post("/v1/messages", json=cached_request())

    other = http.post("/v1/messages", json=cached_request(), headers={"x-api-key": "sk-other"})

    assert other.status_code == 200


def test_token_headers_count_uncached_input_and_output(emulator, http):
    emulator.configure(itpm=100_000, otpm=20_000)

    response = http.post("/v1/messages", json=cached_request())

    output_tokens = response.json()["usage"]["output_tokens"]
    assert response.headers["anthropic-ratelimit-input-tokens-limit"] == "100000"
    assert response.headers["anthropic-ratelimit-input-tokens-remaining"] == str(100_000 - 2010)
    assert response.headers["anthropic-ratelimit-output-tokens-remaining"] == str(
        20_000 - output_tokens
    )
    assert response.headers["anthropic-ratelimit-tokens-limit"] == "120000"
