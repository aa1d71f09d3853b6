"""The control API under `/_emulator/` (no auth, JSON in and out).

POST   /_emulator/reset      back to defaults: config, cache, rate windows, faults, log, clock
GET    /_emulator/config     current settings
POST   /_emulator/config     merge settings (see config.GLOBAL_FIELDS / KEY_FIELDS)
GET    /_emulator/faults     queued faults
POST   /_emulator/faults     queue {"fault", "key"?, "times"?, "endpoint"?} or {"faults": [...]}
DELETE /_emulator/faults     clear the queue
GET    /_emulator/requests   recorded requests, oldest first (?limit=N for the last N)
DELETE /_emulator/requests   forget them
GET    /_emulator/clock      {"now", "offset_seconds"}
POST   /_emulator/clock      {"advance_seconds": s} or {"offset_seconds": s}
GET    /_emulator/cache      {"entries": N} live and expired-but-unswept cache entries
GET    /_emulator/health     {"ok": true}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.emulator.errors import EmulatorError, error_body, invalid_request
from gateway.emulator.faults import fault_from_request
from gateway.emulator.state import EmulatorState
from gateway.emulator.transport import Request, Responder

CONTROL_PREFIX = "/_emulator/"
OK = {"ok": True}


def _json(request: Request) -> Any:
    if not request.body.strip():
        return {}
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise invalid_request("The control API expects a JSON body") from None


def _number(payload: dict[str, Any], name: str) -> float:
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_request(f"{name}: expected a number")
    return float(value)


class ControlApi:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._routes: dict[tuple[str, str], Callable[[Request], Any]] = {
            ("POST", "reset"): self.reset,
            ("GET", "config"): self.get_config,
            ("POST", "config"): self.update_config,
            ("GET", "faults"): self.list_faults,
            ("POST", "faults"): self.add_faults,
            ("DELETE", "faults"): self.clear_faults,
            ("GET", "requests"): self.list_requests,
            ("DELETE", "requests"): self.clear_requests,
            ("GET", "clock"): self.get_clock,
            ("POST", "clock"): self.move_clock,
            ("GET", "cache"): self.get_cache,
            ("GET", "health"): self.health,
        }

    async def handle(self, request: Request, responder: Responder) -> None:
        name = request.path[len(CONTROL_PREFIX) :].strip("/")
        handler = self._routes.get((request.method, name))
        try:
            if handler is None:
                raise EmulatorError(404, f"No control endpoint {request.method} {request.path}")
            payload = handler(request)
        except EmulatorError as error:
            body = error_body(error.error_type, error.message, responder.request_id)
            await responder.json(error.status, body)
            return
        await responder.json(200, orjson.dumps(payload))

    def reset(self, request: Request) -> dict[str, Any]:
        self.state.reset()
        return OK

    def get_config(self, request: Request) -> dict[str, Any]:
        return self.state.config.to_dict()

    def update_config(self, request: Request) -> dict[str, Any]:
        self.state.config.update(_json(request))
        self.state.log.resize(self.state.config.record_limit)
        return self.state.config.to_dict()

    def list_faults(self, request: Request) -> dict[str, Any]:
        return {"faults": self.state.faults.to_list()}

    def add_faults(self, request: Request) -> dict[str, Any]:
        payload = _json(request)
        entries = (
            payload["faults"] if isinstance(payload, dict) and "faults" in payload else [payload]
        )
        if not isinstance(entries, list):
            raise invalid_request("faults: expected a list")
        faults = [fault_from_request(entry) for entry in entries]
        for fault in faults:
            self.state.faults.add(fault)
        return self.list_faults(request)

    def clear_faults(self, request: Request) -> dict[str, Any]:
        self.state.faults.clear()
        return self.list_faults(request)

    def list_requests(self, request: Request) -> dict[str, Any]:
        raw_limit = request.query.get("limit")
        if raw_limit is not None and not raw_limit.isdigit():
            raise invalid_request("limit: expected a non-negative integer")
        limit = int(raw_limit) if raw_limit is not None else None
        return {"requests": self.state.log.last(limit)}

    def clear_requests(self, request: Request) -> dict[str, Any]:
        self.state.log.clear()
        return OK

    def get_clock(self, request: Request) -> dict[str, Any]:
        clock = self.state.clock
        return {"now": clock.now(), "offset_seconds": clock.offset_seconds}

    def move_clock(self, request: Request) -> dict[str, Any]:
        payload = _json(request)
        if not isinstance(payload, dict) or not {"advance_seconds", "offset_seconds"} & set(
            payload
        ):
            raise invalid_request('clock: expected {"advance_seconds": s} or {"offset_seconds": s}')
        if "offset_seconds" in payload:
            self.state.clock.offset_seconds = _number(payload, "offset_seconds")
        if "advance_seconds" in payload:
            self.state.clock.advance(_number(payload, "advance_seconds"))
        return self.get_clock(request)

    def get_cache(self, request: Request) -> dict[str, Any]:
        return {"entries": len(self.state.cache)}

    def health(self, request: Request) -> dict[str, Any]:
        return OK
