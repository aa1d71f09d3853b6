"""The small interface every provider adapter implements.

The proxy speaks Anthropic's Messages API to clients. An adapter turns a prepared
Anthropic-format request into the provider's HTTP request, and — unless the provider already
answers in Anthropic's format (`passthrough = True`) — turns the provider's answer back:
a whole body (non-stream, errors included) or a stream of raw chunks into Anthropic SSE bytes.
Errors raise `UpstreamError(..., retryable=bool)` where the adapter itself detects them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from gateway.snapshot import ProviderSpec, UpstreamKeySpec


@dataclass(frozen=True)
class UpstreamRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class TranslatedResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class UpstreamError(Exception):
    """A provider failure the adapter recognised; `retryable` decides failover."""

    def __init__(self, error_type: str, message: str, *, status: int, retryable: bool) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status
        self.retryable = retryable


class ProviderAdapter(Protocol):
    # True when the provider's responses are already Anthropic's bytes (relayed untouched).
    passthrough: bool

    async def build_request(
        self,
        *,
        provider: ProviderSpec,
        upstream_key: UpstreamKeySpec,
        endpoint: str,
        client_headers: list[tuple[str, str]],
        body: bytes,
    ) -> UpstreamRequest:
        """The upstream HTTP request for an (already prepared) Anthropic-format body.

        `endpoint` is `/v1/messages` or `/v1/messages/count_tokens`; `body` is the JSON the
        client sent (possibly with the model aliased or cache markers added).
        """
        ...

    def translate_response(
        self, *, status: int, headers: list[tuple[bytes, bytes]], body: bytes, requested_model: str
    ) -> TranslatedResponse:
        """A whole provider response (success or error) as Anthropic would have answered."""
        ...

    def translate_stream(
        self, chunks: AsyncIterator[bytes], *, requested_model: str
    ) -> AsyncIterator[bytes]:
        """The provider's raw stream chunks as Anthropic SSE bytes (`event:` lines included)."""
        ...
