"""The simulated prompt cache: pure, driven by explicit timestamps."""

import pytest

from gateway.emulator.cache import CacheUsage, PromptCache
from gateway.emulator.prefix import build_prefix

MODEL = "claude-opus-5"
FIVE_MINUTES = {"type": "ephemeral"}
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}


def text_block(tokens: int, char: str = "a", **extra) -> dict:
    """A text block whose canonical JSON is exactly `4 * tokens` bytes."""
    return {"type": "text", "text": char * (4 * tokens - 25), **extra}


def request(*, system_marker=FIVE_MINUTES, user_text: str = "q", **extra) -> dict:
    """2000 cached system tokens, then a 10-token user turn."""
    return {
        "system": [text_block(2000, "s", cache_control=system_marker)],
        "messages": [{"role": "user", "content": [text_block(10, user_text)]}],
        **extra,
    }


def account(cache: PromptCache, body: dict, now: float, *, scope="sk-a", model=MODEL, minimum=1024):
    return cache.account(
        scope=scope, prefix=build_prefix(body, model), now=now, min_cacheable_tokens=minimum
    )


def test_first_request_writes_the_prefix_up_to_the_marker():
    cache = PromptCache()

    usage = account(cache, request(), now=0)

    assert usage == CacheUsage(input_tokens=10, ephemeral_5m_input_tokens=2000)
    assert usage.cache_creation_input_tokens == 2000


def test_same_prefix_within_the_ttl_is_read():
    cache = PromptCache()
    account(cache, request(), now=0)

    usage = account(cache, request(user_text="o"), now=299)

    assert usage == CacheUsage(input_tokens=10, cache_read_input_tokens=2000)


def test_prefix_expires_after_five_minutes():
    cache = PromptCache()
    account(cache, request(), now=0)

    usage = account(cache, request(), now=300)

    assert usage == CacheUsage(input_tokens=10, ephemeral_5m_input_tokens=2000)


def test_a_hit_refreshes_the_ttl():
    cache = PromptCache()
    account(cache, request(), now=0)
    account(cache, request(), now=200)

    usage = account(cache, request(), now=450)

    assert usage.cache_read_input_tokens == 2000


def test_one_hour_marker_writes_to_the_one_hour_bucket_and_lives_an_hour():
    cache = PromptCache()

    written = account(cache, request(system_marker=ONE_HOUR), now=0)
    read = account(cache, request(system_marker=ONE_HOUR), now=3599)

    assert written == CacheUsage(input_tokens=10, ephemeral_1h_input_tokens=2000)
    assert read == CacheUsage(input_tokens=10, cache_read_input_tokens=2000)


def test_prefix_below_the_minimum_is_not_cached():
    cache = PromptCache()
    body = {
        "system": [text_block(1000, cache_control=FIVE_MINUTES)],
        "messages": [{"role": "user", "content": [text_block(10)]}],
    }

    first = account(cache, body, now=0)
    second = account(cache, body, now=1)

    assert first == second == CacheUsage(input_tokens=1010)


def test_minimum_is_configurable():
    cache = PromptCache()

    usage = account(cache, request(), now=0, minimum=4096)

    assert usage == CacheUsage(input_tokens=2010)


def test_top_level_cache_control_caches_the_whole_prompt():
    cache = PromptCache()
    body = {
        "cache_control": {"type": "ephemeral"},
        "system": [text_block(1500)],
        "messages": [{"role": "user", "content": [text_block(10)]}],
    }

    first = account(cache, body, now=0)
    second = account(cache, body, now=10)

    assert first == CacheUsage(input_tokens=0, ephemeral_5m_input_tokens=1510)
    assert second == CacheUsage(input_tokens=0, cache_read_input_tokens=1510)


def test_mixed_ttls_split_the_write_by_segment():
    cache = PromptCache()
    body = {
        "system": [
            text_block(1200, "s", cache_control=ONE_HOUR),
            text_block(300, "t", cache_control=FIVE_MINUTES),
        ],
        "messages": [{"role": "user", "content": [text_block(10)]}],
    }

    usage = account(cache, body, now=0)

    assert usage == CacheUsage(
        input_tokens=10, ephemeral_1h_input_tokens=1200, ephemeral_5m_input_tokens=300
    )


def test_moving_breakpoint_reads_the_previous_turn_through_lookback():
    cache = PromptCache()
    turn_one = {
        "system": [text_block(1100, "s", cache_control=FIVE_MINUTES)],
        "messages": [
            {"role": "user", "content": [text_block(50, "u", cache_control=FIVE_MINUTES)]}
        ],
    }
    turn_two = {
        "system": [text_block(1100, "s", cache_control=FIVE_MINUTES)],
        "messages": [
            {"role": "user", "content": [text_block(50, "u")]},
            {"role": "assistant", "content": [text_block(30, "r")]},
            {"role": "user", "content": [text_block(20, "v", cache_control=FIVE_MINUTES)]},
        ],
    }
    account(cache, turn_one, now=0)

    usage = account(cache, turn_two, now=5)

    assert usage == CacheUsage(
        input_tokens=0, cache_read_input_tokens=1150, ephemeral_5m_input_tokens=50
    )


@pytest.mark.parametrize(
    ("new_blocks", "expected"),
    [
        (
            19,
            CacheUsage(input_tokens=0, cache_read_input_tokens=1110, ephemeral_5m_input_tokens=190),
        ),
        (20, CacheUsage(input_tokens=0, ephemeral_5m_input_tokens=1310)),
    ],
)
def test_lookback_reaches_back_twenty_blocks_including_the_breakpoint(new_blocks, expected):
    cache = PromptCache()
    system = [text_block(1100, "s")]
    first = {
        "system": system,
        "messages": [
            {"role": "user", "content": [text_block(10, "u", cache_control=FIVE_MINUTES)]}
        ],
    }
    later_blocks = [text_block(10, chr(ord("a") + i)) for i in range(new_blocks)]
    later_blocks[-1] = {**later_blocks[-1], "cache_control": FIVE_MINUTES}
    second = {
        "system": system,
        "messages": [
            {"role": "user", "content": [text_block(10, "u")]},
            {"role": "assistant", "content": later_blocks},
        ],
    }
    account(cache, first, now=0)

    usage = account(cache, second, now=1)

    assert usage == expected


def test_cache_is_isolated_per_workspace_and_per_model():
    cache = PromptCache()
    account(cache, request(), now=0, scope="sk-a")

    other_key = account(cache, request(), now=1, scope="sk-b")
    other_model = account(cache, request(), now=2, scope="sk-a", model="claude-sonnet-5")

    assert other_key.cache_read_input_tokens == 0
    assert other_model.cache_read_input_tokens == 0


def test_changing_a_tool_definition_invalidates_everything():
    cache = PromptCache()
    tool = {"name": "Read", "description": "Reads a file", "input_schema": {"type": "object"}}
    account(cache, request(tools=[tool]), now=0)

    usage = account(cache, request(tools=[{**tool, "description": "Reads files"}]), now=1)

    assert usage.cache_read_input_tokens == 0


def test_changing_thinking_invalidates_only_the_messages():
    cache = PromptCache()
    body = {
        "system": [text_block(1100, "s", cache_control=FIVE_MINUTES)],
        "messages": [
            {"role": "user", "content": [text_block(40, "u", cache_control=FIVE_MINUTES)]}
        ],
    }
    account(cache, body, now=0)

    usage = account(cache, {**body, "thinking": {"type": "adaptive"}}, now=1)

    assert usage == CacheUsage(
        input_tokens=0, cache_read_input_tokens=1100, ephemeral_5m_input_tokens=40
    )
