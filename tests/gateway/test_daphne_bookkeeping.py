"""Daphne's per-request bookkeeping under `gateway.serve`: each request is forgotten as soon as
it is over, not by Daphne's once-a-second sweep, and Twisted's unread request log is not made."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from daphne.http_protocol import HTTPFactory
from twisted.web import http

from gateway.serve import GatehouseServer

SCOPE = {"type": "http", "method": "POST", "path": "/v1/messages"}


class Protocol:
    """What Daphne's server asks of a protocol (a WebRequest) in these paths."""

    def __init__(self) -> None:
        self.exceptions: list[BaseException] = []

    def handle_exception(self, exception: BaseException) -> None:
        self.exceptions.append(exception)


def server_with(application: Any, *, verbosity: int = 1) -> GatehouseServer:
    server = GatehouseServer(
        application,
        shutdown_grace_s=1.0,
        endpoints=["tcp:port=0:interface=127.0.0.1"],
        verbosity=verbosity,
    )
    server.connections = {}  # what Server.run sets up
    return server


def started(server: GatehouseServer) -> tuple[Protocol, asyncio.Queue[dict[str, Any]]]:
    protocol = Protocol()
    server.protocol_connected(protocol)
    queue = server.create_application(protocol, dict(SCOPE))
    return protocol, queue


async def answers(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()


async def settled() -> None:
    for _ in range(3):  # the application's task, then its done callbacks
        await asyncio.sleep(0)


async def test_a_request_is_forgotten_once_its_response_ended_and_its_application_returned():
    server = server_with(answers)
    protocol, queue = started(server)

    server.protocol_disconnected(protocol)  # the response ended first (WebRequest.finish)
    assert protocol in server.connections  # its application is still running
    queue.put_nowait({"type": "http.request", "body": b"", "more_body": False})
    await settled()

    assert protocol not in server.connections


async def test_a_request_whose_application_returns_before_its_response_ends_is_forgotten_at_the_end():
    server = server_with(answers)
    protocol, queue = started(server)
    queue.put_nowait({"type": "http.request", "body": b"", "more_body": False})
    await settled()
    assert protocol in server.connections  # the connection has not let go of it yet

    server.protocol_disconnected(protocol)
    server.protocol_disconnected(protocol)  # connectionLost after finish: no KeyError

    assert protocol not in server.connections


async def test_a_failed_application_is_left_for_daphnes_sweep_which_logs_it(caplog):
    async def fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("broken application")

    server = server_with(fails)
    protocol, _ = started(server)
    await settled()

    assert protocol in server.connections
    with caplog.at_level(logging.ERROR, logger="daphne.server"):
        server.application_checker()
    assert "broken application" in caplog.text
    assert [str(error) for error in protocol.exceptions] == ["broken application"]


async def test_a_running_application_stays_known_after_its_client_went_away():
    server = server_with(answers)
    protocol, queue = started(server)

    server.protocol_disconnected(protocol)
    await settled()

    assert "application_instance" in server.connections[protocol]  # the sweep can time it out
    queue.put_nowait({"type": "http.disconnect"})
    await settled()
    assert protocol not in server.connections


class Port:
    def getHost(self) -> Any:
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", "127.0.0.1", 8125)


@pytest.mark.parametrize(("verbosity", "made"), [(0, 0), (1, 0), (2, 1)])
def test_twisteds_request_log_line_is_made_only_when_verbosity_two_shows_it(
    monkeypatch, verbosity, made
):
    lines: list[str] = []
    monkeypatch.setattr(
        http, "combinedLogFormatter", lambda when, request: lines.append("line") or "line"
    )
    server = server_with(answers, verbosity=verbosity)
    server.http_factory = HTTPFactory(server)
    server.http_factory._logFormatter = http.combinedLogFormatter
    server.http_factory._logFile = type("Sink", (), {"write": lambda self, line: None})()
    server.listen_success(Port())

    server.http_factory.log(object())

    assert len(lines) == made
