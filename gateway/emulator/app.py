"""The emulator's raw ASGI application (no framework: this is the benchmarks' upstream).

Routes on the path only (`?beta=true` and other query strings are ignored):
  POST /v1/messages               stream and non-stream
  POST /v1/messages/count_tokens  {"input_tokens": N}
  GET  /v1/models[/{id}]          model catalog
  HEAD /api/hello                 Claude Code's warm-up
  /_emulator/...                  control API (control.py)
Everything else is a 404 in Anthropic's error shape. Every response carries
`request-id: req_emu_<hex>`. Per-request knobs: `x-emulator-fault`, `x-emulator-deltas`,
`x-emulator-delta-delay-ms` headers, or the same names without `x-` as query parameters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.emulator.catalog import model_info, model_page
from gateway.emulator.config import Behaviour
from gateway.emulator.control import CONTROL_PREFIX, ControlApi
from gateway.emulator.errors import EmulatorError, error_body, invalid_request
from gateway.emulator.faults import Fault, parse_fault, stream_script
from gateway.emulator.prefix import build_prefix
from gateway.emulator.recorder import RecordedRequest
from gateway.emulator.replies import build_reply
from gateway.emulator.responses import message_body, stream_frames
from gateway.emulator.state import EmulatorState
from gateway.emulator.transport import (
    SSE_HEADERS,
    ConnectionDroppedError,
    Headers,
    Receive,
    Request,
    Responder,
    Scope,
    Send,
    read_body,
)

logger = logging.getLogger(__name__)

MESSAGE_ROLES = frozenset({"user", "assistant", "system"})
MODELS_PREFIX = "/v1/models/"
FAULT_HEADER = "x-emulator-fault"
DELTAS_HEADER = "x-emulator-deltas"
DELAY_HEADER = "x-emulator-delta-delay-ms"

Handler = Callable[[Request, Responder], Awaitable[None]]


class EmulatorApp:
    def __init__(self, state: EmulatorState | None = None) -> None:
        self.state = state or EmulatorState()
        self.control = ControlApi(self.state)
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/messages"): self.create_message,
            ("POST", "/v1/messages/count_tokens"): self.count_tokens,
            ("GET", "/v1/models"): self.list_models,
            ("HEAD", "/api/hello"): self.hello,
            ("GET", "/api/hello"): self.hello,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, await read_body(receive))
        request_id = "req_emu_" + self.state.next_id()
        responder = Responder(send, request_id)
        if request.path.startswith(CONTROL_PREFIX):
            await self.control.handle(request, responder)
            return
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            raw_headers=request.raw_headers,
            body=request.body,
            timestamp=self.state.clock.now(),
            request_id=request_id,
        )
        self.state.log.add(recorded)
        handler = asyncio.current_task()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, recorded, handler))
        try:
            await self._dispatch(request, responder)
        except ConnectionDroppedError:
            raise
        except asyncio.CancelledError:
            if recorded.disconnected_at is None:
                raise
        except EmulatorError as error:
            await _send_error(responder, error)
        except Exception:
            logger.exception("Emulator failed on %s %s", request.method, request.path)
            await _send_error(responder, EmulatorError(500))
        finally:
            watcher.cancel()
            recorded.status = responder.status
            if recorded.disconnected_at is None:
                recorded.finished_at = time.time()

    async def _dispatch(self, request: Request, responder: Responder) -> None:
        handler = self._routes.get((request.method, request.path))
        if handler is not None:
            await handler(request, responder)
        elif request.method == "GET" and request.path.startswith(MODELS_PREFIX):
            await self.retrieve_model(request, responder)
        else:
            raise EmulatorError(404, f"Not found: {request.method} {request.path}")

    # --- endpoints -------------------------------------------------------------------------

    async def hello(self, request: Request, responder: Responder) -> None:
        await responder.complete(200, [], b"")

    async def create_message(self, request: Request, responder: Responder) -> None:
        state = self.state
        key = self._authenticate(request)
        body = _json_object(request.body)
        stream = body.get("stream") is True
        fault = await self._pre_response_fault(request, key, "messages", stream=stream)
        model = _validated_model(body, require_max_tokens=True)
        prefix = build_prefix(body, model)
        now = state.clock.now()
        limits = state.config.limits_for(key)
        state.rate_limiter.admit(key, limits, now)
        usage = state.cache.account(
            scope=state.config.workspace_for(key),
            prefix=prefix,
            now=now,
            min_cacheable_tokens=state.config.min_cacheable_tokens,
        )
        behaviour = _with_request_overrides(state.config.behaviour_for(key), request)
        reply = build_reply(body, behaviour, request_body=request.body)
        state.rate_limiter.record_tokens(
            key, now, input_tokens=usage.uncached_input_tokens, output_tokens=reply.output_tokens
        )
        headers = state.rate_limiter.headers(key, limits, now)
        message_id = "msg_emu_" + state.next_id()
        if not stream:
            payload = message_body(message_id=message_id, model=model, reply=reply, usage=usage)
            await _send_json(responder, payload, headers, fault)
            return
        frames = stream_frames(
            message_id=message_id,
            model=model,
            reply=reply,
            usage=usage,
            text_deltas=behaviour.text_deltas,
        )
        steps = stream_script(frames, delay_seconds=behaviour.delta_delay_ms / 1000, fault=fault)
        await responder.start(200, [*SSE_HEADERS, *headers])
        await responder.play(steps)

    async def count_tokens(self, request: Request, responder: Responder) -> None:
        key = self._authenticate(request)
        body = _json_object(request.body)
        fault = await self._pre_response_fault(request, key, "count_tokens", stream=False)
        model = _validated_model(body, require_max_tokens=False)
        total = build_prefix(body, model).total_tokens
        await _send_json(responder, orjson.dumps({"input_tokens": total}), [], fault)

    async def list_models(self, request: Request, responder: Responder) -> None:
        key = self._authenticate(request)
        fault = await self._pre_response_fault(request, key, "models", stream=False)
        await _send_json(responder, orjson.dumps(model_page(request.query)), [], fault)

    async def retrieve_model(self, request: Request, responder: Responder) -> None:
        key = self._authenticate(request)
        fault = await self._pre_response_fault(request, key, "models", stream=False)
        info = model_info(request.path[len(MODELS_PREFIX) :])
        await _send_json(responder, orjson.dumps(info), [], fault)

    # --- helpers ---------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> str:
        """The API key (x-api-key, else the Bearer token); it scopes cache, limits, faults."""
        authorization = request.headers.get("authorization", "")
        bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
        candidates = [key for key in (request.headers.get("x-api-key", "").strip(), bearer) if key]
        if not candidates:
            raise EmulatorError(401, "x-api-key header is required")
        valid_keys = self.state.config.valid_keys
        if valid_keys is None:
            return candidates[0]
        for key in candidates:
            if key in valid_keys:
                return key
        raise EmulatorError(401, "invalid x-api-key")

    async def _pre_response_fault(
        self, request: Request, key: str, endpoint: str, *, stream: bool
    ) -> Fault | None:
        """Pick this request's fault (header first, then the queue) and apply the early part."""
        spec = request.headers.get(FAULT_HEADER)
        if spec is None and b"emulator-" in request.query_string:
            spec = request.query.get(FAULT_HEADER[2:])
        fault: Fault | None = None
        if spec:
            requested = parse_fault(spec)
            requested.endpoint = "any"
            if requested.applies_to(key=key, endpoint=endpoint, stream=stream):
                fault = requested
        elif self.state.faults:
            fault = self.state.faults.take(key=key, endpoint=endpoint, stream=stream)
        if fault is None:
            return None
        if fault.kind == "slow_first_byte":
            await asyncio.sleep(fault.milliseconds / 1000)
        elif fault.kind == "status":
            raise fault.error()
        return fault


def _with_request_overrides(behaviour: Behaviour, request: Request) -> Behaviour:
    headers = request.headers
    deltas = headers.get(DELTAS_HEADER)
    delay = headers.get(DELAY_HEADER)
    if request.query_string and b"emulator-" in request.query_string:
        deltas = deltas or request.query.get(DELTAS_HEADER[2:])
        delay = delay or request.query.get(DELAY_HEADER[2:])
    if deltas is None and delay is None:
        return behaviour
    changes: dict[str, Any] = {}
    if deltas is not None:
        if not deltas.isdigit() or int(deltas) < 1:
            raise invalid_request(f"{DELTAS_HEADER}: expected an integer >= 1")
        changes["text_deltas"] = int(deltas)
    if delay is not None:
        try:
            changes["delta_delay_ms"] = float(delay)
        except ValueError:
            raise invalid_request(f"{DELAY_HEADER}: expected milliseconds") from None
        if changes["delta_delay_ms"] < 0:
            raise invalid_request(f"{DELAY_HEADER}: expected milliseconds >= 0")
    return dataclasses.replace(behaviour, **changes)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_request(
            "There was an error parsing the body of the request: it is not valid JSON"
        ) from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object")
    return body


def _validated_model(body: dict[str, Any], *, require_max_tokens: bool) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("model: Field required")
    if require_max_tokens:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise invalid_request("max_tokens: Field required")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise invalid_request(
                "max_tokens: Input should be an integer greater than or equal to 1"
            )
        if "stream" in body and not isinstance(body["stream"], bool):
            raise invalid_request("stream: Input should be a valid boolean")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise invalid_request("messages: Field required")
    if not messages:
        raise invalid_request("messages: List should have at least 1 item")
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in MESSAGE_ROLES:
            raise invalid_request(
                f"messages.{position}.role: Input should be 'user', 'assistant' or 'system'"
            )
        if not isinstance(message.get("content"), str | list):
            raise invalid_request(f"messages.{position}.content: Field required")
    return model


async def _send_json(
    responder: Responder, payload: bytes, headers: Headers, fault: Fault | None
) -> None:
    if fault is not None and fault.kind == "malformed_json":
        payload = payload[: len(payload) // 2]
    await responder.json(200, payload, headers)


async def _send_error(responder: Responder, error: EmulatorError) -> None:
    if responder.started:
        logger.warning("Emulator error after the response started: %s", error)
        responder.drop()
        return
    body = error_body(error.error_type, error.message, responder.request_id)
    await responder.json(error.status, body, error.headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _watch_disconnect(
    receive: Receive, recorded: RecordedRequest, handler: asyncio.Task | None
) -> None:
    """Note when the client hangs up and stop answering it (what a real server does)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            recorded.disconnected_at = time.time()
            if handler is not None:
                handler.cancel()
            return
