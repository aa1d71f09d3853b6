"""Sliding-window rate limits and their headers: pure, no server."""

import pytest

from gateway.emulator.errors import EmulatorError
from gateway.emulator.ratelimits import Limits, RateLimiter, rfc3339

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
LIMITS = Limits(rpm=2, itpm=1000, otpm=500)


def test_requests_over_the_limit_get_429_with_retry_after():
    limiter = RateLimiter()
    limiter.admit("k", LIMITS, T0)
    limiter.admit("k", LIMITS, T0 + 10)

    with pytest.raises(EmulatorError) as raised:
        limiter.admit("k", LIMITS, T0 + 20.5)

    error = raised.value
    assert (error.status, error.error_type) == (429, "rate_limit_error")
    assert error.message.startswith(
        "This request would exceed the rate limit for this API key of requests per minute (2)."
    )
    assert dict(error.headers)[b"retry-after"] == b"40"
    assert dict(error.headers)[b"anthropic-ratelimit-requests-remaining"] == b"0"


def test_window_frees_after_sixty_seconds():
    limiter = RateLimiter()
    limiter.admit("k", LIMITS, T0)
    limiter.admit("k", LIMITS, T0)

    limiter.admit("k", LIMITS, T0 + 60)


def test_keys_have_separate_windows():
    limiter = RateLimiter()
    limiter.admit("a", LIMITS, T0)
    limiter.admit("a", LIMITS, T0)

    limiter.admit("b", LIMITS, T0)


def test_input_token_limit_blocks_the_next_request():
    limiter = RateLimiter()
    limiter.admit("k", LIMITS, T0)
    limiter.record_tokens("k", T0, input_tokens=1200, output_tokens=1)

    with pytest.raises(EmulatorError) as raised:
        limiter.admit("k", LIMITS, T0 + 1)

    assert "input tokens per minute (1000)" in raised.value.message
    assert dict(raised.value.headers)[b"retry-after"] == b"59"


def test_combined_token_limit_counts_input_and_output():
    limits = Limits(rpm=100, itpm=1000, otpm=1000, tpm=300)
    limiter = RateLimiter()
    limiter.admit("k", limits, T0)
    limiter.record_tokens("k", T0, input_tokens=200, output_tokens=150)

    with pytest.raises(EmulatorError) as raised:
        limiter.admit("k", limits, T0 + 30)

    assert "tokens per minute (300)" in raised.value.message
    assert dict(raised.value.headers)[b"retry-after"] == b"30"


def test_headers_report_limits_remaining_and_rfc3339_resets():
    limiter = RateLimiter()
    limiter.admit("k", LIMITS, T0)
    limiter.record_tokens("k", T0, input_tokens=120, output_tokens=30)

    headers = limiter.headers("k", LIMITS, T0 + 5)

    assert headers == [
        (b"anthropic-ratelimit-requests-limit", b"2"),
        (b"anthropic-ratelimit-requests-remaining", b"1"),
        (b"anthropic-ratelimit-requests-reset", b"2027-01-15T08:01:00Z"),
        (b"anthropic-ratelimit-tokens-limit", b"1500"),
        (b"anthropic-ratelimit-tokens-remaining", b"1350"),
        (b"anthropic-ratelimit-tokens-reset", b"2027-01-15T08:01:00Z"),
        (b"anthropic-ratelimit-input-tokens-limit", b"1000"),
        (b"anthropic-ratelimit-input-tokens-remaining", b"880"),
        (b"anthropic-ratelimit-input-tokens-reset", b"2027-01-15T08:01:00Z"),
        (b"anthropic-ratelimit-output-tokens-limit", b"500"),
        (b"anthropic-ratelimit-output-tokens-remaining", b"470"),
        (b"anthropic-ratelimit-output-tokens-reset", b"2027-01-15T08:01:00Z"),
    ]


def test_rfc3339_is_utc_with_a_z_suffix():
    assert rfc3339(int(T0)) == b"2027-01-15T08:00:00Z"
