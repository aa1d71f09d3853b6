"""Send a request upstream, failing over across keys and targets before the first byte.

Retried on another key, then the route's next target: connection errors, timeouts, 429,
529 and 5xx. Anything else (including 4xx) is the answer. When every attempt fails, the
last upstream error response is relayed as it is, so the client sees the provider's own
status, headers and body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from gateway.errors import GatewayError
from gateway.pool import key_order
from gateway.providers import adapter_for
from gateway.proxy.exchange import Exchange
from gateway.routing import RouteSpec
from gateway.snapshot import GatewaySnapshot

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})
MAX_ATTEMPTS = 6


@dataclass
class UpstreamResponse:
    response: httpx.Response

    @property
    def is_event_stream(self) -> bool:
        return self.response.headers.get("content-type", "").startswith("text/event-stream")


def _body_for_target(
    payload: dict[str, Any], body: bytes, model: str, upstream_model: str
) -> bytes:
    """The client's bytes, unless the target's model id differs (an alias): then re-serialised."""
    if not upstream_model or upstream_model == model:
        return body
    return orjson.dumps({**payload, "model": upstream_model})


async def forward(
    *,
    client: httpx.AsyncClient,
    exchange: Exchange,
    snapshot: GatewaySnapshot,
    route: RouteSpec,
    endpoint: str,
    model: str,
    payload: dict[str, Any],
    body: bytes,
    client_headers: list[tuple[str, str]],
) -> UpstreamResponse:
    last_response: httpx.Response | None = None
    last_problem = GatewayError("api_error", f"Route '{route.name}' has no usable target.")
    session_id = exchange.row.get("session_id", "")
    for target in route.targets:
        provider = snapshot.providers.get(target.provider_id)
        if provider is None or not provider.is_enabled:
            last_problem = GatewayError(
                "api_error", f"Provider '{target.provider_name}' is disabled."
            )
            continue
        keys = key_order(snapshot.upstream_keys.get(provider.provider_id, ()), session_id)
        if not keys:
            last_problem = GatewayError(
                "api_error", f"Provider '{provider.name}' has no healthy upstream key."
            )
            continue
        adapter = adapter_for(provider.kind)
        target_body = _body_for_target(payload, body, model, target.upstream_model)
        timeout = httpx.Timeout(provider.read_timeout_s, connect=provider.connect_timeout_s)
        for upstream_key in keys:
            if exchange.row["attempts"] >= MAX_ATTEMPTS:
                break
            exchange.row["attempts"] += 1
            exchange.row["provider_id"] = provider.provider_id
            exchange.row["upstream_key_id"] = upstream_key.upstream_key_id
            exchange.row["model_served"] = target.upstream_model or model
            upstream_request = adapter.build_request(
                provider=provider,
                upstream_key=upstream_key,
                endpoint=endpoint,
                client_headers=client_headers,
                body=target_body,
            )
            request = client.build_request(
                upstream_request.method,
                upstream_request.url,
                headers=upstream_request.headers,
                content=upstream_request.body,
                timeout=timeout,
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.TimeoutException:
                last_problem = GatewayError(
                    "timeout_error", f"Upstream provider '{provider.name}' did not answer in time."
                )
                continue
            except httpx.TransportError as error:
                last_problem = GatewayError(
                    "api_error",
                    f"Upstream provider '{provider.name}' is unreachable ({type(error).__name__}).",
                )
                continue
            exchange.row["upstream_request_id"] = response.headers.get("request-id", "")[:100]
            if response.status_code in RETRYABLE_STATUS:
                await response.aread()
                await response.aclose()
                last_response = response
                continue
            return UpstreamResponse(response)
    if last_response is not None:
        return UpstreamResponse(last_response)
    raise last_problem
