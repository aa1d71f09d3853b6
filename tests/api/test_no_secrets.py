"""No API response ever carries an upstream key's secret or a virtual key's secret or hash,
whatever was created, changed or logged before: every GET endpoint in the OpenAPI document
is walked with real objects behind it."""

from __future__ import annotations

import re
from datetime import date

from django.utils import timezone

from accounts.models import VirtualKey
from billing.models import Invoice
from config.api import api
from gateway.models import RequestLog
from tests.api.conftest import log_request

UPSTREAM_SECRET = "sk-ant-api03-walk-secret-must-never-leave"
ROTATED_SECRET = "sk-ant-api03-rotated-secret-must-never-leave"


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
    hashes = set()
    for virtual_key in VirtualKey.objects.all():
        hashes |= {virtual_key.secret_hash, virtual_key.previous_secret_hash} - {""}
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

    walked = []
    for path, operations in api.get_openapi_schema()["paths"].items():
        if "get" not in operations:
            continue
        url = re.sub(r"\{(\w+)\}", lambda match: str(path_values[match.group(1)]), path)
        for query in ({}, {"limit": 500}):
            response = admin_api.get(url, **query)
            assert response.status_code == 200, (url, response.content[:200])
            text = response.content.decode()
            assert not [secret for secret in secrets if secret in text], url
            assert not [value for value in hashes if value in text], url
            assert "secret_hash" not in text
            walked.append(url)

    assert len(set(walked)) >= 20
    assert "/api/v1/audit" in walked
