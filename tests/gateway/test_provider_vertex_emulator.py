"""The Vertex emulator on its own: its token endpoint and what it refuses the way Vertex does."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from google.auth import crypt, jwt

from gateway.emulator_vertex.oauth import CLOUD_PLATFORM_SCOPE, GOOGLE_TOKEN_AUDIENCE
from gateway.emulator_vertex.pytest_plugin import TestServiceAccount

BODY = {
    "anthropic_version": "vertex-2023-10-16",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "Say hello"}],
}


def assertion(account_info: dict, **claims) -> str:
    signer = crypt.RSASigner.from_service_account_info(account_info)
    now = int(time.time())
    payload = {
        "iss": account_info["client_email"],
        "scope": CLOUD_PLATFORM_SCOPE,
        "aud": GOOGLE_TOKEN_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    return jwt.encode(signer, payload).decode()


def grant(emulator, token_assertion: str, grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer"):
    return httpx.post(
        emulator.token_uri,
        data={"grant_type": grant_type, "assertion": token_assertion},
        trust_env=False,
    )


def access_token(emulator) -> str:
    response = grant(emulator, assertion(emulator.service_account_info()))
    assert response.status_code == 200
    return response.json()["access_token"]


def predict(emulator, model_and_method: str, body, token: str | None = None):
    url = (
        f"{emulator.api_root}/projects/{emulator.project}/locations/global/publishers/anthropic"
        f"/models/{model_and_method}"
    )
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(url, content=orjson.dumps(body), headers=headers, trust_env=False)


def test_the_token_endpoint_answers_a_signed_assertion_like_google(vertex_emulator):
    response = grant(vertex_emulator, assertion(vertex_emulator.service_account_info()))

    assert response.status_code == 200
    document = response.json()
    assert set(document) == {"access_token", "expires_in", "token_type"}
    assert document["expires_in"] == 3600
    assert document["token_type"] == "Bearer"
    assert document["access_token"].startswith("ya29.emu.")


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"scope": "https://www.googleapis.com/auth/userinfo.email"}, "invalid_scope"),
        ({"aud": "https://example.com/token"}, "invalid_grant"),
        ({"iat": 0, "exp": 3600}, "invalid_grant"),
    ],
)
def test_the_token_endpoint_refuses_bad_claims(vertex_emulator, claims, error):
    response = grant(vertex_emulator, assertion(vertex_emulator.service_account_info(), **claims))

    assert response.status_code == 400
    assert response.json()["error"] == error


def test_an_assertion_signed_by_another_key_is_an_invalid_signature(vertex_emulator):
    impostor = TestServiceAccount()
    response = grant(vertex_emulator, assertion(impostor.key_info(vertex_emulator.token_uri)))

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid JWT Signature.",
    }


def test_the_token_endpoint_only_knows_the_jwt_bearer_grant(vertex_emulator):
    response = grant(vertex_emulator, "x.y.z", grant_type="client_credentials")

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_a_prediction_without_a_token_is_unauthenticated_in_googles_shape(vertex_emulator):
    response = predict(vertex_emulator, "claude-haiku-4-5@20251001:rawPredict", BODY)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("model_and_method", "body", "message"),
    [
        (
            "claude-haiku-4-5@20251001:rawPredict",
            {**BODY, "model": "claude-haiku-4-5@20251001"},
            "model: Extra inputs are not permitted",
        ),
        (
            "claude-haiku-4-5@20251001:rawPredict",
            {**BODY, "anthropic_version": "bedrock-2023-05-31"},
            "anthropic_version: Input should be 'vertex-2023-10-16'",
        ),
        (
            "claude-haiku-4-5@20251001:streamRawPredict",
            BODY,
            'streamRawPredict expects "stream": true in the body',
        ),
    ],
)
def test_model_server_errors_are_anthropic_shaped(vertex_emulator, model_and_method, body, message):
    response = predict(vertex_emulator, model_and_method, body, access_token(vertex_emulator))

    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


def test_another_publisher_is_not_found(vertex_emulator):
    token = access_token(vertex_emulator)
    url = (
        f"{vertex_emulator.api_root}/projects/{vertex_emulator.project}/locations/global"
        "/publishers/google/models/gemini-2.5-pro:rawPredict"
    )

    response = httpx.post(
        url, json=BODY, headers={"authorization": f"Bearer {token}"}, trust_env=False
    )

    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"


def test_the_control_api_rejects_unknown_faults(vertex_emulator):
    response = httpx.post(
        f"{vertex_emulator.base_url}/_emulator/faults",
        json={"fault": "google:418"},
        trust_env=False,
    )

    assert response.status_code == 400
    assert response.json() == {"error": "fault: unknown fault 'google:418'"}
    assert vertex_emulator.inject_fault("google:429", endpoint="count_tokens") == [
        {"fault": "google:429", "key": None, "times": 1, "endpoint": "count_tokens"}
    ]
