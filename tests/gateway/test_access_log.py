"""The access log Gatehouse writes under Granian: its lines, their batching, and a live server."""

from __future__ import annotations

import asyncio
import os
import re
import select
import socket
import time
from typing import Any

import httpx
import orjson
import pytest

from gateway.access_log import AccessLog, install, logged, record

LINE = re.compile(
    r'\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+0000\] (\S+) - "(\S+) (\S+) HTTP/([\d.]+)" (\d{3}) '
    r"(\d+\.\d{3})\n"
)


def scope_for(path: str = "/v1/messages", **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"key=sk-secret",
        "http_version": "1.1",
        "client": ("10.0.0.7", 51000),
        **extra,
    }


def read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks).decode()


@pytest.fixture
def pipe():
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        try:
            os.close(fd)
        except OSError:
            pass


async def test_a_line_has_the_utc_time_client_request_line_status_and_milliseconds(pipe):
    read_end, write_end = pipe
    log = AccessLog(fd=write_end)
    started = time.perf_counter() - 0.25

    log.add(scope_for(), 200, started)
    log.flush()

    [line] = read_all(read_end).splitlines(keepends=True)
    stamp, client, method, path, version, status, took = LINE.fullmatch(line).groups()
    assert (client, method, path, version, status) == (
        "10.0.0.7",
        "POST",
        "/v1/messages",
        "1.1",
        "200",
    )
    assert (
        abs(
            time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
            - time.mktime(time.gmtime(time.time() - 0.25))
        )
        <= 1
    )
    assert 250 <= float(took) < 2000
    assert "sk-secret" not in line  # the query string is never logged


async def test_lines_wait_for_the_flush_interval_then_go_out_together(pipe):
    read_end, write_end = pipe
    log = AccessLog(fd=write_end, flush_after_s=0.1)

    for _ in range(3):
        log.add(scope_for(), 200, time.perf_counter())
    written_at_once = read_all(read_end)
    await asyncio.sleep(0.3)

    assert written_at_once == ""
    assert len(read_all(read_end).splitlines()) == 3


async def test_a_path_is_logged_as_it_came_so_an_encoded_newline_cannot_forge_a_line(pipe):
    read_end, write_end = pipe
    log = AccessLog(fd=write_end)

    log.add(
        scope_for("/a\n[x] forged", raw_path=b"/a%0A%5Bx%5D%20forged"), 404, time.perf_counter()
    )
    log.add(scope_for("/b\r\nforged", raw_path=None), 404, time.perf_counter())
    log.flush()

    lines = read_all(read_end).splitlines(keepends=True)
    assert [LINE.fullmatch(line).group(4) for line in lines] == [
        "/a%0A%5Bx%5D%20forged",
        "/b\\r\\nforged",
    ]


async def test_a_request_whose_client_left_before_an_answer_is_logged_499(pipe):
    read_end, write_end = pipe
    log = AccessLog(fd=write_end)

    log.add(scope_for(client=None), None, time.perf_counter())
    log.flush()

    assert LINE.fullmatch(read_all(read_end)).group(2, 6) == ("-", "499")


async def test_each_write_is_whole_lines_within_pipe_buf_so_workers_never_interleave_a_line():
    # A SEQPACKET socket keeps each write as one record: what one write held is visible.
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with reader, writer:
        log = AccessLog(fd=writer.fileno())
        for number in range(300):
            log.add(scope_for(f"/v1/messages/{number}"), 200, time.perf_counter())
        log.flush()
        reader.setblocking(False)
        records = []
        try:
            while True:
                records.append(reader.recv(65536).decode())
        except BlockingIOError:
            pass

    assert len(records) > 1
    assert all(len(record) <= select.PIPE_BUF and record.endswith("\n") for record in records)
    lines = "".join(records).splitlines(keepends=True)
    assert [LINE.fullmatch(line).group(4) for line in lines] == [
        f"/v1/messages/{number}" for number in range(300)
    ]


async def test_a_log_that_cannot_be_written_drops_its_lines_and_says_so_once(pipe, caplog):
    read_end, write_end = pipe
    log = AccessLog(fd=write_end)
    os.close(read_end)  # writing to a pipe nobody reads: EPIPE

    for _ in range(2):
        log.add(scope_for(), 200, time.perf_counter())
        log.flush()

    assert [r.message for r in caplog.records] == [
        "The access log could not be written; its lines are dropped"
    ]


async def test_without_an_installed_log_nothing_is_recorded_or_wrapped():
    install(None)
    sent: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})

    async def send(message):
        sent.append(message)

    record(scope_for(), 200, time.perf_counter())  # no log: nothing to do, no error
    await logged(app, scope_for(), None, send)

    assert [message["status"] for message in sent] == [204]


@pytest.fixture
def installed_log(pipe):
    read_end, write_end = pipe
    log = AccessLog(fd=write_end)
    install(log)
    yield log, read_end
    install(None)


async def test_a_wrapped_application_is_logged_with_the_status_it_sent(installed_log):
    log, read_end = installed_log

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 302, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def failing(scope, receive, send):
        raise RuntimeError("boom")

    async def websocket(scope, receive, send):
        await send({"type": "websocket.accept"})

    async def send(message):
        pass

    await logged(app, scope_for("/admin/"), None, send)
    with pytest.raises(RuntimeError):
        await logged(failing, scope_for("/api/v1/usage"), None, send)
    websocket_scope = scope_for("/ws/live/", type="websocket")
    del websocket_scope["method"]  # a WebSocket scope has none
    await logged(websocket, websocket_scope, None, send)
    log.flush()

    lines = read_all(read_end).splitlines(keepends=True)
    assert [LINE.fullmatch(line).group(3, 4, 6) for line in lines] == [
        ("POST", "/admin/", "302"),
        ("POST", "/api/v1/usage", "500"),
        ("GET", "/ws/live/", "101"),
    ]


def wait_for_lines(server, count: int, timeout_s: float = 5.0) -> list[re.Match]:
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [LINE.fullmatch(line) for line in server.log_text().splitlines(keepends=True)]
        found = [line for line in lines if line]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.parametrize("server_name", ["daphne_server", "granian_server"])
def test_gatehouse_logs_every_request_once_proxied_or_not_under_either_server(
    server_name, request, upstream, alice
):
    server = request.getfixturevalue(server_name)
    time.sleep(0.3)  # earlier tests' lines are out
    before = len(wait_for_lines(server, 0, timeout_s=0))
    base = server.base_url
    answered = httpx.post(
        base + "/v1/messages",
        headers={
            "x-api-key": alice.secret,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        },
        content=orjson.dumps(
            {
                "model": "claude-opus-5",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "Hi"}],
            }
        ),
    )
    refused = httpx.post(base + "/v1/messages", headers={"x-api-key": "sk-gh-wrong"}, content=b"{}")
    hello = httpx.head(base + "/api/hello")
    login = httpx.get(base + "/admin/login/")

    lines = wait_for_lines(server, before + 4)[before:]

    assert (answered.status_code, refused.status_code, hello.status_code, login.status_code) == (
        200,
        401,
        200,
        200,
    )
    assert [line.group(2, 3, 4, 6) for line in lines] == [
        ("127.0.0.1", "POST", "/v1/messages", "200"),
        ("127.0.0.1", "POST", "/v1/messages", "401"),
        ("127.0.0.1", "HEAD", "/api/hello", "200"),
        ("127.0.0.1", "GET", "/admin/login/", "200"),
    ]
    assert alice.secret not in server.log_text()
