"""The Vertex AI emulator: a raw ASGI app serving Claude the way Vertex does.

  POST /token                                                          OAuth2 JWT-bearer grant
  POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:rawPredict
  POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:streamRawPredict
  POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/count-tokens:rawPredict
  /_emulator/...                                                       control API

Prediction calls need a bearer token this emulator issued (unexpired on its clock) to a
service account of the project in the URL. Bodies must carry
`"anthropic_version": "vertex-2023-10-16"` and, except for count-tokens, no `model`; dated
models are named `name@YYYYMMDD`. Platform errors (auth, project, model, quota) are
Google-shaped `{"error": {"code", "message", "status"}}`; the model server's own errors
(body validation, overload) are Anthropic-shaped, as on Vertex. Replies, usage, cache and
streams come from the Anthropic emulator's builders.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl

import orjson

from gateway.emulator.errors import EmulatorError, error_body, invalid_request
from gateway.emulator.faults import Fault, stream_script
from gateway.emulator.prefix import build_prefix
from gateway.emulator.recorder import RecordedRequest
from gateway.emulator.replies import build_reply
from gateway.emulator.responses import message_body, stream_frames
from gateway.emulator.transport import (
    SSE_HEADERS,
    Receive,
    Request,
    Responder,
    Scope,
    Send,
    read_body,
)
from gateway.emulator_vertex.control import CONTROL_PREFIX, ControlApi
from gateway.emulator_vertex.faults import MID_STREAM_FAULTS, GoogleError
from gateway.emulator_vertex.oauth import (
    JWT_BEARER,
    IssuedToken,
    OAuthError,
    new_access_token,
    verify_assertion,
)
from gateway.emulator_vertex.state import VertexState

logger = logging.getLogger(__name__)

VERTEX_VERSION = "vertex-2023-10-16"
TOKEN_PATH = "/token"
PREDICT_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/(?P<publisher>[^/]+)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$"
)
VERTEX_MODEL = re.compile(r"^claude-[a-z0-9.-]+?(?:@\d{8})?$")
DASH_DATED = re.compile(r"-\d{8}$")


class VertexEmulatorApp:
    def __init__(self, state: VertexState | None = None) -> None:
        self.state = state or VertexState()
        self.control = ControlApi(self.state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, await read_body(receive))
        responder = Responder(send, "req_vrtx_" + self.state.next_id())
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
            request_id=responder.request_id,
        )
        self.state.log.add(recorded)
        try:
            if request.method == "POST" and request.path == TOKEN_PATH:
                await self.issue_token(request, responder)
            else:
                await self.predict(request, responder)
        except OAuthError as error:
            await responder.json(400, error.body())
        except GoogleError as error:
            await _send_error(responder, error.code, error.body())
        except EmulatorError as error:
            body = error_body(error.error_type, error.message, responder.request_id)
            await _send_error(responder, error.status, body, error.headers)
        except Exception:
            logger.exception("Vertex emulator failed on %s %s", request.method, request.path)
            await _send_error(responder, 500, GoogleError(500).body())
        finally:
            recorded.status = responder.status

    async def issue_token(self, request: Request, responder: Responder) -> None:
        form = dict(parse_qsl(request.body.decode("latin-1")))
        if form.get("grant_type") != JWT_BEARER:
            raise OAuthError("unsupported_grant_type", "Invalid grant_type.")
        state = self.state
        now = state.clock.now()
        account = verify_assertion(
            form.get("assertion", ""),
            accounts=state.accounts,
            audience=f"http://{request.headers.get('host', '')}{TOKEN_PATH}",
            now=now,
        )
        token = new_access_token()
        state.tokens = {key: value for key, value in state.tokens.items() if value.expires_at > now}
        state.tokens[token] = IssuedToken(
            client_email=account.client_email,
            project_id=account.project_id,
            expires_at=now + state.token_lifetime_s,
        )
        payload = {
            "access_token": token,
            "expires_in": state.token_lifetime_s,
            "token_type": "Bearer",
        }
        await responder.json(200, orjson.dumps(payload))

    def _caller(self, request: Request) -> IssuedToken:
        authorization = request.headers.get("authorization", "")
        token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
        issued = self.state.tokens.get(token)
        if issued is None or issued.expires_at <= self.state.clock.now():
            raise GoogleError(401)
        return issued

    async def predict(self, request: Request, responder: Responder) -> None:
        match = PREDICT_PATH.match(request.path)
        if request.method != "POST" or match is None:
            raise GoogleError(404, f"The requested URL {request.path} was not found.")
        caller = self._caller(request)
        resource = request.path[len("/v1/") :].rsplit(":", 1)[0]
        if match["project"] != caller.project_id:
            raise GoogleError(
                403,
                f"Permission 'aiplatform.endpoints.predict' denied on resource "
                f"'//aiplatform.googleapis.com/{resource}' (or it may not exist).",
            )
        if match["publisher"] != "anthropic":
            raise GoogleError(404, f"Publisher Model `{resource}` not found.")
        method, model = match["method"], match["model"]
        is_count = model == "count-tokens"
        if method not in ("rawPredict", "streamRawPredict") or (
            is_count and method != "rawPredict"
        ):
            raise GoogleError(404, f"Method {method} is not found for {resource}.")
        endpoint = "count_tokens" if is_count else "messages"
        body = _vertex_body(request.body)
        stream = not is_count and body.get("stream") is True
        fault = self._fault(endpoint, stream)
        if is_count:
            await self.count_tokens(body, match["project"], match["location"], responder)
            return
        if "model" in body:
            raise invalid_request("model: Extra inputs are not permitted")
        if method == "streamRawPredict" and not stream:
            raise invalid_request('streamRawPredict expects "stream": true in the body')
        _check_model(model, resource)
        await self.create_message(request, body, model, caller, responder, fault)

    def _fault(self, endpoint: str, stream: bool) -> Fault | None:
        fault = self.state.faults.take(key="", endpoint=endpoint, stream=stream)
        if fault is None or fault.kind in MID_STREAM_FAULTS:
            return fault
        assert fault.status is not None
        if fault.kind == "google":
            raise GoogleError(fault.status)
        raise fault.error()

    async def create_message(
        self,
        request: Request,
        body: dict[str, Any],
        model: str,
        caller: IssuedToken,
        responder: Responder,
        fault: Fault | None,
    ) -> None:
        state = self.state
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise invalid_request("max_tokens: Field required")
        served_model = model.replace("@", "-")
        usage = state.cache.account(
            scope=caller.client_email,
            prefix=build_prefix(body, served_model),
            now=state.clock.now(),
            min_cacheable_tokens=state.config.min_cacheable_tokens,
        )
        behaviour = state.config.behaviour_for(caller.client_email)
        reply = build_reply({**body, "model": served_model}, behaviour, request_body=request.body)
        message_id = "msg_vrtx_" + state.next_id()
        if body.get("stream") is not True:
            payload = message_body(
                message_id=message_id, model=served_model, reply=reply, usage=usage
            )
            await responder.json(200, payload)
            return
        frames = stream_frames(
            message_id=message_id,
            model=served_model,
            reply=reply,
            usage=usage,
            text_deltas=behaviour.text_deltas,
        )
        steps = stream_script(frames, delay_seconds=behaviour.delta_delay_ms / 1000, fault=fault)
        await responder.start(200, SSE_HEADERS)
        await responder.play(steps)

    async def count_tokens(
        self, body: dict[str, Any], project: str, location: str, responder: Responder
    ) -> None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid_request("model: Field required")
        _check_model(
            model, f"projects/{project}/locations/{location}/publishers/anthropic/models/{model}"
        )
        total = build_prefix(body, model.replace("@", "-")).total_tokens
        await responder.json(200, orjson.dumps({"input_tokens": total}))


def _vertex_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_request("The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object")
    if body.get("anthropic_version") != VERTEX_VERSION:
        raise invalid_request(f"anthropic_version: Input should be '{VERTEX_VERSION}'")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("messages: Field required")
    return body


def _check_model(model: str, resource: str) -> None:
    if not VERTEX_MODEL.match(model) or DASH_DATED.search(model):
        raise GoogleError(404, f"Publisher Model `{resource}` not found.")


async def _send_error(
    responder: Responder, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    if responder.started:
        logger.warning("Vertex emulator error after the response started (%s)", status)
        responder.drop()
        return
    await responder.json(status, body, headers or [])


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
