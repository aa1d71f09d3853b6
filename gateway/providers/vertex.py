"""Google Vertex AI (anthropic-protocol.md §9.3): Anthropic's body and SSE, Google's URLs and auth.

Configuration:
- `Provider.options`: `project` (falls back to the service account's `project_id`),
  `region` (default `global`), optional `model_map` `{"<anthropic id>": "<vertex id>"}`.
- `Provider.base_url`: the API root including `/v1`, e.g. `https://aiplatform.googleapis.com/v1`
  (when blank: the §9.3 default for the region; a URL without a path gets `/v1`).
- Upstream key secret: a service-account key JSON as Google issues it (`type`,
  `client_email`, `private_key`, `token_uri`, ...). Access tokens (scope cloud-platform) are
  fetched by google-auth in a worker thread, reused until 5 minutes before they expire,
  and refreshed by one coroutine at a time per key while the others wait for its result.

Requests: `/v1/messages` → `{base}/projects/{p}/locations/{r}/publishers/anthropic/models/
{model}:rawPredict` (`:streamRawPredict` when `stream` is true, which stays in the body);
`/v1/messages/count_tokens` → `.../models/count-tokens:rawPredict` with the model in the body.
The body gains `"anthropic_version": "vertex-2023-10-16"`; `anthropic-*` headers are forwarded.
Dated ids become Vertex ids: `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5@20250929`.

Responses: Vertex answers in Anthropic's format, so successful bodies and streams are relayed
byte for byte (`translate_stream` yields the chunks it gets). `passthrough` is False only so
that error bodies reach `translate_response`: Google-style errors
`{"error": {"code", "message", "status"}}` become Anthropic's error JSON with the matching
status; Anthropic-shaped errors pass untouched.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import requests
from google.auth import exceptions as google_exceptions
from google.auth.transport.requests import Request as GoogleAuthRequest
from google.oauth2 import service_account

from gateway.providers.base import TranslatedResponse, UpstreamError, UpstreamRequest
from gateway.snapshot import ProviderSpec, UpstreamKeySpec

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
VERTEX_VERSION = "vertex-2023-10-16"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
REFRESH_MARGIN_S = 300.0
TOKEN_READ_TIMEOUT_S = 30.0
DATED_ID = re.compile(r"^(?P<name>.+)-(?P<date>\d{8})$")
SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")

GOOGLE_STATUSES: dict[str, tuple[int, str]] = {
    "INVALID_ARGUMENT": (400, "invalid_request_error"),
    "FAILED_PRECONDITION": (400, "invalid_request_error"),
    "OUT_OF_RANGE": (400, "invalid_request_error"),
    "UNAUTHENTICATED": (401, "authentication_error"),
    "PERMISSION_DENIED": (403, "permission_error"),
    "NOT_FOUND": (404, "not_found_error"),
    "ABORTED": (409, "conflict_error"),
    "ALREADY_EXISTS": (409, "conflict_error"),
    "RESOURCE_EXHAUSTED": (429, "rate_limit_error"),
    "CANCELLED": (500, "api_error"),
    "UNKNOWN": (500, "api_error"),
    "INTERNAL": (500, "api_error"),
    "DATA_LOSS": (500, "api_error"),
    "UNIMPLEMENTED": (404, "not_found_error"),
    "UNAVAILABLE": (529, "overloaded_error"),
    "DEADLINE_EXCEEDED": (504, "timeout_error"),
}
STATUS_ERRORS: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    408: (504, "timeout_error"),
    409: (409, "conflict_error"),
    413: (413, "request_too_large"),
    429: (429, "rate_limit_error"),
    503: (529, "overloaded_error"),
    504: (504, "timeout_error"),
}


def vertex_model_id(model: str, options: dict[str, Any]) -> str:
    model_map = options.get("model_map") or {}
    if isinstance(model_map, dict) and isinstance(model_map.get(model), str):
        return model_map[model]
    if "@" in model:
        return model
    dated = DATED_ID.match(model)
    return f"{dated['name']}@{dated['date']}" if dated else model


def default_base_url(region: str) -> str:
    if region == "global":
        return "https://aiplatform.googleapis.com/v1"
    if region in ("us", "eu"):
        return f"https://aiplatform.{region}.rep.googleapis.com/v1"
    return f"https://{region}-aiplatform.googleapis.com/v1"


def api_root(provider: ProviderSpec, region: str) -> str:
    if not provider.base_url:
        return default_base_url(region)
    if urlsplit(provider.base_url).path in ("", "/"):
        return provider.base_url.rstrip("/") + "/v1"
    return provider.base_url


def service_account_info(upstream_key: UpstreamKeySpec) -> dict[str, Any]:
    try:
        info = orjson.loads(upstream_key.secret.reveal())
    except orjson.JSONDecodeError:
        info = None
    if not isinstance(info, dict) or not all(
        isinstance(info.get(name), str) and info[name] for name in SERVICE_ACCOUNT_FIELDS
    ):
        raise UpstreamError(
            "api_error",
            f"Upstream key '{upstream_key.label}' is not a Google service-account key: expected "
            "its JSON with client_email, private_key and token_uri.",
            status=500,
            retryable=False,
        )
    return info


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float


class _TokenEndpoint(GoogleAuthRequest):
    """google-auth's requests transport with our timeout and without proxy environment."""

    def __init__(self, session: requests.Session, timeout: tuple[float, float]) -> None:
        super().__init__(session)
        self._timeout = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        return super().__call__(url, method, body, headers, timeout=self._timeout, **kwargs)


class AccessTokens:
    """OAuth2 access tokens per service-account key, cached and refreshed one at a time."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[str, AccessToken] = {}
        self._credentials: dict[str, service_account.Credentials] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _is_fresh(self, token: AccessToken | None) -> bool:
        return token is not None and self._clock() < token.expires_at - REFRESH_MARGIN_S

    async def token(
        self, upstream_key: UpstreamKeySpec, info: dict[str, Any], *, connect_timeout_s: float
    ) -> str:
        fingerprint = hashlib.sha256(upstream_key.secret.reveal().encode()).hexdigest()
        cached = self._tokens.get(fingerprint)
        if cached is not None and self._is_fresh(cached):
            return cached.value
        lock = self._locks.setdefault(fingerprint, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(fingerprint)
            if cached is not None and self._is_fresh(cached):
                return cached.value
            credentials = self._credentials.get(fingerprint)
            if credentials is None:
                credentials = _credentials(upstream_key, info)
                self._credentials[fingerprint] = credentials
            fresh = await asyncio.to_thread(
                _refresh, credentials, (connect_timeout_s, TOKEN_READ_TIMEOUT_S)
            )
            self._tokens[fingerprint] = fresh
            return fresh.value


def _credentials(
    upstream_key: UpstreamKeySpec, info: dict[str, Any]
) -> service_account.Credentials:
    try:
        return service_account.Credentials.from_service_account_info(
            info, scopes=[CLOUD_PLATFORM_SCOPE]
        )
    except (ValueError, TypeError, KeyError):
        raise UpstreamError(
            "api_error",
            f"Upstream key '{upstream_key.label}': its service-account private key cannot be loaded.",
            status=500,
            retryable=False,
        ) from None


def _refresh(credentials: service_account.Credentials, timeout: tuple[float, float]) -> AccessToken:
    with requests.Session() as session:
        session.trust_env = False
        try:
            credentials.refresh(_TokenEndpoint(session, timeout))
        except google_exceptions.RefreshError as error:
            reason = error.args[0] if error.args else type(error).__name__
            raise UpstreamError(
                "api_error",
                f"Google refused the service account's token request: {reason}",
                status=502,
                retryable=True,
            ) from None
        except google_exceptions.TransportError as error:
            raise UpstreamError(
                "api_error",
                f"Google's token endpoint is unreachable ({type(error).__name__}).",
                status=502,
                retryable=True,
            ) from None
    expiry = credentials.expiry
    expires_at = expiry.replace(tzinfo=UTC).timestamp() if expiry else time.time()
    return AccessToken(value=str(credentials.token), expires_at=expires_at)


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


class VertexAdapter:
    passthrough = False

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.access_tokens = AccessTokens(clock)

    async def build_request(
        self,
        *,
        provider: ProviderSpec,
        upstream_key: UpstreamKeySpec,
        endpoint: str,
        client_headers: list[tuple[str, str]],
        body: bytes,
    ) -> UpstreamRequest:
        info = service_account_info(upstream_key)
        options = provider.options
        project = options.get("project") or info.get("project_id")
        if not isinstance(project, str) or not project:
            raise UpstreamError(
                "api_error",
                f"Provider '{provider.name}' (vertex) needs options.project.",
                status=500,
                retryable=False,
            )
        region = options.get("region") or "global"
        payload = _payload(body)
        model = vertex_model_id(payload["model"], options)
        models_url = (
            f"{api_root(provider, region)}/projects/{quote(project, safe='')}"
            f"/locations/{quote(region, safe='')}/publishers/anthropic/models"
        )
        if endpoint == MESSAGES:
            method = "streamRawPredict" if payload.get("stream") is True else "rawPredict"
            url = f"{models_url}/{quote(model, safe='@')}:{method}"
            upstream_payload = {key: value for key, value in payload.items() if key != "model"}
        elif endpoint == COUNT_TOKENS:
            url = f"{models_url}/count-tokens:rawPredict"
            upstream_payload = {**payload, "model": model}
        else:
            raise UpstreamError(
                "not_found_error",
                f"{endpoint} is not available on Google Vertex AI.",
                status=404,
                retryable=False,
            )
        upstream_payload.setdefault("anthropic_version", VERTEX_VERSION)
        token = await self.access_tokens.token(
            upstream_key, info, connect_timeout_s=provider.connect_timeout_s
        )
        headers = [
            (name, value) for name, value in client_headers if name.lower().startswith("anthropic-")
        ]
        headers += [("content-type", "application/json"), ("authorization", f"Bearer {token}")]
        return UpstreamRequest(
            method="POST", url=url, headers=headers, body=orjson.dumps(upstream_payload)
        )

    def translate_response(
        self, *, status: int, headers: list[tuple[bytes, bytes]], body: bytes, requested_model: str
    ) -> TranslatedResponse:
        if status < 400:
            return TranslatedResponse(status=status, headers=headers, body=body)
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = None
        if isinstance(document, dict) and document.get("type") == "error":
            return TranslatedResponse(status=status, headers=headers, body=body)
        if isinstance(document, list) and document:
            document = document[0]
        google_error = document.get("error") if isinstance(document, dict) else None
        message = f"Google Vertex AI answered HTTP {status}."
        mapped = None
        if isinstance(google_error, dict):
            message = str(google_error.get("message") or message)
            mapped = GOOGLE_STATUSES.get(str(google_error.get("status") or ""))
        anthropic_status, error_type = mapped or _by_status(status)
        error_body = orjson.dumps(
            {"type": "error", "error": {"type": error_type, "message": message}}
        )
        kept = [
            (name, value)
            for name, value in headers
            if name.lower() not in (b"content-type", b"content-length")
        ]
        kept.append((b"content-type", b"application/json"))
        return TranslatedResponse(status=anthropic_status, headers=kept, body=error_body)

    async def translate_stream(
        self, chunks: AsyncIterator[bytes], *, requested_model: str
    ) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk


def _by_status(status: int) -> tuple[int, str]:
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    return (500, "api_error") if status >= 500 else (status, "invalid_request_error")
