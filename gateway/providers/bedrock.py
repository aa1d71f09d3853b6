"""Amazon Bedrock InvokeModel (anthropic-protocol.md §9.1): Anthropic's body, model in the URL.

Configuration:
- `Provider.options`: `region` (required, e.g. `us-east-1`); optional `model_map`
  `{"<anthropic id>": "<bedrock model id, inference profile id or ARN>"}`; optional
  `inference_profile` (`us`, `eu`, `apac`, `global`, ...) prefixed to the ids this module maps
  itself (newer models are only served through inference profiles).
- `Provider.base_url`: `https://bedrock-runtime.{region}.amazonaws.com` (the default when blank).
- Upstream key secret: JSON `{"access_key_id": "...", "secret_access_key": "...",
  "session_token": "..."}` (`session_token` only for temporary credentials). Every request is
  signed with SigV4 (service `bedrock`, the provider's region) over the exact body bytes.

Requests:
- `/v1/messages` → `POST /model/{id}/invoke`, or `/invoke-with-response-stream` when
  `stream` is true. The body loses `model` and `stream`, gains
  `"anthropic_version": "bedrock-2023-05-31"`, and the client's `anthropic-beta` header
  values move into the body's `anthropic_beta` list.
- `/v1/messages/count_tokens` → `POST /model/{id}/count-tokens` with
  `{"input": {"invokeModel": {"body": "<base64 of the invoke body>"}}}` (with `max_tokens: 1`
  when the client sent none, as an InvokeModel body needs one), answered
  `{"inputTokens": N}` and translated to `{"input_tokens": N}`. The protocol reference marks
  this body [UNVERIFIED]; its shape here is botocore's own bedrock-runtime service model
  (CountTokens). CountTokens takes a foundation model id, so an inference profile prefix is
  dropped; a model Bedrock cannot count for answers 404 `not_found_error`, which makes
  Claude Code fall back to its own estimate.

Responses: success bodies are Anthropic's JSON and pass untouched. Errors are AWS-shaped
(`x-amzn-ErrorType` header, `{"message": ...}` body) and become Anthropic error JSON with
the matching status. Streams are AWS event streams, re-framed to Anthropic SSE event by
event; exception frames become an SSE `error` event and end the stream.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.errors import error_event
from gateway.providers.aws_eventstream import (
    Chunk,
    EventStreamDecodeError,
    StreamException,
    decoded_batches,
)
from gateway.providers.base import TranslatedResponse, UpstreamError, UpstreamRequest
from gateway.snapshot import ProviderSpec, UpstreamKeySpec

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
BEDROCK_VERSION = "bedrock-2023-05-31"
SIGNING_SERVICE = "bedrock"
EVENT_STREAM_TYPE = "application/vnd.amazon.eventstream"
JSON_TYPE = "application/json"
INVOCATION_METRICS = "amazon-bedrock-invocationMetrics"

# anthropic-protocol.md §9.1; the dateless aliases of dated models resolve first.
MODEL_IDS = {
    "claude-opus-4-6": "anthropic.claude-opus-4-6-v1",
    "claude-sonnet-4-6": "anthropic.claude-sonnet-4-6",
    "claude-sonnet-4-5-20250929": "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-opus-4-5-20251101": "anthropic.claude-opus-4-5-20251101-v1:0",
    "claude-haiku-4-5-20251001": "anthropic.claude-haiku-4-5-20251001-v1:0",
    "claude-opus-4-1-20250805": "anthropic.claude-opus-4-1-20250805-v1:0",
    "claude-sonnet-4-20250514": "anthropic.claude-sonnet-4-20250514-v1:0",
    "claude-3-5-haiku-20241022": "anthropic.claude-3-5-haiku-20241022-v1:0",
}
DATED_ALIASES = {
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-opus-4-5": "claude-opus-4-5-20251101",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
}
BEDROCK_ID = re.compile(r"^(?:arn:aws[a-z-]*:bedrock:|(?:[a-z]{2,8}\.)?anthropic\.)")
PROFILE_PREFIX = re.compile(r"^[a-z]{2,8}\.(?=anthropic\.)")
DATED_ID = re.compile(r"-\d{8}$")

# AWS error type → (Anthropic status, Anthropic error type). Keys are lower-cased: HTTP
# errors name them `ThrottlingException`, stream exception frames `throttlingException`.
AWS_ERRORS: dict[str, tuple[int, str]] = {
    "validationexception": (400, "invalid_request_error"),
    "servicequotaexceededexception": (400, "invalid_request_error"),
    "unrecognizedclientexception": (401, "authentication_error"),
    "invalidsignatureexception": (401, "authentication_error"),
    "incompletesignatureexception": (401, "authentication_error"),
    "missingauthenticationtokenexception": (401, "authentication_error"),
    "expiredtokenexception": (401, "authentication_error"),
    "accessdeniedexception": (403, "permission_error"),
    "resourcenotfoundexception": (404, "not_found_error"),
    "throttlingexception": (429, "rate_limit_error"),
    "internalserverexception": (500, "api_error"),
    "modelerrorexception": (500, "api_error"),
    "modelstreamerrorexception": (500, "api_error"),
    "modeltimeoutexception": (504, "timeout_error"),
    "serviceunavailableexception": (529, "overloaded_error"),
    "modelnotreadyexception": (529, "overloaded_error"),
}
STATUS_ERRORS: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    408: (504, "timeout_error"),
    413: (413, "request_too_large"),
    429: (429, "rate_limit_error"),
    503: (529, "overloaded_error"),
    504: (504, "timeout_error"),
}
COUNT_TOKENS_UNSUPPORTED = "counting tokens"


def bedrock_model_id(model: str, options: dict[str, Any]) -> str:
    """The Bedrock model id (or ARN) for a model id as the client or route names it."""
    model_map = options.get("model_map") or {}
    if isinstance(model_map, dict) and isinstance(model_map.get(model), str):
        return model_map[model]
    if BEDROCK_ID.match(model):
        return model
    dated = DATED_ALIASES.get(model, model)
    model_id = MODEL_IDS.get(dated)
    if model_id is None:
        model_id = f"anthropic.{dated}-v1:0" if DATED_ID.search(dated) else f"anthropic.{dated}"
    profile = options.get("inference_profile")
    if isinstance(profile, str) and profile:
        model_id = f"{profile}.{model_id}"
    return model_id


def foundation_model_id(model_id: str) -> str:
    """CountTokens wants the foundation model, not an inference profile naming it."""
    if model_id.startswith("arn:") and ":inference-profile/" in model_id:
        model_id = model_id.rsplit("/", 1)[1]
    return PROFILE_PREFIX.sub("", model_id, count=1)


def aws_credentials(upstream_key: UpstreamKeySpec) -> Credentials:
    try:
        document = orjson.loads(upstream_key.secret.reveal())
    except orjson.JSONDecodeError:
        document = None
    fields = ("access_key_id", "secret_access_key")
    if not isinstance(document, dict) or not all(
        isinstance(document.get(name), str) and document[name] for name in fields
    ):
        raise UpstreamError(
            "api_error",
            f"Upstream key '{upstream_key.label}' is not Bedrock credentials: expected JSON "
            '{"access_key_id", "secret_access_key", "session_token"?}.',
            status=500,
            retryable=False,
        )
    session_token = document.get("session_token")
    return Credentials(
        document["access_key_id"],
        document["secret_access_key"],
        session_token if isinstance(session_token, str) and session_token else None,
    )


def signed_headers(
    *,
    method: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    credentials: Credentials,
    region: str,
) -> list[tuple[str, str]]:
    """`headers` plus `X-Amz-Date`, `X-Amz-Security-Token` and the SigV4 `Authorization`."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(credentials, SIGNING_SERVICE, region).add_auth(request)
    return [(name, str(value)) for name, value in request.headers.items()]


def _beta_values(client_headers: list[tuple[str, str]]) -> list[str]:
    values: list[str] = []
    for name, value in client_headers:
        if name.lower() == "anthropic-beta":
            values.extend(part.strip() for part in value.split(",") if part.strip())
    return values


def invoke_body(payload: dict[str, Any], client_headers: list[tuple[str, str]]) -> dict[str, Any]:
    """The InvokeModel body: the Messages body without `model`/`stream`, plus version and betas."""
    body = {key: value for key, value in payload.items() if key not in ("model", "stream")}
    betas = _beta_values(client_headers)
    if betas:
        present = body.get("anthropic_beta")
        merged = list(present) if isinstance(present, list) else []
        merged.extend(beta for beta in betas if beta not in merged)
        body["anthropic_beta"] = merged
    body.setdefault("anthropic_version", BEDROCK_VERSION)
    return body


def _region(provider: ProviderSpec) -> str:
    region = provider.options.get("region")
    if not isinstance(region, str) or not region:
        raise UpstreamError(
            "api_error",
            f"Provider '{provider.name}' (bedrock) needs options.region, e.g. \"us-east-1\".",
            status=500,
            retryable=False,
        )
    return region


def _payload(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
        raise UpstreamError(
            "invalid_request_error",
            "Request body must be a JSON object with a model.",
            status=400,
            retryable=False,
        )
    return payload


class BedrockAdapter:
    passthrough = False

    async def build_request(
        self,
        *,
        provider: ProviderSpec,
        upstream_key: UpstreamKeySpec,
        endpoint: str,
        client_headers: list[tuple[str, str]],
        body: bytes,
    ) -> UpstreamRequest:
        region = _region(provider)
        credentials = aws_credentials(upstream_key)
        payload = _payload(body)
        model_id = bedrock_model_id(payload["model"], provider.options)
        base_url = provider.base_url or f"https://bedrock-runtime.{region}.amazonaws.com"
        invoke = invoke_body(payload, client_headers)
        if endpoint == MESSAGES:
            is_stream = payload.get("stream") is True
            action = "invoke-with-response-stream" if is_stream else "invoke"
            accept = EVENT_STREAM_TYPE if is_stream else JSON_TYPE
            upstream_body = orjson.dumps(invoke)
        elif endpoint == COUNT_TOKENS:
            model_id = foundation_model_id(model_id)
            action, accept = "count-tokens", JSON_TYPE
            # A count_tokens body has no max_tokens, which an InvokeModel body must carry.
            invoke.setdefault("max_tokens", 1)
            encoded = base64.b64encode(orjson.dumps(invoke)).decode("ascii")
            upstream_body = orjson.dumps({"input": {"invokeModel": {"body": encoded}}})
        else:
            raise UpstreamError(
                "not_found_error",
                f"{endpoint} is not available on Amazon Bedrock.",
                status=404,
                retryable=False,
            )
        url = f"{base_url}/model/{quote(model_id, safe=':')}/{action}"
        headers = signed_headers(
            method="POST",
            url=url,
            body=upstream_body,
            headers={"content-type": JSON_TYPE, "accept": accept},
            credentials=credentials,
            region=region,
        )
        return UpstreamRequest(method="POST", url=url, headers=headers, body=upstream_body)

    def translate_response(
        self, *, status: int, headers: list[tuple[bytes, bytes]], body: bytes, requested_model: str
    ) -> TranslatedResponse:
        document = _json(body)
        if status < 400:
            if isinstance(document, dict) and "inputTokens" in document and "type" not in document:
                return _json_response(status, headers, {"input_tokens": document["inputTokens"]})
            return TranslatedResponse(status=status, headers=headers, body=body)
        if isinstance(document, dict) and document.get("type") == "error":
            return TranslatedResponse(status=status, headers=headers, body=body)
        aws_type = _error_type(headers, document)
        message = _error_message(document) or f"Amazon Bedrock answered HTTP {status}."
        anthropic_status, error_type = AWS_ERRORS.get(aws_type.lower()) or _by_status(status)
        if error_type == "invalid_request_error" and COUNT_TOKENS_UNSUPPORTED in message:
            anthropic_status, error_type = 404, "not_found_error"
        error: dict[str, Any] = {
            "type": "error",
            "error": {"type": error_type, "message": message},
        }
        request_id = _header(headers, b"x-amzn-requestid")
        if request_id:
            error["request_id"] = request_id
        return _json_response(anthropic_status, headers, error)

    async def translate_stream(
        self, chunks: AsyncIterator[bytes], *, requested_model: str
    ) -> AsyncIterator[bytes]:
        try:
            async for batch in decoded_batches(chunks):
                frames: list[bytes] = []
                for item in batch:
                    if isinstance(item, Chunk):
                        frames.append(sse_frame(item.data))
                        continue
                    frames.append(_exception_event(item))
                    yield b"".join(frames)
                    return
                yield b"".join(frames)
        except EventStreamDecodeError as error:
            yield error_event("api_error", f"Amazon Bedrock's event stream is corrupt ({error}).")


def sse_frame(event_json: bytes) -> bytes:
    """One Anthropic SSE event for one decoded Bedrock chunk, named after its `type`."""
    try:
        event = orjson.loads(event_json)
    except orjson.JSONDecodeError:
        return error_event("api_error", "Amazon Bedrock sent a chunk that is not JSON.")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return error_event("api_error", "Amazon Bedrock sent a chunk without an event type.")
    if INVOCATION_METRICS in event:
        del event[INVOCATION_METRICS]
        event_json = orjson.dumps(event)
    elif b"\n" in event_json or b"\r" in event_json:
        event_json = orjson.dumps(event)
    return b"event: " + event["type"].encode() + b"\ndata: " + event_json + b"\n\n"


def _exception_event(item: StreamException) -> bytes:
    _, error_type = AWS_ERRORS.get(item.exception_type.lower(), (500, "api_error"))
    message = item.message or f"Amazon Bedrock stream failed: {item.exception_type}."
    return error_event(error_type, message)


def _by_status(status: int) -> tuple[int, str]:
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    return (500, "api_error") if status >= 500 else (status, "invalid_request_error")


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _error_type(headers: list[tuple[bytes, bytes]], document: Any) -> str:
    """`ThrottlingException` from `x-amzn-ErrorType: ThrottlingException:http://...` or `__type`."""
    raw = _header(headers, b"x-amzn-errortype")
    if not raw and isinstance(document, dict):
        raw = str(document.get("__type") or document.get("code") or "")
    return raw.split(":", 1)[0].rsplit("#", 1)[-1].strip()


def _error_message(document: Any) -> str:
    if isinstance(document, dict):
        message = document.get("message") or document.get("Message")
        if isinstance(message, str):
            return message
    return ""


def _json_response(
    status: int, headers: list[tuple[bytes, bytes]], document: dict[str, Any]
) -> TranslatedResponse:
    kept = [
        (name, value)
        for name, value in headers
        if name.lower() not in (b"content-type", b"content-length", b"x-amzn-errortype")
    ]
    kept.append((b"content-type", b"application/json"))
    return TranslatedResponse(status=status, headers=kept, body=orjson.dumps(document))
