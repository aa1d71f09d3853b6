"""Callers of the management API and a small, fixed world to manage.

Every credential the API knows is here: an admin token and a read token (both owned by the
staff user), the staff user's logged-in session (with CSRF enforced, as in a browser),
alice's virtual key (a developer), and nobody. `caller(name)` returns a client that sends
that credential on every request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from accounts.models import TokenScope
from accounts.services import management_token_issue
from gateway.models import (
    ModelPrice,
    Provider,
    ProviderKind,
    RequestLog,
    Route,
    RouteTarget,
    UpstreamKey,
)

UPSTREAM_SECRET = "sk-ant-api-test-upstream-secret-0001"
BASE = "/api/v1"
CALLERS = ("admin_token", "read_token", "staff_session", "developer_key", "nobody")


class ApiClient:
    """A Django test client that speaks JSON and carries one credential."""

    def __init__(self, client: Client, headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.headers = headers or {}

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        url = path if path.startswith(BASE) else BASE + path
        options: dict[str, Any] = {"headers": self.headers}
        if method in {"get", "delete"} and query:
            options["data"] = query
        if body is not None:
            options["data"] = json.dumps(body)
            options["content_type"] = "application/json"
        return getattr(self.client, method)(url, **options)

    def get(self, path: str, **query: Any) -> Any:
        return self.call("get", path, **query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("post", path, {} if body is None else body)

    def patch(self, path: str, body: Any) -> Any:
        return self.call("patch", path, body)

    def delete(self, path: str) -> Any:
        return self.call("delete", path)


@dataclass
class Tokens:
    admin: str
    read: str


@pytest.fixture
def tokens(staff) -> Tokens:
    return Tokens(
        admin=management_token_issue(owner=staff, scope=TokenScope.ADMIN, name="ci").secret,
        read=management_token_issue(owner=staff, scope=TokenScope.READ, name="grafana").secret,
    )


@pytest.fixture
def admin_api(tokens) -> ApiClient:
    return ApiClient(Client(), {"Authorization": f"Bearer {tokens.admin}"})


@pytest.fixture
def read_api(tokens) -> ApiClient:
    return ApiClient(Client(), {"Authorization": f"Bearer {tokens.read}"})


@pytest.fixture
def staff_api(staff) -> ApiClient:
    """A browser session: logged in, CSRF enforced, the token sent as a browser would."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    client.get("/admin/")  # sets the csrftoken cookie
    return ApiClient(client, {"X-CSRFToken": client.cookies["csrftoken"].value})


@pytest.fixture
def caller(tokens, staff_api, alice) -> Callable[[str], ApiClient]:
    def make(name: str) -> ApiClient:
        if name == "admin_token":
            return ApiClient(Client(), {"Authorization": f"Bearer {tokens.admin}"})
        if name == "read_token":
            return ApiClient(Client(), {"Authorization": f"Bearer {tokens.read}"})
        if name == "staff_session":
            return staff_api
        if name == "developer_key":
            return ApiClient(Client(), {"Authorization": f"Bearer {alice.secret}"})
        if name == "nobody":
            return ApiClient(Client())
        raise ValueError(name)

    return make


def expected_status(name: str, *, ok: int, write: bool) -> int:
    """The permission matrix of every management endpoint."""
    if name == "nobody":
        return 401
    if name == "developer_key":
        return 403
    if name == "read_token" and write:
        return 403
    return ok


# --- The world to manage


@pytest.fixture
def provider(db) -> Provider:
    return Provider.objects.create(
        name="anthropic", kind=ProviderKind.ANTHROPIC, base_url="https://api.anthropic.example"
    )


@pytest.fixture
def upstream_key(provider) -> UpstreamKey:
    return UpstreamKey.objects.create(provider=provider, label="team-a", secret=UPSTREAM_SECRET)


@pytest.fixture
def route(provider, upstream_key) -> Route:
    route = Route.objects.create(name="default", model_pattern="claude-*")
    RouteTarget.objects.create(route=route, position=0, provider=provider)
    return route


@pytest.fixture
def price(provider) -> ModelPrice:
    return ModelPrice.objects.create(
        provider=provider,
        model="claude-test-1",
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        cache_write_5m_per_mtok=Decimal("3.75"),
        cache_write_1h_per_mtok=Decimal("6"),
        cache_read_per_mtok=Decimal("0.3"),
    )


def log_request(
    person: Any,
    *,
    started_at: datetime,
    cost: str | None = "0.0100000000",
    model: str = "claude-sonnet-4-5",
    provider: Provider | None = None,
    session_id: str = "",
    status_code: int = 200,
    outcome: str = "ok",
    **fields: Any,
) -> RequestLog:
    """A request log row for `person` (a cast member), as the recorder would write it."""
    virtual_key = person.user.virtual_keys.order_by("pk").first()
    return RequestLog.objects.create(
        request_id=f"req_{RequestLog.objects.count() + 1:06d}_{person.user.username}",
        started_at=started_at,
        finished_at=started_at + timedelta(seconds=2),
        virtual_key=virtual_key,
        user=person.user,
        cost_center=virtual_key.effective_cost_center,
        session_id=session_id,
        endpoint="/v1/messages",
        model_requested=model,
        model_served=model,
        provider=provider,
        status_code=status_code,
        outcome=outcome,
        input_tokens=fields.pop("input_tokens", 100),
        output_tokens=fields.pop("output_tokens", 20),
        cost_usd=None if cost is None else Decimal(cost),
        is_priced=cost is not None,
        **fields,
    )


@pytest.fixture(autouse=True)
def fresh_budget_ledger(monkeypatch):
    """Budgets are read through admission's ledger; give each test an empty one of its own,
    so counters another test left behind (in this process or in Redis) are never read."""
    from gateway.admission import ledger

    monkeypatch.setattr(ledger, "_shared", ledger.LocalLedger(ledger.spend_from_database))
