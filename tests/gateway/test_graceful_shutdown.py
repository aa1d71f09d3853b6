"""SIGTERM drains the gateway: nothing new gets in, what is in flight finishes or is cut
cleanly at the grace deadline, every request is recorded and the process exits 0. Each test
runs under both servers `gateway.serve` offers (Daphne and Granian)."""

from __future__ import annotations

import base64
import os
import signal
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from django.test import Client

from gateway.live_feed import SOCKET_PATH
from gateway.models import RequestOutcome
from tests.gateway.conftest import wait_for_logs
from tests.live_servers import SERVERS, LiveServer, start_gatehouse, stop_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=SERVERS)
def server_name(request) -> str:
    return request.param


STREAM_BODY = {
    "model": "claude-opus-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello"}],
    "stream": True,
}
SHUTTING_DOWN = {"type": "overloaded_error", "message": "Gateway is shutting down"}


class BackgroundRequest(threading.Thread):
    """One request read to its end on a thread, so the test can signal the server meanwhile."""

    def __init__(self, server: LiveServer, secret: str, body: dict, headers: dict) -> None:
        super().__init__(daemon=True)
        self.url = server.base_url + "/v1/messages"
        self.content = orjson.dumps(body)
        self.headers = {"x-api-key": secret, "content-type": "application/json", **headers}
        self.first_bytes = threading.Event()
        self.status: int | None = None
        self.body = b""
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with httpx.stream(
                "POST", self.url, content=self.content, headers=self.headers, timeout=60
            ) as response:
                self.status = response.status_code
                for chunk in response.iter_raw():
                    self.body += chunk
                    self.first_bytes.set()
        except Exception as error:
            self.error = error
        finally:
            self.first_bytes.set()

    def events(self) -> list[tuple[str, dict]]:
        events = []
        for block in self.body.decode().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "event" in lines:
                events.append((lines["event"], orjson.loads(lines["data"])))
        return events


def sigterm(server: LiveServer) -> None:
    server.process.send_signal(signal.SIGTERM)


def wait_until_connections_are_refused(server: LiveServer, timeout_s: float = 5.0) -> None:
    address = urlsplit(server.base_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((address.hostname, address.port), timeout=1).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.02)
    raise AssertionError("the server still accepts new connections after SIGTERM")


def raw_get(server: LiveServer, path: str, *header_lines: str) -> socket.socket:
    """A connection that has sent `GET path` with these header lines, byte for byte, for what
    an HTTP client library would hide (a kept-alive socket's close, a WebSocket upgrade)."""
    address = urlsplit(server.base_url)
    connection = socket.create_connection((address.hostname, address.port), timeout=10)
    head = "".join(f"{line}\r\n" for line in (f"host: {address.netloc}", *header_lines))
    connection.sendall(f"GET {path} HTTP/1.1\r\n{head}\r\n".encode())
    return connection


def sigterm_during_a_slow_stream(server: LiveServer, secret: str) -> BackgroundRequest:
    """Start a 3 s stream, SIGTERM the server once it flows, and wait until the server refuses
    new connections; the stream keeps the server draining while a test checks the rest."""
    stream = BackgroundRequest(
        server, secret, STREAM_BODY, {"x-emulator-deltas": "10", "x-emulator-delta-delay-ms": "300"}
    )
    stream.start()
    assert stream.first_bytes.wait(10)
    sigterm(server)
    wait_until_connections_are_refused(server)
    return stream


def wait_for_upstream_requests(emulator, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(emulator.requests()) < count:
        assert time.monotonic() < deadline, "the requests did not reach the upstream"
        time.sleep(0.02)


def test_a_stream_in_flight_at_sigterm_finishes_intact_is_recorded_and_the_process_exits_0(
    upstream, emulator, alice, server_name
):
    server = start_gatehouse(server=server_name)
    try:
        stream = BackgroundRequest(
            server,
            alice.secret,
            STREAM_BODY,
            {"x-emulator-deltas": "8", "x-emulator-delta-delay-ms": "200"},
        )
        stream.start()
        assert stream.first_bytes.wait(10)

        sigterm(server)
        stream.join(30)
        exit_code = server.process.wait(timeout=30)
    finally:
        stop_server(server)

    assert stream.error is None
    assert stream.status == 200
    names = [name for name, _ in stream.events()]
    assert names[0] == "message_start"
    assert names.count("content_block_delta") == 8
    assert names[-1] == "message_stop"
    assert "error" not in names
    assert exit_code == 0
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.OK
    assert row.is_stream is True
    assert row.stop_reason == "end_turn"
    assert row.output_tokens > 0


def test_after_sigterm_new_connections_are_refused_and_kept_alive_ones_get_503_overloaded(
    upstream, emulator, alice
):
    server = start_gatehouse(server="daphne")
    try:
        kept_alive = httpx.Client(base_url=server.base_url, timeout=30)
        warm_up = kept_alive.get("/v1/models", headers={"x-api-key": alice.secret})
        assert warm_up.status_code == 200
        stream = sigterm_during_a_slow_stream(server, alice.secret)
        refused = kept_alive.post(
            "/v1/messages",
            content=orjson.dumps({**STREAM_BODY, "stream": False}),
            headers={"x-api-key": alice.secret, "content-type": "application/json"},
        )
        stream_was_still_running = stream.is_alive()
        kept_alive.close()
        stream.join(30)
        exit_code = server.process.wait(timeout=30)
    finally:
        stop_server(server)

    assert stream_was_still_running
    assert refused.status_code == 503
    assert refused.headers["connection"] == "close"
    assert refused.json()["type"] == "error"
    assert refused.json()["error"] == SHUTTING_DOWN
    assert refused.json()["request_id"].startswith("req_gh_")
    assert stream.events()[-1][0] == "message_stop"
    assert exit_code == 0
    # Only the warm-up and the stream reached the proxy; the refused request never did.
    assert len(emulator.requests()) == 1
    rows = wait_for_logs(2, user=alice.user)
    assert sorted(row.endpoint for row in rows) == ["/v1/messages", "/v1/models"]


def test_under_granian_sigterm_refuses_new_connections_and_closes_idle_kept_alive_ones(
    upstream, emulator, alice
):
    """Granian closes an idle kept-alive connection at once instead of waiting to answer its
    next request with a 503; a client retries that on a new connection, which is refused."""
    server = start_gatehouse(server="granian")
    try:
        kept_alive = raw_get(server, "/v1/models", f"x-api-key: {alice.secret}")
        answer = kept_alive.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        stream = sigterm_during_a_slow_stream(server, alice.secret)
        closed_by_server = kept_alive.recv(65536) == b""
        stream_was_still_running = stream.is_alive()
        kept_alive.close()
        stream.join(30)
        exit_code = server.process.wait(timeout=30)
    finally:
        stop_server(server)

    assert closed_by_server
    assert stream_was_still_running
    assert stream.events()[-1][0] == "message_stop"
    assert exit_code == 0
    rows = wait_for_logs(2, user=alice.user)
    assert sorted(row.endpoint for row in rows) == ["/v1/messages", "/v1/models"]


def test_requests_open_at_the_grace_deadline_end_in_anthropic_shape_and_are_recorded(
    upstream, emulator, alice, server_name
):
    server = start_gatehouse({"GATEHOUSE_SHUTDOWN_GRACE_S": "2"}, server=server_name)
    try:
        endless = BackgroundRequest(
            server, alice.secret, STREAM_BODY, {"x-emulator-fault": "endless:200"}
        )
        unanswered = BackgroundRequest(
            server,
            alice.secret,
            {**STREAM_BODY, "stream": False},
            {"x-emulator-fault": "slow_first_byte:60000"},
        )
        endless.start()
        unanswered.start()
        assert endless.first_bytes.wait(10)
        wait_for_upstream_requests(emulator, 2)

        signalled_at = time.monotonic()
        sigterm(server)
        exit_code = server.process.wait(timeout=20)
        exited_after_s = time.monotonic() - signalled_at
        endless.join(10)
        unanswered.join(10)
    finally:
        stop_server(server)

    assert exit_code == 0
    assert 2.0 <= exited_after_s < 20
    assert endless.error is None
    assert endless.status == 200
    events = endless.events()
    assert events[0][0] == "message_start"
    assert events[-1] == ("error", {"type": "error", "error": SHUTTING_DOWN})
    assert "message_stop" not in [name for name, _ in events]
    assert unanswered.status == 503
    assert orjson.loads(unanswered.body)["error"] == SHUTTING_DOWN
    rows = {row.is_stream: row for row in wait_for_logs(2, user=alice.user)}
    assert rows[True].outcome == RequestOutcome.STREAM_ERROR
    assert rows[True].status_code == 200
    assert rows[True].error_type == "overloaded_error"
    assert rows[True].error_message == "Gateway is shutting down"
    assert rows[True].input_tokens > 0
    assert rows[False].outcome == RequestOutcome.GATEWAY_ERROR
    assert rows[False].status_code == 503
    assert rows[False].error_type == "overloaded_error"
    # The upstream calls were closed, not left running.
    assert all(request["disconnected_at"] is not None for request in emulator.requests())


def test_under_granian_sigterm_ends_live_feed_websockets_and_the_worker_exits_promptly(
    upstream, emulator, staff
):
    browser = Client()
    browser.force_login(staff)
    server = start_gatehouse(server="granian")
    try:
        sock = raw_get(
            server,
            SOCKET_PATH,
            "upgrade: websocket",
            "connection: Upgrade",
            f"sec-websocket-key: {base64.b64encode(os.urandom(16)).decode()}",
            "sec-websocket-version: 13",
            f"origin: {server.base_url}",
            f"cookie: sessionid={browser.cookies['sessionid'].value}",
        )
        handshake = b""
        while b"\r\n\r\n" not in handshake:
            handshake += sock.recv(1)
        assert handshake.startswith(b"HTTP/1.1 101")

        signalled_at = time.monotonic()
        sigterm(server)
        # Granian ends the socket itself (a bare close, or a close frame): read until it is over.
        while sock.recv(65536):
            pass
        sock.close()
        exit_code = server.process.wait(timeout=30)
        exited_after_s = time.monotonic() - signalled_at
    finally:
        stop_server(server)

    assert exit_code == 0
    # well within the 30 s grace: an open live feed does not hold the worker
    assert exited_after_s < 10
