"""The Bedrock adapter against the Bedrock emulator over loopback HTTP, plus its pure parts.

Each test builds the upstream request with the adapter, sends it with httpx the way the
proxy does, and checks what the client would get back after translation.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from gateway.emulator_bedrock.eventstream import chunk_frame, encode_message, exception_frame
from gateway.providers import adapter_for
from gateway.providers.base import UpstreamError, UpstreamRequest
from gateway.providers.bedrock import BedrockAdapter, bedrock_model_id, foundation_model_id
from gateway.secrets import Secret
from gateway.snapshot import ProviderSpec, UpstreamKeySpec
from gateway.sse import SSETap

BODY = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello"}],
}
ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def provider_for(base_url: str, **options) -> ProviderSpec:
    return ProviderSpec(
        provider_id=1,
        name="bedrock-test",
        kind="bedrock",
        base_url=base_url,
        options={"region": "us-east-1", **options},
        connect_timeout_s=5.0,
        read_timeout_s=30.0,
        is_enabled=True,
    )


def key_for(secret: str) -> UpstreamKeySpec:
    return UpstreamKeySpec(
        upstream_key_id=1, provider_id=1, label="aws-team-a", secret=Secret(secret), weight=1
    )


async def build(
    emulator,
    body=BODY,
    *,
    endpoint="/v1/messages",
    headers=(),
    secret=None,
    **options,
) -> UpstreamRequest:
    return await BedrockAdapter().build_request(
        provider=provider_for(emulator.base_url, **options),
        upstream_key=key_for(secret or emulator.upstream_secret()),
        endpoint=endpoint,
        client_headers=list(headers),
        body=orjson.dumps(body),
    )


async def send_whole(request: UpstreamRequest):
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.post(request.url, headers=request.headers, content=request.body)
    translated = BedrockAdapter().translate_response(
        status=response.status_code,
        headers=response.headers.raw,
        body=response.content,
        requested_model=BODY["model"],
    )
    return response, translated


async def send_stream(request: UpstreamRequest) -> tuple[httpx.Response, bytes]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        upstream = client.build_request(
            "POST", request.url, headers=request.headers, content=request.body
        )
        response = await client.send(upstream, stream=True)
        try:
            pieces = [
                piece
                async for piece in BedrockAdapter().translate_stream(
                    response.aiter_raw(), requested_model=BODY["model"]
                )
            ]
        finally:
            await response.aclose()
    return response, b"".join(pieces)


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    events = []
    for frame in raw.decode().split("\n\n"):
        if frame:
            event_line, data_line = frame.split("\n")
            events.append(
                (event_line.removeprefix("event: "), orjson.loads(data_line.removeprefix("data: ")))
            )
    return events


async def pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


# --- model ids and body (pure) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "options", "expected"),
    [
        ("claude-sonnet-4-5-20250929", {}, "anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("claude-sonnet-4-5", {}, "anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("claude-haiku-4-5-20251001", {}, "anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("claude-opus-4-5", {}, "anthropic.claude-opus-4-5-20251101-v1:0"),
        ("claude-opus-4-6", {}, "anthropic.claude-opus-4-6-v1"),
        ("claude-sonnet-4-6", {}, "anthropic.claude-sonnet-4-6"),
        ("claude-3-5-haiku-20241022", {}, "anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("claude-opus-4-7-20260416", {}, "anthropic.claude-opus-4-7-20260416-v1:0"),
        ("claude-opus-5", {}, "anthropic.claude-opus-5"),
        ("anthropic.claude-opus-4-6-v1", {}, "anthropic.claude-opus-4-6-v1"),
        ("global.anthropic.claude-opus-5", {}, "global.anthropic.claude-opus-5"),
        (ARN, {}, ARN),
        (
            "claude-sonnet-4-5",
            {"inference_profile": "eu"},
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        ("claude-opus-5", {"model_map": {"claude-opus-5": ARN}}, ARN),
    ],
)
def test_model_ids_map_to_bedrock_model_ids(model, options, expected):
    assert bedrock_model_id(model, options) == expected


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-haiku-4-5-20251001-v1:0"),
        (ARN, "anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ],
)
def test_count_tokens_uses_the_foundation_model_behind_an_inference_profile(model_id, expected):
    assert foundation_model_id(model_id) == expected


def test_the_registry_serves_the_bedrock_adapter():
    assert isinstance(adapter_for("bedrock"), BedrockAdapter)
    assert adapter_for("bedrock").passthrough is False


async def test_body_loses_model_and_stream_and_gains_version_and_header_betas(bedrock_emulator):
    body = {**BODY, "stream": True, "anthropic_beta": ["context-1m-2025-08-07"]}

    request = await build(
        bedrock_emulator,
        body,
        headers=[
            ("anthropic-beta", "interleaved-thinking-2025-05-14, context-1m-2025-08-07"),
            ("anthropic-version", "2023-06-01"),
            ("x-claude-code-session-id", "c0ffee"),
        ],
    )

    assert request.method == "POST"
    assert request.url == (
        f"{bedrock_emulator.base_url}/model/anthropic.claude-sonnet-4-5-20250929-v1:0"
        "/invoke-with-response-stream"
    )
    assert orjson.loads(request.body) == {
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello"}],
        "anthropic_beta": ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"],
        "anthropic_version": "bedrock-2023-05-31",
    }
    headers = dict(request.headers)
    assert headers["accept"] == "application/vnd.amazon.eventstream"
    assert headers["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={bedrock_emulator.access_key_id}/"
    )
    assert "/us-east-1/bedrock/aws4_request" in headers["Authorization"]
    assert "x-claude-code-session-id" not in headers
    assert "anthropic-beta" not in headers


# --- invoke -------------------------------------------------------------------------------


async def test_signed_invoke_returns_the_anthropic_message_untouched(bedrock_emulator):
    response, translated = await send_whole(await build(bedrock_emulator))

    assert response.status_code == 200
    assert translated.status == 200
    assert translated.body == response.content
    message = orjson.loads(translated.body)
    assert message["type"] == "message"
    assert message["model"] == "claude-sonnet-4-5-20250929"
    assert message["id"].startswith("msg_bdrk_")
    assert message["content"] == [{"type": "text", "text": "Hello from the emulator: Say hello"}]
    assert message["usage"]["input_tokens"] == int(
        response.headers["x-amzn-bedrock-input-token-count"]
    )
    recorded = bedrock_emulator.last_request()
    assert recorded["path"] == "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"
    assert recorded["status"] == 200
    assert orjson.loads(recorded["body"])["anthropic_version"] == "bedrock-2023-05-31"


async def test_an_inference_profile_arn_is_percent_encoded_and_its_signature_verifies(
    bedrock_emulator,
):
    response, translated = await send_whole(await build(bedrock_emulator, {**BODY, "model": ARN}))

    assert response.status_code == 200
    assert orjson.loads(translated.body)["model"] == "claude-sonnet-4-5-20250929"
    assert bedrock_emulator.last_request()["path"] == (
        "/model/arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"
    )


async def test_temporary_credentials_sign_their_session_token(bedrock_emulator):
    bedrock_emulator.configure(
        credentials={"ASIATEMPORARY0000001": {"secret_access_key": "t3mp", "session_token": "tok"}}
    )
    secret = bedrock_emulator.upstream_secret("ASIATEMPORARY0000001", "t3mp", "tok")

    response, _ = await send_whole(await build(bedrock_emulator, secret=secret))

    assert response.status_code == 200
    recorded = bedrock_emulator.last_request()["headers"]
    assert recorded["x-amz-security-token"] == "tok"
    assert "x-amz-security-token" in recorded["authorization"]


@pytest.mark.parametrize(
    ("secret_fields", "aws_type"),
    [
        (("AKIAGATEHOUSEEMULATOR", "not-the-secret"), "InvalidSignatureException"),
        (("AKIAUNKNOWNKEY000001", "whatever"), "UnrecognizedClientException"),
    ],
)
async def test_wrong_credentials_get_aws_403_and_an_anthropic_authentication_error(
    bedrock_emulator, secret_fields, aws_type
):
    secret = bedrock_emulator.upstream_secret(*secret_fields)

    response, translated = await send_whole(await build(bedrock_emulator, secret=secret))

    assert response.status_code == 403
    assert response.headers["x-amzn-errortype"].startswith(aws_type + ":")
    assert translated.status == 401
    error = orjson.loads(translated.body)
    assert error["type"] == "error"
    assert error["error"]["type"] == "authentication_error"
    assert error["error"]["message"] == response.json()["message"]
    assert error["request_id"] == response.headers["x-amzn-requestid"]


async def test_a_signature_for_another_region_is_refused(bedrock_emulator):
    bedrock_emulator.configure(region="eu-west-1")

    response, translated = await send_whole(await build(bedrock_emulator))

    assert response.status_code == 403
    assert response.json()["message"] == (
        "Credential should be scoped to a valid region, not 'us-east-1'."
    )
    assert translated.status == 401


async def test_the_region_option_scopes_the_signature(bedrock_emulator):
    bedrock_emulator.configure(region="eu-west-1")

    response, _ = await send_whole(await build(bedrock_emulator, region="eu-west-1"))

    assert response.status_code == 200
    assert (
        "/eu-west-1/bedrock/aws4_request"
        in bedrock_emulator.last_request()["headers"]["authorization"]
    )


async def test_a_tampered_body_no_longer_matches_its_signature(bedrock_emulator):
    request = await build(bedrock_emulator)
    tampered = UpstreamRequest(
        method=request.method,
        url=request.url,
        headers=request.headers,
        body=request.body.replace(b"Say hello", b"Say hullo"),
    )

    response, translated = await send_whole(tampered)

    assert response.status_code == 403
    assert response.headers["x-amzn-errortype"].startswith("InvalidSignatureException:")
    assert orjson.loads(translated.body)["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("fault", "aws_status", "status", "error_type"),
    [
        ("ThrottlingException", 429, 429, "rate_limit_error"),
        ("ServiceUnavailableException", 503, 529, "overloaded_error"),
        ("ModelNotReadyException", 429, 529, "overloaded_error"),
        ("ValidationException", 400, 400, "invalid_request_error"),
        ("AccessDeniedException", 403, 403, "permission_error"),
        ("ResourceNotFoundException", 404, 404, "not_found_error"),
        ("ModelTimeoutException", 408, 504, "timeout_error"),
        ("ModelErrorException", 424, 500, "api_error"),
        ("InternalServerException", 500, 500, "api_error"),
    ],
)
async def test_aws_errors_become_anthropic_errors_with_the_matching_status(
    bedrock_emulator, fault, aws_status, status, error_type
):
    bedrock_emulator.inject_fault(fault)

    response, translated = await send_whole(await build(bedrock_emulator))

    assert response.status_code == aws_status
    assert translated.status == status
    assert orjson.loads(translated.body) == {
        "type": "error",
        "error": {"type": error_type, "message": response.json()["message"]},
        "request_id": response.headers["x-amzn-requestid"],
    }
    assert (b"content-type", b"application/json") in translated.headers
    assert all(name.lower() != b"x-amzn-errortype" for name, _ in translated.headers)


async def test_bedrock_validation_messages_reach_the_client(bedrock_emulator):
    body = {**BODY, "cache_control": {"type": "ephemeral"}}

    response, translated = await send_whole(await build(bedrock_emulator, body))

    assert response.status_code == 400
    assert translated.status == 400
    assert orjson.loads(translated.body)["error"] == {
        "type": "invalid_request_error",
        "message": "Malformed input request: #: extraneous key [cache_control] is not permitted, "
        "please reformat your input and try again.",
    }


def test_errors_named_only_in_the_body_are_still_recognised():
    translated = BedrockAdapter().translate_response(
        status=400,
        headers=[(b"content-type", b"application/json")],
        body=b'{"__type":"com.amazon.coral.validate#ThrottlingException","Message":"Slow down"}',
        requested_model="claude-sonnet-4-5",
    )

    assert translated.status == 429
    assert orjson.loads(translated.body) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Slow down"},
    }


def test_a_non_json_error_page_becomes_an_api_error():
    translated = BedrockAdapter().translate_response(
        status=502,
        headers=[(b"content-type", b"text/html")],
        body=b"<html>Bad Gateway</html>",
        requested_model="claude-sonnet-4-5",
    )

    assert translated.status == 500
    assert orjson.loads(translated.body)["error"] == {
        "type": "api_error",
        "message": "Amazon Bedrock answered HTTP 502.",
    }


# --- streams ------------------------------------------------------------------------------


async def test_the_event_stream_is_reframed_as_anthropic_sse_with_usage_for_the_tap(
    bedrock_emulator,
):
    bedrock_emulator.configure(reply_text="Hello from Bedrock", text_deltas=3)

    response, raw = await send_stream(await build(bedrock_emulator, {**BODY, "stream": True}))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
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
    assert all(payload["type"] == name for name, payload in events)
    assert "".join(payload["delta"]["text"] for name, payload in events[2:5]) == (
        "Hello from Bedrock"
    )
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    start_usage = events[0][1]["message"]["usage"]
    tap = SSETap()
    tap.feed(raw)
    assert tap.saw_message_stop is True
    assert tap.error is None
    assert tap.usage.model == "claude-sonnet-4-5-20250929"
    assert tap.usage.stop_reason == "end_turn"
    assert tap.usage.usage.input_tokens == start_usage["input_tokens"]
    assert tap.usage.usage.output_tokens == events[6][1]["usage"]["output_tokens"]


async def test_prompt_cache_usage_survives_the_reframing(bedrock_emulator):
    bedrock_emulator.configure(min_cacheable_tokens=1)
    body = {
        **BODY,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are terse. " * 20, "cache_control": {"type": "ephemeral"}}
        ],
    }

    _, first = await send_stream(await build(bedrock_emulator, body))
    _, second = await send_stream(await build(bedrock_emulator, body))

    first_tap, second_tap = SSETap(), SSETap()
    first_tap.feed(first)
    second_tap.feed(second)
    written = first_tap.usage.usage.cache_write_5m_tokens
    assert written > 0
    assert second_tap.usage.usage.cache_read_tokens == written
    assert second_tap.usage.usage.cache_write_5m_tokens == 0


@pytest.mark.parametrize(
    ("exception", "error_type"),
    [
        ("throttlingException", "rate_limit_error"),
        ("modelStreamErrorException", "api_error"),
        ("serviceUnavailableException", "overloaded_error"),
        ("internalServerException", "api_error"),
        ("modelTimeoutException", "timeout_error"),
        ("validationException", "invalid_request_error"),
    ],
)
async def test_an_exception_frame_mid_stream_becomes_an_sse_error_event(
    bedrock_emulator, exception, error_type
):
    bedrock_emulator.inject_fault(f"exception_mid_stream:{exception}")

    _, raw = await send_stream(await build(bedrock_emulator, {**BODY, "stream": True}))

    events = sse_events(raw)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    assert events[-1][1]["type"] == "error"
    assert events[-1][1]["error"]["type"] == error_type
    tap = SSETap()
    tap.feed(raw)
    assert tap.error == events[-1][1]["error"]
    assert tap.saw_message_stop is False


async def test_a_corrupt_frame_ends_the_stream_with_an_api_error_event(bedrock_emulator):
    bedrock_emulator.inject_fault("corrupt_frame_mid_stream")

    _, raw = await send_stream(await build(bedrock_emulator, {**BODY, "stream": True}))

    name, payload = sse_events(raw)[-1]
    assert name == "error"
    assert payload["error"]["type"] == "api_error"
    assert payload["error"]["message"].startswith("Amazon Bedrock's event stream is corrupt")


async def test_a_connection_dropped_mid_stream_surfaces_as_an_httpx_error_for_the_relay(
    bedrock_emulator,
):
    bedrock_emulator.inject_fault("drop_mid_stream")

    with pytest.raises(httpx.HTTPError):
        await send_stream(await build(bedrock_emulator, {**BODY, "stream": True}))


async def test_a_stream_refused_before_it_starts_is_a_whole_aws_error(bedrock_emulator):
    bedrock_emulator.inject_fault("ThrottlingException")

    response, translated = await send_whole(await build(bedrock_emulator, {**BODY, "stream": True}))

    assert response.status_code == 429
    assert translated.status == 429
    assert orjson.loads(translated.body)["error"]["type"] == "rate_limit_error"


async def test_frames_split_at_any_byte_are_reassembled():
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 3}}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 3}},
    ]
    stream = b"".join(chunk_frame(orjson.dumps(event), padding_length=5) for event in events)

    translated = [
        piece
        async for piece in BedrockAdapter().translate_stream(
            pieces(*(stream[i : i + 1] for i in range(len(stream)))), requested_model="m"
        )
    ]

    assert b"".join(translated) == (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
        b'"usage":{"input_tokens":3}}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


async def test_unknown_event_types_are_skipped_and_generic_error_messages_end_the_stream():
    other = encode_message(
        {":event-type": "metadata", ":content-type": "application/json", ":message-type": "event"},
        b"{}",
    )
    error = encode_message(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b""
    )
    start = chunk_frame(b'{"type":"ping"}')

    translated = b"".join(
        [
            piece
            async for piece in BedrockAdapter().translate_stream(
                pieces(other + start, error, exception_frame("throttlingException", "late")),
                requested_model="m",
            )
        ]
    )

    assert translated == (
        b'event: ping\ndata: {"type":"ping"}\n\n'
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"boom"}}\n\n'
    )


# --- count tokens -------------------------------------------------------------------------


async def test_count_tokens_goes_to_the_count_tokens_api_and_answers_in_anthropic_shape(
    bedrock_emulator,
):
    body = {"model": "us.anthropic.claude-haiku-4-5-20251001-v1:0", "messages": BODY["messages"]}

    request = await build(bedrock_emulator, body, endpoint="/v1/messages/count_tokens")
    response, translated = await send_whole(request)

    assert request.url.endswith("/model/anthropic.claude-haiku-4-5-20251001-v1:0/count-tokens")
    sent = orjson.loads(request.body)
    assert orjson.loads(base64.b64decode(sent["input"]["invokeModel"]["body"])) == {
        "messages": BODY["messages"],
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 1,
    }
    assert response.status_code == 200
    assert translated.status == 200
    assert orjson.loads(translated.body) == {"input_tokens": response.json()["inputTokens"]}
    assert response.json()["inputTokens"] > 0


def test_a_model_bedrock_cannot_count_is_a_404_so_clients_estimate_instead():
    translated = BedrockAdapter().translate_response(
        status=400,
        headers=[(b"x-amzn-errortype", b"ValidationException:http://internal.amazon.com/")],
        body=b'{"message":"The provided model doesn\'t support counting tokens."}',
        requested_model="claude-opus-5",
    )

    assert translated.status == 404
    assert orjson.loads(translated.body)["error"]["type"] == "not_found_error"


# --- configuration errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "AKIA...:plain-text",
        '{"access_key_id": "AKIAONLY"}',
        '["AKIA", "secret"]',
    ],
)
async def test_a_secret_that_is_not_credentials_json_is_a_clear_non_retryable_error(secret):
    with pytest.raises(UpstreamError) as caught:
        await BedrockAdapter().build_request(
            provider=provider_for("http://127.0.0.1:9"),
            upstream_key=key_for(secret),
            endpoint="/v1/messages",
            client_headers=[],
            body=orjson.dumps(BODY),
        )

    assert caught.value.retryable is False
    assert caught.value.status == 500
    assert caught.value.message == (
        "Upstream key 'aws-team-a' is not Bedrock credentials: expected JSON "
        '{"access_key_id", "secret_access_key", "session_token"?}.'
    )
    assert secret not in str(caught.value)


async def test_a_provider_without_region_is_a_non_retryable_error(bedrock_emulator):
    provider = provider_for(bedrock_emulator.base_url)
    provider.options.pop("region")

    with pytest.raises(UpstreamError) as caught:
        await BedrockAdapter().build_request(
            provider=provider,
            upstream_key=key_for(bedrock_emulator.upstream_secret()),
            endpoint="/v1/messages",
            client_headers=[],
            body=orjson.dumps(BODY),
        )

    assert caught.value.retryable is False
    assert "options.region" in caught.value.message
