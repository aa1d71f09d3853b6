"""The real Claude Code CLI (`claude -p`), pointed at Gatehouse in front of the emulator.

The CLI is the pinned npm package (package.json / package-lock.json), installed by
`npm ci` (`make install`). Each run gets a fresh HOME, TMPDIR and working directory and a
minimal environment: the gateway is its only base URL, and anything else it might try to
reach goes to a loopback proxy sink that records and refuses it, so a stray call fails at
once instead of leaving the machine or hanging the test.
"""

from __future__ import annotations

import json
import os
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.conftest import UPSTREAM_SECRET, wait_for_logs
from tests.live_servers import REPO

pytestmark = [pytest.mark.cli, pytest.mark.django_db(transaction=True)]

CLAUDE = REPO / "node_modules" / ".bin" / "claude"
RUN_TIMEOUT_S = 90  # below pytest-timeout (120 s) so the failure says what hung
REPLY = "Gatehouse says hi to Claude Code: 7f3a-relay-ok"


class ProxySink(socketserver.ThreadingTCPServer):
    """An HTTP(S) proxy that refuses everything and remembers each request line."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RefuseAndRecord)
        self.attempts: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class RefuseAndRecord(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.server.attempts.append(self.rfile.readline(1024).decode("latin-1").strip())
        self.wfile.write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )


@pytest.fixture
def proxy_sink() -> Iterator[ProxySink]:
    sink = ProxySink()
    thread = threading.Thread(target=sink.serve_forever, daemon=True)
    thread.start()
    yield sink
    sink.shutdown()
    sink.server_close()


def claude_env(
    home: Path, tmpdir: Path, base_url: str, credential: dict[str, str], proxy_url: str
) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": base_url,
        **credential,
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "HTTPS_PROXY": proxy_url,
        "HTTP_PROXY": proxy_url,
        "NO_PROXY": "127.0.0.1,localhost",
    }


def run_claude(
    tmp_path: Path, base_url: str, credential: dict[str, str], proxy_url: str, prompt: str
) -> subprocess.CompletedProcess:
    assert CLAUDE.exists(), (
        f"Claude Code CLI not found at {CLAUDE}: run `npm ci` in {REPO} (or `make install`)"
    )
    home, tmpdir, workdir = tmp_path / "home", tmp_path / "tmp", tmp_path / "work"
    for directory in (home, tmpdir, workdir):
        directory.mkdir()
    try:
        return subprocess.run(
            [str(CLAUDE), "-p", prompt, "--output-format", "json", "--no-session-persistence"],
            cwd=workdir,
            env=claude_env(home, tmpdir, base_url, credential, proxy_url),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"claude -p did not finish within {RUN_TIMEOUT_S}s; stdout: {timeout.stdout!r}")


def is_stream(body: dict) -> bool:
    return body.get("stream") is True


@pytest.mark.parametrize("credential_variable", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"])
def test_claude_code_print_mode_gets_the_emulators_reply_through_the_gateway(
    tmp_path, gatehouse_server, upstream, emulator, proxy_sink, alice, credential_variable
):
    emulator.configure(reply_text=REPLY)

    completed = run_claude(
        tmp_path,
        gatehouse_server.base_url,
        {credential_variable: alice.secret},
        proxy_sink.url,
        "Say hello",
    )

    assert completed.returncode == 0, f"stdout: {completed.stdout}\nstderr: {completed.stderr}"
    result = json.loads(completed.stdout)
    assert result["is_error"] is False
    assert REPLY in result["result"]
    session_id = result["session_id"]
    assert proxy_sink.attempts == [], "Claude Code tried to reach beyond the gateway"

    forwarded = emulator.requests()
    assert forwarded, "the emulator received nothing"
    assert {request["path"] for request in forwarded} <= {
        "/v1/messages",
        "/v1/messages/count_tokens",
    }
    assert all(request["headers"]["x-api-key"] == UPSTREAM_SECRET for request in forwarded)
    assert all(alice.secret not in json.dumps(request) for request in forwarded)
    messages = [request for request in forwarded if request["path"] == "/v1/messages"]
    bodies = [json.loads(request["body"]) for request in messages]
    streamed = [body for body in bodies if is_stream(body)]
    assert streamed, "Claude Code sent no streamed /v1/messages request"
    replays = [
        body
        for body in bodies
        if not is_stream(body)
        and any(body["messages"] == earlier["messages"] for earlier in streamed)
    ]
    assert replays == [], "Claude Code fell back to non-streaming: a streamed answer failed"
    assert all(request["headers"]["x-claude-code-session-id"] == session_id for request in messages)

    rows = wait_for_logs(len(forwarded), session_id=session_id)
    assert len(rows) == len(forwarded)
    assert {row.user_id for row in rows} == {alice.user.pk}
    assert {row.cost_center.code for row in rows} == {"research"}
    message_rows = [row for row in rows if row.endpoint == "/v1/messages"]
    assert [row.is_stream for row in message_rows] == [True] * len(streamed)
    assert all(row.status_code == 200 and row.output_tokens > 0 for row in message_rows)
    assert {row.model_requested for row in message_rows} == {body["model"] for body in streamed}
    assert all(row.user_agent.startswith("claude-cli/") for row in rows)
    usage = result["usage"]  # what the CLI saw is what the gateway accounted
    assert sum(row.input_tokens for row in message_rows) == usage["input_tokens"]
    assert sum(row.output_tokens for row in message_rows) == usage["output_tokens"]
    assert (
        sum(row.cache_write_5m_tokens for row in message_rows)
        == usage["cache_creation_input_tokens"]
    )
    assert sum(row.cache_read_tokens for row in message_rows) == usage["cache_read_input_tokens"]
