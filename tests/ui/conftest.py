"""Headless Chromium (Debian's, at /usr/bin/chromium) driven by Playwright against the real
Gatehouse under Daphne (`gatehouse_server`), which shares the test database.

Playwright's sync API keeps an asyncio loop running on the test's thread while a browser is
open, which Django would take for async code; the ORM calls these tests make between two
browser steps are ordinary synchronous calls, so the check is lifted for these tests only.
Every page may load from 127.0.0.1 only: anything else is refused and recorded, and a test
that saw such a request fails (the admin must work offline).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connections
from playwright.sync_api import Browser, Page, Route, sync_playwright

from tests.gateway.conftest import upstream  # noqa: F401 - the proxy's upstream, for these tests
from tests.live_servers import REPO, LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "var" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture
def browser(monkeypatch) -> Iterator[Browser]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # Django keeps connections per context (asgiref's Local); the ones opened while the
            # browser ran are not those pytest-django closes, and would keep the test
            # database busy at teardown on PostgreSQL.
            connections.close_all()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh profile in Paris time (so local times differ from UTC), 1440 px wide."""
    context = browser.new_context(
        viewport={"width": 1440, "height": 1000}, timezone_id="Europe/Paris", locale="en-GB"
    )
    outside: list[str] = []

    def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()
    assert outside == [], f"pages tried to reach beyond 127.0.0.1: {outside}"


def sign_in_to_admin(page: Page, server: LiveServer, username: str, password: str) -> None:
    page.goto(server.base_url + "/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def painted_pixels(page: Page, canvas_selector: str) -> int:
    """How many pixels of a canvas are not fully transparent: 0 for an empty chart."""
    return page.eval_on_selector(
        canvas_selector,
        """canvas => {
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0;
            for (let alpha = 3; alpha < data.length; alpha += 4) {
                if (data[alpha] !== 0) { painted += 1; }
            }
            return painted;
        }""",
    )
