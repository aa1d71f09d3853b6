"""The Bedrock emulator on its own: what it refuses the way AWS does, and its wire format."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from gateway.providers.bedrock import signed_headers

MODEL_PATH = "/model/anthropic.claude-haiku-4-5-20251001-v1:0"
BODY = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "Say hello"}],
}


def signed_post(emulator, path, body, *, credentials=None, region=None):
    raw = orjson.dumps(body)
    url = emulator.base_url + path
    headers = signed_headers(
        method="POST",
        url=url,
        body=raw,
        headers={"content-type": "application/json"},
        credentials=credentials or Credentials(emulator.access_key_id, emulator.secret_access_key),
        region=region or emulator.region,
    )
    return httpx.post(url, headers=headers, content=raw, timeout=10, trust_env=False)


def error_type(response: httpx.Response) -> str:
    return response.headers["x-amzn-errortype"].split(":", 1)[0]


def test_an_unsigned_request_is_missing_its_authentication_token(bedrock_emulator):
    response = httpx.post(
        f"{bedrock_emulator.base_url}{MODEL_PATH}/invoke", json=BODY, trust_env=False
    )

    assert response.status_code == 403
    assert error_type(response) == "MissingAuthenticationTokenException"
    assert response.json() == {"message": "Missing Authentication Token"}


def test_a_signature_older_than_five_minutes_has_expired(bedrock_emulator):
    bedrock_emulator.advance_clock(-600)

    response = signed_post(bedrock_emulator, f"{MODEL_PATH}/invoke", BODY)

    assert response.status_code == 403
    assert error_type(response) == "InvalidSignatureException"
    assert response.json()["message"].startswith("Signature expired")


def test_a_session_token_the_credentials_require_must_be_presented(bedrock_emulator):
    bedrock_emulator.configure(
        credentials={"ASIATEMPORARY0000002": {"secret_access_key": "t", "session_token": "tok"}}
    )

    response = signed_post(
        bedrock_emulator,
        f"{MODEL_PATH}/invoke",
        BODY,
        credentials=Credentials("ASIATEMPORARY0000002", "t"),
    )

    assert response.status_code == 403
    assert error_type(response) == "UnrecognizedClientException"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {**BODY, "model": "claude-haiku-4-5"},
            "Malformed input request: #: extraneous key [model] is not permitted, please "
            "reformat your input and try again.",
        ),
        (
            {**BODY, "stream": True},
            "Malformed input request: #: extraneous key [stream] is not permitted, please "
            "reformat your input and try again.",
        ),
        (
            {key: value for key, value in BODY.items() if key != "anthropic_version"},
            "Malformed input request: #: required key [anthropic_version] not found, please "
            "reformat your input and try again.",
        ),
        (
            {key: value for key, value in BODY.items() if key != "max_tokens"},
            "Malformed input request: #: required key [max_tokens] not found, please "
            "reformat your input and try again.",
        ),
        ({**BODY, "anthropic_beta": "a,b"}, "anthropic_beta: expected a list of strings."),
    ],
)
def test_invoke_bodies_are_checked_the_way_bedrock_checks_them(bedrock_emulator, body, message):
    response = signed_post(bedrock_emulator, f"{MODEL_PATH}/invoke", body)

    assert response.status_code == 400
    assert error_type(response) == "ValidationException"
    assert response.json() == {"message": message}


def test_an_unknown_model_identifier_is_a_validation_error(bedrock_emulator):
    response = signed_post(bedrock_emulator, "/model/gpt-5/invoke", BODY)

    assert response.status_code == 400
    assert response.json() == {"message": "The provided model identifier is invalid."}


def test_an_unknown_operation_is_a_404(bedrock_emulator):
    response = signed_post(bedrock_emulator, f"{MODEL_PATH}/converse", BODY)

    assert response.status_code == 404
    assert error_type(response) == "UnknownOperationException"


def test_count_tokens_refuses_inference_profiles(bedrock_emulator):
    body = {"input": {"invokeModel": {"body": base64.b64encode(orjson.dumps(BODY)).decode()}}}

    response = signed_post(
        bedrock_emulator, "/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/count-tokens", body
    )

    assert response.status_code == 400
    assert response.json() == {"message": "The provided model doesn't support counting tokens."}


def test_the_response_stream_is_real_aws_event_stream_framing(bedrock_emulator):
    response = signed_post(bedrock_emulator, f"{MODEL_PATH}/invoke-with-response-stream", BODY)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    buffer = EventStreamBuffer()
    buffer.add_data(response.content)
    messages = list(buffer)
    assert {
        (message.headers[":message-type"], message.headers[":event-type"]) for message in messages
    } == {("event", "chunk")}
    payloads = [orjson.loads(message.payload) for message in messages]
    assert all(set(payload) == {"bytes", "p"} for payload in payloads)
    events = [orjson.loads(base64.b64decode(payload["bytes"])) for payload in payloads]
    assert events[0]["type"] == "message_start"
    assert "ping" not in [event["type"] for event in events]
    assert events[-1]["type"] == "message_stop"
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["inputTokenCount"] == events[0]["message"]["usage"]["input_tokens"]
    assert metrics["outputTokenCount"] == events[-2]["usage"]["output_tokens"]


def test_the_control_api_rejects_unknown_faults(bedrock_emulator):
    response = httpx.post(
        f"{bedrock_emulator.base_url}/_emulator/faults",
        json={"fault": "exception_mid_stream:notAnException"},
        trust_env=False,
    )

    assert response.status_code == 400
    assert response.json() == {"error": "fault: unknown stream exception 'notAnException'"}
    assert bedrock_emulator.inject_fault("ThrottlingException", times=2) == [
        {"fault": "ThrottlingException", "times": 2, "endpoint": "invoke"}
    ]
