"""Replies and their wire form (JSON message, SSE frames): pure, no server."""

import dataclasses
import re

import orjson

from gateway.emulator.cache import CacheUsage
from gateway.emulator.config import Behaviour
from gateway.emulator.replies import Reply, TextBlock, ThinkingBlock, ToolUseBlock, build_reply
from gateway.emulator.responses import message_object, split_evenly, stream_frames

DEFAULT_BEHAVIOUR = Behaviour(
    reply_text=None,
    tool_use="auto",
    tool_name=None,
    tool_input=None,
    text_deltas=5,
    delta_delay_ms=0.0,
)
READ_TOOL = {
    "name": "Read",
    "description": "Read a file",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}, "limit": {"type": "integer", "minimum": 5}},
        "required": ["file_path"],
    },
}
USAGE = CacheUsage(
    input_tokens=10,
    cache_read_input_tokens=2000,
    ephemeral_5m_input_tokens=30,
    ephemeral_1h_input_tokens=4,
)


def body(text: str = "Say hello to the nice people of this world please", **extra) -> dict:
    return {
        "model": "claude-opus-5",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def reply_for(request: dict, behaviour: Behaviour = DEFAULT_BEHAVIOUR) -> Reply:
    return build_reply(request, behaviour, request_body=orjson.dumps(request))


def parse_stream(frames) -> list[tuple[str, dict]]:
    events = []
    for frame in frames:
        event_line, data_line, blank, end = frame.data.split(b"\n")
        assert (blank, end) == (b"", b"")
        name = event_line.removeprefix(b"event: ").decode()
        payload = orjson.loads(data_line.removeprefix(b"data: "))
        assert payload["type"] == name
        events.append((name, payload))
    return events


def test_default_reply_echoes_the_first_eight_words_of_the_last_user_text():
    reply = reply_for(body())

    assert reply.blocks == (
        TextBlock("Hello from the emulator: Say hello to the nice people of this"),
    )
    assert (reply.stop_reason, reply.stop_sequence, reply.output_tokens) == ("end_turn", None, 16)


def test_echo_uses_the_last_text_block_of_the_last_user_turn():
    request = body()
    request["messages"] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                {"type": "text", "text": "Say hi"},
            ],
        },
    ]

    assert reply_for(request).blocks == (TextBlock("Hello from the emulator: Say hi"),)


def test_configured_reply_text_wins():
    behaviour = dataclasses.replace(DEFAULT_BEHAVIOUR, reply_text="Fixed answer.")

    assert reply_for(body(), behaviour).blocks == (TextBlock("Fixed answer."),)


def test_tool_use_when_tools_are_offered_and_the_user_mentions_a_tool():
    reply = reply_for(body("Please use a tool to read it", tools=[READ_TOOL]))

    text, tool_use = reply.blocks
    assert text == TextBlock("I'll use the Read tool.")
    assert isinstance(tool_use, ToolUseBlock)
    assert re.fullmatch(r"toolu_emu_[0-9a-f]{24}", tool_use.id)
    assert (tool_use.name, tool_use.input) == (
        "Read",
        {"file_path": "Please use a tool to read it", "limit": 5},
    )
    assert reply.stop_reason == "tool_use"


def test_no_tool_use_without_the_word_tool_or_after_a_tool_result():
    plain = reply_for(body("Read the file", tools=[READ_TOOL]))
    after_result = reply_for(
        {
            **body(tools=[READ_TOOL]),
            "messages": [
                {"role": "user", "content": "use a tool"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "tool output"}
                    ],
                },
            ],
        }
    )

    assert plain.stop_reason == after_result.stop_reason == "end_turn"
    assert after_result.blocks == (TextBlock("Hello from the emulator: tool output"),)


def test_tool_choice_forces_the_named_tool():
    other = {
        "name": "Bash",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
    }

    reply = reply_for(
        body("hi", tools=[READ_TOOL, other], tool_choice={"type": "tool", "name": "Bash"})
    )

    assert reply.blocks[1].name == "Bash"
    assert reply.blocks[1].input == {"command": "hi"}


def test_same_request_gets_the_same_tool_use_id():
    request = body("use a tool", tools=[READ_TOOL])

    assert reply_for(request).blocks[1].id == reply_for(request).blocks[1].id


def test_thinking_block_comes_first_and_omitted_display_hides_its_text():
    shown = reply_for(body("hi", thinking={"type": "adaptive"}))
    omitted = reply_for(
        body("hi", thinking={"type": "enabled", "budget_tokens": 2048, "display": "omitted"})
    )

    assert shown.blocks[0] == ThinkingBlock(
        "The user wrote: hi. A short, friendly answer will do.", shown.blocks[0].signature
    )
    assert shown.blocks[0].signature.startswith("EmuSig")
    assert omitted.blocks[0].thinking == ""
    assert omitted.output_tokens == shown.output_tokens


def test_json_schema_output_is_a_json_object_built_from_the_schema():
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}

    reply = reply_for(
        body(
            "Fix the login bug", output_config={"format": {"type": "json_schema", "schema": schema}}
        )
    )

    assert orjson.loads(reply.blocks[0].text) == {"title": "Fix the login bug"}


def test_stop_sequence_cuts_the_text():
    reply = reply_for(body("hi", stop_sequences=["emulator"]))

    assert reply.blocks == (TextBlock("Hello from the "),)
    assert (reply.stop_reason, reply.stop_sequence) == ("stop_sequence", "emulator")


def test_max_tokens_truncates_the_text():
    reply = reply_for(body("hi", max_tokens=2))

    assert reply.blocks == (TextBlock("Hello fr"),)
    assert (reply.stop_reason, reply.output_tokens) == ("max_tokens", 2)


def test_split_evenly_gives_non_empty_pieces():
    assert split_evenly("abcdefg", 3) == ["ab", "cd", "efg"]
    assert split_evenly("ab", 5) == ["a", "b"]
    assert split_evenly("", 3) == [""]


def test_text_stream_follows_the_documented_event_order():
    reply = Reply((TextBlock("Hello there"),), "end_turn", None, 3)

    events = parse_stream(
        stream_frames(
            message_id="msg_1", model="claude-opus-5", reply=reply, usage=USAGE, text_deltas=2
        )
    )

    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0][1]["message"] == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 34,
            "cache_read_input_tokens": 2000,
            "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 4},
            "output_tokens": 1,
            "service_tier": "standard",
        },
    }
    assert [payload["delta"] for name, payload in events if name == "content_block_delta"] == [
        {"type": "text_delta", "text": "Hello"},
        {"type": "text_delta", "text": " there"},
    ]
    assert events[6][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 34,
            "cache_read_input_tokens": 2000,
            "output_tokens": 3,
        },
    }


def test_fifty_deltas_carry_the_whole_padded_text():
    behaviour = dataclasses.replace(DEFAULT_BEHAVIOUR, text_deltas=50)
    reply = reply_for(body("hi"), behaviour)

    events = parse_stream(
        stream_frames(message_id="m", model="x", reply=reply, usage=USAGE, text_deltas=50)
    )
    deltas = [payload["delta"]["text"] for name, payload in events if name == "content_block_delta"]

    assert len(deltas) == 50
    assert (
        "".join(deltas)
        == reply.blocks[0].text
        == "Hello from the emulator: hi emulated emulated emulated"
    )


def test_tool_use_streams_input_json_fragments_starting_with_an_empty_one():
    reply = Reply(
        (TextBlock("ok"), ToolUseBlock("toolu_1", "Read", {"file_path": "/tmp/a.py"})),
        "tool_use",
        None,
        9,
    )

    events = parse_stream(
        stream_frames(message_id="m", model="x", reply=reply, usage=USAGE, text_deltas=1)
    )
    tool_events = [payload for _, payload in events if payload.get("index") == 1]

    assert tool_events[0]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "Read",
        "input": {},
    }
    fragments = [payload["delta"]["partial_json"] for payload in tool_events[1:-1]]
    assert fragments[0] == ""
    assert len(fragments) == 4
    assert orjson.loads("".join(fragments)) == {"file_path": "/tmp/a.py"}
    assert tool_events[-1] == {"type": "content_block_stop", "index": 1}


def test_thinking_stream_sends_the_signature_just_before_the_block_stops():
    reply = Reply((ThinkingBlock("abcd", "EmuSigX"), TextBlock("hi")), "end_turn", None, 4)

    events = parse_stream(
        stream_frames(message_id="m", model="x", reply=reply, usage=USAGE, text_deltas=1)
    )
    thinking = [payload for _, payload in events if payload.get("index") == 0]

    assert thinking == [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "ab"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "cd"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "EmuSigX"},
        },
        {"type": "content_block_stop", "index": 0},
    ]


def test_non_stream_message_carries_the_full_usage():
    reply = Reply((TextBlock("hi"),), "end_turn", None, 1)

    message = message_object(message_id="msg_1", model="claude-opus-5", reply=reply, usage=USAGE)

    assert message == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-5",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 34,
            "cache_read_input_tokens": 2000,
            "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 4},
            "output_tokens": 1,
            "service_tier": "standard",
        },
    }
