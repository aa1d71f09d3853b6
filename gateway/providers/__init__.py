"""Provider adapters: one module per provider kind, behind `base.ProviderAdapter`."""

from __future__ import annotations

from gateway.errors import GatewayError
from gateway.providers.anthropic import AnthropicAdapter
from gateway.providers.base import ProviderAdapter
from gateway.providers.bedrock import BedrockAdapter
from gateway.providers.openai import OpenAIAdapter
from gateway.providers.vertex import VertexAdapter

_ADAPTERS: dict[str, ProviderAdapter] = {
    "anthropic": AnthropicAdapter(),
    "bedrock": BedrockAdapter(),
    "openai": OpenAIAdapter(),
    "vertex": VertexAdapter(),
}


def adapter_for(kind: str) -> ProviderAdapter:
    try:
        return _ADAPTERS[kind]
    except KeyError:
        raise GatewayError(
            "api_error", f"Provider kind '{kind}' is not supported by this gateway version."
        ) from None
