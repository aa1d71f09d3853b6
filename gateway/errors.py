"""Errors the gateway itself produces, in Anthropic's shape (DESIGN.md §5)."""

from __future__ import annotations

import secrets

import orjson

# HTTP status for each Anthropic error type the gateway emits.
STATUS_FOR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def new_request_id() -> str:
    return "req_gh_" + secrets.token_hex(12)


class GatewayError(Exception):
    """A request the gateway answers itself: status, Anthropic error type, message."""

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status or STATUS_FOR_TYPE.get(error_type, 500)
        self.headers = headers or {}


def error_body(error_type: str, message: str, request_id: str) -> bytes:
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }
    )


def error_event(error_type: str, message: str) -> bytes:
    """An SSE `error` frame for failures after the response has started streaming."""
    payload = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return b"event: error\ndata: " + payload + b"\n\n"
