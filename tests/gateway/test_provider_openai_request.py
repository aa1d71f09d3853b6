"""Anthropic Messages request → OpenAI chat.completions request (protocol reference §10.1)."""

from __future__ import annotations

import hashlib

import pytest

from gateway.providers.base import UpstreamError
from gateway.providers.openai_translate import (
    OpenAIOptions,
    reasoning_effort,
    sanitize_tool_id,
    short_tool_name,
    translate_request,
)

DEFAULTS = OpenAIOptions()
CACHING = OpenAIOptions(supports_cache_control=True)
EPHEMERAL = {"type": "ephemeral"}
READ_TOOL = {
    "name": "Read",
    "description": "Read a file",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
}
LONG_NAME = "mcp__filesystem_server_with_a_long_name__read_multiple_files_at_once_please"


def translate(payload, options=DEFAULTS):
    return translate_request({"model": "gpt-4.1", "max_tokens": 64, **payload}, options)


def messages_of(payload, options=DEFAULTS):
    return translate(payload, options).body["messages"]


def test_a_plain_request_keeps_model_max_tokens_and_messages():
    translated = translate({"messages": [{"role": "user", "content": "Say hello"}]})

    assert translated.body == {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 64,
    }
    assert translated.tool_names == {}


def test_max_tokens_goes_to_max_completion_tokens_when_the_provider_says_so():
    options = OpenAIOptions(max_tokens_field="max_completion_tokens")

    body = translate({"messages": [{"role": "user", "content": "Hi"}]}, options).body

    assert body["max_completion_tokens"] == 64
    assert "max_tokens" not in body


def test_system_blocks_become_one_leading_system_message():
    payload = {
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": EPHEMERAL},
        ],
        "messages": [{"role": "user", "content": "Hi"}],
    }

    assert messages_of(payload) == [
        {
            "role": "system",
            "content": "x-anthropic-billing-header: cc_version=2.1\n\nYou are Claude Code.",
        },
        {"role": "user", "content": "Hi"},
    ]


def test_system_string_uses_the_developer_role_when_configured():
    payload = {"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]}

    assert messages_of(payload, OpenAIOptions(system_role="developer"))[0] == {
        "role": "developer",
        "content": "Be brief.",
    }


def test_a_mid_conversation_system_turn_stays_where_it_was():
    payload = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "system", "content": [{"type": "text", "text": "Now answer in French."}]},
            {"role": "user", "content": "Bye"},
        ]
    }

    assert messages_of(payload) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "system", "content": "Now answer in French."},
        {"role": "user", "content": "Bye"},
    ]


def test_images_become_image_url_parts_from_base64_and_from_urls():
    payload = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0"},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.jpg"},
                    },
                    {"type": "text", "text": "What are these?"},
                ],
            }
        ]
    }

    assert messages_of(payload) == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                {"type": "text", "text": "What are these?"},
            ],
        }
    ]


def test_documents_give_their_text_and_unreadable_ones_leave_a_note():
    payload = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "title": "Notes",
                        "source": {"type": "text", "media_type": "text/plain", "data": "Line 1"},
                    },
                    {
                        "type": "document",
                        "title": "Report",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBERi0",
                        },
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            }
        ]
    }

    assert messages_of(payload) == [
        {
            "role": "user",
            "content": "Notes\n\nLine 1\n\n"
            '[Document "Report" was omitted: application/pdf documents cannot be sent to this '
            "model provider.]\n\nSummarise.",
        }
    ]


def test_assistant_text_and_tool_use_become_tool_calls_and_thinking_is_dropped():
    payload = {
        "messages": [
            {"role": "user", "content": "Read setup.py"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "I should read it.", "signature": "EqQB"},
                    {"type": "redacted_thinking", "data": "EmwK"},
                    {"type": "text", "text": "Reading it."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A",
                        "name": "Read",
                        "input": {"path": "setup.py", "limit": 10},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "import x"}
                ],
            },
        ]
    }

    assert messages_of(payload) == [
        {"role": "user", "content": "Read setup.py"},
        {
            "role": "assistant",
            "content": "Reading it.",
            "tool_calls": [
                {
                    "id": "toolu_01A",
                    "type": "function",
                    "function": {"name": "Read", "arguments": '{"path":"setup.py","limit":10}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "import x"},
    ]


def test_an_assistant_turn_with_only_tool_use_has_null_content():
    payload = {
        "messages": [
            {"role": "user", "content": "Go"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
        ]
    }

    assert messages_of(payload)[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
        ],
    }
    assert messages_of(payload)[2] == {"role": "tool", "tool_call_id": "t1", "content": ""}


def test_tool_results_come_first_then_their_images_then_the_users_own_words():
    payload = {
        "messages": [
            {"role": "user", "content": "Look at both"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "Screenshot", "input": {}},
                    {"type": "tool_use", "id": "t2", "name": "Bash", "input": {"cmd": "false"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Here you go"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "Captured."},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": "AA",
                                },
                            },
                        ],
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "exit status 1"}],
                    },
                ],
            },
        ]
    }

    assert messages_of(payload)[2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "Captured."},
        {"role": "tool", "tool_call_id": "t2", "content": "Error: exit status 1"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Images from the result of tool call t1:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                {"type": "text", "text": "Here you go"},
            ],
        },
    ]


def test_tool_ids_are_sanitised_the_same_way_in_tool_use_and_tool_result():
    payload = {
        "messages": [
            {"role": "user", "content": "Go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "functions.Bash:0", "name": "Bash", "input": {}},
                    {"type": "tool_use", "id": "call_x|fc_y", "name": "Bash", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "functions.Bash:0", "content": "a"},
                    {"type": "tool_result", "tool_use_id": "call_x|fc_y", "content": "b"},
                ],
            },
        ]
    }

    converted = messages_of(payload)

    assert [call["id"] for call in converted[1]["tool_calls"]] == [
        "functions_Bash_0",
        "call_x_fc_y",
    ]
    assert [message["tool_call_id"] for message in converted[2:]] == [
        "functions_Bash_0",
        "call_x_fc_y",
    ]
    assert sanitize_tool_id("toolu_01-AbC_9") == "toolu_01-AbC_9"


def test_long_tool_names_are_shortened_the_same_way_everywhere_and_reported():
    short = short_tool_name(LONG_NAME)
    payload = {
        "tools": [{"name": LONG_NAME, "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": LONG_NAME},
        "messages": [
            {"role": "user", "content": "Go"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": LONG_NAME, "input": {}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
        ],
    }

    translated = translate(payload)

    assert short == LONG_NAME[:55] + "_" + hashlib.sha256(LONG_NAME.encode()).hexdigest()[:8]
    assert len(short) == 64
    assert translated.body["tools"][0]["function"]["name"] == short
    assert translated.body["tool_choice"] == {"type": "function", "function": {"name": short}}
    assert translated.body["messages"][1]["tool_calls"][0]["function"]["name"] == short
    assert translated.tool_names == {short: LONG_NAME}
    assert short_tool_name("x" * 64) == "x" * 64


def test_custom_tools_become_functions_without_anthropic_only_fields():
    payload = {
        "tools": [
            {**READ_TOOL, "cache_control": EPHEMERAL, "strict": True, "defer_loading": False},
            {"type": "custom", "name": "Ping"},
        ],
        "messages": [{"role": "user", "content": "Hi"}],
    }

    assert translate(payload).body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Read",
                "description": "Read a file",
                "parameters": READ_TOOL["input_schema"],
            },
        },
        {
            "type": "function",
            "function": {"name": "Ping", "parameters": {"type": "object", "properties": {}}},
        },
    ]


def test_a_server_tool_is_refused_before_sending_with_a_400_that_names_it():
    payload = {
        "tools": [READ_TOOL, {"type": "web_search_20260209", "name": "web_search", "max_uses": 5}],
        "messages": [{"role": "user", "content": "Search"}],
    }

    with pytest.raises(UpstreamError) as raised:
        translate(payload)

    assert (raised.value.status, raised.value.error_type, raised.value.retryable) == (
        400,
        "invalid_request_error",
        False,
    )
    assert raised.value.message == (
        "tools.1: tool 'web_search' of type 'web_search_20260209' is not supported by provider "
        "kind openai; only custom tools (name, description, input_schema) translate."
    )


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "Read"},
            {"tool_choice": {"type": "function", "function": {"name": "Read"}}},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice_maps_to_openai(tool_choice, expected):
    body = translate(
        {
            "tools": [READ_TOOL],
            "tool_choice": tool_choice,
            "messages": [{"role": "user", "content": "Hi"}],
        }
    ).body

    assert {key: body[key] for key in expected} == expected


def test_tool_choice_without_tools_is_not_sent():
    body = translate(
        {"tool_choice": {"type": "auto"}, "messages": [{"role": "user", "content": "Hi"}]}
    ).body

    assert "tool_choice" not in body
    assert "tools" not in body


def test_up_to_four_stop_sequences_become_stop():
    body = translate(
        {"stop_sequences": ["a", "b", "c", "d"], "messages": [{"role": "user", "content": "Hi"}]}
    ).body

    assert body["stop"] == ["a", "b", "c", "d"]


def test_five_stop_sequences_are_refused_with_a_400():
    with pytest.raises(UpstreamError) as raised:
        translate(
            {"stop_sequences": list("abcde"), "messages": [{"role": "user", "content": "Hi"}]}
        )

    assert (raised.value.status, raised.value.error_type) == (400, "invalid_request_error")
    assert raised.value.message == (
        "stop_sequences: provider kind openai accepts at most 4 stop sequences; got 5."
    )


def test_sampling_knobs_and_user_are_kept_and_anthropic_only_fields_are_not():
    payload = {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "metadata": {"user_id": "user_abc_account__session_123"},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "container": "container_1",
        "context_management": {"edits": []},
        "service_tier": "auto",
        "inference_geo": "us",
        "cache_control": EPHEMERAL,
        "messages": [{"role": "user", "content": "Hi"}],
    }

    assert translate(payload).body == {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user_abc_account__session_123",
    }


def test_streaming_asks_for_usage_in_the_stream():
    body = translate({"stream": True, "messages": [{"role": "user", "content": "Hi"}]}).body

    assert (body["stream"], body["stream_options"]) == (True, {"include_usage": True})


def test_cache_markers_are_stripped_when_the_provider_does_not_take_them():
    payload = {
        "system": [{"type": "text", "text": "S", "cache_control": EPHEMERAL}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi", "cache_control": EPHEMERAL}],
            }
        ],
    }

    assert messages_of(payload) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Hi"},
    ]


def test_cache_markers_stay_where_the_target_reads_them_when_the_provider_supports_caching():
    marker_1h = {"type": "ephemeral", "ttl": "1h"}
    payload = {
        "cache_control": EPHEMERAL,
        "tools": [{**READ_TOOL, "cache_control": marker_1h}],
        "system": [
            {"type": "text", "text": "Attribution"},
            {"type": "text", "text": "System prompt", "cache_control": marker_1h},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.png"},
                        "cache_control": EPHEMERAL,
                    },
                    {"type": "text", "text": "Read it", "cache_control": EPHEMERAL},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "t1",
                        "name": "Read",
                        "input": {},
                        "cache_control": EPHEMERAL,
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": "data",
                        "cache_control": EPHEMERAL,
                    }
                ],
            },
        ],
    }

    body = translate(payload, CACHING).body

    assert body["cache_control"] == EPHEMERAL
    assert body["tools"][0]["cache_control"] == marker_1h
    assert body["messages"] == [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "Attribution"},
                {"type": "text", "text": "System prompt", "cache_control": marker_1h},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/a.png"},
                    "cache_control": EPHEMERAL,
                },
                {"type": "text", "text": "Read it", "cache_control": EPHEMERAL},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
            ],
            "cache_control": EPHEMERAL,
        },
        {
            "role": "tool",
            "tool_call_id": "t1",
            "content": [{"type": "text", "text": "data", "cache_control": EPHEMERAL}],
        },
    ]


@pytest.mark.parametrize(
    ("thinking", "output_config", "expected"),
    [
        (None, None, None),
        ({"type": "disabled"}, None, None),
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 8000}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 32000}, None, "high"),
        ({"type": "adaptive"}, None, None),
        ({"type": "adaptive"}, {"effort": "medium"}, "medium"),
        ({"type": "adaptive"}, {"effort": "max"}, "high"),
    ],
)
def test_thinking_maps_to_reasoning_effort_buckets(thinking, output_config, expected):
    payload = {"thinking": thinking, "output_config": output_config}

    assert reasoning_effort(payload) == expected


def test_reasoning_effort_is_sent_only_when_the_provider_opts_in():
    payload = {
        "thinking": {"type": "enabled", "budget_tokens": 8000},
        "messages": [{"role": "user", "content": "Hi"}],
    }

    assert "reasoning_effort" not in translate(payload).body
    assert translate(payload, OpenAIOptions(send_reasoning_effort=True)).body[
        "reasoning_effort"
    ] == ("medium")


def test_structured_output_becomes_a_json_schema_response_format():
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    payload = {
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
        "messages": [{"role": "user", "content": "Title?"}],
    }

    assert translate(payload).body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }


def test_a_block_type_without_an_openai_equivalent_is_refused():
    payload = {
        "messages": [
            {"role": "user", "content": "Search"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "server_tool_use",
                        "id": "srvtoolu_1",
                        "name": "web_search",
                        "input": {},
                    }
                ],
            },
        ]
    }

    with pytest.raises(UpstreamError) as raised:
        translate(payload)

    assert raised.value.message == (
        "messages.1.content.0.type: content block type 'server_tool_use' is not supported by "
        "provider kind openai."
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"max_tokens_field": "tokens"},
            "max_tokens_field must be one of max_tokens, max_completion_tokens",
        ),
        ({"system_role": "admin"}, "system_role must be one of system, developer"),
        ({"supports_cache_control": "yes"}, "supports_cache_control must be true or false"),
        ({"extra_headers": ["X-Title"]}, "extra_headers must map header names to string values"),
    ],
)
def test_wrong_provider_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        OpenAIOptions.from_provider(options)


def test_extra_headers_never_replace_the_credential_or_content_type():
    options = OpenAIOptions.from_provider(
        {"extra_headers": {"HTTP-Referer": "https://gatehouse.test", "Authorization": "Bearer x"}}
    )

    assert options.extra_headers == (("HTTP-Referer", "https://gatehouse.test"),)
