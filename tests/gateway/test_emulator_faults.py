"""Fault specs, the fault queue and how faults reshape a stream: pure, no server."""

import itertools

import orjson
import pytest

from gateway.emulator.cache import CacheUsage
from gateway.emulator.errors import EmulatorError
from gateway.emulator.faults import (
    MALFORMED_SSE,
    RESET_AFTER_SECONDS,
    Drop,
    FaultQueue,
    Pause,
    fault_from_request,
    parse_fault,
    stream_script,
)
from gateway.emulator.replies import Reply, TextBlock
from gateway.emulator.responses import OVERLOADED_EVENT, stream_frames

FRAMES = stream_frames(
    message_id="msg_1",
    model="claude-opus-5",
    reply=Reply((TextBlock("abc"),), "end_turn", None, 1),
    usage=CacheUsage(input_tokens=3),
    text_deltas=3,
)
(
    MESSAGE_START,
    BLOCK_START,
    PING,
    DELTA_A,
    DELTA_B,
    DELTA_C,
    BLOCK_STOP,
    MESSAGE_DELTA,
    MESSAGE_STOP,
) = (frame.data for frame in FRAMES)


@pytest.mark.parametrize(
    ("spec", "status", "error_type", "headers"),
    [
        ("500", 500, "api_error", []),
        ("529", 529, "overloaded_error", []),
        ("429", 429, "rate_limit_error", [(b"retry-after", b"1")]),
        ("429:7", 429, "rate_limit_error", [(b"retry-after", b"7")]),
        ("401", 401, "authentication_error", []),
    ],
)
def test_status_faults_become_anthropic_errors(spec, status, error_type, headers):
    error = parse_fault(spec).error()

    assert (error.status, error.error_type, error.headers) == (status, error_type, headers)


@pytest.mark.parametrize(
    ("spec", "kind", "milliseconds"),
    [
        ("slow_first_byte:250", "slow_first_byte", 250.0),
        ("silence:1500", "silence", 1500.0),
        ("endless:20", "endless", 20.0),
    ],
)
def test_timed_faults_carry_milliseconds(spec, kind, milliseconds):
    fault = parse_fault(spec)

    assert (fault.kind, fault.milliseconds) == (kind, milliseconds)


@pytest.mark.parametrize(
    "spec",
    ["418", "explode", "silence", "silence:soon", "drop_mid_stream:3", "500:2", "endless"],
)
def test_unknown_or_malformed_specs_are_rejected(spec):
    with pytest.raises(EmulatorError) as raised:
        parse_fault(spec)

    assert raised.value.status == 400


def test_queue_consumes_a_fault_the_given_number_of_times():
    queue = FaultQueue()
    queue.add(fault_from_request({"fault": "529", "times": 2}))

    taken = [queue.take(key="k", endpoint="messages", stream=True) for _ in range(3)]

    assert [fault.spec if fault else None for fault in taken] == ["529", "529", None]


def test_queue_fault_without_a_count_stays_until_cleared():
    queue = FaultQueue()
    queue.add(fault_from_request({"fault": "500", "times": None}))

    for _ in range(5):
        assert queue.take(key="k", endpoint="messages", stream=False).spec == "500"
    queue.clear()
    assert queue.take(key="k", endpoint="messages", stream=False) is None


def test_queue_fault_limited_to_a_key_skips_other_keys():
    queue = FaultQueue()
    queue.add(fault_from_request({"fault": "529", "key": "sk-b"}))

    assert queue.take(key="sk-a", endpoint="messages", stream=True) is None
    assert queue.take(key="sk-b", endpoint="messages", stream=True).spec == "529"


def test_stream_only_fault_is_left_for_a_streaming_request():
    queue = FaultQueue()
    queue.add(fault_from_request({"fault": "drop_mid_stream"}))

    assert queue.take(key="k", endpoint="messages", stream=False) is None
    assert queue.take(key="k", endpoint="messages", stream=True).kind == "drop_mid_stream"


def test_queue_fault_applies_only_to_its_endpoint():
    queue = FaultQueue()
    queue.add(fault_from_request({"fault": "500", "endpoint": "count_tokens"}))

    assert queue.take(key="k", endpoint="messages", stream=False) is None
    assert queue.take(key="k", endpoint="count_tokens", stream=False).spec == "500"


def test_unknown_fault_request_field_is_rejected():
    with pytest.raises(EmulatorError) as raised:
        fault_from_request({"fault": "500", "count": 2})

    assert raised.value.message == "faults: unknown field(s) count"


def test_plain_stream_without_delay_is_one_run_of_bytes():
    assert stream_script(FRAMES, delay_seconds=0, fault=None) == [frame.data for frame in FRAMES]


def test_delay_pauses_between_deltas_only():
    script = stream_script(FRAMES, delay_seconds=0.02, fault=None)

    assert script == [
        MESSAGE_START,
        BLOCK_START,
        PING,
        DELTA_A,
        Pause(0.02),
        DELTA_B,
        Pause(0.02),
        DELTA_C,
        BLOCK_STOP,
        MESSAGE_DELTA,
        MESSAGE_STOP,
    ]


def test_drop_mid_stream_closes_after_the_first_delta():
    script = stream_script(FRAMES, delay_seconds=0, fault=parse_fault("drop_mid_stream"))

    assert script == [MESSAGE_START, BLOCK_START, PING, DELTA_A, Drop()]


def test_reset_mid_stream_aborts_the_connection_after_the_first_delta_has_gone_out():
    script = stream_script(FRAMES, delay_seconds=0, fault=parse_fault("reset_mid_stream"))

    assert script == [
        MESSAGE_START,
        BLOCK_START,
        PING,
        DELTA_A,
        Pause(RESET_AFTER_SECONDS),
        Drop(reset=True),
    ]


def test_endless_stream_repeats_a_delta_at_its_interval_and_never_stops():
    script = stream_script(FRAMES, delay_seconds=0, fault=parse_fault("endless:250"))

    first = list(itertools.islice(script, 1000))

    assert first[:6] == [MESSAGE_START, BLOCK_START, PING, DELTA_A, Pause(0.25), DELTA_A]
    assert set(first[3:]) == {DELTA_A, Pause(0.25)}


def test_error_event_follows_message_start_and_ends_the_stream():
    script = stream_script(FRAMES, delay_seconds=0, fault=parse_fault("error_event_mid_stream"))

    assert script == [MESSAGE_START, OVERLOADED_EVENT]
    assert OVERLOADED_EVENT == (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )


def test_silence_pauses_after_the_first_delta():
    script = stream_script(FRAMES, delay_seconds=0, fault=parse_fault("silence:1500"))

    assert script[:6] == [MESSAGE_START, BLOCK_START, PING, DELTA_A, Pause(1.5), DELTA_B]


def test_malformed_json_keeps_sse_framing_but_breaks_the_first_delta_json():
    script = stream_script(FRAMES, delay_seconds=0, fault=parse_fault("malformed_json"))
    broken = script[3]

    assert broken.startswith(b"event: content_block_delta\ndata: {")
    assert broken.endswith(b"\n\n")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(broken.split(b"data: ", 1)[1])
    assert script[4:] == [DELTA_B, DELTA_C, BLOCK_STOP, MESSAGE_DELTA, MESSAGE_STOP]


def test_malformed_sse_sends_unframed_bytes_after_message_start():
    script = stream_script(FRAMES, delay_seconds=0, fault=parse_fault("malformed_sse"))

    assert script == [MESSAGE_START, MALFORMED_SSE]
