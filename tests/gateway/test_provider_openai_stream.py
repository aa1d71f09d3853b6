"""OpenAI chat.completion.chunk streams → Anthropic SSE (protocol reference §10.3, §10.4)."""

from __future__ import annotations

import anthropic
import httpx
import httpx2
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.providers.openai import OpenAIAdapter
from gateway.providers.openai_stream import SSEDataReader, StreamTranslator
from gateway.providers.openai_translate import short_tool_name

MODEL = "claude-opus-5"
MESSAGE_ID = "msg_test"
LONG_NAME = "mcp__filesystem_server_with_a_long_name__read_multiple_files_at_once_please"
DONE = b"data: [DONE]\n\n"


def chunk(delta=None, finish_reason=None, **extra) -> bytes:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4.1",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}],
        **extra,
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def usage_chunk(prompt_tokens=20, completion_tokens=5, cached_tokens=0) -> bytes:
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }
    return b"data: " + orjson.dumps({"id": "chatcmpl-1", "choices": [], "usage": usage}) + b"\n\n"


def tool_fragment(index, arguments, **fields) -> dict:
    return {"tool_calls": [{"index": index, **fields, "function": {"arguments": arguments}}]}


def translator(**kwargs) -> StreamTranslator:
    return StreamTranslator(requested_model=MODEL, message_id=MESSAGE_ID, **kwargs)


def translate(*pieces: bytes, close: bool = True, **kwargs) -> bytes:
    stream = translator(**kwargs)
    out = b"".join(stream.feed(piece) for piece in pieces)
    return out + stream.close() if close else out


def events(raw: bytes) -> list[tuple[str, dict]]:
    parsed = []
    for frame in raw.split(b"\n\n"):
        if frame:
            name_line, data_line = frame.split(b"\n")
            assert name_line.startswith(b"event: ")
            assert data_line.startswith(b"data: ")
            payload = orjson.loads(data_line[6:])
            assert payload["type"] == name_line[7:].decode()
            parsed.append((name_line[7:].decode(), payload))
    return parsed


def names(raw: bytes) -> list[str]:
    return [name for name, _ in events(raw)]


def test_a_text_stream_becomes_the_exact_anthropic_event_sequence():
    raw = translate(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo!"}),
        chunk({}, "stop"),
        usage_chunk(prompt_tokens=2000, completion_tokens=5, cached_tokens=1536),
        DONE,
    )

    assert raw == (
        b"event: message_start\n"
        b'data: {"type":"message_start","message":{"id":"msg_test","type":"message",'
        b'"role":"assistant","model":"claude-opus-5","content":[],"stop_reason":null,'
        b'"stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,'
        b'"cache_read_input_tokens":0,"output_tokens":0}}}\n\n'
        b"event: content_block_start\n"
        b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}\n\n'
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo!"}}\n\n'
        b"event: content_block_stop\n"
        b'data: {"type":"content_block_stop","index":0}\n\n'
        b"event: message_delta\n"
        b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        b'"usage":{"input_tokens":464,"cache_creation_input_tokens":0,'
        b'"cache_read_input_tokens":1536,"output_tokens":5}}\n\n'
        b"event: message_stop\n"
        b'data: {"type":"message_stop"}\n\n'
    )


def test_reasoning_text_and_tool_calls_get_sequential_blocks_opened_and_closed_in_order():
    raw = translate(
        chunk({"role": "assistant"}),
        chunk({"reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing."}),
        chunk({"content": "Reading."}),
        chunk(tool_fragment(0, "", id="call_a", type="function")),
        chunk(tool_fragment(0, '{"path":')),
        chunk(tool_fragment(0, '"a.py"}')),
        chunk(tool_fragment(1, '{"cmd":"ls"}', id="call_b", type="function")),
        chunk({}, "tool_calls"),
        usage_chunk(),
        DONE,
    )

    assert [(name, payload.get("index")) for name, payload in events(raw)] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_delta", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("content_block_start", 3),
        ("content_block_delta", 3),
        ("content_block_delta", 3),
        ("content_block_stop", 3),
        ("message_delta", None),
        ("message_stop", None),
    ]
    parsed = dict(enumerate(events(raw)))
    assert parsed[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert parsed[2][1]["delta"] == {"type": "thinking_delta", "thinking": "Think"}
    assert parsed[8][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_a",
        "name": "",
        "input": {},
    }
    assert [parsed[i][1]["delta"]["partial_json"] for i in (9, 10, 11)] == [
        "",
        '{"path":',
        '"a.py"}',
    ]
    assert parsed[17][1]["delta"]["stop_reason"] == "tool_use"


def test_tool_calls_are_keyed_on_index_even_when_every_fragment_repeats_the_id():
    def fragment(index, call_id, name, arguments):
        return {
            "tool_calls": [
                {
                    "index": index,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ]
        }

    raw = translate(
        chunk(fragment(0, "call_a", "Read", '{"path"')),
        chunk(fragment(0, "call_a", "Read", ':"a"}')),
        chunk(fragment(1, "call_b", "Read", '{"path"')),
        chunk(fragment(1, "call_b", "Read", ':"b"}')),
        chunk({}, "tool_calls"),
        DONE,
    )

    starts = [p["content_block"] for n, p in events(raw) if n == "content_block_start"]
    assert starts == [
        {"type": "tool_use", "id": "call_a", "name": "Read", "input": {}},
        {"type": "tool_use", "id": "call_b", "name": "Read", "input": {}},
    ]
    json_by_block: dict[int, str] = {}
    for name, payload in events(raw):
        if name == "content_block_delta":
            json_by_block[payload["index"]] = (
                json_by_block.get(payload["index"], "") + payload["delta"]["partial_json"]
            )
    assert json_by_block == {0: '{"path":"a"}', 1: '{"path":"b"}'}


def test_long_tool_names_come_back_and_odd_ids_are_sanitised_in_streams():
    short = short_tool_name(LONG_NAME)
    adapter_book = {short: LONG_NAME}

    raw = translate(
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "functions.Read:0",
                        "type": "function",
                        "function": {"name": short, "arguments": "{}"},
                    }
                ]
            }
        ),
        chunk({}, "tool_calls"),
        DONE,
        tool_name=lambda name: adapter_book.get(name, name),
    )

    assert events(raw)[1][1]["content_block"] == {
        "type": "tool_use",
        "id": "functions_Read_0",
        "name": LONG_NAME,
        "input": {},
    }


def test_a_chunk_with_content_and_finish_reason_is_split_content_first():
    raw = translate(
        chunk({"role": "assistant", "content": "All at once."}, "stop"),
        usage_chunk(prompt_tokens=9, completion_tokens=3),
        DONE,
    )

    assert names(raw) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events(raw)[2][1]["delta"] == {"type": "text_delta", "text": "All at once."}
    assert events(raw)[4][1]["usage"]["output_tokens"] == 3


def test_the_finish_reason_is_held_until_the_usage_chunk_arrives():
    stream = translator()

    before = stream.feed(chunk({"content": "Hi"}) + chunk({}, "stop"))
    after = stream.feed(usage_chunk(prompt_tokens=11, completion_tokens=2))

    assert names(before) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    ]
    assert events(after) == [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {
                    "input_tokens": 11,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 2,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert stream.finished
    assert stream.feed(DONE) == b""


def test_usage_sent_with_the_finish_chunk_is_used_at_done():
    raw = translate(
        chunk({"content": "Hi"}),
        chunk({}, "length", usage={"prompt_tokens": 4, "completion_tokens": 1}),
        DONE,
    )

    assert events(raw)[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert events(raw)[-2][1]["usage"]["input_tokens"] == 4


def test_without_a_usage_chunk_done_finishes_with_an_estimate():
    raw = translate(chunk({"content": "Sixteen chars..."}), chunk({}, "stop"), DONE)

    assert events(raw)[-2][1]["usage"] == {
        "input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 4,
    }
    assert names(raw)[-1] == "message_stop"


def test_the_end_of_the_stream_after_a_finish_reason_completes_the_message():
    raw = translate(chunk({"content": "Hi"}), chunk({}, "stop"), usage_chunk()[:-1])

    assert names(raw)[-2:] == ["message_delta", "message_stop"]


@pytest.mark.parametrize("ending", [b"", DONE], ids=["eof", "done"])
def test_a_stream_cut_before_its_finish_reason_ends_in_an_error_not_a_fake_stop(ending):
    raw = translate(chunk({"content": "Half a sent"}), ending)

    assert names(raw) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    assert events(raw)[-1][1]["error"]["type"] == "api_error"


def test_an_error_object_in_the_stream_becomes_an_error_event():
    error = {"error": {"message": "Rate limit exceeded", "code": 429}}

    raw = translate(chunk({"content": "Hi"}), b"data: " + orjson.dumps(error) + b"\n\n", DONE)

    assert events(raw)[-1] == (
        "error",
        {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit exceeded"}},
    )


def test_bytes_that_are_not_json_end_the_stream_with_an_error():
    raw = translate(chunk({"content": "Hi"}), b'data: {"choices": [\n\n', DONE)

    assert events(raw)[-1][1]["error"] == {
        "type": "api_error",
        "message": "Upstream sent a stream chunk that is not JSON.",
    }
    assert b"message_stop" not in raw


def test_interleaved_parallel_tool_arguments_end_in_an_error_rather_than_a_closed_block_delta():
    raw = translate(
        chunk(tool_fragment(0, '{"a":', id="call_a", type="function")),
        chunk(tool_fragment(1, '{"b":1}', id="call_b", type="function")),
        chunk(tool_fragment(0, "1}")),
    )

    assert names(raw)[-1] == "error"
    assert [p["index"] for n, p in events(raw) if n == "content_block_delta"] == [0, 0, 1, 1]


def test_stop_after_tool_calls_is_reported_as_tool_use():
    raw = translate(
        chunk(tool_fragment(0, "{}", id="call_a", type="function")), chunk({}, "stop"), DONE
    )

    assert events(raw)[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_comments_crlf_and_multi_line_data_are_read_as_server_sent_events():
    reader = SSEDataReader()

    data = reader.feed(b': OPENROUTER PROCESSING\r\n\r\ndata: {"a":\r') + reader.feed(
        b"\ndata: 1}\r\n\r\nevent: x\ndata:[DONE]\n"
    )

    assert data == [b'{"a":\n1}']
    assert reader.close() == [b"[DONE]"]


def test_a_failed_upstream_read_ends_in_an_error_event():
    stream = translator()
    stream.feed(chunk({"content": "Hi"}))

    assert events(stream.fail("Upstream stream failed: ReadError.")) == [
        (
            "error",
            {
                "type": "error",
                "error": {"type": "api_error", "message": "Upstream stream failed: ReadError."},
            },
        )
    ]


async def test_the_adapter_turns_a_read_error_into_an_error_event():
    async def chunks():
        yield chunk({"content": "Hi"})
        raise httpx.ReadError("connection reset")

    out = [
        piece async for piece in OpenAIAdapter().translate_stream(chunks(), requested_model=MODEL)
    ]

    assert names(b"".join(out))[-1] == "error"
    assert events(out[-1])[0][1]["error"]["message"] == "Upstream stream failed: ReadError."


# --- any chunking, and the official SDK ------------------------------------------------------

FULL_STREAM = b"".join(
    [
        b": keep-alive\n\n",
        chunk({"role": "assistant", "content": ""}, usage=None),
        chunk({"reasoning_content": "Let me "}),
        chunk({"reasoning_content": "think. \u00e9\u6f22"}),
        chunk({"content": "Reading both "}),
        chunk({"content": "files \U0001f600."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": short_tool_name(LONG_NAME), "arguments": ""},
                    }
                ]
            }
        ),
        chunk(tool_fragment(0, '{"paths":["a.py",')),
        chunk(tool_fragment(0, '"b.py"]}')),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "Bash", "arguments": '{"cmd":"ls"}'},
                    }
                ]
            },
            "tool_calls",
        ),
        usage_chunk(prompt_tokens=3000, completion_tokens=42, cached_tokens=2048),
        DONE,
    ]
)
TOOL_NAMES = {short_tool_name(LONG_NAME): LONG_NAME}
EXPECTED = translate(FULL_STREAM, tool_name=lambda name: TOOL_NAMES.get(name, name))


def pieces_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(raw)]
    return [raw[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]


def sdk_final_message(pieces: list[bytes]):
    def respond(request):
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=iter(pieces)
        )

    http_client = httpx2.Client(transport=httpx2.MockTransport(respond))
    with anthropic.Anthropic(
        api_key="test", base_url="http://127.0.0.1:9", http_client=http_client, max_retries=0
    ) as client:
        with client.messages.stream(
            model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "Go"}]
        ) as stream:
            return stream.get_final_message()


@settings(max_examples=200, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=len(FULL_STREAM) - 1), max_size=40),
    crlf=st.booleans(),
)
def test_any_chunking_of_the_provider_stream_yields_the_same_anthropic_events(cuts, crlf):
    raw = FULL_STREAM.replace(b"\n", b"\r\n") if crlf else FULL_STREAM
    cuts = [min(cut, len(raw) - 1) for cut in cuts]
    stream = translator(tool_name=lambda name: TOOL_NAMES.get(name, name))

    out = [stream.feed(piece) for piece in pieces_at(raw, cuts)] + [stream.close()]

    assert b"".join(out) == EXPECTED
    assert all(piece.endswith(b"\n\n") for piece in out if piece)


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(EXPECTED) - 1), max_size=20))
def test_the_official_sdk_accumulates_the_translated_stream_however_it_is_cut(cuts):
    message = sdk_final_message(pieces_at(EXPECTED, cuts))

    assert message.id == MESSAGE_ID
    assert message.model == MODEL
    assert [block.model_dump(exclude_none=True) for block in message.content] == [
        {"type": "thinking", "thinking": "Let me think. \u00e9\u6f22", "signature": ""},
        {"type": "text", "text": "Reading both files \U0001f600."},
        {
            "type": "tool_use",
            "id": "call_a",
            "name": LONG_NAME,
            "input": {"paths": ["a.py", "b.py"]},
        },
        {"type": "tool_use", "id": "call_b", "name": "Bash", "input": {"cmd": "ls"}},
    ]
    assert message.stop_reason == "tool_use"
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.cache_creation_input_tokens,
        message.usage.output_tokens,
    ) == (952, 2048, 0, 42)


def test_the_sdk_raises_on_a_stream_that_was_cut_short():
    raw = translate(chunk({"content": "Half a sent"}))

    with pytest.raises(anthropic.APIStatusError) as raised:
        sdk_final_message([raw])

    assert raised.value.body == {
        "type": "error",
        "error": {
            "type": "api_error",
            "message": "Upstream stream ended before the response was complete.",
        },
    }
