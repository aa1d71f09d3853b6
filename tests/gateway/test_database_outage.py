"""The database goes away for 30 s while traffic flows (issue 9, data safety).

Gatehouse runs under Daphne in a subprocess against a PostgreSQL database of its own,
reached through a TCP relay the test cuts: every live connection is reset and new ones
fail until it is restored. Keys seen before the outage keep working, usage rows wait in
the spool on local disk, and once the database is back every request the client got an
answer for is in RequestLog exactly once.

The database is created, migrated and seeded here (the same way in the SQLite and the
PostgreSQL pass of the suite) and dropped at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.live_servers import REPO, LiveServer, start_gatehouse, stop_server
from tests.tcp_cutter import TcpCutter

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432
POSTGRES_ADMIN_URL = f"postgres://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/postgres"
OUTAGE_S = 30.0
CACHE_TTL_S = 1.0
MODEL = "claude-sonnet-4-5"

# Run by `manage.py shell` against the outage database: the cast, a route to the emulator.
SEED = """
import json, sys
from accounts.models import CostCenter, User
from accounts.services import virtual_key_issue
from gateway.models import Provider, ProviderKind, Route, RouteTarget, UpstreamKey

research = CostCenter.objects.create(code="research", name="Research", monthly_budget_usd="500.00")
secrets = {}
for name in ("alice", "bob", "charlie"):
    user = User.objects.create_user(name, f"{name}@example.com", "pw", default_cost_center=research)
    secrets[name] = virtual_key_issue(owner=user, name=f"{name} laptop").secret
provider = Provider.objects.create(name="anthropic", kind=ProviderKind.ANTHROPIC, base_url=EMULATOR_URL)
UpstreamKey.objects.create(provider=provider, label="team-a", secret="sk-ant-emulator-upstream-0001")
route = Route.objects.create(name="default", model_pattern="claude-*")
RouteTarget.objects.create(route=route, position=0, provider=provider)
sys.stdout.write("SEEDED " + json.dumps(secrets))
"""


def manage(database_url: str, *args: str) -> str:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": database_url,
    }
    completed = subprocess.run(  # noqa: S603 - this interpreter and manage.py
        [sys.executable, str(REPO / "manage.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


@pytest.fixture
def outage_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test alone; its URL."""
    name = f"gh_outage_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgres://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    try:
        manage(url, "migrate", "--verbosity", "0")
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def cutter() -> Iterator[TcpCutter]:
    relay = TcpCutter(POSTGRES_HOST, POSTGRES_PORT)
    yield relay
    relay.close()


@dataclass
class Answer:
    """What the client saw for one request."""

    key: str
    status: int
    request_id: str
    sent_at: float
    seconds: float
    body: bytes


@dataclass
class Traffic:
    """Clients sending requests in a loop, each remembering every answer it got."""

    base_url: str
    secrets: dict[str, str]
    answers: list[Answer] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, client: httpx.Client, key: str, *, stream: bool) -> Answer:
        sent_at = time.monotonic()
        response = client.post(
            "/v1/messages",
            headers={"x-api-key": self.secrets[key], "anthropic-version": "2023-06-01"},
            json={
                "model": MODEL,
                "max_tokens": 32,
                "stream": stream,
                "messages": [{"role": "user", "content": "hello"}],
            },
        )
        answer = Answer(
            key=key,
            status=response.status_code,
            request_id=response.headers.get("request-id", ""),
            sent_at=sent_at,
            seconds=time.monotonic() - sent_at,
            body=response.content,
        )
        with self.lock:
            self.answers.append(answer)
        return answer

    def _loop(self, key: str, stream: bool) -> None:
        with httpx.Client(base_url=self.base_url, timeout=60.0) as client:
            while not self.stopping.is_set():
                self.send(client, key, stream=stream)
                time.sleep(0.05)

    def start(self, keys: list[str]) -> None:
        for index, key in enumerate(keys):
            thread = threading.Thread(target=self._loop, args=(key, index % 2 == 1))
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=90)

    def between(self, start: float, end: float) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if start <= a.sent_at and a.sent_at + a.seconds <= end]


def spooled_request_ids(spool_dir: Path) -> list[str]:
    """The request ids (upstream's, else ours) of the rows waiting in the spool."""
    ids = []
    for path in [*spool_dir.glob("*.jsonl"), *spool_dir.glob(".*.claimed")]:
        for line in path.read_bytes().splitlines():
            row = json.loads(line)
            ids.append(row.get("upstream_request_id") or row["request_id"])
    return ids


def logged_request_ids(database_url: str) -> Counter[str]:
    """How many RequestLog rows each request id the client saw has (upstream's or ours)."""
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT request_id, upstream_request_id FROM gateway_requestlog"
        ).fetchall()
    counts: Counter[str] = Counter()
    for request_id, upstream_request_id in rows:
        counts[upstream_request_id or request_id] += 1
    return counts


def wait_for(condition, timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


@pytest.fixture
def gatehouse_behind_cutter(
    outage_database, cutter, emulator, tmp_path
) -> Iterator[tuple[LiveServer, dict[str, str], Path]]:
    seeded = manage(
        outage_database, "shell", "-c", f"EMULATOR_URL = {emulator.base_url!r}\n" + SEED
    )
    secrets = json.loads(seeded.split("SEEDED ", 1)[1])
    relayed_url = outage_database.replace(
        f"{POSTGRES_HOST}:{POSTGRES_PORT}", f"127.0.0.1:{cutter.port}"
    )
    spool_dir = tmp_path / "spool"
    server = start_gatehouse(
        {
            "DATABASE_URL": relayed_url,
            "GATEHOUSE_CACHE_TTL": str(CACHE_TTL_S),
            "GATEHOUSE_SPOOL_DIR": str(spool_dir),
        }
    )
    yield server, secrets, spool_dir
    stop_server(server)


def test_a_30_second_database_outage_loses_no_request_and_counts_none_twice(
    gatehouse_behind_cutter, cutter, outage_database
):
    server, secrets, spool_dir = gatehouse_behind_cutter
    traffic = Traffic(server.base_url, secrets)
    # Given alice and bob have been served (their keys are cached), charlie not yet,
    traffic.start(["alice", "bob", "alice", "bob"])
    assert wait_for(lambda: len(traffic.answers) >= 20, timeout_s=30)

    # when the database is cut off for 30 s while they keep sending,
    cutter.cut()
    cut_at = time.monotonic()
    with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
        unverifiable = traffic.send(client, "charlie", stream=False)
        time.sleep(cut_at + OUTAGE_S - time.monotonic())
        looked_at = time.monotonic()
        spooled = spooled_request_ids(spool_dir)
        during = [a for a in traffic.between(cut_at, looked_at) if a.key != "charlie"]
        cutter.restore()
        restored_at = time.monotonic()
        welcomed = traffic.send(client, "charlie", stream=False)
        while welcomed.status != 200 and time.monotonic() - restored_at < 20:
            time.sleep(0.5)
            welcomed = traffic.send(client, "charlie", stream=False)
        recovered_after_s = time.monotonic() - restored_at
    traffic.stop()
    answered = list(traffic.answers)

    # then every request of a known key was served during the outage, without waiting on it;
    assert len(during) >= 100
    assert [a.status for a in during if a.status != 200] == []
    assert max(a.seconds for a in during) < 3.0, sorted(a.seconds for a in during)[-10:]
    # a key never seen could not be verified, and said so in Anthropic's shape;
    assert unverifiable.status == 500
    assert json.loads(unverifiable.body)["error"]["type"] == "api_error"
    # the usage of the outage waited on local disk, each request once;
    on_disk = Counter(spooled)
    settled = {a.request_id for a in during if cut_at + 2 <= a.sent_at + a.seconds <= looked_at - 1}
    assert settled <= set(on_disk)
    assert max(on_disk.values()) == 1
    # once the database is back, every answer is in RequestLog exactly once, the spool is
    # empty, and a key never seen before is verified again.
    expected = Counter(a.request_id for a in answered)
    assert len(expected) == len(answered)
    assert wait_for(lambda: logged_request_ids(outage_database) == expected, timeout_s=30), (
        len(expected),
        sum(logged_request_ids(outage_database).values()),
    )
    # (a spool file is deleted after its rows are committed, so it may outlive them briefly)
    assert wait_for(lambda: list(spool_dir.iterdir()) == [], timeout_s=10), sorted(
        path.name for path in spool_dir.iterdir()
    )
    assert welcomed.status == 200
    assert recovered_after_s < 15
    log = server.log_text()
    assert "Database unavailable for key lookups" in log
    assert "RequestLog cannot be written" in log
