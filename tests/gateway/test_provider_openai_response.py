"""The openai adapter: building the upstream request, and whole responses and errors back
into Anthropic's shape (protocol reference §10.2)."""

from __future__ import annotations

import orjson
import pytest

from gateway.providers.base import UpstreamError
from gateway.providers.openai import OpenAIAdapter, ToolNameBook, translate_whole_response
from gateway.providers.openai_translate import short_tool_name
from gateway.secrets import Secret
from gateway.snapshot import ProviderSpec, UpstreamKeySpec

MODEL = "claude-opus-5"
LONG_NAME = "mcp__filesystem_server_with_a_long_name__read_multiple_files_at_once_please"
UPSTREAM_SECRET = "sk-openai-test-0001"


def provider(**options) -> ProviderSpec:
    return ProviderSpec(
        provider_id=7,
        name="openai-test",
        kind="openai",
        base_url="http://127.0.0.1:9/v1",
        options=options,
        connect_timeout_s=1.0,
        read_timeout_s=5.0,
        is_enabled=True,
    )


UPSTREAM_KEY = UpstreamKeySpec(
    upstream_key_id=3, provider_id=7, label="team-a", secret=Secret(UPSTREAM_SECRET), weight=1
)


def completion(message, finish_reason="stop", usage=None):
    document = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4.1",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    if usage is not None:
        document["usage"] = usage
    return orjson.dumps(document)


def translated(body, status=200, tool_name=None):
    kwargs = {"tool_name": tool_name} if tool_name else {}
    status, answer = translate_whole_response(status, body, requested_model=MODEL, **kwargs)
    return status, orjson.loads(answer)


def without_id(message):
    assert message["id"].startswith("msg_")
    return {key: value for key, value in message.items() if key != "id"}


USAGE = {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}


# --- building the request ----------------------------------------------------------------


async def test_build_request_posts_chat_completions_with_the_upstream_key_as_bearer():
    body = orjson.dumps(
        {"model": "gpt-4.1", "max_tokens": 32, "messages": [{"role": "user", "content": "Hi"}]}
    )

    request = await OpenAIAdapter().build_request(
        provider=provider(extra_headers={"X-Title": "Gatehouse"}),
        upstream_key=UPSTREAM_KEY,
        endpoint="/v1/messages",
        client_headers=[("anthropic-version", "2023-06-01"), ("anthropic-beta", "x")],
        body=body,
    )

    assert (request.method, request.url) == ("POST", "http://127.0.0.1:9/v1/chat/completions")
    assert request.headers == [
        ("content-type", "application/json"),
        ("authorization", f"Bearer {UPSTREAM_SECRET}"),
        ("X-Title", "Gatehouse"),
    ]
    assert orjson.loads(request.body) == {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 32,
    }


async def test_a_stream_request_accepts_an_event_stream():
    body = orjson.dumps(
        {
            "model": "m",
            "max_tokens": 8,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
    )

    request = await OpenAIAdapter().build_request(
        provider=provider(),
        upstream_key=UPSTREAM_KEY,
        endpoint="/v1/messages",
        client_headers=[],
        body=body,
    )

    assert ("accept", "text/event-stream") in request.headers


async def test_count_tokens_is_refused_with_404_before_anything_is_sent():
    with pytest.raises(UpstreamError) as raised:
        await OpenAIAdapter().build_request(
            provider=provider(),
            upstream_key=UPSTREAM_KEY,
            endpoint="/v1/messages/count_tokens",
            client_headers=[],
            body=b'{"model":"m","messages":[]}',
        )

    assert (raised.value.status, raised.value.error_type, raised.value.retryable) == (
        404,
        "not_found_error",
        False,
    )
    assert raised.value.message == "count_tokens is not supported by provider kind openai"


async def test_a_server_tool_is_refused_by_build_request():
    body = orjson.dumps(
        {
            "model": "m",
            "max_tokens": 8,
            "tools": [{"type": "bash_20250124", "name": "bash"}],
            "messages": [{"role": "user", "content": "ls"}],
        }
    )

    with pytest.raises(UpstreamError) as raised:
        await OpenAIAdapter().build_request(
            provider=provider(),
            upstream_key=UPSTREAM_KEY,
            endpoint="/v1/messages",
            client_headers=[],
            body=body,
        )

    assert (raised.value.status, raised.value.retryable) == (400, False)
    assert "tool 'bash' of type 'bash_20250124'" in raised.value.message


async def test_a_misconfigured_provider_is_named_in_the_error():
    with pytest.raises(UpstreamError) as raised:
        await OpenAIAdapter().build_request(
            provider=provider(system_role="boss"),
            upstream_key=UPSTREAM_KEY,
            endpoint="/v1/messages",
            client_headers=[],
            body=b'{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"x"}]}',
        )

    assert (raised.value.status, raised.value.error_type, raised.value.retryable) == (
        500,
        "api_error",
        False,
    )
    assert raised.value.message == (
        "Provider 'openai-test' is misconfigured: system_role must be one of system, developer."
    )


async def test_the_secret_never_appears_in_the_request_repr():
    request = await OpenAIAdapter().build_request(
        provider=provider(),
        upstream_key=UPSTREAM_KEY,
        endpoint="/v1/messages",
        client_headers=[],
        body=b'{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"x"}]}',
    )

    assert UPSTREAM_SECRET not in repr(UPSTREAM_KEY)
    assert UPSTREAM_SECRET not in request.body.decode()


# --- whole responses ---------------------------------------------------------------------


def test_a_text_completion_becomes_an_anthropic_message_named_after_the_requested_model():
    status, message = translated(
        completion({"role": "assistant", "content": "Hello!"}, usage=USAGE)
    )

    assert status == 200
    assert without_id(message) == {
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 30,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 5,
        },
    }


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reasons_map_to_stop_reasons(finish_reason, stop_reason):
    _, message = translated(completion({"content": "x"}, finish_reason, usage=USAGE))

    assert message["stop_reason"] == stop_reason


def test_reasoning_comes_first_as_an_unsigned_thinking_block_and_empty_text_is_skipped():
    _, message = translated(
        completion(
            {
                "content": "",
                "reasoning_content": "Let me think.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "Read", "arguments": '{"path":"a.py"}'},
                    }
                ],
            },
            "tool_calls",
            usage=USAGE,
        )
    )

    assert message["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": ""},
        {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"path": "a.py"}},
    ]


def test_tool_calls_get_valid_ids_parsed_inputs_and_their_long_names_back():
    book = ToolNameBook()
    book.remember({short_tool_name(LONG_NAME): LONG_NAME})
    _, message = translated(
        completion(
            {
                "content": "Using tools.",
                "tool_calls": [
                    {
                        "id": "functions.Read:0",
                        "type": "function",
                        "function": {"name": short_tool_name(LONG_NAME), "arguments": "{not json"},
                    },
                    {"type": "function", "function": {"name": "Bash", "arguments": ""}},
                    {
                        "id": "call_3",
                        "type": "function",
                        "function": {"name": "Ls", "arguments": "[1]"},
                    },
                ],
            },
            "stop",
            usage=USAGE,
        ),
        tool_name=book.original,
    )

    text, first, second, third = message["content"]
    assert text == {"type": "text", "text": "Using tools."}
    assert first == {"type": "tool_use", "id": "functions_Read_0", "name": LONG_NAME, "input": {}}
    assert second["id"].startswith("toolu_")
    assert (second["name"], second["input"]) == ("Bash", {})
    assert third == {"type": "tool_use", "id": "call_3", "name": "Ls", "input": {}}
    assert message["stop_reason"] == "tool_use"


def test_cached_tokens_are_subtracted_from_input_not_counted_twice():
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 1536},
    }

    _, message = translated(completion({"content": "x"}, usage=usage))

    assert message["usage"] == {
        "input_tokens": 464,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1536,
        "output_tokens": 40,
    }


def test_deepseek_cache_hits_and_reported_cache_writes_are_both_taken_out_of_input():
    deepseek = {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "prompt_cache_hit_tokens": 64,
        "prompt_cache_miss_tokens": 36,
    }
    openrouter = {
        "prompt_tokens": 3000,
        "completion_tokens": 9,
        "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 1500},
    }

    assert translated(completion({"content": "x"}, usage=deepseek))[1]["usage"] == {
        "input_tokens": 36,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 64,
        "output_tokens": 7,
    }
    assert translated(completion({"content": "x"}, usage=openrouter))[1]["usage"] == {
        "input_tokens": 500,
        "cache_creation_input_tokens": 1500,
        "cache_read_input_tokens": 1000,
        "output_tokens": 9,
    }


def test_missing_usage_is_estimated_from_the_output():
    _, message = translated(completion({"content": "Twelve chars"}))

    assert message["usage"] == {
        "input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 3,
    }


def test_a_refusal_becomes_text_with_stop_reason_refusal():
    _, message = translated(
        completion({"content": None, "refusal": "I can't help with that."}, usage=USAGE)
    )

    assert message["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert message["stop_reason"] == "refusal"


# --- errors ------------------------------------------------------------------------------


def openai_error(message, error_type="invalid_request_error", code=None):
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    )


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (418, "invalid_request_error"),
        (599, "api_error"),
    ],
)
def test_openai_errors_become_anthropic_errors_with_the_same_status(status, error_type):
    assert translated(openai_error("Something went wrong."), status) == (
        status,
        {"type": "error", "error": {"type": error_type, "message": "Something went wrong."}},
    )


@pytest.mark.parametrize(
    ("status", "error_type"), [(401, "authentication_error"), (403, "permission_error")]
)
def test_a_rejected_upstream_credential_never_echoes_the_providers_text(status, error_type):
    body = openai_error("Incorrect API key provided: sk-open****0001.", code="invalid_api_key")

    assert translated(body, status) == (
        status,
        {
            "type": "error",
            "error": {
                "type": error_type,
                "message": "The provider rejected the gateway's upstream credential.",
            },
        },
    )


def test_an_html_error_page_is_quoted_briefly():
    assert translated(b"<html>Bad Gateway</html>", 502) == (
        502,
        {
            "type": "error",
            "error": {
                "type": "api_error",
                "message": "Upstream provider answered HTTP 502: <html>Bad Gateway</html>",
            },
        },
    )


def test_an_error_reported_inside_a_200_keeps_its_status():
    body = orjson.dumps(
        {"error": {"message": "Rate limit exceeded: free-models-per-min", "code": 429}}
    )

    assert translated(body) == (
        429,
        {
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": "Rate limit exceeded: free-models-per-min",
            },
        },
    )


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"choices": []}', b""])
def test_a_200_that_is_not_a_chat_completion_is_a_502(body):
    assert translated(body) == (
        502,
        {
            "type": "error",
            "error": {
                "type": "api_error",
                "message": "Upstream provider returned a response that is not a chat completion.",
            },
        },
    )


def test_translate_response_keeps_only_headers_that_mean_something_to_the_client():
    adapter = OpenAIAdapter()

    response = adapter.translate_response(
        status=429,
        headers=[
            (b"content-type", b"application/json; charset=utf-8"),
            (b"retry-after", b"7"),
            (b"x-request-id", b"req_abc"),
            (b"openai-organization", b"org-secret"),
            (b"x-ratelimit-remaining-requests", b"0"),
        ],
        body=openai_error("Rate limit reached", "requests", "rate_limit_exceeded"),
        requested_model=MODEL,
    )

    assert response.status == 429
    assert response.headers == [
        (b"content-type", b"application/json"),
        (b"retry-after", b"7"),
        (b"x-request-id", b"req_abc"),
    ]
    assert orjson.loads(response.body) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Rate limit reached"},
    }


def test_the_tool_name_book_forgets_the_oldest_names_first():
    book = ToolNameBook(capacity=2)

    book.remember({"a": "long-a"})
    book.remember({"b": "long-b"})
    book.remember({"c": "long-c"})

    assert [book.original(name) for name in ("a", "b", "c")] == ["a", "long-b", "long-c"]
