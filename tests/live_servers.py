"""Real servers for integration tests: Gatehouse (gateway.serve) in a subprocess, under Daphne
or, with `server="granian"` or GATEHOUSE_TEST_SERVER=granian, under Granian.

The server talks to the same test database as the test process, so tests that use it
need committed data (`transactional_db`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from django.db import connection

REPO = Path(__file__).resolve().parent.parent
SERVERS = ("daphne", "granian")


def default_server() -> str:
    """The server live tests run under unless a test asks for one: GATEHOUSE_TEST_SERVER."""
    return os.environ.get("GATEHOUSE_TEST_SERVER", "daphne")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_for_test_db() -> str:
    settings_dict = connection.settings_dict
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{credentials}{settings_dict.get('HOST') or '127.0.0.1'}:{settings_dict.get('PORT') or 5432}/{settings_dict['NAME']}"


def wait_until_serving(url: str, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            if httpx.head(url + "/api/hello", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not start within {timeout_s}s")


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen
    log_path: Path
    server: str = "daphne"

    @property
    def pid(self) -> int:
        """The process that serves requests: Daphne's own, or Granian's (only) worker."""
        if self.server != "granian":
            return self.process.pid
        workers = psutil.Process(self.process.pid).children()
        if len(workers) != 1:
            raise RuntimeError(f"expected one Granian worker, found {len(workers)}")
        return workers[0].pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gatehouse(
    extra_env: dict[str, str] | None = None, server: str | None = None
) -> LiveServer:
    server = server or default_server()
    port = free_port()
    log_path = REPO / "var" / f"test-{server}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": database_url_for_test_db(),
        "GATEHOUSE_CACHE_TTL": "0",
        "GATEHOUSE_LOG_FLUSH_INTERVAL": "0.05",
        "GATEHOUSE_SPOOL_DIR": str(REPO / "var" / f"test-spool-{port}"),
        "GATEHOUSE_REDIS_PREFIX": f"gatehouse-test-{os.getpid()}-{port}",
        **(extra_env or {}),
    }
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.serve",
            "--server",
            server,
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    live = LiveServer(
        base_url=f"http://127.0.0.1:{port}", process=process, log_path=log_path, server=server
    )
    try:
        wait_until_serving(live.base_url, process)
    except RuntimeError:
        process.kill()
        raise RuntimeError(live.log_text()) from None
    return live


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def gatehouse_server(django_db_setup, django_db_blocker) -> Iterator[LiveServer]:
    """Gatehouse on a free loopback port, sharing the test database (under Daphne unless
    GATEHOUSE_TEST_SERVER says otherwise)."""
    with django_db_blocker.unblock():
        server = start_gatehouse()
    yield server
    stop_server(server)


def _server_named(name: str, request, django_db_blocker) -> Iterator[LiveServer]:
    """The session's server when it already runs under `name`, else one of its own."""
    if default_server() == name:
        yield request.getfixturevalue("gatehouse_server")
        return
    with django_db_blocker.unblock():
        server = start_gatehouse(server=name)
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def daphne_server(request, django_db_setup, django_db_blocker) -> Iterator[LiveServer]:
    """Gatehouse under Daphne whatever GATEHOUSE_TEST_SERVER says: for what only Daphne does."""
    yield from _server_named("daphne", request, django_db_blocker)


@pytest.fixture(scope="session")
def granian_server(request, django_db_setup, django_db_blocker) -> Iterator[LiveServer]:
    """Gatehouse under Granian, for what only Granian does (its own refusals)."""
    yield from _server_named("granian", request, django_db_blocker)


@pytest.fixture(scope="session")
def gatehouse_server_fast_ping(django_db_setup, django_db_blocker) -> Iterator[LiveServer]:
    """A second Gatehouse whose ping interval is short enough to observe in a test."""
    with django_db_blocker.unblock():
        server = start_gatehouse(
            {"GATEHOUSE_PING_INTERVAL": "0.3", "GATEHOUSE_MAX_BODY_BYTES": "100000"}
        )
    yield server
    stop_server(server)
