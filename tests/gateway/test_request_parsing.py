import gzip

import httpx
import pytest

from gateway.errors import GatewayError
from gateway.providers.anthropic import AnthropicAdapter
from gateway.proxy.app import _read_whole, parse_messages_body
from gateway.proxy.auth import presented_secret
from gateway.proxy.forward import UpstreamResponse
from gateway.proxy.io import MAX_REQUEST_HEADER_BYTES, check_request_headers, read_body


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"model":"x"}', "text/plain", "Content-Type must be application/json."),
        (b"", "application/json", "Request body is empty; expected a JSON object."),
        (b"\xff\xfe{}", "application/json", "Request body is not valid UTF-8."),
        (b"[1, 2]", "application/json", "Request body must be a JSON object."),
        (b'{"max_tokens": 5}', "application/json", "model: Field required"),
        (b'{"model": 5}', "application/json", "model: Input should be a non-empty string"),
        (
            b'{"model": "claude-opus-5", "stream": "yes"}',
            "application/json",
            "stream: Input should be a valid boolean",
        ),
    ],
)
def test_bad_request_bodies_are_rejected_with_a_message_that_says_why(body, content_type, message):
    with pytest.raises(GatewayError) as caught:
        parse_messages_body(body, content_type)
    assert (caught.value.status, caught.value.error_type, caught.value.message) == (
        400,
        "invalid_request_error",
        message,
    )


def test_invalid_json_names_the_problem():
    with pytest.raises(GatewayError) as caught:
        parse_messages_body(b'{"model": ', "application/json; charset=utf-8")
    assert caught.value.message.startswith("Request body is not valid JSON")


def test_valid_body_is_parsed_once_into_a_dict():
    assert parse_messages_body(b'{"model":"claude-opus-5","stream":true}', "application/json") == {
        "model": "claude-opus-5",
        "stream": True,
    }


def test_credential_comes_from_either_header_and_disagreeing_headers_are_refused():
    assert presented_secret("gh_live_a", None) == "gh_live_a"
    assert presented_secret(None, "Bearer gh_live_b") == "gh_live_b"
    assert presented_secret("gh_live_c", "Bearer gh_live_c") == "gh_live_c"
    with pytest.raises(GatewayError, match="different keys"):
        presented_secret("gh_live_a", "Bearer gh_live_b")
    with pytest.raises(GatewayError, match="Missing credential"):
        presented_secret(None, None)
    with pytest.raises(GatewayError, match="Bearer"):
        presented_secret(None, "Basic abc")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"null", "Request body must be a JSON object."),
        (b"42", "Request body must be a JSON object."),
        (b"true", "Request body must be a JSON object."),
        (b'{"model": null}', "model: Field required"),
        (b'{"model": ""}', "model: Input should be a non-empty string"),
        (b'{"model": "   "}', "model: Input should be a non-empty string"),
        (b'{"model": true}', "model: Input should be a non-empty string"),
        (b'{"model": {"id": "claude-opus-5"}}', "model: Input should be a non-empty string"),
        (b'{"model": "claude-opus-5", "stream": 1}', "stream: Input should be a valid boolean"),
    ],
)
def test_non_object_bodies_and_wrong_model_or_stream_types_get_a_400_that_says_why(body, message):
    with pytest.raises(GatewayError) as caught:
        parse_messages_body(body, "application/json")
    assert (caught.value.status, caught.value.message) == (400, message)


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/json", "application/jsonl", "multipart/form-data; boundary=x", "json"],
)
def test_a_missing_or_other_content_type_is_refused(content_type):
    with pytest.raises(GatewayError, match=r"^Content-Type must be application/json\.$"):
        parse_messages_body(b'{"model": "claude-opus-5"}', content_type)


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=UTF-8", " application/json "]
)
def test_json_content_type_is_matched_without_case_or_parameters(content_type):
    assert parse_messages_body(b'{"model": "m"}', content_type) == {"model": "m"}


def test_integers_beyond_64_bits_are_read_not_refused():
    payload = parse_messages_body(
        b'{"model": "m", "max_tokens": 1000000000000000000000000000000}', "application/json"
    )
    assert payload["max_tokens"] == 1e30


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([(b"anthropic-beta", b"a\xffb")], "Header 'anthropic-beta' must be printable ASCII text."),
        ([(b"x-api-key", b"gh_live_\x00")], "Header 'x-api-key' must be printable ASCII text."),
        ([(b"user-agent", "é".encode())], "Header 'user-agent' must be printable ASCII text."),
        (
            [(b"x-claude-code-session-id", b"a\nb")],
            "Header 'x-claude-code-session-id' must be printable ASCII text.",
        ),
        ([(b"bad header", b"v")], "A header name is not a valid HTTP token."),
        ([(b"", b"v")], "A header name is not a valid HTTP token."),
        ([(b"caf\xe9", b"v")], "A header name is not a valid HTTP token."),
    ],
)
def test_headers_that_cannot_be_forwarded_as_they_came_are_refused_without_echoing_values(
    headers, message
):
    with pytest.raises(GatewayError) as caught:
        check_request_headers([(b"content-type", b"application/json"), *headers])
    assert (caught.value.status, caught.value.error_type, caught.value.message) == (
        400,
        "invalid_request_error",
        message,
    )


def test_ordinary_headers_with_spaces_tabs_and_punctuation_pass():
    check_request_headers(
        [
            (b"user-agent", b"claude-cli/2.1.3 (external, cli)"),
            (b"anthropic-beta", b"claude-code-20250219,\tinterleaved-thinking-2025-05-14"),
            (b"x-stainless-retry-count", b"0"),
            (b"authorization", b"Bearer gh_live_abc~_-.="),
            (b"x-empty", b""),
        ]
    )


def test_request_headers_over_16_kib_in_all_get_431_and_up_to_the_limit_pass():
    at_limit = [(b"x-filler", b"a" * (MAX_REQUEST_HEADER_BYTES - len(b"x-filler") - 4))]
    check_request_headers(at_limit)

    with pytest.raises(GatewayError) as caught:
        check_request_headers([(b"x-one", b"a" * 10_000), (b"x-two", b"b" * 10_000)])
    assert (caught.value.status, caught.value.error_type, caught.value.message) == (
        431,
        "invalid_request_error",
        "Request headers total 20018 bytes; the gateway's limit is 16384.",
    )


async def test_a_declared_length_over_the_limit_is_refused_before_any_body_is_read():
    async def receive():
        raise AssertionError("the body was read")

    with pytest.raises(GatewayError) as caught:
        await read_body(receive, 100, 101)
    assert (caught.value.status, caught.value.error_type) == (413, "request_too_large")


async def test_a_body_without_a_length_is_refused_at_the_chunk_that_crosses_the_limit():
    chunks = [{"type": "http.request", "body": b"x" * 40, "more_body": True} for _ in range(10)]
    read = 0

    async def receive():
        nonlocal read
        read += 1
        return chunks.pop(0)

    with pytest.raises(GatewayError) as caught:
        await read_body(receive, 100, None)
    assert (caught.value.status, read) == (413, 3)


async def test_a_whole_answer_is_relayed_as_received_and_a_content_encoded_one_is_decoded():
    body = b'{"type":"message","content":[]}'
    plain = httpx.Response(200, stream=httpx.ByteStream(body))
    gzipped = httpx.Response(
        200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(gzip.compress(body))
    )
    already_read = httpx.Response(200, stream=httpx.ByteStream(body))
    await already_read.aread()

    for response in (plain, gzipped, already_read):
        headers = {name.lower(): value for name, value in response.headers.items()}
        upstream = UpstreamResponse(response, AnthropicAdapter(), headers)

        assert await _read_whole(upstream) == body
