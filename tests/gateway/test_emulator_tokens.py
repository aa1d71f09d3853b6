"""Token estimate and prefix flattening: pure, no server."""

import pytest

from gateway.emulator.errors import EmulatorError
from gateway.emulator.prefix import build_prefix
from gateway.emulator.tokens import canonical_json, estimate_block_tokens, estimate_text_tokens

MODEL = "claude-opus-5"


def text_block(tokens: int, char: str = "a", **extra) -> dict:
    """A text block whose canonical JSON is exactly `4 * tokens` bytes."""
    return {"type": "text", "text": char * (4 * tokens - 25), **extra}


def test_canonical_json_sorts_keys_and_drops_the_cache_marker():
    block = {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}

    assert canonical_json(block) == b'{"text":"hi","type":"text"}'


def test_block_estimate_is_canonical_bytes_over_four_rounded_up():
    assert estimate_block_tokens(text_block(100)) == 100
    assert estimate_block_tokens({"type": "text", "text": "x" * 76}) == 26  # 101 bytes


def test_text_estimate_counts_utf8_bytes():
    assert estimate_text_tokens("héllo") == 2  # 6 bytes
    assert estimate_text_tokens("") == 1


def test_prefix_orders_tools_then_system_then_messages():
    body = {
        "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
        "system": [text_block(10)],
        "messages": [{"role": "user", "content": [text_block(20), text_block(30)]}],
    }
    tool_tokens = estimate_block_tokens(body["tools"][0])

    prefix = build_prefix(body, MODEL)

    assert prefix.cumulative_tokens == (
        tool_tokens,
        tool_tokens + 10,
        tool_tokens + 30,
        tool_tokens + 60,
    )
    assert prefix.total_tokens == tool_tokens + 60


def test_string_system_and_content_count_like_one_text_block():
    as_strings = build_prefix(
        {"system": "s" * 75, "messages": [{"role": "user", "content": "u" * 75}]}, MODEL
    )
    as_blocks = build_prefix(
        {
            "system": [{"type": "text", "text": "s" * 75}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "u" * 75}]}],
        },
        MODEL,
    )

    assert as_strings.cumulative_tokens == as_blocks.cumulative_tokens == (25, 50)
    assert as_strings.hashes == as_blocks.hashes


def test_moving_a_marker_keeps_the_prefix_hashes():
    plain = build_prefix({"messages": [{"role": "user", "content": [text_block(5)]}]}, MODEL)
    marked = build_prefix(
        {
            "messages": [
                {"role": "user", "content": [text_block(5, cache_control={"type": "ephemeral"})]}
            ]
        },
        MODEL,
    )

    assert plain.hashes == marked.hashes
    assert [(point.index, point.ttl) for point in marked.breakpoints] == [(0, "5m")]


def test_the_model_is_part_of_every_prefix_hash():
    body = {"messages": [{"role": "user", "content": "hi"}]}

    assert (
        build_prefix(body, "claude-opus-5").hashes != build_prefix(body, "claude-sonnet-5").hashes
    )


def test_top_level_cache_control_marks_the_last_eligible_block():
    body = {
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
        "messages": [
            {"role": "user", "content": "question"},
            {
                "role": "assistant",
                "content": [text_block(10), {"type": "thinking", "thinking": "t"}],
            },
        ],
    }

    prefix = build_prefix(body, MODEL)

    assert [(point.index, point.ttl) for point in prefix.breakpoints] == [(1, "1h")]


def test_five_markers_are_rejected_with_the_api_message():
    marked = {"type": "ephemeral"}
    body = {
        "system": [text_block(1, cache_control=marked) for _ in range(3)],
        "messages": [{"role": "user", "content": [text_block(1, cache_control=marked)] * 2}],
    }

    with pytest.raises(EmulatorError) as raised:
        build_prefix(body, MODEL)

    assert (raised.value.status, raised.value.error_type, raised.value.message) == (
        400,
        "invalid_request_error",
        "A maximum of 4 blocks with cache_control may be provided. Found 5.",
    )


def test_four_markers_plus_top_level_count_as_five():
    marked = {"type": "ephemeral"}
    body = {
        "cache_control": {"type": "ephemeral"},
        "system": [text_block(1, cache_control=marked) for _ in range(4)],
        "messages": [{"role": "user", "content": "hi"}],
    }

    with pytest.raises(EmulatorError) as raised:
        build_prefix(body, MODEL)

    assert (
        raised.value.message == "A maximum of 4 blocks with cache_control may be provided. Found 5."
    )


def test_one_hour_marker_after_five_minute_marker_is_rejected():
    body = {
        "system": [
            text_block(1, cache_control={"type": "ephemeral"}),
            text_block(1, cache_control={"type": "ephemeral", "ttl": "1h"}),
        ],
        "messages": [{"role": "user", "content": "hi"}],
    }

    with pytest.raises(EmulatorError) as raised:
        build_prefix(body, MODEL)

    assert (raised.value.status, raised.value.message) == (
        400,
        "A ttl='1h' cache_control block must not come after a ttl='5m' cache_control block",
    )


def test_unknown_ttl_is_rejected():
    body = {
        "messages": [
            {
                "role": "user",
                "content": [text_block(1, cache_control={"type": "ephemeral", "ttl": "2h"})],
            }
        ]
    }

    with pytest.raises(EmulatorError) as raised:
        build_prefix(body, MODEL)

    assert (
        raised.value.message
        == "messages.0.content.0.cache_control.ttl: Input should be '5m' or '1h'"
    )
