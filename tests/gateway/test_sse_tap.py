import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.sse import SSETap

STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","content":[],"model":"claude-opus-5","stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":25,"cache_creation_input_tokens":300,"cache_read_input_tokens":1000,'
    b'"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def feed_in_pieces(tap: SSETap, data: bytes, size: int) -> None:
    for start in range(0, len(data), size):
        tap.feed(data[start : start + size])


def test_tap_reads_usage_and_stop_reason_whatever_the_chunk_boundaries():
    for size in (1, 7, 64, len(STREAM)):
        tap = SSETap()
        feed_in_pieces(tap, STREAM, size)
        usage = tap.usage.usage
        assert (usage.input_tokens, usage.output_tokens) == (25, 15)
        assert (
            usage.cache_write_5m_tokens,
            usage.cache_write_1h_tokens,
            usage.cache_read_tokens,
        ) == (100, 200, 1000)
        assert tap.usage.stop_reason == "end_turn"
        assert tap.usage.model == "claude-opus-5"
        assert tap.saw_message_stop is True
        assert tap.at_event_boundary is True


def test_events_in_any_field_layout_read_the_same_as_the_usual_two_lines():
    """Providers write `event: name` then `data: json`; the spec also allows no space after
    the colon, comments, an `id:`, and data split over several lines."""
    other_layouts = (
        STREAM.replace(b"event: ", b"event:").replace(b"data: ", b"data:"),
        STREAM.replace(b"event: ", b": keep-alive\nid: 7\nevent: "),
        STREAM.replace(b"data: {", b"data: {\ndata: "),
    )
    usual = SSETap()
    usual.feed(STREAM)

    for layout in other_layouts:
        tap = SSETap()
        assert tap.feed(layout) is None
        assert tap.usage.usage == usual.usage.usage
        assert tap.usage.stop_reason == usual.usage.stop_reason == "end_turn"
        assert (tap.events_seen, tap.saw_message_stop) == (usual.events_seen, True) == (7, True)


def test_tap_handles_crlf_framing():
    tap = SSETap()
    tap.feed(STREAM.replace(b"\n", b"\r\n"))
    assert tap.usage.usage.output_tokens == 15
    assert tap.saw_message_stop is True


def test_tap_is_not_at_a_boundary_inside_an_event():
    tap = SSETap()
    tap.feed(STREAM[:40])
    assert tap.at_event_boundary is False


def test_tap_captures_a_mid_stream_error_event():
    tap = SSETap()
    tap.feed(STREAM[: STREAM.index(b"\n\n") + 2])
    tap.feed(
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    assert tap.error == {"type": "overloaded_error", "message": "Overloaded"}
    assert tap.saw_message_stop is False


BROKEN_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","ind\n\n'
SOUND_HEAD = STREAM[: STREAM.index(b"event: ping")]


def test_a_sound_stream_is_not_malformed_whatever_the_chunk_boundaries():
    for size in (1, 7, 64, len(STREAM)):
        tap = SSETap()
        results = [tap.feed(STREAM[start : start + size]) for start in range(0, len(STREAM), size)]
        assert set(results) == {None}
        assert tap.malformed is None


def test_broken_json_in_an_event_is_found_where_that_event_starts_in_the_chunk():
    tap = SSETap()

    offset = tap.feed(SOUND_HEAD + BROKEN_DELTA + STREAM[STREAM.index(b"event: ping") :])

    assert offset == len(SOUND_HEAD)
    assert tap.malformed == "invalid JSON in a content_block_delta event"
    assert tap.saw_message_stop is False
    assert tap.usage.usage.input_tokens == 25  # message_start, before the broken event, counted


def test_an_event_that_began_in_an_earlier_chunk_is_reported_at_offset_zero():
    tap = SSETap()
    assert tap.feed(SOUND_HEAD + BROKEN_DELTA[:30]) is None

    assert tap.feed(BROKEN_DELTA[30:]) == 0
    assert tap.feed(b"event: ping\ndata: {}\n\n") == 0  # nothing more is read once malformed


def test_a_line_that_is_no_sse_field_is_malformed():
    tap = SSETap()

    offset = tap.feed(SOUND_HEAD + b"event content_block_delta\n\xff\xfe garbage\n\n")

    assert offset == len(SOUND_HEAD)
    assert tap.malformed == "a line that is not an SSE field"


def test_data_without_an_event_name_is_malformed_and_comments_are_not():
    tap = SSETap()
    assert tap.feed(b": keep-alive\n\n" + SOUND_HEAD) is None

    assert tap.feed(b'data: {"type":"ping"}\n\n') == 0
    assert tap.malformed == "an event without a name"


def test_data_that_is_json_but_not_an_object_is_malformed():
    tap = SSETap()

    assert tap.feed(b"event: content_block_delta\ndata: [1, 2]\n\n") == 0
    assert tap.malformed == "a content_block_delta event whose data is not an object"


def test_the_offset_of_a_malformed_event_counts_the_chunks_own_crlf_bytes():
    head = SOUND_HEAD.replace(b"\n", b"\r\n")
    tap = SSETap()

    offset = tap.feed(head + BROKEN_DELTA.replace(b"\n", b"\r\n"))

    assert offset == len(head)


def delta_event(text: bytes, index: bytes = b"0") -> bytes:
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
        + index
        + b',"delta":{"type":"text_delta","text":"'
        + text
        + b'"}}\n\n'
    )


def test_a_run_of_deltas_counts_every_event_as_the_general_reader_does():
    stream = SOUND_HEAD + b"".join(delta_event(b"w\\u00f6rd %d " % i) for i in range(50))
    stream += STREAM[STREAM.index(b"event: content_block_stop") :]
    general = SSETap()  # no space after the colons: every event read one by one
    assert general.feed(stream.replace(b"event: ", b"event:").replace(b"data: ", b"data:")) is None

    tap = SSETap()

    assert tap.feed(stream) is None
    assert tap.events_seen == general.events_seen == 55
    assert tap.usage.usage == general.usage.usage
    assert tap.saw_message_stop is True


# Pieces a delta's text is built from: plain and non-ASCII text, every JSON escape, and
# what JSON refuses in a string: a bare quote or backslash, control bytes, bad escapes, lone
# surrogate escapes, bytes that are not UTF-8 (an encoded surrogate among them).
TEXT_PIECES = st.sampled_from(
    [
        b"a",
        b" ",
        "wörd 😀".encode(),
        b'\\"',
        b"\\\\",
        b"\\/",
        b"\\b\\f\\n\\r\\t",
        b"\\u00e9",
        b"\\ud83d\\ude00",
        b"\\ud83d",
        b"\\ude00",
        b"\\uDBFF\\uDFFF",
        b"\\u12",
        b"\\x",
        b'"',
        b"\\",
        b"\x00",
        b"\x1f",
        b"\t",
        b"\x7f",
        b"\xff",
        b"\xc3",
        b"\xed\xa0\x80",
    ]
)


@given(
    text=st.lists(TEXT_PIECES, max_size=6).map(b"".join),
    index=st.sampled_from([b"0", b"7", b"12", b"01", b"-1", b"1.5"]),
    before=st.integers(min_value=0, max_value=3),
)
def test_a_delta_is_malformed_exactly_when_its_data_is_not_one_json_object(text, index, before):
    """However a delta's text is written, the tap agrees with a JSON parser, and a bad delta
    inside a run of sound ones is found where it starts."""
    event = delta_event(text, index)
    data = event[event.index(b"data: ") + 6 : -2]
    try:
        is_sound = isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        is_sound = False
    head = SOUND_HEAD + delta_event("né %d".encode() % 1) * before
    tap = SSETap()

    offset = tap.feed(head + event + delta_event(b"after"))

    assert offset == (None if is_sound else len(head))
    assert (tap.malformed is None) == is_sound
