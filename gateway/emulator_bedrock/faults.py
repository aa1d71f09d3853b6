"""Injectable Bedrock faults, queued through `POST /_emulator/faults`.

Specs:
  `<AwsErrorType>` (`ThrottlingException`, `ServiceUnavailableException`, `ValidationException`,
  `AccessDeniedException`, ... see `AWS_ERRORS`): the request is refused with that error;
  `exception_mid_stream[:<exceptionType>]` (default `modelStreamErrorException`): after the
  first delta the stream carries an exception frame and ends;
  `drop_mid_stream`: the connection closes after the first delta;
  `corrupt_frame_mid_stream`: the first delta frame arrives with a broken CRC.
Stream-only faults are not consumed by non-streaming requests. `endpoint` is `invoke` (both
invoke operations, the default), `count-tokens` or `any`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# HTTP status and the message AWS sends with each error type.
AWS_ERRORS: dict[str, tuple[int, str]] = {
    "ValidationException": (
        400,
        "Malformed input request, please reformat your input and try again.",
    ),
    "ServiceQuotaExceededException": (
        400,
        "Your request exceeds the service quota for your account.",
    ),
    "AccessDeniedException": (
        403,
        "You don't have access to the model with the specified model ID.",
    ),
    "ResourceNotFoundException": (
        404,
        "Could not resolve the foundation model from the provided model identifier.",
    ),
    "ModelTimeoutException": (
        408,
        "Model has timed out in processing the request. Try your request again.",
    ),
    "ModelErrorException": (
        424,
        "The system encountered an unexpected error during processing. Try your request again.",
    ),
    "ThrottlingException": (429, "Too many requests, please wait before trying again."),
    "ModelNotReadyException": (
        429,
        "Model is not ready to serve inference requests. Try again later.",
    ),
    "InternalServerException": (
        500,
        "The server encountered an internal error while processing the request.",
    ),
    "ServiceUnavailableException": (503, "Bedrock is unable to process your request."),
}
STREAM_EXCEPTIONS: dict[str, str] = {
    "modelStreamErrorException": "The model encountered an error while streaming the response.",
    "throttlingException": "Too many tokens, please wait before trying again.",
    "serviceUnavailableException": "Bedrock is unable to process your request.",
    "internalServerException": "The server encountered an internal error while processing the request.",
    "modelTimeoutException": "Model has timed out in processing the request.",
    "validationException": "Input validation failed while streaming the response.",
}
EXCEPTION_MID_STREAM = "exception_mid_stream"
STREAM_ONLY = frozenset({EXCEPTION_MID_STREAM, "drop_mid_stream", "corrupt_frame_mid_stream"})
ENDPOINTS = ("invoke", "count-tokens", "any")


class FaultSpecError(ValueError):
    """A fault the emulator does not know how to inject."""


@dataclass
class Fault:
    kind: str  # "error" or one of STREAM_ONLY
    name: str  # the AWS error / stream exception type, when there is one
    spec: str
    times: int | None = 1
    endpoint: str = "invoke"

    def applies_to(self, *, endpoint: str, stream: bool) -> bool:
        if self.endpoint not in ("any", endpoint):
            return False
        return stream or self.kind not in STREAM_ONLY

    def to_dict(self) -> dict[str, Any]:
        return {"fault": self.spec, "times": self.times, "endpoint": self.endpoint}


def parse_fault(payload: Any) -> Fault:
    if not isinstance(payload, dict) or not isinstance(payload.get("fault"), str):
        raise FaultSpecError('faults: expected {"fault": "<spec>", "times"?, "endpoint"?}')
    spec = payload["fault"].strip()
    times = payload.get("times", 1)
    endpoint = payload.get("endpoint", "invoke")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise FaultSpecError("faults.times: expected an integer >= 1 or null (until cleared)")
    if endpoint not in ENDPOINTS:
        raise FaultSpecError(f"faults.endpoint: expected one of {', '.join(ENDPOINTS)}")
    kind, _, argument = spec.partition(":")
    if kind in AWS_ERRORS and not argument:
        return Fault("error", kind, spec, times, endpoint)
    if kind == EXCEPTION_MID_STREAM:
        name = argument or "modelStreamErrorException"
        if name not in STREAM_EXCEPTIONS:
            raise FaultSpecError(f"fault: unknown stream exception {name!r}")
        return Fault(kind, name, spec, times, endpoint)
    if kind in STREAM_ONLY and not argument:
        return Fault(kind, "", spec, times, endpoint)
    raise FaultSpecError(f"fault: unknown fault {spec!r}")


class FaultQueue:
    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()

    def to_list(self) -> list[dict[str, Any]]:
        return [fault.to_dict() for fault in self._faults]

    def take(self, *, endpoint: str, stream: bool) -> Fault | None:
        for position, fault in enumerate(self._faults):
            if fault.applies_to(endpoint=endpoint, stream=stream):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._faults[position]
                return fault
        return None
