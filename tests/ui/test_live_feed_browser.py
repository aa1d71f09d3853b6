"""The live request feed in a real browser: a request sent through the proxy appears on the
staff page within a second of completing, with the numbers the request log recorded."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from accounts.formatting import format_money
from tests.gateway.conftest import wait_for_logs
from tests.ui.conftest import sign_in_to_admin

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SESSION_ID = "6f1d2c3e-live-feed-session"


def send_message(server, secret: str) -> httpx.Response:
    return httpx.post(
        server.base_url + "/v1/messages",
        content=orjson.dumps(
            {
                "model": "claude-sonnet-4-5",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "Say hello to the control room"}],
            }
        ),
        headers={
            "x-api-key": secret,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            "x-claude-code-session-id": SESSION_ID,
        },
        timeout=30,
    )


def test_a_proxied_request_appears_in_the_live_feed_within_a_second(
    page, gatehouse_server, upstream, staff, alice
):
    sign_in_to_admin(page, gatehouse_server, "root-admin", "admin-password")
    page.click("#live-feed-link")
    page.wait_for_selector("#live-feed[data-state='live']")
    assert page.locator("#live-feed-rows tr").count() == 0

    response = send_message(gatehouse_server, alice.secret)
    completed = time.monotonic()
    row = page.wait_for_selector("#live-feed-rows tr", timeout=5000)
    delay = time.monotonic() - completed

    assert response.status_code == 200
    assert delay < 1.0, f"the request took {delay:.2f}s to appear"
    print(f"live feed delay {delay * 1000:.0f} ms")
    [log] = wait_for_logs(1, user=alice.user)
    assert row.get_attribute("data-request-id") == log.request_id
    assert row.inner_text().split("\t")[1:8] == [
        "alice",
        "claude-sonnet-4-5",
        "200",
        f"{log.input_tokens:,} / {log.output_tokens:,}",
        format_money(log.cost_usd, 4),
        f"{log.latency_ms:,} ms",
        f"{log.ttfb_ms:,} ms",
    ]
    session_link = row.query_selector("a")
    assert session_link.get_attribute("href") == f"/admin/sessions/{SESSION_ID}/"
