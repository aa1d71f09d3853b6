"""The Vertex emulator's control API under `/_emulator/` (no auth, JSON in and out).

POST   /_emulator/reset             back to defaults (issued tokens stay valid until they expire)
GET    /_emulator/config            current settings
POST   /_emulator/config            merge reply settings (as for the Anthropic emulator) and
                                    `token_lifetime_s`
POST   /_emulator/service_accounts  register {"client_email", "project_id", "public_key_pem",
                                    "private_key_id"?} whose JWT assertions /token accepts
GET    /_emulator/faults            queued faults
POST   /_emulator/faults            queue {"fault", "times"?, "endpoint"?} or {"faults": [...]}
DELETE /_emulator/faults            clear the queue
GET    /_emulator/requests          recorded requests (token grants included), oldest first
DELETE /_emulator/requests          forget them
POST   /_emulator/clock             {"advance_seconds": s} (token expiry, cache TTLs)
GET    /_emulator/health            {"ok": true}
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.emulator.errors import EmulatorError, invalid_request
from gateway.emulator.transport import Request, Responder
from gateway.emulator_vertex.faults import parse_fault
from gateway.emulator_vertex.oauth import ServiceAccount, load_public_key
from gateway.emulator_vertex.state import VertexState

CONTROL_PREFIX = "/_emulator/"


class ControlApi:
    """`/_emulator/`: reset, config (reply settings and `token_lifetime_s`), service_accounts,
    faults, requests, clock, health. No auth, JSON in and out."""

    def __init__(self, state: VertexState) -> None:
        self.state = state

    async def handle(self, request: Request, responder: Responder) -> None:
        name = request.path[len(CONTROL_PREFIX) :].strip("/")
        try:
            payload = self._route(request.method, name, _control_json(request), request)
        except EmulatorError as error:
            await responder.json(400, orjson.dumps({"error": error.message}))
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
            return {**state.config.to_dict(), "token_lifetime_s": state.token_lifetime_s}
        if (method, name) == ("POST", "service_accounts"):
            account = _service_account(body)
            state.accounts[account.client_email] = account
            return {"service_accounts": sorted(state.accounts)}
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
                raise invalid_request('clock: expected {"advance_seconds": s}')
            state.clock.advance(float(advance))
            return {"now": state.clock.now()}
        return None

    def _configure(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise invalid_request("config: expected a JSON object")
        settings = dict(body)
        lifetime = settings.pop("token_lifetime_s", None)
        if lifetime is not None and (
            isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime < 1
        ):
            raise invalid_request("token_lifetime_s: expected an integer >= 1")
        self.state.config.update(settings)
        if lifetime is not None:
            self.state.token_lifetime_s = lifetime


def _service_account(body: Any) -> ServiceAccount:
    """`{"client_email", "project_id", "public_key_pem", "private_key_id"?}`."""
    if not isinstance(body, dict) or not all(
        isinstance(body.get(name), str) and body[name]
        for name in ("client_email", "project_id", "public_key_pem")
    ):
        raise invalid_request("service_accounts: expected client_email, project_id, public_key_pem")
    try:
        public_key = load_public_key(body["public_key_pem"])
    except ValueError as error:
        raise invalid_request(f"public_key_pem: {error}") from None
    key_id = body.get("private_key_id")
    return ServiceAccount(
        client_email=body["client_email"],
        project_id=body["project_id"],
        public_key=public_key,
        private_key_id=key_id if isinstance(key_id, str) and key_id else None,
    )


def _control_json(request: Request) -> Any:
    if not request.body.strip():
        return {}
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise invalid_request("The control API expects a JSON body") from None
