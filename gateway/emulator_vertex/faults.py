"""Google's error shape and the Vertex emulator's injectable faults.

Specs, queued through `POST /_emulator/faults` as `{"fault", "times"?, "endpoint"?}`:
  `google:<code>` — a Google-style `{"error": {"code", "message", "status"}}` (codes in
  GOOGLE_ERRORS); `anthropic:<code>` — an Anthropic-shaped error, as Vertex relays the model
  server's; `error_event_mid_stream`, `drop_mid_stream` — the Anthropic emulator's stream faults.
`endpoint` is `messages` (default), `count_tokens` or `any`.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.emulator.errors import ERROR_TYPES_BY_STATUS, invalid_request
from gateway.emulator.faults import Fault

GOOGLE_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential.",
    ),
    403: ("PERMISSION_DENIED", "Permission 'aiplatform.endpoints.predict' denied on resource."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: (
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
        "with base model: anthropic-claude. Please submit a quota increase request.",
    ),
    500: ("INTERNAL", "Internal error encountered."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
    504: ("DEADLINE_EXCEEDED", "Deadline exceeded."),
}
MID_STREAM_FAULTS = frozenset({"error_event_mid_stream", "drop_mid_stream"})
FAULT_ENDPOINTS = ("messages", "count_tokens", "any")


class GoogleError(Exception):
    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        self.status, default_message = GOOGLE_ERRORS.get(code, ("UNKNOWN", "Unknown error."))
        self.message = message or default_message
        super().__init__(self.message)

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"code": self.code, "message": self.message, "status": self.status}}
        )


def parse_fault(payload: Any) -> Fault:
    """`{"fault": "google:429" | "anthropic:529" | "error_event_mid_stream" | "drop_mid_stream",
    "times"?: n, "endpoint"?: "messages" | "count_tokens" | "any"}`."""
    if not isinstance(payload, dict) or not isinstance(payload.get("fault"), str):
        raise invalid_request('faults: expected {"fault": "<spec>", "times"?, "endpoint"?}')
    spec = payload["fault"].strip()
    times, endpoint = payload.get("times", 1), payload.get("endpoint", "messages")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise invalid_request("faults.times: expected an integer >= 1 or null")
    if endpoint not in FAULT_ENDPOINTS:
        raise invalid_request(f"faults.endpoint: expected one of {', '.join(FAULT_ENDPOINTS)}")
    shape, _, code = spec.partition(":")
    if spec in MID_STREAM_FAULTS:
        return Fault(kind=spec, spec=spec, times=times, endpoint=endpoint)
    if shape == "google" and code.isdigit() and int(code) in GOOGLE_ERRORS:
        return Fault(kind="google", spec=spec, status=int(code), times=times, endpoint=endpoint)
    if shape == "anthropic" and code.isdigit() and int(code) in ERROR_TYPES_BY_STATUS:
        return Fault(kind="anthropic", spec=spec, status=int(code), times=times, endpoint=endpoint)
    raise invalid_request(f"fault: unknown fault {spec!r}")
