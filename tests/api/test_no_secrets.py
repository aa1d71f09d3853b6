"""No secret ever leaves Gatehouse: not an upstream key's secret, not a virtual key's secret
or hash. The management API's GET endpoints are walked with real objects behind them; then,
after real traffic through Daphne (successes, upstream 401/429/500/529, a stream cut short,
an upstream that echoes the key it was sent, an unreachable upstream, a wrong virtual key),
every API response, every admin page of every registered model, every line the server
logged and every error the clients saw are grepped too."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import VirtualKey
from billing import rollups
from billing.models import Invoice
from config.api import api
from gateway.models import (
    ModelPrice,
    Provider,
    ProviderKind,
    RequestLog,
    Route,
    RouteTarget,
    UpstreamKey,
)
from gateway.upstream_health import upstream_keys_probe_unhealthy
from tests.api.conftest import ApiClient, log_request
from tests.gateway.conftest import seed_price_catalog, wait_for_logs, wait_for_quiet_log

UPSTREAM_SECRET = "sk-ant-api03-walk-secret-must-never-leave"
ROTATED_SECRET = "sk-ant-api03-rotated-secret-must-never-leave"
TRAFFIC_SECRET = "sk-ant-api03-traffic-secret-must-never-leave"
ECHOED_SECRET = "sk-ant-api03-echoed-by-upstream-must-never-leave"


def walk_api(admin_api: ApiClient, path_values: dict[str, object]) -> dict[str, str]:
    """Every GET endpoint of the OpenAPI document, with and without a large page: url → body."""
    texts = {}
    for path, operations in api.get_openapi_schema()["paths"].items():
        if "get" not in operations:
            continue
        url = re.sub(r"\{(\w+)\}", lambda match: str(path_values[match.group(1)]), path)
        for query in ({}, {"limit": 500}):
            response = admin_api.get(url, **query)
            assert response.status_code == 200, (url, response.content[:200])
            texts[f"{url} {query}"] = response.content.decode()
    return texts


def walk_admin(client: Client, objects_per_model: int = 20) -> dict[str, str]:
    """Changelist, add, and each object's change and history page of every registered model."""
    texts = {}
    for model in admin.site._registry:
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        urls = [reverse(f"{prefix}_changelist"), reverse(f"{prefix}_add")]
        for pk in model.objects.order_by("-pk").values_list("pk", flat=True)[:objects_per_model]:
            urls += [
                reverse(f"{prefix}_change", args=[pk]),
                reverse(f"{prefix}_history", args=[pk]),
            ]
        for url in urls:
            response = client.get(url)
            assert response.status_code in (200, 403), (url, response.status_code)
            texts[url] = response.content.decode()
    for url in (reverse("control_room"), reverse("live_feed")):
        texts[url] = client.get(url).content.decode()
    return texts


def leaks(texts: dict[str, str], secrets: set[str]) -> dict[str, list[str]]:
    """Where any of `secrets` appears (by a short name of each), for a readable failure."""
    found = {}
    for where, text in texts.items():
        present = sorted(secret[:16] + "…" for secret in secrets if secret in text)
        if present:
            found[where] = present
    return found


def key_hashes() -> set[str]:
    hashes: set[str] = set()
    for virtual_key in VirtualKey.objects.all():
        hashes |= {virtual_key.secret_hash, virtual_key.previous_secret_hash} - {""}
    return hashes


def test_no_response_contains_a_secret_or_a_hash(admin_api, alice, bob, research):
    provider = admin_api.post(
        "/providers", {"name": "anthropic", "kind": "anthropic", "base_url": "https://a.example"}
    ).json()
    upstream_key = admin_api.post(
        "/upstream-keys",
        {"provider_id": provider["id"], "label": "main", "secret": UPSTREAM_SECRET},
    ).json()
    admin_api.patch(f"/upstream-keys/{upstream_key['id']}", {"secret": ROTATED_SECRET})
    route = admin_api.post(
        "/routes",
        {"name": "all", "model_pattern": "claude-*", "targets": [{"provider_id": provider["id"]}]},
    ).json()
    price = admin_api.post(
        "/prices",
        {
            "provider_id": provider["id"],
            "model": "claude-walk",
            "effective_from": "2030-01-01T00:00:00Z",
            "input_per_mtok": "3",
            "output_per_mtok": "15",
        },
    ).json()
    issued = admin_api.post("/keys", {"owner_id": bob.user.pk, "name": "walk"}).json()
    rotated = admin_api.post(f"/keys/{issued['id']}/rotate", {"grace_hours": 1}).json()
    log_request(alice, started_at=timezone.now())
    invoice = Invoice.objects.create(cost_center=research, period_start=date(2026, 1, 1))
    request_log = RequestLog.objects.get()
    secrets = {
        UPSTREAM_SECRET,
        ROTATED_SECRET,
        alice.secret,
        bob.secret,
        issued["secret"],
        rotated["secret"],
    }
    path_values = {
        "cost_center_id": research.pk,
        "user_id": alice.user.pk,
        "key_id": issued["id"],
        "provider_id": provider["id"],
        "upstream_key_id": upstream_key["id"],
        "route_id": route["id"],
        "price_id": price["id"],
        "request_id": request_log.request_id,
        "invoice_id": invoice.pk,
    }

    texts = walk_api(admin_api, path_values)

    assert leaks(texts, secrets | key_hashes()) == {}
    assert [url for url, text in texts.items() if "secret_hash" in text] == []
    assert len({url.split(" ")[0] for url in texts}) >= 20
    assert "/api/v1/audit {}" in texts


def test_refused_writes_do_not_echo_an_upstream_secret(admin_api):
    provider = admin_api.post(
        "/providers", {"name": "anthropic", "kind": "anthropic", "base_url": "https://a.example"}
    ).json()

    answers = [
        admin_api.post("/upstream-keys", {"provider_id": 999_999, "secret": UPSTREAM_SECRET}),
        admin_api.post("/upstream-keys", {"provider_id": "x", "secret": UPSTREAM_SECRET}),
        admin_api.post(
            "/upstream-keys", {"provider_id": provider["id"], "label": 7, "secret": UPSTREAM_SECRET}
        ),
        admin_api.post(
            "/upstream-keys", {"provider_id": provider["id"], "secret": [UPSTREAM_SECRET]}
        ),
    ]

    assert [answer.status_code for answer in answers] == [422, 422, 422, 422]
    assert [answer for answer in answers if UPSTREAM_SECRET in answer.content.decode()] == []


class EchoingUpstream(BaseHTTPRequestHandler):
    """A provider that refuses every key and, carelessly, says which key it refused."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook
        self.rfile.read(int(self.headers.get("content-length") or 0))
        key = self.headers.get("x-api-key", "")
        body = orjson.dumps(
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": f"invalid x-api-key: {key}"},
            }
        )
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


@pytest.fixture
def echoing_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def route_to(name: str, pattern: str, provider: Provider, priority: int) -> Route:
    route = Route.objects.create(name=name, model_pattern=pattern, priority=priority)
    RouteTarget.objects.create(route=route, position=0, provider=provider)
    return route


@pytest.mark.django_db(transaction=True)
def test_after_real_traffic_no_response_page_log_line_or_error_shows_a_secret(
    gatehouse_server, emulator, echoing_upstream, admin_api, staff, alice, caplog
):
    seed_price_catalog()
    anthropic = Provider.objects.create(
        name="anthropic", kind=ProviderKind.ANTHROPIC, base_url=emulator.base_url
    )
    main_key = UpstreamKey.objects.create(provider=anthropic, label="main", secret=TRAFFIC_SECRET)
    echoing = Provider.objects.create(
        name="echoing", kind=ProviderKind.ANTHROPIC, base_url=echoing_upstream
    )
    UpstreamKey.objects.create(provider=echoing, label="echoed", secret=ECHOED_SECRET)
    gone = Provider.objects.create(
        name="gone", kind=ProviderKind.ANTHROPIC, base_url=f"http://127.0.0.1:{closed_port()}"
    )
    UpstreamKey.objects.create(provider=gone, label="gone", secret=UPSTREAM_SECRET)
    route = route_to("default", "claude-*", anthropic, priority=100)
    route_to("echoing", "claude-echo-*", echoing, priority=10)
    route_to("gone", "claude-gone-*", gone, priority=10)
    mistyped_key = alice.secret[:-4] + "AAAA"
    secrets = {TRAFFIC_SECRET, ECHOED_SECRET, UPSTREAM_SECRET, alice.secret, mistyped_key[:-4]}
    secrets |= key_hashes()

    def send(model: str, *, secret: str = alice.secret, stream: bool = False, fault: str = ""):
        if fault:
            emulator.inject_fault(fault, times=None)
        body = {"model": model, "max_tokens": 32, "stream": stream}
        body["messages"] = [{"role": "user", "content": "Say hello"}]
        response = httpx.post(
            gatehouse_server.base_url + "/v1/messages",
            content=orjson.dumps(body),
            headers={"x-api-key": secret, "content-type": "application/json"},
            timeout=30,
        )
        if fault:
            emulator.clear_faults()
            time.sleep(1.2)  # the key's cool-down after a refusal (retry-after: 1)
        return response

    answers = {
        "ok": send("claude-sonnet-4-5"),
        "stream": send("claude-sonnet-4-5", stream=True),
        "echoing 401": send("claude-echo-1"),
        "unreachable": send("claude-gone-1"),
        "wrong virtual key": send("claude-sonnet-4-5", secret=mistyped_key),
        "stream cut": send("claude-sonnet-4-5", stream=True, fault="drop_mid_stream"),
        "500": send("claude-sonnet-4-5", fault="500"),
        "529": send("claude-sonnet-4-5", fault="529"),
        "429": send("claude-sonnet-4-5", fault="429"),
        "401": send("claude-sonnet-4-5", fault="401"),
    }
    wait_for_logs(9, timeout_s=15)
    wait_for_quiet_log()
    with caplog.at_level(logging.DEBUG):
        upstream_keys_probe_unhealthy()
    rollups.rollup_usage()
    staff_browser = Client()
    staff_browser.force_login(staff)
    request_log = RequestLog.objects.order_by("pk").first()
    path_values = {
        "cost_center_id": alice.user.default_cost_center_id,
        "user_id": alice.user.pk,
        "key_id": alice.user.virtual_keys.get().public_id,
        "provider_id": anthropic.pk,
        "upstream_key_id": main_key.pk,
        "route_id": route.pk,
        "price_id": ModelPrice.objects.order_by("pk").values_list("pk", flat=True).first(),
        "request_id": request_log.request_id if request_log else "",
        "invoice_id": Invoice.objects.order_by("pk").values_list("pk", flat=True).first(),
    }

    client_texts = {name: answer.text for name, answer in answers.items()}
    api_texts = walk_api(admin_api, path_values)
    admin_texts = walk_admin(staff_browser)
    server_log = gatehouse_server.log_text()
    stored_errors = {
        row.request_id: row.error_message for row in RequestLog.objects.exclude(error_message="")
    }

    assert {name: answer.status_code for name, answer in answers.items()} == {
        "ok": 200,
        "stream": 200,
        "echoing 401": 500,
        "unreachable": 500,
        "wrong virtual key": 401,
        "stream cut": 200,
        "500": 500,
        "529": 529,
        "429": 429,
        "401": 500,
    }
    assert RequestLog.objects.filter(provider=echoing).exists()
    assert leaks(client_texts, secrets) == {}
    assert leaks(stored_errors, secrets) == {}
    assert leaks(api_texts, secrets) == {}
    assert leaks(admin_texts, secrets) == {}
    assert leaks({"server log": server_log, "probe log": caplog.text}, secrets) == {}
    assert len(admin_texts) >= 2 * len(admin.site._registry)
