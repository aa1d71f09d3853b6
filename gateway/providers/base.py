"""The small interface every provider adapter implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.snapshot import ProviderSpec, UpstreamKeySpec


@dataclass(frozen=True)
class UpstreamRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes


class ProviderAdapter(Protocol):
    def build_request(
        self,
        *,
        provider: ProviderSpec,
        upstream_key: UpstreamKeySpec,
        endpoint: str,
        client_headers: list[tuple[str, str]],
        body: bytes,
    ) -> UpstreamRequest:
        """The upstream HTTP request for an (already prepared) Anthropic-format body."""
        ...
