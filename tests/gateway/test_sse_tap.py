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
