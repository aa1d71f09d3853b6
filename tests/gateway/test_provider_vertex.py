"""The Vertex adapter against the Vertex emulator over loopback HTTP, plus its pure parts.

Tokens come from the emulator's OAuth endpoint through google-auth, signed with a service
account key generated for the test session; each test gets a fresh adapter (token cache).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest

from gateway.emulator_vertex.pytest_plugin import TestServiceAccount
from gateway.providers import adapter_for
from gateway.providers.base import UpstreamError, UpstreamRequest
from gateway.providers.vertex import VertexAdapter, api_root, default_base_url, vertex_model_id
from gateway.secrets import Secret
from gateway.snapshot import ProviderSpec, UpstreamKeySpec
from gateway.sse import SSETap

BODY = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello"}],
}


class FakeClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def provider_for(base_url: str, **options) -> ProviderSpec:
    return ProviderSpec(
        provider_id=2,
        name="vertex-test",
        kind="vertex",
        base_url=base_url,
        options=options,
        connect_timeout_s=5.0,
        read_timeout_s=30.0,
        is_enabled=True,
    )


def key_for(secret: str, key_id: int = 2) -> UpstreamKeySpec:
    return UpstreamKeySpec(
        upstream_key_id=key_id, provider_id=2, label="gcp-sa", secret=Secret(secret), weight=1
    )


async def build(
    emulator,
    body=BODY,
    *,
    adapter=None,
    endpoint="/v1/messages",
    headers=(),
    secret=None,
    **options,
) -> UpstreamRequest:
    return await (adapter or VertexAdapter()).build_request(
        provider=provider_for(emulator.api_root, **{"project": emulator.project, **options}),
        upstream_key=key_for(secret or emulator.upstream_secret()),
        endpoint=endpoint,
        client_headers=list(headers),
        body=orjson.dumps(body),
    )


async def send_whole(request: UpstreamRequest):
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.post(request.url, headers=request.headers, content=request.body)
    translated = VertexAdapter().translate_response(
        status=response.status_code,
        headers=response.headers.raw,
        body=response.content,
        requested_model=BODY["model"],
    )
    return response, translated


async def send_stream(request: UpstreamRequest) -> tuple[httpx.Response, bytes, bytes]:
    """The response, the raw bytes it carried and what translate_stream made of them."""
    raw: list[bytes] = []

    async def recorded(chunks):
        async for chunk in chunks:
            raw.append(chunk)
            yield chunk

    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        upstream = client.build_request(
            "POST", request.url, headers=request.headers, content=request.body
        )
        response = await client.send(upstream, stream=True)
        try:
            translated = [
                piece
                async for piece in VertexAdapter().translate_stream(
                    recorded(response.aiter_raw()), requested_model=BODY["model"]
                )
            ]
        finally:
            await response.aclose()
    return response, b"".join(raw), b"".join(translated)


# --- model ids and URLs (pure) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "options", "expected"),
    [
        ("claude-sonnet-4-5-20250929", {}, "claude-sonnet-4-5@20250929"),
        ("claude-haiku-4-5-20251001", {}, "claude-haiku-4-5@20251001"),
        ("claude-3-5-haiku-20241022", {}, "claude-3-5-haiku@20241022"),
        ("claude-opus-5", {}, "claude-opus-5"),
        ("claude-sonnet-4-6", {}, "claude-sonnet-4-6"),
        ("claude-opus-4-5@20251101", {}, "claude-opus-4-5@20251101"),
        (
            "claude-opus-5",
            {"model_map": {"claude-opus-5": "claude-opus-5@20260724"}},
            "claude-opus-5@20260724",
        ),
    ],
)
def test_dated_model_ids_become_vertex_ids(model, options, expected):
    assert vertex_model_id(model, options) == expected


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("global", "https://aiplatform.googleapis.com/v1"),
        ("us", "https://aiplatform.us.rep.googleapis.com/v1"),
        ("eu", "https://aiplatform.eu.rep.googleapis.com/v1"),
        ("us-east5", "https://us-east5-aiplatform.googleapis.com/v1"),
    ],
)
def test_default_api_roots_follow_the_region(region, expected):
    assert default_base_url(region) == expected
    assert api_root(provider_for(""), region) == expected


def test_a_base_url_without_a_path_gets_the_v1_root():
    assert api_root(provider_for("https://aiplatform.googleapis.com"), "global") == (
        "https://aiplatform.googleapis.com/v1"
    )
    assert api_root(provider_for("http://127.0.0.1:9/v1beta1"), "global") == (
        "http://127.0.0.1:9/v1beta1"
    )


def test_the_registry_serves_the_vertex_adapter():
    assert isinstance(adapter_for("vertex"), VertexAdapter)
    assert adapter_for("vertex").passthrough is False


# --- rawPredict ---------------------------------------------------------------------------


async def test_raw_predict_gets_the_vertex_body_headers_and_a_google_token(vertex_emulator):
    request = await build(
        vertex_emulator,
        headers=[
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "context-1m-2025-08-07"),
            ("x-claude-code-session-id", "c0ffee"),
        ],
        region="us-east5",
    )
    response, translated = await send_whole(request)

    assert request.url == (
        f"{vertex_emulator.api_root}/projects/gatehouse-test/locations/us-east5"
        "/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    )
    assert orjson.loads(request.body) == {
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello"}],
        "anthropic_version": "vertex-2023-10-16",
    }
    assert response.status_code == 200
    assert translated.status == 200
    assert translated.body == response.content
    message = orjson.loads(translated.body)
    assert message["model"] == "claude-sonnet-4-5-20250929"
    assert message["content"] == [{"type": "text", "text": "Hello from the emulator: Say hello"}]
    [grant, predict] = vertex_emulator.requests()
    assert grant["path"] == "/token"
    form = dict(parse_qsl(grant["body"]))
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert form["assertion"].count(".") == 2
    assert predict["headers"]["authorization"].startswith("Bearer ya29.emu.")
    assert predict["headers"]["anthropic-version"] == "2023-06-01"
    assert predict["headers"]["anthropic-beta"] == "context-1m-2025-08-07"
    assert "x-claude-code-session-id" not in predict["headers"]


async def test_the_region_defaults_to_global(vertex_emulator):
    request = await build(vertex_emulator)

    assert "/locations/global/publishers/anthropic/" in request.url


async def test_the_project_falls_back_to_the_service_accounts_own(vertex_emulator):
    adapter = VertexAdapter()
    request = await adapter.build_request(
        provider=provider_for(vertex_emulator.api_root),
        upstream_key=key_for(vertex_emulator.upstream_secret()),
        endpoint="/v1/messages",
        client_headers=[],
        body=orjson.dumps(BODY),
    )

    assert "/projects/gatehouse-test/" in request.url


async def test_stream_raw_predict_bytes_are_relayed_untouched(vertex_emulator):
    request = await build(vertex_emulator, {**BODY, "stream": True})

    response, raw, translated = await send_stream(request)

    assert request.url.endswith("/models/claude-sonnet-4-5@20250929:streamRawPredict")
    assert orjson.loads(request.body)["stream"] is True
    assert response.status_code == 200
    assert translated == raw
    assert raw.startswith(b"event: message_start\ndata: ")
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    tap = SSETap()
    tap.feed(translated)
    assert tap.saw_message_stop is True
    assert tap.usage.model == "claude-sonnet-4-5-20250929"
    assert tap.usage.usage.output_tokens > 0


async def test_count_tokens_keeps_the_vertex_model_in_the_body(vertex_emulator):
    body = {"model": "claude-haiku-4-5-20251001", "messages": BODY["messages"]}

    request = await build(vertex_emulator, body, endpoint="/v1/messages/count_tokens")
    response, translated = await send_whole(request)

    assert request.url.endswith(
        "/projects/gatehouse-test/locations/global/publishers/anthropic/models/"
        "count-tokens:rawPredict"
    )
    assert orjson.loads(request.body) == {
        "model": "claude-haiku-4-5@20251001",
        "messages": BODY["messages"],
        "anthropic_version": "vertex-2023-10-16",
    }
    assert response.status_code == 200
    assert orjson.loads(translated.body) == {"input_tokens": response.json()["input_tokens"]}
    assert response.json()["input_tokens"] > 0


async def test_a_dated_id_vertex_does_not_know_is_a_google_404(vertex_emulator):
    request = await build(vertex_emulator, model_map={BODY["model"]: BODY["model"]})

    response, translated = await send_whole(request)

    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
    assert translated.status == 404
    assert orjson.loads(translated.body) == {
        "type": "error",
        "error": {"type": "not_found_error", "message": response.json()["error"]["message"]},
    }


async def test_another_project_is_permission_denied(vertex_emulator):
    response, translated = await send_whole(await build(vertex_emulator, project="someone-else"))

    assert response.status_code == 403
    assert translated.status == 403
    assert orjson.loads(translated.body)["error"]["type"] == "permission_error"
    assert "someone-else" in orjson.loads(translated.body)["error"]["message"]


# --- tokens -------------------------------------------------------------------------------


async def test_the_token_is_reused_across_requests(vertex_emulator):
    adapter = VertexAdapter()

    first = await build(vertex_emulator, adapter=adapter)
    second = await build(vertex_emulator, adapter=adapter)

    assert dict(first.headers)["authorization"] == dict(second.headers)["authorization"]
    assert len(vertex_emulator.token_requests()) == 1
    response, _ = await send_whole(second)
    assert response.status_code == 200


async def test_the_token_is_refreshed_five_minutes_before_it_expires(vertex_emulator):
    clock = FakeClock()
    adapter = VertexAdapter(clock=clock)
    first = await build(vertex_emulator, adapter=adapter)

    clock.offset = 3600 - 300 - 5
    still_cached = await build(vertex_emulator, adapter=adapter)
    clock.offset = 3600 - 300 + 5
    refreshed = await build(vertex_emulator, adapter=adapter)

    assert dict(still_cached.headers)["authorization"] == dict(first.headers)["authorization"]
    assert dict(refreshed.headers)["authorization"] != dict(first.headers)["authorization"]
    assert len(vertex_emulator.token_requests()) == 2


async def test_a_short_lived_token_is_not_trusted_past_the_margin(vertex_emulator):
    vertex_emulator.configure(token_lifetime_s=200)
    adapter = VertexAdapter()

    await build(vertex_emulator, adapter=adapter)
    await build(vertex_emulator, adapter=adapter)

    assert len(vertex_emulator.token_requests()) == 2


async def test_concurrent_requests_share_one_token_refresh(vertex_emulator):
    adapter = VertexAdapter()

    requests = await asyncio.gather(*(build(vertex_emulator, adapter=adapter) for _ in range(10)))

    assert len({dict(request.headers)["authorization"] for request in requests}) == 1
    assert len(vertex_emulator.token_requests()) == 1


async def test_each_service_account_key_has_its_own_token(vertex_emulator):
    other = TestServiceAccount(client_email="other@gatehouse-test.iam.gserviceaccount.com")
    vertex_emulator.register(other)
    adapter = VertexAdapter()

    mine = await build(vertex_emulator, adapter=adapter)
    theirs = await build(
        vertex_emulator, adapter=adapter, secret=vertex_emulator.upstream_secret(other)
    )

    assert dict(mine.headers)["authorization"] != dict(theirs.headers)["authorization"]
    assert len(vertex_emulator.token_requests()) == 2


async def test_an_unknown_service_account_is_a_retryable_token_error(vertex_emulator):
    stranger = TestServiceAccount(client_email="stranger@elsewhere.iam.gserviceaccount.com")

    with pytest.raises(UpstreamError) as caught:
        await build(vertex_emulator, secret=vertex_emulator.upstream_secret(stranger))

    assert caught.value.retryable is True
    assert caught.value.error_type == "api_error"
    assert caught.value.message.startswith(
        "Google refused the service account's token request: invalid_grant: Invalid JWT Signature."
    )
    assert "PRIVATE KEY" not in caught.value.message


async def test_an_unreachable_token_endpoint_is_a_retryable_error(vertex_emulator):
    info = vertex_emulator.service_account_info()
    info["token_uri"] = "http://127.0.0.1:9/token"

    with pytest.raises(UpstreamError) as caught:
        await build(vertex_emulator, secret=orjson.dumps(info).decode())

    assert caught.value.retryable is True
    assert caught.value.status == 502


async def test_an_expired_token_is_refused_by_vertex_as_unauthenticated(vertex_emulator):
    request = await build(vertex_emulator)
    vertex_emulator.advance_clock(3601)

    response, translated = await send_whole(request)

    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert translated.status == 401
    assert orjson.loads(translated.body)["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    "secret",
    [
        "not json",
        '{"type": "service_account", "client_email": "a@b"}',
        '{"client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\\nnope\\n-----END PRIVATE KEY-----\\n", "token_uri": "http://127.0.0.1:9/token"}',
    ],
)
async def test_a_secret_that_is_not_a_service_account_key_is_a_non_retryable_error(secret):
    with pytest.raises(UpstreamError) as caught:
        await VertexAdapter().build_request(
            provider=provider_for("http://127.0.0.1:9/v1", project="p"),
            upstream_key=key_for(secret),
            endpoint="/v1/messages",
            client_headers=[],
            body=orjson.dumps(BODY),
        )

    assert caught.value.retryable is False
    assert caught.value.status == 500
    assert caught.value.message.startswith("Upstream key 'gcp-sa'")
    assert "nope" not in caught.value.message


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "google_status", "status", "error_type"),
    [
        ("google:429", "RESOURCE_EXHAUSTED", 429, "rate_limit_error"),
        ("google:503", "UNAVAILABLE", 529, "overloaded_error"),
        ("google:500", "INTERNAL", 500, "api_error"),
        ("google:400", "INVALID_ARGUMENT", 400, "invalid_request_error"),
        ("google:403", "PERMISSION_DENIED", 403, "permission_error"),
        ("google:404", "NOT_FOUND", 404, "not_found_error"),
        ("google:504", "DEADLINE_EXCEEDED", 504, "timeout_error"),
    ],
)
async def test_google_errors_become_anthropic_errors(
    vertex_emulator, fault, google_status, status, error_type
):
    vertex_emulator.inject_fault(fault)

    response, translated = await send_whole(await build(vertex_emulator))

    google_error = response.json()["error"]
    assert google_error["status"] == google_status
    assert translated.status == status
    assert orjson.loads(translated.body) == {
        "type": "error",
        "error": {"type": error_type, "message": google_error["message"]},
    }
    assert (b"content-type", b"application/json") in translated.headers


async def test_anthropic_shaped_errors_pass_untouched(vertex_emulator):
    vertex_emulator.inject_fault("anthropic:529")

    response, translated = await send_whole(await build(vertex_emulator))

    assert response.status_code == 529
    assert translated.status == 529
    assert translated.body == response.content
    assert response.json()["error"]["type"] == "overloaded_error"


async def test_model_server_validation_errors_stay_anthropic_shaped(vertex_emulator):
    response, translated = await send_whole(await build(vertex_emulator, {**BODY, "max_tokens": 0}))

    assert response.status_code == 400
    assert translated.body == response.content
    assert orjson.loads(translated.body)["error"]["type"] == "invalid_request_error"


async def test_an_error_event_mid_stream_passes_through(vertex_emulator):
    vertex_emulator.inject_fault("error_event_mid_stream")

    _, raw, translated = await send_stream(await build(vertex_emulator, {**BODY, "stream": True}))

    assert translated == raw
    tap = SSETap()
    tap.feed(translated)
    assert tap.error == {"type": "overloaded_error", "message": "Overloaded"}


def test_a_list_wrapped_google_error_is_unwrapped():
    body = b'[{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED"}}]'

    translated = VertexAdapter().translate_response(
        status=429, headers=[], body=body, requested_model="claude-opus-5"
    )

    assert translated.status == 429
    assert orjson.loads(translated.body) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Resource exhausted"},
    }


def test_a_non_json_error_page_becomes_an_api_error():
    translated = VertexAdapter().translate_response(
        status=502, headers=[], body=b"<html>502</html>", requested_model="claude-opus-5"
    )

    assert translated.status == 500
    assert orjson.loads(translated.body)["error"] == {
        "type": "api_error",
        "message": "Google Vertex AI answered HTTP 502.",
    }
