"""Send a request upstream, failing over across keys and targets before the first byte.

Retried on another key, then the route's next target: connection errors, timeouts, 429,
529 and 5xx. A 429 also rests that key for its retry-after; a 401/403 takes the key out of
the pool (and the database marks it unhealthy until a probe lets it back). Anything else is
the answer. Attempts are bounded in number and time. When every key is resting the client
gets a 429 with the soonest retry-after; when attempts ran out on other failures the last
upstream answer is relayed as it is, so the client sees the provider's own error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from asgiref.sync import sync_to_async
from django.db import DatabaseError

from accounts.contracts import KeyContext
from gateway.caching import inject_cache_markers, resolve_cache_policy
from gateway.errors import GatewayError
from gateway.model_compat import adapt_for_model
from gateway.pool import UNKNOWN, KeyState, cooldown_seconds, key_order, observed_state
from gateway.pool_state import PoolState, pool_state_for_settings
from gateway.providers import adapter_for
from gateway.providers.base import ProviderAdapter, UpstreamError
from gateway.proxy.exchange import Exchange
from gateway.proxy.upstream_client import send_upstream
from gateway.routing import RouteSpec
from gateway.snapshot import GatewaySnapshot
from gateway.upstream_health import upstream_key_mark_unhealthy

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})
AUTH_FAILURE_STATUS = frozenset({401, 403})
MAX_ATTEMPTS = 6
ATTEMPT_DEADLINE_S = 60.0

_pool_state: PoolState | None = None
logger = logging.getLogger(__name__)


def pool_state() -> PoolState:
    global _pool_state
    if _pool_state is None:
        _pool_state = pool_state_for_settings()
    return _pool_state


@dataclass
class UpstreamResponse:
    response: httpx.Response
    adapter: ProviderAdapter
    # The response's headers read once, names lower-cased (httpx's lookups rescan them all).
    headers: dict[str, str]

    @property
    def is_stream(self) -> bool:
        """A successful streamed answer: Anthropic SSE, or a provider stream the adapter translates."""
        if not self.adapter.passthrough:
            return self.response.status_code == 200
        return self.headers.get("content-type", "").startswith("text/event-stream")

    @property
    def is_content_encoded(self) -> bool:
        return "content-encoding" in self.headers


def prepare_body(
    *,
    payload: dict[str, Any],
    body: bytes,
    model: str,
    upstream_model: str,
    endpoint: str,
    route: RouteSpec,
    key: KeyContext,
) -> tuple[bytes, int]:
    """The bytes to send to one target and how many cache markers the gateway added.

    The client's bytes go out untouched unless something changed: an alias (the model id,
    plus fields that model would refuse) or cache markers added by the cache policy.
    """
    prepared = payload
    served_model = upstream_model or model
    if served_model != model:
        prepared = adapt_for_model(payload, served_model)
    markers = 0
    if endpoint == "/v1/messages":
        policy = resolve_cache_policy(
            route.cache_policy,
            route.cache_ttl,
            key.cost_center_cache_policy,
            key.cost_center_cache_ttl,
            key.key_cache_policy,
            key.key_cache_ttl,
        )
        if policy.policy != "off":
            injection = inject_cache_markers(
                prepared, policy=policy.policy, ttl=policy.ttl, model=served_model
            )
            if injection.payload is not None:
                prepared, markers = injection.payload, injection.markers_added
    if prepared is payload:
        return body, markers
    try:
        return orjson.dumps(prepared), markers
    except orjson.JSONEncodeError:  # orjson reads 1024 levels of nesting but writes only 254
        if served_model == model:
            return body, 0  # cache markers are an optimisation: send the client's bytes instead
        raise GatewayError(
            "invalid_request_error",
            "Request body nests JSON too deeply for the gateway to rewrite it for this route.",
        ) from None


async def _take_out_of_pool(upstream_key_id: int, status: int) -> None:
    """Mark the key unhealthy in the database (rare: only when a provider refuses a key),
    awaited so the admin shows it at once; a failed write is logged, never fatal."""
    reason = f"Provider answered {status} at {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}"
    try:
        await sync_to_async(upstream_key_mark_unhealthy)(
            upstream_key_id=upstream_key_id, reason=reason
        )
    except DatabaseError:
        logger.warning("Could not mark upstream key %s unhealthy", upstream_key_id, exc_info=True)


class UpstreamUnavailable(GatewayError):
    """Every attempt upstream failed (refused, reset, timed out, rate limited, overloaded)
    and no upstream answer is left to relay: recorded as an upstream error."""


def _unreachable(provider_name: str, error: httpx.TransportError) -> GatewayError:
    return GatewayError(
        "api_error",
        f"Upstream provider '{provider_name}' is unreachable ({type(error).__name__}).",
    )


def _pool_exhausted(soonest_free_at: float, now: float) -> GatewayError:
    retry_after = max(1, math.ceil(soonest_free_at - now))
    return GatewayError(
        "rate_limit_error",
        f"Every upstream key is rate limited; retry in {retry_after} s.",
        headers={"retry-after": str(retry_after)},
    )


async def forward(
    *,
    client: httpx.AsyncClient,
    exchange: Exchange,
    snapshot: GatewaySnapshot,
    route: RouteSpec,
    key: KeyContext,
    endpoint: str,
    model: str,
    payload: dict[str, Any],
    body: bytes,
    client_headers: list[tuple[str, str]],
) -> UpstreamResponse:
    state_store = pool_state()
    deadline = time.monotonic() + ATTEMPT_DEADLINE_S
    last_response: UpstreamResponse | None = None
    last_problem: GatewayError | None = None  # built only when a target fails
    soonest_free_at: float | None = None
    only_rate_limited = True
    session_id: str = exchange.row.get("session_id", "")
    for target in route.targets:
        provider = snapshot.providers.get(target.provider_id)
        if provider is None or not provider.is_enabled:
            last_problem = GatewayError(
                "api_error", f"Provider '{target.provider_name}' is disabled."
            )
            only_rate_limited = False
            continue
        pool = snapshot.upstream_keys.get(provider.provider_id, ())
        states, affinity = await state_store.load((k.upstream_key_id for k in pool), session_id)
        now = time.time()
        order = key_order(pool, states, affinity, now)
        if order.soonest_free_at is not None:
            soonest_free_at = min(soonest_free_at or order.soonest_free_at, order.soonest_free_at)
        if not order.keys and order.soonest_free_at is None:
            last_problem = GatewayError(
                "api_error", f"Provider '{provider.name}' has no healthy upstream key."
            )
            only_rate_limited = False
            continue
        adapter = adapter_for(provider.kind)
        target_body, markers = prepare_body(
            payload=payload,
            body=body,
            model=model,
            upstream_model=target.upstream_model,
            endpoint=endpoint,
            route=route,
            key=key,
        )
        timeout = httpx.Timeout(provider.read_timeout_s, connect=provider.connect_timeout_s)
        for upstream_key in order.keys:
            if exchange.row["attempts"] >= MAX_ATTEMPTS or time.monotonic() > deadline:
                break
            key_id = upstream_key.upstream_key_id
            exchange.row["attempts"] += 1
            exchange.row["provider_id"] = provider.provider_id
            exchange.row["upstream_key_id"] = key_id
            exchange.row["model_served"] = target.upstream_model or model
            exchange.row["cache_markers_injected"] = markers
            try:
                upstream_request = await adapter.build_request(
                    provider=provider,
                    upstream_key=upstream_key,
                    endpoint=endpoint,
                    client_headers=client_headers,
                    body=target_body,
                )
            except UpstreamError as error:
                if not error.retryable:
                    raise GatewayError(
                        error.error_type, error.message, status=error.status
                    ) from None
                only_rate_limited = False
                last_problem = GatewayError(error.error_type, error.message, status=error.status)
                continue
            try:
                response = await send_upstream(
                    client,
                    method=upstream_request.method,
                    url=upstream_request.url,
                    headers=upstream_request.headers,
                    content=upstream_request.body,
                    timeouts=timeout,
                )
            except httpx.TimeoutException:
                only_rate_limited = False
                last_problem = GatewayError(
                    "timeout_error", f"Upstream provider '{provider.name}' did not answer in time."
                )
                continue
            except httpx.TransportError as error:
                only_rate_limited = False
                last_problem = _unreachable(provider.name, error)
                continue
            try:
                status = response.status_code
                # One pass over the headers: httpx's lookups rescan them all on every get.
                answered = {
                    name.decode("latin-1").lower(): value.decode("latin-1")
                    for name, value in response.headers.raw
                }
                exchange.row["upstream_request_id"] = (
                    answered.get("request-id")
                    or answered.get("x-amzn-requestid")
                    or answered.get("x-request-id")
                    or ""
                )[:100]
                state = observed_state(answered, states.get(key_id, UNKNOWN))
                if status == 429:
                    rest_until = time.time() + cooldown_seconds(answered, time.time())
                    state = dataclasses.replace(state, cooldown_until=rest_until)
                    soonest_free_at = min(soonest_free_at or rest_until, rest_until)
                if state != states.get(key_id):
                    await state_store.save(key_id, state)
                if status in AUTH_FAILURE_STATUS:
                    # The provider refused the gateway's key, not the client's: never relay
                    # that as the client's own 401/403.
                    await _take_out_of_pool(key_id, status)
                    await state_store.save(key_id, KeyState(unhealthy_reason=f"upstream {status}"))
                    only_rate_limited = False
                    await response.aclose()
                    last_problem = GatewayError(
                        "api_error",
                        f"Provider '{provider.name}' rejected the gateway's upstream key.",
                    )
                    continue
                if status in RETRYABLE_STATUS:
                    only_rate_limited = only_rate_limited and status == 429
                    try:
                        await response.aread()
                    except httpx.TransportError as error:
                        # The error body never arrived whole: nothing to relay from this one.
                        last_problem = _unreachable(provider.name, error)
                    else:
                        last_response = UpstreamResponse(response, adapter, answered)
                    await response.aclose()
                    continue
                if session_id and affinity != key_id:
                    await state_store.set_affinity(session_id, key_id)
                return UpstreamResponse(response, adapter, answered)
            except BaseException:
                # Cancelled (the client hung up) or failed while judging the answer: the
                # response must not keep its connection.
                await asyncio.shield(response.aclose())
                raise
    if only_rate_limited and soonest_free_at is not None:
        problem = _pool_exhausted(soonest_free_at, time.time())
    elif last_response is not None:
        return last_response
    else:
        problem = last_problem or GatewayError(
            "api_error", f"Route '{route.name}' has no usable target."
        )
    if exchange.row["attempts"]:
        # Upstream was tried and failed: the provider's fault, not a refusal by the gateway.
        raise UpstreamUnavailable(
            problem.error_type, problem.message, status=problem.status, headers=problem.headers
        )
    raise problem
