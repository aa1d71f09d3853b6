"""Per-key rate limits, pure: token buckets, retry-after, what counts as a token."""

from __future__ import annotations

import pytest

from gateway.admission.limits import (
    CONCURRENCY,
    RPM,
    TPM,
    RateClaim,
    bucket_level,
    refused_message,
    shortfall,
    tokens_to_take,
    usage_tokens,
)
from gateway.contracts import Usage


def test_an_untouched_bucket_is_full():
    assert bucket_level(None, None, now=100.0, capacity=60) == 60.0


def test_a_bucket_refills_at_its_limit_per_minute_up_to_its_capacity():
    assert bucket_level(0.0, 100.0, now=130.0, capacity=60) == 30.0
    assert bucket_level(50.0, 100.0, now=200.0, capacity=60) == 60.0


def test_a_bucket_in_debt_refills_from_below_zero():
    assert bucket_level(-600.0, 0.0, now=60.0, capacity=600) == 0.0


def test_a_clock_that_went_backwards_refills_nothing():
    assert bucket_level(5.0, 100.0, now=90.0, capacity=60) == 5.0


@pytest.mark.parametrize(
    ("level", "need", "capacity", "wait"),
    [
        (1.0, 1, 2, None),
        (0.5, 1, 2, 15),
        (0.0, 1, 1, 60),
        (0.999, 1, 60, 1),
        (-400.0, 600, 1000, 60),
        (0.0, 0, 0, 60),
    ],
)
def test_retry_after_is_the_whole_seconds_until_the_bucket_holds_enough(
    level, need, capacity, wait
):
    assert shortfall(level, need, capacity) == wait


def test_a_request_larger_than_the_bucket_waits_for_a_full_bucket():
    assert tokens_to_take(250_000, 100_000) == 100_000
    assert tokens_to_take(2_000, 100_000) == 2_000
    assert tokens_to_take(2_000, None) == 0


def test_tokens_per_minute_count_input_cache_writes_and_output_but_not_cache_reads():
    usage = Usage(
        input_tokens=10,
        output_tokens=20,
        cache_write_5m_tokens=300,
        cache_write_1h_tokens=4000,
        cache_read_tokens=50_000,
    )
    assert usage_tokens(usage) == 4330
    assert usage_tokens(None) == 0


def test_each_limit_explains_itself():
    claim = RateClaim(key_id=1, rpm=2, tpm=1000, tokens=600, max_concurrent=3)
    assert refused_message(RPM, claim, 30) == (
        "This key's limit of 2 requests per minute is reached; retry in 30 s."
    )
    assert refused_message(TPM, claim, 12) == (
        "This key's limit of 1000 tokens per minute is reached "
        "(this request may use 600); retry in 12 s."
    )
    assert refused_message(CONCURRENCY, claim, 1) == (
        "This key already has 3 requests in flight, its limit; retry when one of them finishes."
    )
