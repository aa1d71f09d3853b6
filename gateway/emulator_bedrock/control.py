"""The Bedrock emulator's control API under `/_emulator/` (no auth, JSON in and out).

POST   /_emulator/reset      back to defaults: config, region, credentials, cache, faults, log, clock
GET    /_emulator/config     current settings
POST   /_emulator/config     merge reply settings (as for the Anthropic emulator), `region`,
                             `credentials` {"<access key id>": {"secret_access_key", "session_token"?}}
GET    /_emulator/faults     queued faults
POST   /_emulator/faults     queue {"fault", "times"?, "endpoint"?} or {"faults": [...]} (faults.py)
DELETE /_emulator/faults     clear the queue
GET    /_emulator/requests   recorded requests, oldest first (?limit=N for the last N)
DELETE /_emulator/requests   forget them
POST   /_emulator/clock      {"advance_seconds": s} (signature timestamps, cache TTLs)
GET    /_emulator/health     {"ok": true}
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.emulator.errors import EmulatorError
from gateway.emulator.transport import Request, Responder
from gateway.emulator_bedrock.faults import FaultSpecError, parse_fault
from gateway.emulator_bedrock.sigv4 import AwsCredential
from gateway.emulator_bedrock.state import BedrockState

CONTROL_PREFIX = "/_emulator/"


class ControlApi:
    """`/_emulator/`: reset, config (reply settings, `region`, `credentials`), faults,
    requests, clock, health. No auth, JSON in and out."""

    def __init__(self, state: BedrockState) -> None:
        self.state = state

    async def handle(self, request: Request, responder: Responder) -> None:
        name = request.path[len(CONTROL_PREFIX) :].strip("/")
        try:
            payload = self._route(request.method, name, _control_json(request), request)
        except (EmulatorError, FaultSpecError) as error:
            message = error.message if isinstance(error, EmulatorError) else str(error)
            await responder.json(400, orjson.dumps({"error": message}))
            return
        if payload is None:
            await responder.json(404, orjson.dumps({"error": f"No control endpoint {name}"}))
            return
        await responder.json(200, orjson.dumps(payload))

    def _route(self, method: str, name: str, body: Any, request: Request) -> Any:
        state = self.state
        if (method, name) == ("GET", "health"):
            return {"ok": True}
        if (method, name) == ("POST", "reset"):
            state.reset()
            return {"ok": True}
        if name == "config" and method in ("GET", "POST"):
            if method == "POST":
                self._configure(body)
            return self._config()
        if name == "faults" and method in ("GET", "POST", "DELETE"):
            if method == "POST":
                entries = body["faults"] if isinstance(body, dict) and "faults" in body else [body]
                for fault in [parse_fault(entry) for entry in entries]:
                    state.faults.add(fault)
            elif method == "DELETE":
                state.faults.clear()
            return {"faults": state.faults.to_list()}
        if (method, name) == ("GET", "requests"):
            limit = request.query.get("limit")
            return {"requests": state.log.last(int(limit) if limit and limit.isdigit() else None)}
        if (method, name) == ("DELETE", "requests"):
            state.log.clear()
            return {"ok": True}
        if (method, name) == ("POST", "clock"):
            advance = body.get("advance_seconds") if isinstance(body, dict) else None
            if isinstance(advance, bool) or not isinstance(advance, int | float):
                raise FaultSpecError('clock: expected {"advance_seconds": s}')
            state.clock.advance(float(advance))
            return {"now": state.clock.now()}
        return None

    def _configure(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise FaultSpecError("config: expected a JSON object")
        settings = dict(body)
        region = settings.pop("region", None)
        credentials = settings.pop("credentials", None)
        if region is not None and (not isinstance(region, str) or not region):
            raise FaultSpecError("region: expected a non-empty string")
        parsed = _credentials(credentials) if credentials is not None else None
        self.state.config.update(settings)
        if region is not None:
            self.state.region = region
        if parsed is not None:
            self.state.credentials.update(parsed)

    def _config(self) -> dict[str, Any]:
        return {
            **self.state.config.to_dict(),
            "region": self.state.region,
            "credentials": sorted(self.state.credentials),
        }


def _credentials(payload: Any) -> dict[str, AwsCredential]:
    """`{"<access key id>": {"secret_access_key": "...", "session_token"?: "..."}}`."""
    if not isinstance(payload, dict):
        raise FaultSpecError("credentials: expected an object of access key id -> secret")
    parsed: dict[str, AwsCredential] = {}
    for access_key_id, entry in payload.items():
        secret = entry.get("secret_access_key") if isinstance(entry, dict) else None
        token = entry.get("session_token") if isinstance(entry, dict) else None
        if not isinstance(secret, str) or not secret or not isinstance(token, str | None):
            raise FaultSpecError(f"credentials.{access_key_id}: expected secret_access_key")
        parsed[access_key_id] = AwsCredential(secret, token)
    return parsed


def _control_json(request: Request) -> Any:
    if not request.body.strip():
        return {}
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise FaultSpecError("The control API expects a JSON body") from None
