"""The Bedrock runtime emulator: a raw ASGI app speaking InvokeModel for Claude.

  POST /model/{modelId}/invoke                       Anthropic Message JSON
  POST /model/{modelId}/invoke-with-response-stream  AWS event stream of `chunk` events
  POST /model/{modelId}/count-tokens                 {"inputTokens": N}
  /_emulator/...                                     control API (control.py)

Every request must carry a valid SigV4 signature (service `bedrock`, the emulator's region)
by credentials the emulator knows; otherwise AWS's 403s. Bodies are checked the way Bedrock
checks them (no `model`/`stream`, `anthropic_version` `bedrock-2023-05-31`). Replies, usage and
the prompt cache come from the Anthropic emulator's builders, one cache per access key.
Errors are AWS-shaped: `x-amzn-ErrorType` header and `{"message": ...}`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote

import orjson

from gateway.emulator.cache import CacheUsage
from gateway.emulator.errors import EmulatorError
from gateway.emulator.faults import Drop, Pause, Step
from gateway.emulator.prefix import Prefix, build_prefix
from gateway.emulator.recorder import RecordedRequest
from gateway.emulator.replies import Reply, build_reply
from gateway.emulator.responses import message_body, stream_frames
from gateway.emulator.transport import Receive, Request, Responder, Scope, Send, read_body
from gateway.emulator_bedrock.control import CONTROL_PREFIX, ControlApi
from gateway.emulator_bedrock.eventstream import chunk_frame, corrupt, exception_frame
from gateway.emulator_bedrock.faults import AWS_ERRORS, STREAM_EXCEPTIONS, STREAM_ONLY, Fault
from gateway.emulator_bedrock.sigv4 import AwsAuthError, SignedRequest, verify
from gateway.emulator_bedrock.state import BedrockState

logger = logging.getLogger(__name__)

SIGNING_SERVICE = "bedrock"
BEDROCK_VERSION = "bedrock-2023-05-31"
EVENT_STREAM_TYPE = b"application/vnd.amazon.eventstream"
ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
MODEL_ID = re.compile(
    r"^(?:(?P<profile>[a-z]{2,8})\.)?anthropic\.(?P<name>claude-[a-z0-9.-]+?)(?:-v\d+(?::\d+)?)?$"
)
MODEL_ARN = re.compile(
    r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]*:\d*:"
    r"(?P<kind>foundation-model|inference-profile|application-inference-profile)/(?P<id>.+)$"
)
NOT_PERMITTED = "Malformed input request: #: extraneous key [{}] is not permitted, please reformat your input and try again."
REQUIRED = "Malformed input request: #: required key [{}] not found, please reformat your input and try again."


class AwsError(Exception):
    def __init__(self, error_type: str, message: str | None = None, *, status: int | None = None):
        default_status, default_message = AWS_ERRORS.get(error_type, (403, ""))
        self.error_type = error_type
        self.status = status or default_status
        self.message = message or default_message
        super().__init__(self.message)


class AwsResponder(Responder):
    """AWS sends its request id as `x-amzn-RequestId`, not `request-id`."""

    def __init__(self, send: Send, request_id: str) -> None:
        super().__init__(send, request_id)
        self.request_id_header = (b"x-amzn-requestid", request_id.encode())


class BedrockEmulatorApp:
    def __init__(self, state: BedrockState | None = None) -> None:
        self.state = state or BedrockState()
        self.control = ControlApi(self.state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, await read_body(receive))
        responder = AwsResponder(send, str(uuid.UUID(int=int(self.state.next_id(), 16))))
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
        raw_path = bytes(scope.get("raw_path") or request.path.encode()).decode("latin-1")
        try:
            await self._dispatch(request, raw_path, responder)
        except AwsAuthError as error:
            await _send_aws_error(responder, AwsError(error.error_type, error.message, status=403))
        except AwsError as error:
            await _send_aws_error(responder, error)
        except Exception:
            logger.exception("Bedrock emulator failed on %s %s", request.method, request.path)
            await _send_aws_error(responder, AwsError("InternalServerException"))
        finally:
            recorded.status = responder.status

    async def _dispatch(self, request: Request, raw_path: str, responder: Responder) -> None:
        if request.method != "POST" or not raw_path.startswith("/model/"):
            raise AwsError("UnknownOperationException", "Unknown operation.", status=404)
        encoded_model, _, action = raw_path[len("/model/") :].rpartition("/")
        if action not in ("invoke", "invoke-with-response-stream", "count-tokens"):
            raise AwsError("UnknownOperationException", "Unknown operation.", status=404)
        state = self.state
        access_key_id = verify(
            SignedRequest(
                method=request.method,
                raw_path=raw_path,
                query_string=request.query_string.decode("latin-1"),
                headers=request.headers,
                body=request.body,
            ),
            credentials=state.credentials,
            region=state.region,
            service=SIGNING_SERVICE,
            now=state.clock.now(),
        )
        model_id = unquote(encoded_model)
        if action == "count-tokens":
            await self.count_tokens(request, model_id, responder)
        else:
            stream = action == "invoke-with-response-stream"
            await self.invoke(request, model_id, access_key_id, responder, stream=stream)

    async def invoke(
        self,
        request: Request,
        model_id: str,
        access_key_id: str,
        responder: Responder,
        *,
        stream: bool,
    ) -> None:
        state = self.state
        started = time.monotonic()
        fault = state.faults.take(endpoint="invoke", stream=stream)
        if fault is not None and fault.kind == "error":
            raise AwsError(fault.name)
        model, _ = anthropic_model(model_id)
        body = _model_body(request.body, require_max_tokens=True)
        prefix = _prefix(body, model)
        usage = state.cache.account(
            scope=access_key_id,
            prefix=prefix,
            now=state.clock.now(),
            min_cacheable_tokens=state.config.min_cacheable_tokens,
        )
        behaviour = state.config.behaviour_for(access_key_id)
        reply = build_reply({**body, "model": model}, behaviour, request_body=request.body)
        message_id = "msg_bdrk_" + state.next_id()
        if not stream:
            payload = message_body(message_id=message_id, model=model, reply=reply, usage=usage)
            headers = _metric_headers(usage, reply, started)
            await responder.json(200, payload, headers)
            return
        steps = _stream_steps(
            message_id=message_id,
            model=model,
            reply=reply,
            usage=usage,
            text_deltas=behaviour.text_deltas,
            delay_seconds=behaviour.delta_delay_ms / 1000,
            fault=fault,
            started=started,
        )
        await responder.start(
            200,
            [
                (b"content-type", EVENT_STREAM_TYPE),
                (b"x-amzn-bedrock-content-type", b"application/json"),
            ],
        )
        await responder.play(steps)

    async def count_tokens(self, request: Request, model_id: str, responder: Responder) -> None:
        fault = self.state.faults.take(endpoint="count-tokens", stream=False)
        if fault is not None and fault.kind == "error":
            raise AwsError(fault.name)
        model, is_profile = anthropic_model(model_id)
        if is_profile:
            raise AwsError(
                "ValidationException", "The provided model doesn't support counting tokens."
            )
        document = _json_object(request.body)
        count_input = document.get("input")
        invoke = count_input.get("invokeModel") if isinstance(count_input, dict) else None
        if not isinstance(invoke, dict) or not isinstance(invoke.get("body"), str):
            raise AwsError("ValidationException", REQUIRED.format("input.invokeModel.body"))
        try:
            invoke_body = base64.b64decode(invoke["body"], validate=True)
        except (binascii.Error, ValueError):
            raise AwsError(
                "ValidationException", "input.invokeModel.body: invalid base64."
            ) from None
        body = _model_body(invoke_body, require_max_tokens=False)
        total = _prefix(body, model).total_tokens
        await responder.json(200, orjson.dumps({"inputTokens": total}))


def anthropic_model(model_id: str) -> tuple[str, bool]:
    """The Anthropic model id behind a Bedrock id, and whether it names an inference profile."""
    is_profile = False
    arn = MODEL_ARN.match(model_id)
    if arn is not None:
        is_profile = arn["kind"] != "foundation-model"
        model_id = arn["id"]
    match = MODEL_ID.match(model_id)
    if match is None:
        raise AwsError("ValidationException", "The provided model identifier is invalid.")
    return match["name"], is_profile or match["profile"] is not None


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        raise AwsError("ValidationException")
    return document


def _model_body(raw: bytes, *, require_max_tokens: bool) -> dict[str, Any]:
    """An InvokeModel body for Claude, checked the way Bedrock checks it."""
    body = _json_object(raw)
    for key in ("model", "stream", "cache_control"):
        if key in body:
            raise AwsError("ValidationException", NOT_PERMITTED.format(key))
    if "anthropic_version" not in body:
        raise AwsError("ValidationException", REQUIRED.format("anthropic_version"))
    if body["anthropic_version"] != BEDROCK_VERSION:
        raise AwsError("ValidationException", "Invalid API version: use bedrock-2023-05-31.")
    betas = body.get("anthropic_beta")
    if betas is not None and (
        not isinstance(betas, list) or not all(isinstance(beta, str) for beta in betas)
    ):
        raise AwsError("ValidationException", "anthropic_beta: expected a list of strings.")
    max_tokens = body.get("max_tokens")
    if require_max_tokens and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise AwsError("ValidationException", REQUIRED.format("max_tokens"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise AwsError("ValidationException", REQUIRED.format("messages"))
    return body


def _prefix(body: dict[str, Any], model: str) -> Prefix:
    try:
        return build_prefix(body, model)
    except EmulatorError as error:
        raise AwsError("ValidationException", error.message) from None


def _metric_headers(usage: CacheUsage, reply: Reply, started: float) -> list[tuple[bytes, bytes]]:
    latency_ms = int((time.monotonic() - started) * 1000)
    return [
        (b"x-amzn-bedrock-invocation-latency", str(latency_ms).encode()),
        (b"x-amzn-bedrock-input-token-count", str(usage.input_tokens).encode()),
        (b"x-amzn-bedrock-output-token-count", str(reply.output_tokens).encode()),
        (
            b"x-amzn-bedrock-cache-read-input-token-count",
            str(usage.cache_read_input_tokens).encode(),
        ),
        (
            b"x-amzn-bedrock-cache-write-input-token-count",
            str(usage.cache_creation_input_tokens).encode(),
        ),
    ]


def _event_json(sse: bytes) -> bytes:
    return sse.split(b"\ndata: ", 1)[1].rstrip(b"\n")


def _stream_steps(
    *,
    message_id: str,
    model: str,
    reply: Reply,
    usage: CacheUsage,
    text_deltas: int,
    delay_seconds: float,
    fault: Fault | None,
    started: float,
) -> list[Step]:
    """Bedrock's stream: the Anthropic events (no pings) as `chunk` frames, fault applied."""
    frames = stream_frames(
        message_id=message_id, model=model, reply=reply, usage=usage, text_deltas=text_deltas
    )
    steps: list[Step] = []
    seen_delta = False
    for number, frame in enumerate(frames):
        event = orjson.loads(_event_json(frame.data))
        if event["type"] == "ping":
            continue
        if event["type"] == "message_stop":
            event["amazon-bedrock-invocationMetrics"] = _invocation_metrics(usage, reply, started)
        encoded = chunk_frame(orjson.dumps(event), padding_length=number % 7 + 1)
        if not frame.is_delta:
            steps.append(encoded)
            continue
        if seen_delta and delay_seconds > 0:
            steps.append(Pause(delay_seconds))
        if not seen_delta and fault is not None and fault.kind in STREAM_ONLY:
            return [*steps, *_broken(encoded, fault)]
        seen_delta = True
        steps.append(encoded)
    return steps


def _broken(frame: bytes, fault: Fault) -> list[Step]:
    if fault.kind == "corrupt_frame_mid_stream":
        return [corrupt(frame)]
    if fault.kind == "drop_mid_stream":
        return [frame, Drop()]
    return [frame, exception_frame(fault.name, STREAM_EXCEPTIONS[fault.name])]


def _invocation_metrics(usage: CacheUsage, reply: Reply, started: float) -> dict[str, int]:
    latency_ms = int((time.monotonic() - started) * 1000)
    return {
        "inputTokenCount": usage.input_tokens,
        "outputTokenCount": reply.output_tokens,
        "invocationLatency": latency_ms,
        "firstByteLatency": latency_ms,
        "cacheReadInputTokenCount": usage.cache_read_input_tokens,
        "cacheWriteInputTokenCount": usage.cache_creation_input_tokens,
    }


async def _send_aws_error(responder: Responder, error: AwsError) -> None:
    if responder.started:
        logger.warning("Bedrock emulator error after the response started: %s", error)
        responder.drop()
        return
    headers = [(b"x-amzn-errortype", (error.error_type + ERROR_TYPE_SUFFIX).encode())]
    await responder.json(error.status, orjson.dumps({"message": error.message}), headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
