"""The upstream client as the proxy uses it (`send_upstream`), on each transport, against raw
loopback servers: what crosses to the provider, and how failures are classified."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from gateway.proxy.upstream_client import build_upstream_client, read_raw, send_upstream

TIMEOUTS = httpx.Timeout(5.0, connect=2.0)
TRANSPORTS = ["aiohttp", "httpx"]


class RecordingProvider:
    """Answers every request with a cookie and keeps each request's header block."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            self.heads.append(head.lower())
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            body = b'{"ok":true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"set-cookie: __cf_bm=one-users-session; Path=/\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def provider_serving(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    transport: str,
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """A raw provider on a loopback port running `handler`, and a client for it."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/messages"
    client = build_upstream_client(transport_name=transport, read_timeout_s=5.0)
    try:
        yield url, client
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def send(client: httpx.AsyncClient, url: str, headers: list[tuple[str, str]]) -> bytes:
    response = await send_upstream(
        client, method="POST", url=url, headers=headers, content=b"{}", timeouts=TIMEOUTS
    )
    try:
        return await response.aread()
    finally:
        await response.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_cookie_one_answer_sets_never_rides_along_on_the_next_request(transport):
    provider = RecordingProvider()
    async with provider_serving(provider.handle, transport) as (url, client):
        assert await send(client, url, [("x-api-key", "sk-ant-first")]) == b'{"ok":true}'
        assert await send(client, url, [("x-api-key", "sk-ant-second")]) == b'{"ok":true}'

    assert len(provider.heads) == 2
    assert all(b"\r\ncookie:" not in head for head in provider.heads)
    assert b"x-api-key: sk-ant-second" in provider.heads[1]
    assert all(b"accept-encoding: identity" in head for head in provider.heads)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refused_connection_is_a_connect_error_not_a_timeout(transport):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = build_upstream_client(transport_name=transport, read_timeout_s=5.0)
    try:
        with pytest.raises(httpx.ConnectError):
            await send(client, f"http://127.0.0.1:{port}/v1/messages", [])
    finally:
        await client.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_silent_provider_is_a_read_timeout(transport):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    async with provider_serving(silent, transport) as (url, client):
        with pytest.raises(httpx.ReadTimeout):
            await send_upstream(
                client,
                method="POST",
                url=url,
                headers=[],
                content=b"{}",
                timeouts=httpx.Timeout(0.3, connect=2.0),
            )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_connection_closed_before_any_answer_is_a_transport_error_not_a_timeout(
    transport,
):
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async with provider_serving(hang_up, transport) as (url, client):
        with pytest.raises(httpx.TransportError) as raised:
            await send(client, url, [])
        assert not isinstance(raised.value, httpx.TimeoutException)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_whole_body_read_raw_leaves_its_connection_for_the_next_request(transport):
    provider = RecordingProvider()
    async with provider_serving(provider.handle, transport) as (url, client):
        for _ in range(3):
            response = await send_upstream(
                client, method="POST", url=url, headers=[], content=b"{}", timeouts=TIMEOUTS
            )
            assert await read_raw(response) == b'{"ok":true}'
            assert response.is_closed

    assert (len(provider.heads), provider.connections) == (3, 1)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_body_cut_short_is_a_transport_error_and_its_connection_is_dropped(transport):
    connections = 0

    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b'{"type":')
        await writer.drain()
        writer.close()

    async with provider_serving(cut_short, transport) as (url, client):
        for _ in range(2):
            response = await send_upstream(
                client, method="POST", url=url, headers=[], content=b"{}", timeouts=TIMEOUTS
            )
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                await read_raw(response)
            assert response.is_closed

    assert connections == 2
