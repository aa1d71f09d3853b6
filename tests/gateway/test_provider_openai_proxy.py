"""An OpenAI-compatible route end to end: Gatehouse under Daphne, the OpenAI emulator upstream.

Clients speak Anthropic's Messages API; the route's target is kind `openai` with an aliased
model, so every request goes out as chat.completions and every answer comes back translated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import anthropic
import httpx
import orjson
import pytest

from gateway.models import Provider, ProviderKind, RequestOutcome, Route, RouteTarget, UpstreamKey
from tests.gateway.conftest import seed_price_catalog, wait_for_logs, wait_for_quiet_log

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-opus-5"
UPSTREAM_MODEL = "gpt-4.1-mini"
UPSTREAM_SECRET = "sk-openai-proxy-0001"
BODY = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]}
READ_TOOL = {
    "name": "Read",
    "description": "Read a file",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}},
        "required": ["file_path"],
    },
}


@dataclass
class OpenAIUpstream:
    provider: Provider
    upstream_key: UpstreamKey
    route: Route


@pytest.fixture
def openai_route(transactional_db, openai_emulator) -> Iterator[OpenAIUpstream]:
    seed_price_catalog()
    provider = Provider.objects.create(
        name="openai", kind=ProviderKind.OPENAI, base_url=openai_emulator.api_base
    )
    upstream_key = UpstreamKey.objects.create(
        provider=provider, label="openai-team-a", secret=UPSTREAM_SECRET
    )
    route = Route.objects.create(name="openai", model_pattern="claude-*")
    RouteTarget.objects.create(
        route=route, position=0, provider=provider, upstream_model=UPSTREAM_MODEL
    )
    yield OpenAIUpstream(provider=provider, upstream_key=upstream_key, route=route)
    wait_for_quiet_log()


def post(server, secret, body, *, path="/v1/messages"):
    return httpx.post(
        server.base_url + path,
        content=orjson.dumps(body),
        headers={
            "x-api-key": secret,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        },
        timeout=30,
    )


def stream(server, secret, body) -> tuple[httpx.Response, bytes]:
    with httpx.stream(
        "POST",
        server.base_url + "/v1/messages?beta=true",
        content=orjson.dumps({**body, "stream": True}),
        headers={"x-api-key": secret, "content-type": "application/json"},
        timeout=30,
    ) as response:
        raw = b"".join(response.iter_raw())
    return response, raw


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    events = []
    for frame in raw.decode().split("\n\n"):
        if frame:
            event_line, data_line = frame.split("\n")
            events.append((event_line.removeprefix("event: "), orjson.loads(data_line[6:])))
    return events


def test_openai_route_non_stream_is_translated_both_ways_and_logged(
    gatehouse_server, openai_route, openai_emulator, alice
):
    response = post(gatehouse_server, alice.secret, BODY)

    assert response.status_code == 200
    document = response.json()
    assert document["type"] == "message"
    assert document["model"] == MODEL
    assert document["content"] == [
        {"type": "text", "text": "Hello from the OpenAI emulator: Say hello"}
    ]
    assert document["stop_reason"] == "end_turn"
    forwarded = openai_emulator.last_request()
    assert forwarded["path"] == "/v1/chat/completions"
    assert forwarded["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert alice.secret not in str(forwarded)
    assert orjson.loads(forwarded["body"])["model"] == UPSTREAM_MODEL
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.OK
    assert row.provider_id == openai_route.provider.pk
    assert row.upstream_key_id == openai_route.upstream_key.pk
    assert (row.input_tokens, row.output_tokens, row.cache_read_tokens) == (
        document["usage"]["input_tokens"],
        document["usage"]["output_tokens"],
        0,
    )
    assert row.stop_reason == "end_turn"


def test_openai_route_stream_arrives_as_anthropic_sse_and_usage_is_recorded(
    gatehouse_server, openai_route, openai_emulator, alice
):
    response, raw = stream(gatehouse_server, alice.secret, BODY)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0][1]["message"]["model"] == MODEL
    text = "".join(p["delta"]["text"] for name, p in events if name == "content_block_delta")
    assert text == "Hello from the OpenAI emulator: Say hello"
    usage = events[-2][1]["usage"]
    forwarded = orjson.loads(openai_emulator.last_request()["body"])
    assert forwarded["stream_options"] == {"include_usage": True}
    [row] = wait_for_logs(1, user=alice.user)
    assert row.is_stream is True
    assert row.outcome == RequestOutcome.OK
    assert (row.input_tokens, row.output_tokens) == (usage["input_tokens"], usage["output_tokens"])
    assert row.input_tokens > 0
    assert row.output_tokens == 11
    assert row.stop_reason == "end_turn"


def test_repeated_prefix_is_recorded_as_cache_reads(
    gatehouse_server, openai_route, openai_emulator, alice
):
    openai_emulator.configure(min_cacheable_tokens=0, cache_increment=1)
    body = {**BODY, "system": "You are a careful assistant. " * 20}

    first = post(gatehouse_server, alice.secret, body).json()["usage"]
    _, raw = stream(gatehouse_server, alice.secret, body)

    usage = sse_events(raw)[-2][1]["usage"]
    rows = wait_for_logs(2, user=alice.user)
    assert first["cache_read_input_tokens"] == 0
    assert usage["cache_read_input_tokens"] > 0
    assert (rows[1].input_tokens, rows[1].cache_read_tokens) == (
        usage["input_tokens"],
        usage["cache_read_input_tokens"],
    )
    assert rows[1].input_tokens + rows[1].cache_read_tokens == first["input_tokens"]


def test_openai_route_tool_use_round_trip_with_the_official_sdk(
    gatehouse_server, openai_route, openai_emulator, alice
):
    client = anthropic.Anthropic(
        base_url=gatehouse_server.base_url, api_key=alice.secret, max_retries=0, timeout=30
    )
    question = [{"role": "user", "content": "Use a tool to read setup.py"}]

    with client.messages.stream(
        model=MODEL, max_tokens=256, tools=[READ_TOOL], messages=question
    ) as tool_stream:
        asked = tool_stream.get_final_message()
    [tool_use] = asked.content
    answered = client.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[READ_TOOL],
        messages=[
            *question,
            {"role": "assistant", "content": asked.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_use.id, "content": "print(1)"}
                ],
            },
        ],
    )

    assert asked.stop_reason == "tool_use"
    assert (tool_use.type, tool_use.name) == ("tool_use", "Read")
    assert tool_use.input == {"file_path": "Use a tool to read setup.py"}
    assert answered.stop_reason == "end_turn"
    assert answered.content[0].type == "text"
    sent = orjson.loads(openai_emulator.last_request()["body"])["messages"]
    assert [message["role"] for message in sent] == ["user", "assistant", "tool"]
    assert sent[2] == {"role": "tool", "tool_call_id": tool_use.id, "content": "print(1)"}
    assert len(wait_for_logs(2, user=alice.user)) == 2


def test_openai_route_provider_error_comes_back_in_anthropic_shape(
    gatehouse_server, openai_route, openai_emulator, alice
):
    openai_emulator.inject_fault("400")

    response = post(gatehouse_server, alice.secret, BODY)

    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "Invalid request.",
    }
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.UPSTREAM_ERROR
    assert row.error_type == "invalid_request_error"


def test_openai_route_refuses_server_tools_before_calling_the_provider(
    gatehouse_server, openai_route, openai_emulator, alice
):
    body = {**BODY, "tools": [{"type": "web_search_20260209", "name": "web_search"}]}

    response = post(gatehouse_server, alice.secret, body)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "tool 'web_search'" in response.json()["error"]["message"]
    assert openai_emulator.requests() == []


def test_openai_route_answers_count_tokens_with_404(
    gatehouse_server, openai_route, openai_emulator, alice
):
    response = post(
        gatehouse_server,
        alice.secret,
        {"model": MODEL, "messages": BODY["messages"]},
        path="/v1/messages/count_tokens",
    )

    assert response.status_code == 404
    assert response.json()["error"] == {
        "type": "not_found_error",
        "message": "count_tokens is not supported by provider kind openai",
    }
    assert openai_emulator.requests() == []


def test_openai_route_stream_cut_short_ends_in_an_error_event(
    gatehouse_server, openai_route, openai_emulator, alice
):
    openai_emulator.inject_fault("eof_before_finish")

    response, raw = stream(gatehouse_server, alice.secret, BODY)

    assert response.status_code == 200
    events = sse_events(raw)
    assert events[-1][0] == "error"
    assert "message_stop" not in [name for name, _ in events]
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.STREAM_ERROR
    assert row.error_type == "api_error"
