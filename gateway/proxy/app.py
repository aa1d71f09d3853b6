"""The proxy: a raw ASGI application serving /v1 and HEAD /api/hello (DESIGN.md §1).

One request: authenticate → validate → route → forward (with failover before the first
byte) → relay (streamed bytes untouched, usage read by a tap) → record (off the hot path).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import orjson
from django.conf import settings

from accounts.contracts import KeyContext
from gateway import access_log
from gateway.admission.gate import AdmissionControl
from gateway.body_log import BodyCapture
from gateway.errors import GatewayError, error_event
from gateway.models import RequestOutcome
from gateway.proxy import metrics, models_endpoint
from gateway.proxy.auth import KeyCache, presented_secret
from gateway.proxy.exchange import Exchange
from gateway.proxy.forward import UpstreamResponse, UpstreamUnavailable, forward
from gateway.proxy.headers import downstream_headers, upstream_headers
from gateway.proxy.io import (
    ClientDisconnected,
    check_request_headers,
    read_body,
    send_bytes,
    send_error,
)
from gateway.proxy.keepalive import KeepAlive
from gateway.proxy.lifecycle import in_flight
from gateway.proxy.upstream_client import build_upstream_client, read_raw
from gateway.recorder import recorder
from gateway.routing import model_allowed, select_route
from gateway.sessions import session_id_from
from gateway.snapshot import SnapshotCache
from gateway.sse import SSETap
from gateway.usage import usage_from_message

logger = logging.getLogger(__name__)

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
MODELS = "/v1/models"
TRANSLATED_STREAM_HEADERS = frozenset(
    {b"retry-after", b"retry-after-ms", b"request-id", b"x-request-id"}
)
UPSTREAM_ERROR_OUTCOME = RequestOutcome.UPSTREAM_ERROR


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class ProxyApp:
    def __init__(self) -> None:
        self.config = settings.GATEHOUSE
        self.keys = KeyCache()
        self.snapshots = SnapshotCache()
        self.admission = AdmissionControl()
        self._client: httpx.AsyncClient | None = None
        self.outcomes = metrics.OutcomeCounter()

    @property
    def client(self) -> httpx.AsyncClient:
        """One pooled keep-alive client per process (created inside the running loop)."""
        if self._client is None:
            self._client = build_upstream_client(
                transport_name=self.config["UPSTREAM_TRANSPORT"],
                read_timeout_s=self.config["UPSTREAM_READ_TIMEOUT_S"],
            )
        return self._client

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/api/hello" or path == metrics.METRICS_PATH:
            await access_log.logged(self._answer_outside_the_proxy, scope, receive, send)
            return
        exchange = Exchange(scope, path)
        exchange.row["user_agent"] = (_header(scope, b"user-agent") or "")[:300]
        send = in_flight.enter(exchange, send)
        try:
            await self._dispatch(exchange, scope, receive, send, path, method)
        except GatewayError as error:
            if isinstance(error, UpstreamUnavailable):
                exchange.fail(error, UPSTREAM_ERROR_OUTCOME)
            else:
                exchange.fail(error)
            if not exchange.response_started:
                await send_error(send, error, exchange.request_id)
        except ClientDisconnected:
            exchange.row["outcome"] = RequestOutcome.CLIENT_CLOSED
        except asyncio.CancelledError:
            if not exchange.client_gone:
                exchange.row["outcome"] = RequestOutcome.GATEWAY_ERROR
                exchange.row["error_type"] = "cancelled"
                raise
            exchange.row["outcome"] = RequestOutcome.CLIENT_CLOSED
        except Exception as error:  # the last line of defence: never a bare 500 page
            logger.exception("Unexpected proxy failure for %s", exchange.request_id)
            failure = GatewayError("api_error", "Internal gateway error.")
            exchange.fail(failure)
            exchange.row["error_message"] = type(error).__name__
            if not exchange.response_started:
                await send_error(send, failure, exchange.request_id)
        finally:
            await in_flight.leave(exchange)
            self.outcomes.count(exchange.row["outcome"])
            access_log.record(scope, exchange.row.get("status_code"), exchange.started)
            recorder().record(_storable(exchange.finish()))

    async def _answer_outside_the_proxy(
        self, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        """The liveness check and the metrics page: no exchange, no request log row."""
        if scope["path"] == "/api/hello":
            await self._hello(scope["method"], send)
        else:
            await metrics.respond(
                scope, send, client=self._client, in_flight=len(in_flight), outcomes=self.outcomes
            )

    async def _hello(self, method: str, send: Any) -> None:
        if method in ("HEAD", "GET"):
            await send_bytes(send, 200, b"", [(b"content-type", b"text/plain")])
        else:
            await send_error(
                send,
                GatewayError(
                    "invalid_request_error",
                    "Method not allowed.",
                    status=405,
                    headers={"allow": "HEAD"},
                ),
                Exchange({}, "").request_id,
            )

    async def _dispatch(
        self,
        exchange: Exchange,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        path: str,
        method: str,
    ) -> None:
        if path in (MESSAGES, COUNT_TOKENS):
            if method != "POST":
                raise GatewayError(
                    "invalid_request_error",
                    f"Method {method} not allowed on {path}.",
                    status=405,
                    headers={"allow": "POST"},
                )
            await self._proxy_messages(exchange, scope, receive, send, path)
        elif path == MODELS or path.startswith(MODELS + "/"):
            if method != "GET":
                raise GatewayError(
                    "invalid_request_error",
                    f"Method {method} not allowed on {path}.",
                    status=405,
                    headers={"allow": "GET"},
                )
            key = await self._authenticate(exchange, scope)
            snapshot = await self.snapshots.get()
            status, body = models_endpoint.respond(
                path, scope.get("query_string", b""), key, snapshot
            )
            exchange.row["status_code"] = status
            exchange.response_started = True
            await send_bytes(
                send,
                status,
                body,
                [
                    (b"content-type", b"application/json"),
                    (b"request-id", exchange.request_id.encode()),
                ],
            )
        else:
            raise GatewayError("not_found_error", f"Not found: {method} {path}")

    async def _authenticate(self, exchange: Exchange, scope: dict[str, Any]) -> KeyContext:
        secret = presented_secret(_header(scope, b"x-api-key"), _header(scope, b"authorization"))
        key = await self.keys.authenticate(secret)
        exchange.set_key(key)
        return key

    async def _proxy_messages(
        self, exchange: Exchange, scope: dict[str, Any], receive: Any, send: Any, endpoint: str
    ) -> None:
        declared = _header(scope, b"content-length")
        body = await read_body(
            receive,
            self.config["MAX_BODY_BYTES"],
            int(declared) if declared and declared.isascii() and declared.isdigit() else None,
        )
        check_request_headers(scope["headers"])
        key = await self._authenticate(exchange, scope)
        if key.log_bodies:
            exchange.body = BodyCapture(
                body, max_bytes=self.config["BODY_LOG_MAX_BYTES"], patterns=key.body_redact_patterns
            )
        payload = parse_messages_body(body, _header(scope, b"content-type"))
        model: str = payload["model"]
        exchange.row["model_requested"] = model
        is_stream = endpoint == MESSAGES and payload.get("stream") is True
        exchange.row["is_stream"] = is_stream
        exchange.row["session_id"] = session_id_from(
            _header(scope, b"x-claude-code-session-id"), payload
        )
        exchange.row["agent_id"] = (_header(scope, b"x-claude-code-agent-id") or "")[:100]
        if not model_allowed(model, key.allowed_models):
            raise GatewayError("permission_error", f"This key may not use model '{model}'.")
        snapshot = await self.snapshots.get()
        route = select_route(snapshot.routes, model, key.cost_center_id, key.tags)
        if route is None:
            raise GatewayError("not_found_error", f"No route for model '{model}' on this gateway.")
        exchange.row["route_id"] = route.route_id
        admission = None
        if endpoint == MESSAGES:
            admission = await self.admission.admit(
                key=key,
                route=route,
                model=model,
                price_book=snapshot.price_book,
                payload=payload,
                body_size=len(body),
                request_id=exchange.request_id,
                started_at=exchange.row["started_at"],
            )

        watcher = asyncio.ensure_future(
            _watch_disconnect(receive, exchange, asyncio.current_task())
        )
        upstream: UpstreamResponse | None = None
        try:
            upstream = await forward(
                client=self.client,
                exchange=exchange,
                snapshot=snapshot,
                route=route,
                key=key,
                endpoint=endpoint,
                model=model,
                payload=payload,
                body=body,
                client_headers=upstream_headers(scope["headers"]),
            )
            requested_ttl = "1h" if b'"1h"' in body else "5m"
            if is_stream and upstream.is_stream:
                await self._relay_stream(exchange, upstream, send, requested_ttl, model)
            else:
                await self._relay_whole(exchange, upstream, send, requested_ttl, endpoint, model)
        finally:
            watcher.cancel()
            try:
                if upstream is not None and not upstream.response.is_closed:
                    # Shielded: a second cancellation must not leave the upstream connection open.
                    # (A body read to its end has closed the response already: no task needed.)
                    await asyncio.shield(upstream.response.aclose())
            finally:
                exchange.priced = await self.admission.settle(
                    admission,
                    usage=exchange.usage,
                    iterations=exchange.iterations,
                    model=exchange.row.get("model_served") or model,
                    provider_id=exchange.row.get("provider_id"),
                )

    async def _relay_whole(
        self,
        exchange: Exchange,
        upstream: UpstreamResponse,
        send: Any,
        requested_ttl: str,
        endpoint: str,
        model: str,
    ) -> None:
        body = await _read_whole(upstream)
        status = upstream.response.status_code
        headers = upstream.response.headers.raw
        if not upstream.adapter.passthrough:
            translated = upstream.adapter.translate_response(
                status=status, headers=headers, body=body, requested_model=model
            )
            status, headers, body = translated.status, translated.headers, translated.body
        document = _json_object(body)
        if status < 300 and document is None:
            # Half a body or not JSON at all: the client's SDK could not read it either.
            raise UpstreamUnavailable(
                "api_error", "Upstream provider answered with a malformed JSON body."
            )
        exchange.row["status_code"] = status
        exchange.response_started = True
        await send_bytes(send, status, body, downstream_headers(headers))
        exchange.mark_first_byte()
        if exchange.body is not None:
            exchange.body.add_response(body)
        if status >= 400:
            _record_upstream_error(exchange, document)
            return
        if endpoint != MESSAGES or document is None:
            return
        if upstream.adapter.passthrough:
            # A translating adapter names the client's model; keep the target's own id for pricing.
            exchange.row["model_served"] = document.get("model") or exchange.row.get(
                "model_served", ""
            )
        exchange.row["stop_reason"] = document.get("stop_reason") or ""
        usage = document.get("usage")
        if isinstance(usage, dict):
            exchange.usage, exchange.iterations = usage_from_message(
                usage, requested_ttl=requested_ttl
            )

    async def _relay_stream(
        self,
        exchange: Exchange,
        upstream: UpstreamResponse,
        send: Any,
        requested_ttl: str,
        model: str,
    ) -> None:
        response = upstream.response
        exchange.row["status_code"] = response.status_code
        tap = SSETap(requested_ttl=requested_ttl)
        headers = downstream_headers(response.headers.raw)
        if upstream.adapter.passthrough:
            chunks = response.aiter_raw().__aiter__()
        else:
            chunks = upstream.adapter.translate_stream(
                response.aiter_raw(), requested_model=model
            ).__aiter__()
            # Another provider's headers (its org, its own rate-limit names) say nothing to an
            # Anthropic client and may identify the pooled account: keep only retry hints and ids.
            headers = [
                (name, value) for name, value in headers if name in TRANSLATED_STREAM_HEADERS
            ]
            headers += [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
            ]
        headers.append((b"x-accel-buffering", b"no"))
        exchange.response_started = True
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        max_duration = self.config["MAX_STREAM_DURATION_S"]
        writer = KeepAlive(send, tap, self.config["PING_INTERVAL_S"])
        capture = exchange.body
        failure: tuple[str, str] | None = None  # (error type, message) for the SSE error event
        sent_whole_events = True  # the bytes sent so far end at an event boundary
        limit = asyncio.timeout(max_duration)  # one timer for the stream, not one per chunk
        try:
            async with limit:
                async for chunk in chunks:
                    was_at_boundary = tap.at_event_boundary
                    malformed_at = tap.feed(chunk)
                    if malformed_at is not None:
                        # Relay the sound events in front of it, never the garbage itself.
                        chunk = chunk[:malformed_at]
                        sent_whole_events = malformed_at > 0 or was_at_boundary
                        failure = ("api_error", f"Upstream sent {tap.malformed}.")
                    if chunk:
                        await writer.write(chunk)
                        exchange.mark_first_byte()
                        if capture is not None:
                            capture.add_response(chunk)
                    if failure is not None:
                        break
        except TimeoutError:
            if not limit.expired():
                failure = _relay_failed(exchange)
            elif not tap.saw_message_stop:
                failure = (
                    "timeout_error",
                    f"The stream exceeded the gateway's maximum duration of {max_duration:g} s.",
                )
        except httpx.TimeoutException as error:
            failure = ("timeout_error", f"Upstream stream failed: {type(error).__name__}.")
        except httpx.HTTPError as error:
            failure = ("api_error", f"Upstream stream failed: {type(error).__name__}.")
        except Exception:  # a translator's bug must still end the stream in Anthropic's shape
            failure = _relay_failed(exchange)
        finally:
            writer.stop()
            exchange.usage, exchange.iterations = tap.usage.message_usage()
            if upstream.adapter.passthrough:
                exchange.row["model_served"] = tap.usage.model or exchange.row.get(
                    "model_served", ""
                )
            exchange.row["stop_reason"] = tap.usage.stop_reason or ""
        if failure is None and tap.error is None and not tap.saw_message_stop:
            failure = ("api_error", "Upstream stream ended before message_stop.")
        if tap.error is not None and failure is None:
            exchange.row["outcome"] = RequestOutcome.STREAM_ERROR
            exchange.row["error_type"] = str(tap.error.get("type", "api_error"))[:64]
            exchange.row["error_message"] = str(tap.error.get("message", ""))[:500]
            await writer.write(b"", more_body=False)
            return
        if failure is not None:
            error_type, message = failure
            logger.warning("Stream %s ended with an error event: %s", exchange.request_id, message)
            exchange.row["outcome"] = RequestOutcome.STREAM_ERROR
            exchange.row["error_type"] = error_type
            exchange.row["error_message"] = message
            if tap.malformed is None:
                # A write the deadline cut may have left anything with the client: end it.
                sent_whole_events = tap.at_event_boundary and not writer.write_cut
            # A half-sent event is ended first, so the error is an event of its own.
            separator = b"" if sent_whole_events else b"\n\n"
            await writer.write(separator + error_event(error_type, message), more_body=False)
            return
        await writer.write(b"", more_body=False)


def parse_messages_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The request JSON, parsed once; every way it can be wrong is a 400 that says why."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise GatewayError("invalid_request_error", "Content-Type must be application/json.")
    if not body:
        raise GatewayError(
            "invalid_request_error", "Request body is empty; expected a JSON object."
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise GatewayError("invalid_request_error", "Request body is not valid UTF-8.") from None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise GatewayError(
            "invalid_request_error", f"Request body is not valid JSON: {error.msg}."
        ) from None
    if not isinstance(payload, dict):
        raise GatewayError("invalid_request_error", "Request body must be a JSON object.")
    model = payload.get("model")
    if model is None:
        raise GatewayError("invalid_request_error", "model: Field required")
    if not isinstance(model, str) or not model.strip():
        raise GatewayError("invalid_request_error", "model: Input should be a non-empty string")
    if "stream" in payload and not isinstance(payload["stream"], bool):
        raise GatewayError("invalid_request_error", "stream: Input should be a valid boolean")
    return payload


def _storable(row: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL text cannot hold NUL, which a client can put in a path, a model or metadata;
    one such row would fail its whole batch."""
    for name, value in row.items():
        if isinstance(value, str) and "\x00" in value:
            row[name] = value.replace("\x00", "")
    return row


async def _read_whole(upstream: UpstreamResponse) -> bytes:
    """A non-streamed answer's body; a connection lost or stalled on the way is the
    provider's failure, answered in Anthropic's shape (nothing has reached the client yet).
    A body that is not content-encoded (we ask for identity) skips httpx's decoder chain."""
    response = upstream.response
    try:
        if response.is_stream_consumed or upstream.is_content_encoded:
            return await response.aread()  # read already (to choose a retry): the same bytes
        return await read_raw(response)
    except httpx.TimeoutException as error:
        raise UpstreamUnavailable(
            "timeout_error", f"Upstream provider stalled mid-answer ({type(error).__name__})."
        ) from None
    except httpx.TransportError as error:
        raise UpstreamUnavailable(
            "api_error", f"Upstream connection failed mid-answer ({type(error).__name__})."
        ) from None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _record_upstream_error(exchange: Exchange, document: dict[str, Any] | None) -> None:
    exchange.row["outcome"] = UPSTREAM_ERROR_OUTCOME
    error = document.get("error") if document else None
    if isinstance(error, dict):
        exchange.row["error_type"] = str(error.get("type", ""))[:64]
        exchange.row["error_message"] = str(error.get("message", ""))[:500]


def _relay_failed(exchange: Exchange) -> tuple[str, str]:
    """The gateway's own failure while relaying (a translator's bug): logged, and told as such."""
    logger.exception("Relaying stream %s failed", exchange.request_id)
    return ("api_error", "The gateway failed while relaying the stream.")


async def _watch_disconnect(receive: Any, exchange: Exchange, task: asyncio.Task | None) -> None:
    """Cancel the request's task when the client hangs up, which closes the upstream call."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            exchange.client_gone = True
            if task is not None:
                task.cancel()
            return
