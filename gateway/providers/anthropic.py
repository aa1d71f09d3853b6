"""Anthropic and any Anthropic-compatible endpoint: the body and headers pass through."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.providers.base import TranslatedResponse, UpstreamRequest
from gateway.snapshot import ProviderSpec, UpstreamKeySpec


class AnthropicAdapter:
    passthrough = True

    async def build_request(
        self,
        *,
        provider: ProviderSpec,
        upstream_key: UpstreamKeySpec,
        endpoint: str,
        client_headers: list[tuple[str, str]],
        body: bytes,
    ) -> UpstreamRequest:
        headers = list(client_headers)
        headers.append(("x-api-key", upstream_key.secret.reveal()))
        if not any(name.lower() == "anthropic-version" for name, _ in headers):
            headers.append(("anthropic-version", "2023-06-01"))
        return UpstreamRequest(
            method="POST", url=provider.base_url + endpoint, headers=headers, body=body
        )

    def translate_response(
        self, *, status: int, headers: list[tuple[bytes, bytes]], body: bytes, requested_model: str
    ) -> TranslatedResponse:
        return TranslatedResponse(status=status, headers=headers, body=body)

    async def translate_stream(
        self, chunks: AsyncIterator[bytes], *, requested_model: str
    ) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk
