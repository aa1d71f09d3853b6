"""The OpenAI emulator's raw ASGI application.

  POST /v1/chat/completions   stream (SSE chunks) and non-stream
  GET  /v1/models             a one-page model list
  /_emulator/...              control API:
    POST   reset              back to defaults: config, cache, faults, log
    GET    config             current settings;  POST config  merge settings (state.EmulatorConfig)
    GET    faults             queued faults;  POST faults  {"fault", "key"?, "times"?} or
                              {"faults": [...]};  DELETE faults  clear the queue
    GET    requests           recorded requests, oldest first (?limit=N for the last N)
    DELETE requests           forget them
    GET    health             {"ok": true}
Errors are OpenAI-shaped. A request's fault can also come from the `x-emulator-fault` header.
Every response carries `x-request-id: req_oai_<hex>`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.emulator.recorder import RecordedRequest
from gateway.emulator.transport import (
    SSE_HEADERS,
    ConnectionDroppedError,
    Receive,
    Request,
    Responder,
    Scope,
    Send,
    read_body,
)
from gateway.emulator_openai.errors import OpenAIError, invalid
from gateway.emulator_openai.replies import build_reply, prompt_units
from gateway.emulator_openai.responses import (
    Completion,
    completion_body,
    stream_steps,
    usage_body,
)
from gateway.emulator_openai.state import EmulatorState, Fault, fault_from_request, parse_fault
from gateway.emulator_openai.validation import validate_request

logger = logging.getLogger(__name__)

CONTROL_PREFIX = "/_emulator/"
FAULT_HEADER = "x-emulator-fault"
OK = {"ok": True}
MODELS = {
    "object": "list",
    "data": [{"id": "gpt-emulator", "object": "model", "created": 0, "owned_by": "emulator"}],
}

Handler = Callable[[Request, Responder], Awaitable[None]]


class OpenAIEmulatorApp:
    def __init__(self, state: EmulatorState | None = None) -> None:
        self.state = state or EmulatorState()
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self.create_completion,
            ("GET", "/v1/models"): self.list_models,
        }
        self._control: dict[tuple[str, str], Callable[[Request], Any]] = {
            ("POST", "reset"): self.reset,
            ("GET", "config"): lambda request: self.state.config.to_dict(),
            ("POST", "config"): self.update_config,
            ("GET", "faults"): self.list_faults,
            ("POST", "faults"): self.add_faults,
            ("DELETE", "faults"): self.clear_faults,
            ("GET", "requests"): self.list_requests,
            ("DELETE", "requests"): self.clear_requests,
            ("GET", "health"): lambda request: OK,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, await read_body(receive))
        request_id = "req_oai_" + self.state.next_id()
        responder = Responder(send, request_id)
        responder.request_id_header = (b"x-request-id", request_id.encode())
        if request.path.startswith(CONTROL_PREFIX):
            await self._handle_control(request, responder)
            return
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            raw_headers=request.raw_headers,
            body=request.body,
            timestamp=time.time(),
            request_id=request_id,
        )
        self.state.log.add(recorded)
        try:
            handler = self._routes.get((request.method, request.path))
            if handler is None:
                raise OpenAIError(404, f"Unknown request URL: {request.method} {request.path}")
            await handler(request, responder)
        except ConnectionDroppedError:
            raise
        except OpenAIError as error:
            await _send_error(responder, error)
        except Exception:
            logger.exception("OpenAI emulator failed on %s %s", request.method, request.path)
            await _send_error(responder, OpenAIError(500))
        finally:
            recorded.status = responder.status

    # --- endpoints ---------------------------------------------------------------------------

    async def create_completion(self, request: Request, responder: Responder) -> None:
        state = self.state
        key = self._authenticate(request)
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            raise invalid("We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        stream = body.get("stream") is True
        fault = await self._fault(request, key, stream=stream)
        validate_request(body)
        units = prompt_units(body)
        prompt_tokens = sum(tokens for _, tokens in units)
        cached_tokens = state.cache.account(key, units, state.config)
        reply = build_reply(body, state.config, request_body=request.body)
        usage: dict[str, Any] | None = usage_body(
            reply,
            prompt_tokens=prompt_tokens,
            cached_tokens=cached_tokens,
            style=state.config.usage_style,
        )
        if fault is not None and fault.kind == "no_usage":
            usage = None
        completion = Completion(
            completion_id="chatcmpl-emu" + state.next_id(),
            created=int(time.time()),
            model=body["model"],
        )
        if not stream:
            payload = completion_body(completion, reply, usage)
            if fault is not None and fault.kind == "malformed_json":
                payload = payload[: len(payload) // 2]
            await responder.json(200, payload)
            return
        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage")
        steps = stream_steps(
            completion,
            reply,
            usage if include_usage else None,
            config=state.config,
            fault=fault,
        )
        await responder.start(200, SSE_HEADERS)
        await responder.play(steps)

    async def list_models(self, request: Request, responder: Responder) -> None:
        self._authenticate(request)
        await responder.json(200, orjson.dumps(MODELS))

    def _authenticate(self, request: Request) -> str:
        authorization = request.headers.get("authorization", "")
        key = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
        if not key:
            raise OpenAIError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                error_type="invalid_request_error",
            )
        valid_keys = self.state.config.valid_keys
        if valid_keys is not None and key not in valid_keys:
            raise OpenAIError(
                401, f"Incorrect API key provided: {key[:3]}***{key[-4:]}.", code="invalid_api_key"
            )
        return key

    async def _fault(self, request: Request, key: str, *, stream: bool) -> Fault | None:
        spec = request.headers.get(FAULT_HEADER)
        if spec:
            fault: Fault | None = parse_fault(spec)
            if fault is not None and not fault.applies_to(key=key, stream=stream):
                fault = None
        else:
            fault = self.state.faults.take(key=key, stream=stream)
        if fault is None:
            return None
        if fault.kind == "slow_first_byte":
            await asyncio.sleep(fault.milliseconds / 1000)
        elif fault.kind == "status":
            assert fault.status is not None
            headers = (
                [(b"retry-after", str(fault.retry_after).encode())] if fault.status == 429 else []
            )
            raise OpenAIError(fault.status, headers=headers)
        return fault

    # --- control API ---------------------------------------------------------------------------

    async def _handle_control(self, request: Request, responder: Responder) -> None:
        name = request.path[len(CONTROL_PREFIX) :].strip("/")
        handler = self._control.get((request.method, name))
        try:
            if handler is None:
                raise OpenAIError(404, f"No control endpoint {request.method} {request.path}")
            payload = handler(request)
        except OpenAIError as error:
            await responder.json(error.status, error.body())
            return
        await responder.json(200, orjson.dumps(payload))

    def reset(self, request: Request) -> dict[str, Any]:
        self.state.reset()
        return OK

    def update_config(self, request: Request) -> dict[str, Any]:
        self.state.config.update(_control_json(request))
        self.state.log.resize(self.state.config.record_limit)
        return self.state.config.to_dict()

    def list_faults(self, request: Request) -> dict[str, Any]:
        return {"faults": [fault.to_dict() for fault in self.state.faults.faults]}

    def add_faults(self, request: Request) -> dict[str, Any]:
        payload = _control_json(request)
        entries = (
            payload["faults"] if isinstance(payload, dict) and "faults" in payload else [payload]
        )
        if not isinstance(entries, list):
            raise invalid("faults: expected a list")
        self.state.faults.faults.extend(fault_from_request(entry) for entry in entries)
        return self.list_faults(request)

    def clear_faults(self, request: Request) -> dict[str, Any]:
        self.state.faults.faults.clear()
        return self.list_faults(request)

    def list_requests(self, request: Request) -> dict[str, Any]:
        raw_limit = request.query.get("limit")
        if raw_limit is not None and not raw_limit.isdigit():
            raise invalid("limit: expected a non-negative integer")
        return {"requests": self.state.log.last(int(raw_limit) if raw_limit else None)}

    def clear_requests(self, request: Request) -> dict[str, Any]:
        self.state.log.clear()
        return OK


def _control_json(request: Request) -> Any:
    if not request.body.strip():
        return {}
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise invalid("The control API expects a JSON body") from None


async def _send_error(responder: Responder, error: OpenAIError) -> None:
    if responder.started:
        logger.warning("OpenAI emulator error after the response started: %s", error)
        responder.drop()
        return
    await responder.json(error.status, error.body(), error.headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
