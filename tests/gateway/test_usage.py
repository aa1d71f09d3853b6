import pytest

from gateway.contracts import Usage
from gateway.usage import MessageUsage, StreamUsage, split_cache_writes, usage_from_message

# The non-stream example of anthropic-protocol.md §5.
MESSAGE_USAGE = {
    "input_tokens": 50,
    "cache_creation_input_tokens": 248,
    "cache_read_input_tokens": 100000,
    "cache_creation": {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100},
    "output_tokens": 503,
    "service_tier": "standard",
}

MESSAGE_START = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "content": [],
    "model": "claude-opus-5",
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {**MESSAGE_USAGE, "output_tokens": 1},
}


def message_delta(usage: dict, stop_reason: str | None = "end_turn") -> dict:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }


def test_message_usage_splits_cache_writes_by_ttl():
    assert usage_from_message(MESSAGE_USAGE) == MessageUsage(
        usage=Usage(
            input_tokens=50,
            output_tokens=503,
            cache_write_5m_tokens=148,
            cache_write_1h_tokens=100,
            cache_read_tokens=100000,
            web_search_requests=0,
        ),
        iterations=(),
    )


def test_message_usage_unpacks_into_usage_and_iterations():
    usage, iterations = usage_from_message({"input_tokens": 3, "output_tokens": 4})

    assert usage == Usage(input_tokens=3, output_tokens=4)
    assert iterations == ()


def test_cache_writes_without_a_split_go_to_5m_by_default():
    usage = usage_from_message({"input_tokens": 10, "cache_creation_input_tokens": 300}).usage

    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (300, 0)


def test_cache_writes_without_a_split_go_to_the_requested_ttl():
    usage = usage_from_message(
        {"input_tokens": 10, "cache_creation_input_tokens": 300}, requested_ttl="1h"
    ).usage

    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (0, 300)


def test_split_is_used_even_when_a_1h_ttl_was_requested():
    usage = usage_from_message(MESSAGE_USAGE, requested_ttl="1h").usage

    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (148, 100)


def test_null_fields_count_as_zero():
    usage = usage_from_message(
        {
            "input_tokens": 7,
            "output_tokens": 9,
            "cache_creation_input_tokens": None,
            "cache_read_input_tokens": None,
            "cache_creation": None,
            "server_tool_use": None,
        }
    ).usage

    assert usage == Usage(input_tokens=7, output_tokens=9)


def test_malformed_counts_count_as_zero():
    usage = usage_from_message(
        {"input_tokens": "12", "output_tokens": -5, "cache_read_input_tokens": True}
    ).usage

    assert usage == Usage()


def test_web_search_requests_are_counted():
    usage = usage_from_message(
        {
            "input_tokens": 10,
            "output_tokens": 20,
            "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 2},
        }
    ).usage

    assert usage.web_search_requests == 3


def test_iterations_keep_their_own_model_and_split():
    usage = {
        "input_tokens": 100,
        "output_tokens": 50,
        "server_tool_use": {"web_search_requests": 1},
        "iterations": [
            {
                "type": "compaction",
                "input_tokens": 180000,
                "output_tokens": 3500,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
            },
            {
                "type": "advisor_message",
                "model": "claude-opus-5",
                "input_tokens": 900,
                "output_tokens": 400,
                "cache_read_input_tokens": 2000,
                "cache_creation_input_tokens": 300,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 0,
                    "ephemeral_1h_input_tokens": 300,
                },
            },
            {
                "type": "message",
                "input_tokens": 100,
                "output_tokens": 50,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 40,
            },
        ],
    }

    assert usage_from_message(usage).iterations == (
        (None, Usage(input_tokens=180000, output_tokens=3500)),
        (
            "claude-opus-5",
            Usage(
                input_tokens=900,
                output_tokens=400,
                cache_write_1h_tokens=300,
                cache_read_tokens=2000,
            ),
        ),
        (None, Usage(input_tokens=100, output_tokens=50, cache_write_5m_tokens=40)),
    )


def test_iterations_ignore_entries_that_are_not_objects():
    iterations = usage_from_message(
        {"iterations": ["junk", {"model": "claude-sonnet-5", "input_tokens": 5}]}
    ).iterations

    assert iterations == (("claude-sonnet-5", Usage(input_tokens=5)),)


def test_unknown_requested_ttl_is_refused():
    with pytest.raises(ValueError, match=r"^Unknown cache TTL '2h'; expected one of 5m, 1h\.$"):
        usage_from_message(MESSAGE_USAGE, requested_ttl="2h")


def test_split_matching_the_total_is_kept():
    assert split_cache_writes(
        248, {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100}
    ) == (148, 100)


def test_a_larger_total_is_shared_in_the_split_proportions():
    split = {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100}

    assert split_cache_writes(496, split) == (296, 200)


def test_an_uneven_share_rounds_the_1h_part_down_and_keeps_the_total():
    split = {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100}

    # 249 * 100 / 248 = 100.4 -> 100 at 1h, the remaining 149 at 5m
    assert split_cache_writes(249, split) == (149, 100)


def test_a_total_with_an_all_zero_split_goes_to_the_requested_ttl():
    split = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}

    assert split_cache_writes(80, split, requested_ttl="1h") == (0, 80)


def test_a_split_without_a_total_is_taken_as_is():
    split = {"ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 3}

    assert split_cache_writes(None, split) == (7, 3)


def test_stream_usage_is_message_start_overwritten_by_message_delta():
    stream = StreamUsage()
    stream.on_message_start(MESSAGE_START)
    stream.on_message_delta(message_delta({"output_tokens": 503}))

    assert stream.usage == Usage(
        input_tokens=50,
        output_tokens=503,
        cache_write_5m_tokens=148,
        cache_write_1h_tokens=100,
        cache_read_tokens=100000,
    )
    assert stream.model == "claude-opus-5"
    assert stream.stop_reason == "end_turn"
    assert stream.iterations == ()
    assert stream.message_usage() == (stream.usage, stream.iterations)


def test_stream_usage_before_any_event_is_zero():
    stream = StreamUsage()

    assert (stream.usage, stream.model, stream.stop_reason) == (Usage(), None, None)


def test_cumulative_delta_fields_are_overwritten_never_summed():
    stream = StreamUsage()
    stream.on_message_start(MESSAGE_START)
    stream.on_message_delta(
        message_delta({"output_tokens": 200, "server_tool_use": {"web_search_requests": 1}}, None)
    )
    stream.on_message_delta(
        message_delta({"output_tokens": 503, "server_tool_use": {"web_search_requests": 2}})
    )

    assert stream.usage.output_tokens == 503
    assert stream.usage.web_search_requests == 2
    assert stream.stop_reason == "end_turn"


def test_delta_input_and_cache_fields_replace_the_start_values():
    stream = StreamUsage()
    stream.on_message_start(
        {"model": "claude-sonnet-5", "usage": {"input_tokens": 0, "output_tokens": 0}}
    )
    stream.on_message_delta(
        message_delta(
            {
                "input_tokens": 1200,
                "output_tokens": 80,
                "cache_read_input_tokens": 4000,
                "cache_creation_input_tokens": 600,
            }
        )
    )

    assert stream.usage == Usage(
        input_tokens=1200, output_tokens=80, cache_write_5m_tokens=600, cache_read_tokens=4000
    )


def test_null_delta_fields_do_not_erase_start_values():
    stream = StreamUsage()
    stream.on_message_start(MESSAGE_START)
    stream.on_message_delta(
        message_delta(
            {
                "output_tokens": 503,
                "input_tokens": None,
                "cache_read_input_tokens": None,
                "cache_creation_input_tokens": None,
            }
        )
    )

    assert stream.usage.input_tokens == 50
    assert stream.usage.cache_read_tokens == 100000
    assert (stream.usage.cache_write_5m_tokens, stream.usage.cache_write_1h_tokens) == (148, 100)


def test_delta_cache_write_total_keeps_the_start_split_proportions():
    stream = StreamUsage()
    stream.on_message_start(MESSAGE_START)
    stream.on_message_delta(
        message_delta({"output_tokens": 503, "cache_creation_input_tokens": 496})
    )

    assert (stream.usage.cache_write_5m_tokens, stream.usage.cache_write_1h_tokens) == (296, 200)


def test_delta_cache_write_total_without_a_start_split_goes_to_the_requested_ttl():
    stream = StreamUsage(requested_ttl="1h")
    stream.on_message_start(
        {"model": "claude-opus-5", "usage": {"input_tokens": 5, "output_tokens": 1}}
    )
    stream.on_message_delta(message_delta({"output_tokens": 9, "cache_creation_input_tokens": 70}))

    assert (stream.usage.cache_write_5m_tokens, stream.usage.cache_write_1h_tokens) == (0, 70)


def test_iterations_come_from_the_last_message_delta():
    stream = StreamUsage()
    stream.on_message_start(MESSAGE_START)
    stream.on_message_delta(
        message_delta(
            {
                "output_tokens": 503,
                "iterations": [
                    {"type": "message", "input_tokens": 50, "output_tokens": 503},
                    {
                        "type": "fallback_message",
                        "model": "claude-sonnet-5",
                        "input_tokens": 60,
                        "output_tokens": 20,
                    },
                ],
            }
        )
    )

    assert stream.iterations == (
        (None, Usage(input_tokens=50, output_tokens=503)),
        ("claude-sonnet-5", Usage(input_tokens=60, output_tokens=20)),
    )


def test_a_new_message_start_resets_the_snapshot():
    stream = StreamUsage()
    stream.on_message_start(MESSAGE_START)
    stream.on_message_start({"model": "claude-haiku-4-5", "usage": {"input_tokens": 3}})

    assert stream.usage == Usage(input_tokens=3)
    assert stream.model == "claude-haiku-4-5"


def test_stream_usage_refuses_an_unknown_ttl():
    with pytest.raises(ValueError, match="Unknown cache TTL"):
        StreamUsage(requested_ttl="forever")
