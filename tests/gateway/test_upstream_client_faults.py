"""The upstream client when a provider's connection breaks, on each transport: a raw
loopback server that sends part of a streamed body and closes before the client reads it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.proxy.upstream_client import build_upstream_client

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
EVENT = b'event: message_start\ndata: {"type":"message_start"}\n\n'


async def read_into(received: list[bytes], response: httpx.Response) -> None:
    async for chunk in response.aiter_raw():
        received.append(chunk)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_bytes_that_arrived_before_the_connection_broke_are_read_before_the_error(
    transport,
):
    body_sent = asyncio.Event()

    async def provider(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(HEAD)
        await writer.drain()
        await asyncio.sleep(0.1)  # the client has its response head; now the body, cut short
        writer.write(b"%x\r\n%s\r\n" % (len(EVENT), EVENT))
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        body_sent.set()

    server = await asyncio.start_server(provider, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = build_upstream_client(transport_name=transport, read_timeout_s=5.0)
    try:
        request = client.build_request("POST", f"http://127.0.0.1:{port}/v1/messages")
        response = await client.send(request, stream=True)
        await body_sent.wait()
        await asyncio.sleep(0.1)  # the close has reached the client before it reads
        received: list[bytes] = []
        with pytest.raises(httpx.TransportError):
            await read_into(received, response)
        await response.aclose()

        assert b"".join(received) == EVENT
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
