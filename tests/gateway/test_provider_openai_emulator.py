"""The openai adapter against the OpenAI emulator over real loopback HTTP.

build_request → httpx → translate_response / translate_stream, and the gateway's SSE tap
reading usage from the translated stream, exactly as the relay does.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import orjson
import pytest

from gateway.contracts import Usage
from gateway.providers.openai import OpenAIAdapter
from gateway.providers.openai_translate import short_tool_name
from gateway.secrets import Secret
from gateway.snapshot import ProviderSpec, UpstreamKeySpec
from gateway.sse import SSETap

MODEL = "claude-opus-5"
UPSTREAM_MODEL = "gpt-4.1-mini"
UPSTREAM_SECRET = "sk-openai-emulator-0001"
LONG_NAME = "mcp__filesystem_server_with_a_long_name__read_multiple_files_at_once_please"
READ_TOOL = {
    "name": "Read",
    "description": "Read a file",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}},
        "required": ["file_path"],
    },
}
SAY_HELLO = [{"role": "user", "content": "Say hello"}]


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def json(self):
        return orjson.loads(self.body)


@dataclass
class StreamAnswer:
    chunks: list[bytes]
    tap: SSETap

    @property
    def raw(self) -> bytes:
        return b"".join(self.chunks)

    def events(self) -> list[tuple[str, dict]]:
        parsed = []
        for frame in self.raw.split(b"\n\n"):
            if frame:
                name, data = frame.split(b"\n")
                parsed.append((name[7:].decode(), orjson.loads(data[6:])))
        return parsed

    def blocks(self) -> list[dict]:
        """The content the events build, the way an SDK accumulates it."""
        blocks: list[dict] = []
        for name, payload in self.events():
            if name == "content_block_start":
                assert payload["index"] == len(blocks)
                blocks.append(dict(payload["content_block"], partial=""))
            elif name == "content_block_delta":
                block, delta = blocks[payload["index"]], payload["delta"]
                field = {"text_delta": "text", "thinking_delta": "thinking"}.get(delta["type"])
                if field:
                    block[field] += delta[field]
                else:
                    block["partial"] += delta["partial_json"]
        for block in blocks:
            partial = block.pop("partial")
            if block["type"] == "tool_use":
                block["input"] = orjson.loads(partial) if partial else {}
        return blocks


def provider_for(openai_emulator, **options) -> ProviderSpec:
    return ProviderSpec(
        provider_id=1,
        name="openai-emulator",
        kind="openai",
        base_url=openai_emulator.api_base,
        options=options,
        connect_timeout_s=5.0,
        read_timeout_s=10.0,
        is_enabled=True,
    )


UPSTREAM_KEY = UpstreamKeySpec(
    upstream_key_id=1, provider_id=1, label="a", secret=Secret(UPSTREAM_SECRET), weight=1
)


@pytest.fixture
def adapter() -> OpenAIAdapter:
    return OpenAIAdapter()


async def call(adapter, openai_emulator, payload, **options) -> Answer | StreamAnswer:
    body = orjson.dumps({"model": UPSTREAM_MODEL, "max_tokens": 256, **payload})
    request = await adapter.build_request(
        provider=provider_for(openai_emulator, **options),
        upstream_key=UPSTREAM_KEY,
        endpoint="/v1/messages",
        client_headers=[("anthropic-version", "2023-06-01")],
        body=body,
    )
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        response = await client.send(
            client.build_request(
                request.method, request.url, headers=request.headers, content=request.body
            ),
            stream=True,
        )
        try:
            if payload.get("stream") and response.status_code == 200:
                tap = SSETap()
                chunks = []
                async for chunk in adapter.translate_stream(
                    response.aiter_raw(), requested_model=MODEL
                ):
                    chunks.append(chunk)
                    tap.feed(chunk)
                return StreamAnswer(chunks, tap)
            translated = adapter.translate_response(
                status=response.status_code,
                headers=response.headers.raw,
                body=await response.aread(),
                requested_model=MODEL,
            )
            return Answer(translated.status, translated.headers, translated.body)
        finally:
            await response.aclose()


async def test_a_message_is_sent_as_chat_completions_and_answered_in_anthropic_shape(
    adapter, openai_emulator
):
    answer = await call(adapter, openai_emulator, {"system": "Be brief.", "messages": SAY_HELLO})

    forwarded = openai_emulator.last_request()
    assert forwarded["path"] == "/v1/chat/completions"
    assert forwarded["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert "anthropic-version" not in forwarded["headers"]
    assert orjson.loads(forwarded["body"]) == {
        "model": UPSTREAM_MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        "max_tokens": 256,
    }
    message = answer.json()
    assert answer.status == 200
    assert message["model"] == MODEL
    assert message["content"] == [
        {"type": "text", "text": "Hello from the OpenAI emulator: Say hello"}
    ]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["input_tokens"] > 0
    assert message["usage"]["output_tokens"] == 11


async def test_a_stream_gives_the_same_text_and_usage_the_tap_reads(adapter, openai_emulator):
    whole = (await call(adapter, openai_emulator, {"messages": SAY_HELLO})).json()

    streamed = await call(adapter, openai_emulator, {"messages": SAY_HELLO, "stream": True})

    assert orjson.loads(openai_emulator.last_request()["body"])["stream_options"] == {
        "include_usage": True
    }
    assert streamed.blocks() == whole["content"]
    assert streamed.tap.saw_message_stop
    assert streamed.tap.error is None
    assert streamed.tap.usage.stop_reason == "end_turn"
    assert streamed.tap.usage.model == MODEL
    assert streamed.tap.usage.usage == Usage(
        input_tokens=whole["usage"]["input_tokens"], output_tokens=whole["usage"]["output_tokens"]
    )
    assert all(chunk.endswith(b"\n\n") for chunk in streamed.chunks)


async def test_streamed_reasoning_and_tool_calls_arrive_as_thinking_and_tool_use_blocks(
    adapter, openai_emulator
):
    openai_emulator.configure(
        reasoning_text="Plan: read both files.",
        reply_text="Reading.",
        tool_use="always",
        tool_calls=2,
        text_fragments=4,
        argument_fragments=5,
    )
    tools = [READ_TOOL, {**READ_TOOL, "name": LONG_NAME}]

    streamed = await call(
        adapter, openai_emulator, {"tools": tools, "messages": SAY_HELLO, "stream": True}
    )

    sent_tools = orjson.loads(openai_emulator.last_request()["body"])["tools"]
    assert [tool["function"]["name"] for tool in sent_tools] == ["Read", short_tool_name(LONG_NAME)]
    thinking, text, first, second = streamed.blocks()
    assert thinking == {"type": "thinking", "thinking": "Plan: read both files.", "signature": ""}
    assert text == {"type": "text", "text": "Reading."}
    assert (first["name"], first["input"]) == ("Read", {"file_path": "Say hello"})
    assert (second["name"], second["input"]) == (LONG_NAME, {"file_path": "Say hello"})
    assert first["id"].startswith("call_")
    assert first["id"] != second["id"]
    assert streamed.tap.usage.stop_reason == "tool_use"


async def test_a_tool_result_turn_is_accepted_by_a_server_that_checks_tool_message_order(
    adapter, openai_emulator
):
    openai_emulator.configure(tool_use="always", tool_call_id_prefix="functions.Read:")
    first = (
        await call(adapter, openai_emulator, {"tools": [READ_TOOL], "messages": SAY_HELLO})
    ).json()
    [tool_use] = first["content"]
    conversation = [
        *SAY_HELLO,
        {"role": "assistant", "content": first["content"]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here it is"},
                {"type": "tool_result", "tool_use_id": tool_use["id"], "content": "print(1)"},
            ],
        },
    ]
    openai_emulator.configure(tool_use="never")

    second = await call(adapter, openai_emulator, {"tools": [READ_TOOL], "messages": conversation})

    assert tool_use["id"].startswith("functions_Read_")
    assert second.status == 200
    sent = orjson.loads(openai_emulator.last_request()["body"])["messages"]
    assert [message["role"] for message in sent] == ["user", "assistant", "tool", "user"]
    assert sent[2] == {"role": "tool", "tool_call_id": tool_use["id"], "content": "print(1)"}


async def test_a_repeated_prefix_is_reported_as_cache_reads_not_as_input(adapter, openai_emulator):
    openai_emulator.configure(min_cacheable_tokens=0, cache_increment=1)
    conversation = {"system": "You are a careful assistant. " * 20, "messages": SAY_HELLO}
    cold = (await call(adapter, openai_emulator, conversation)).json()["usage"]
    longer = {
        **conversation,
        "messages": [*SAY_HELLO, {"role": "assistant", "content": "Hi."}, *SAY_HELLO],
    }

    warm = await call(adapter, openai_emulator, {**longer, "stream": True})

    cached = warm.tap.usage.usage.cache_read_tokens
    assert cold["cache_read_input_tokens"] == 0
    assert cached >= cold["input_tokens"]
    assert warm.events()[-2][1]["usage"]["cache_read_input_tokens"] == cached
    assert warm.tap.usage.usage.input_tokens == warm.events()[-2][1]["usage"]["input_tokens"]
    assert warm.tap.usage.usage.input_tokens > 0


async def test_deepseek_style_cache_hits_are_cache_reads_too(adapter, openai_emulator):
    openai_emulator.configure(min_cacheable_tokens=0, cache_increment=1, usage_style="deepseek")
    await call(adapter, openai_emulator, {"messages": SAY_HELLO})

    again = (await call(adapter, openai_emulator, {"messages": SAY_HELLO})).json()["usage"]

    assert again["cache_read_input_tokens"] > 0
    assert again["input_tokens"] == 0


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        ("429:3", 429, "rate_limit_error"),
        ("404", 404, "not_found_error"),
        ("500", 500, "api_error"),
        ("503", 503, "overloaded_error"),
    ],
)
async def test_provider_errors_come_back_in_anthropic_shape(
    adapter, openai_emulator, fault, status, error_type
):
    openai_emulator.inject_fault(fault)

    answer = await call(adapter, openai_emulator, {"messages": SAY_HELLO})

    assert answer.status == status
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == error_type


async def test_a_rate_limited_answer_keeps_its_retry_after(adapter, openai_emulator):
    openai_emulator.inject_fault("429:3")

    answer = await call(adapter, openai_emulator, {"messages": SAY_HELLO})

    assert answer.headers[0] == (b"content-type", b"application/json")
    assert (b"retry-after", b"3") in answer.headers
    assert answer.json()["error"] == {
        "type": "rate_limit_error",
        "message": "Rate limit reached for requests.",
    }


async def test_a_malformed_body_from_the_provider_is_a_502(adapter, openai_emulator):
    openai_emulator.inject_fault("malformed_json")

    answer = await call(adapter, openai_emulator, {"messages": SAY_HELLO})

    assert answer.status == 502
    assert answer.json()["error"]["type"] == "api_error"


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        ("drop_mid_stream", "api_error"),
        ("eof_before_finish", "api_error"),
        ("error_chunk_mid_stream", "overloaded_error"),
        ("malformed_json", "api_error"),
    ],
)
async def test_a_broken_stream_ends_in_an_error_event_without_message_stop(
    adapter, openai_emulator, fault, error_type
):
    openai_emulator.inject_fault(fault)

    streamed = await call(adapter, openai_emulator, {"messages": SAY_HELLO, "stream": True})

    assert streamed.events()[0][0] == "message_start"
    assert streamed.events()[-1][0] == "error"
    assert streamed.tap.error["type"] == error_type
    assert not streamed.tap.saw_message_stop


async def test_a_stream_without_usage_or_done_still_finishes_with_an_estimate(
    adapter, openai_emulator
):
    openai_emulator.inject_fault("no_usage")
    without_usage = await call(adapter, openai_emulator, {"messages": SAY_HELLO, "stream": True})
    openai_emulator.inject_fault("no_done")
    without_done = await call(adapter, openai_emulator, {"messages": SAY_HELLO, "stream": True})

    assert without_usage.tap.saw_message_stop
    assert without_usage.tap.usage.usage == Usage(input_tokens=0, output_tokens=11)
    assert without_done.tap.saw_message_stop
    assert without_done.tap.usage.usage.input_tokens > 0


async def test_fragments_that_repeat_ids_and_finish_with_content_still_translate(
    adapter, openai_emulator
):
    openai_emulator.configure(
        tool_use="always", repeat_tool_call_id=True, finish_with_content=True, tool_calls=2
    )

    streamed = await call(
        adapter, openai_emulator, {"tools": [READ_TOOL], "messages": SAY_HELLO, "stream": True}
    )

    assert [block["input"] for block in streamed.blocks()] == [
        {"file_path": "Say hello"},
        {"file_path": "Say hello"},
    ]
    assert streamed.tap.usage.stop_reason == "tool_use"
    assert streamed.tap.saw_message_stop


# --- the emulator refuses what OpenAI refuses, so translation mistakes cannot pass unseen ---

USER = {"role": "user", "content": "Hi"}
CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
    ],
}
FUNCTION = {"type": "function", "function": {"name": "Read", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"messages": [USER], "thinking": {"type": "enabled"}},
            "Unrecognized request argument supplied: thinking",
        ),
        (
            {"messages": [USER, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
            "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
            "message with 'tool_calls'.",
        ),
        (
            {"tools": [FUNCTION], "messages": [USER, CALL, USER]},
            "An assistant message with 'tool_calls' must be followed by tool messages responding "
            "to each 'tool_call_id'. The following tool_call_ids did not have response "
            "messages: call_1",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "x" * 65}}],
                "messages": [USER],
            },
            "Invalid 'tools[0].function.name': string too long. Expected a string with maximum "
            "length 64, but got a string with length 65 instead.",
        ),
        (
            {"stop": ["a", "b", "c", "d", "e"], "messages": [USER]},
            "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an "
            "array with length 5 instead.",
        ),
        (
            {"stream_options": {"include_usage": True}, "messages": [USER]},
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ),
    ],
)
def test_the_emulator_refuses_what_openai_refuses(openai_emulator, body, message):
    response = httpx.post(
        openai_emulator.api_base + "/chat/completions",
        json={"model": UPSTREAM_MODEL, **body},
        headers={"authorization": "Bearer sk-test"},
        timeout=10,
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_the_emulator_wants_a_bearer_key_and_records_every_request(openai_emulator):
    openai_emulator.configure(valid_keys=["sk-good"])

    missing = httpx.post(openai_emulator.api_base + "/chat/completions", json={}, timeout=10)
    wrong = httpx.post(
        openai_emulator.api_base + "/chat/completions",
        json={},
        headers={"authorization": "Bearer sk-wrong-key"},
        timeout=10,
    )

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert [request["status"] for request in openai_emulator.requests()] == [401, 401]
    assert openai_emulator.last_request()["headers"]["authorization"] == "Bearer sk-wrong-key"
