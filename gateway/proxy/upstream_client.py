"""The one upstream HTTP client each gateway process shares.

httpx is the client API everywhere; underneath, the transport is aiohttp's (through
`httpx-aiohttp`) by default, because httpcore's pool re-checks every idle connection on each
request and that cost grows with concurrency (docs/benchmarks.md has the measurements).
`GATEHOUSE_UPSTREAM_TRANSPORT=httpx` selects httpx's own transport.

Two corrections on top of httpx-aiohttp's transport, both needed for faithful failover and
hang-up handling:
- aiohttp errors map to the httpx class that says what happened: a refused connection is a
  `ConnectError` (the library reports it as a `ConnectTimeout`), a dropped connection a
  `RemoteProtocolError`, a truncated body a `ReadError`;
- closing a response that was not read to the end closes its connection, so the provider
  sees the hang-up at once instead of the connection going back to the pool half-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import yarl
from httpx_aiohttp import AiohttpTransport

KEEPALIVE_S = 30.0
CHUNK_BYTES = 64 * 1024

# Most specific first: the first match wins.
_ERROR_MAP: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.ClientError, httpx.TransportError),
    (asyncio.TimeoutError, httpx.ReadTimeout),
)


def httpx_error_for(error: BaseException) -> type[httpx.TransportError] | None:
    for aiohttp_class, httpx_class in _ERROR_MAP:
        if isinstance(error, aiohttp_class):
            return httpx_class
    return None


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        # httpx-aiohttp has already mapped some errors (not always to the right class):
        # classify by the aiohttp error underneath.
        original = error.__cause__ if isinstance(error, httpx.HTTPError) else error
        httpx_class = httpx_error_for(original) if original is not None else None
        if httpx_class is None:
            raise
        raise httpx_class(str(original) or type(original).__name__) from original


def _buffered(content: aiohttp.StreamReader) -> bytes:
    """What `content` received and nobody read yet, even after it failed (private API:
    the public reads raise the failure first)."""
    reader: Any = content
    try:
        return bytes(reader._read_nowait(-1)) if reader._buffer else b""
    except Exception:
        return b""


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with _as_httpx_errors():
            while True:
                try:
                    chunk = await content.read(CHUNK_BYTES)
                except Exception:
                    # aiohttp fails a read as soon as the connection breaks, even with bytes
                    # that arrived before it still buffered (a stream's message_start and its
                    # usage): hand those over first, then the failure.
                    leftover = _buffered(content)
                    if leftover:
                        yield leftover
                    raise
                if not chunk:
                    return
                yield chunk

    async def read_all(self) -> bytes:
        """The rest of the body in one read from aiohttp's buffer."""
        with _as_httpx_errors():
            return await self._response.read()

    async def aclose(self) -> None:
        if self._response.content.is_eof():
            self._response.release()
        else:
            self._response.close()


class UpstreamTransport(AiohttpTransport):
    """httpx-aiohttp's transport with exact error classes and hang-ups that reach upstream,
    and a direct way in (`send_bytes`) for the proxy's requests."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _as_httpx_errors():
            response = await super().handle_async_request(request)
        stream: Any = response.stream
        inner: aiohttp.ClientResponse = stream._aiohttp_response
        response.stream = _ResponseStream(inner)
        return response

    async def send_bytes(
        self,
        *,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        content: bytes,
        timeouts: httpx.Timeout,
    ) -> httpx.Response:
        """What `handle_async_request` does for a request with a body in hand, without first
        building an `httpx.Request` for aiohttp to take apart again (its URL re-serialized,
        its headers decoded one by one): a third of the upstream client's CPU per request.
        aiohttp adds Host and Content-Length itself."""
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        with _as_httpx_errors():
            upstream = await self.client.request(
                method,
                _aiohttp_url(url),
                headers=headers,
                data=content or None,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=_client_timeout(timeouts.connect, timeouts.read, timeouts.pool),
            )
        return httpx.Response(
            status_code=upstream.status,
            headers=upstream.raw_headers,
            stream=_ResponseStream(upstream),
            extensions={"http_version": b"HTTP/1.1"},
        )

    def open_connections(self) -> int:
        """Connections to providers, in use or idle (a gauge for leak checks)."""
        session = self.client
        if not isinstance(session, aiohttp.ClientSession) or session.closed:
            return 0
        connector: Any = session.connector
        idle = sum(len(entries) for entries in connector._conns.values())
        return idle + len(connector._acquired)


def _session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=0,  # no cap: thousands of long streams may be open at once
        limit_per_host=0,
        keepalive_timeout=KEEPALIVE_S,
        ttl_dns_cache=60,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
    )


def build_upstream_client(*, transport_name: str, read_timeout_s: float) -> httpx.AsyncClient:
    """The process's client; call inside the running event loop."""
    limits = httpx.Limits(
        max_connections=None, max_keepalive_connections=512, keepalive_expiry=KEEPALIVE_S
    )
    transport: httpx.AsyncBaseTransport
    if transport_name == "httpx":
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    elif transport_name == "aiohttp":
        transport = UpstreamTransport(limits=limits, trust_env=False, client=_session)
    else:
        raise ValueError(f"Unknown upstream transport {transport_name!r}: use aiohttp or httpx.")
    return httpx.AsyncClient(
        transport=transport,
        headers={"accept-encoding": "identity"},
        timeout=httpx.Timeout(read_timeout_s, connect=10.0),
        follow_redirects=False,
        trust_env=False,
    )


def open_connections(client: httpx.AsyncClient) -> int:
    """Upstream connections the client holds, whichever transport it uses."""
    transport: Any = client._transport
    if isinstance(transport, UpstreamTransport):
        return transport.open_connections()
    pool = getattr(transport, "_pool", None)
    return len(pool.connections) if pool is not None else 0


# Upstream URLs repeat (a few providers, a few endpoints): each is parsed once. Both URL
# classes are immutable, so one instance serves every request to it.
@functools.lru_cache(maxsize=1024)
def _parsed_url(url: str) -> httpx.URL:
    return httpx.URL(url)


@functools.lru_cache(maxsize=64)  # immutable, and the same few timeouts on every request
def _client_timeout(
    connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)


@functools.lru_cache(maxsize=1024)
def _aiohttp_url(url: str) -> yarl.URL:
    """The URL exactly as httpx-aiohttp hands it to aiohttp: httpx's form, re-parsed."""
    return yarl.URL(str(_parsed_url(url)))


async def read_raw(response: httpx.Response) -> bytes:
    """An unread response's whole body as it came (not decoded), the response then closed.
    Under the aiohttp transport it is one read from aiohttp's buffer: iterating httpx's
    stream chunk by chunk costs more than the read itself."""
    stream = response.stream
    try:
        if isinstance(stream, _ResponseStream):
            return await stream.read_all()
        chunks = [chunk async for chunk in response.aiter_raw()]
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        await response.aclose()  # at the end: back to the pool; cut short: the connection closed


async def send_upstream(
    client: httpx.AsyncClient,
    *,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    content: bytes,
    timeouts: httpx.Timeout,
) -> httpx.Response:
    """Send one upstream request straight through the client's transport; the response body
    stays unread (a stream) until the caller reads or closes it.

    The client's own send adds what a gateway must not have: a cookie jar shared by every user
    (one provider answer's cookies would ride along on another user's request), redirect and
    auth machinery the proxy never uses, and a header merge that costs more than the request.
    """
    if not any(name.lower() == "accept-encoding" for name, _ in headers):
        headers = [*headers, ("accept-encoding", "identity")]
    transport: httpx.AsyncBaseTransport = client._transport
    if isinstance(transport, UpstreamTransport):
        return await transport.send_bytes(
            method=method, url=url, headers=headers, content=content, timeouts=timeouts
        )
    request = httpx.Request(
        method,
        _parsed_url(url),
        headers=headers,
        content=content,
        extensions={"timeout": timeouts.as_dict()},
    )
    response = await transport.handle_async_request(request)
    response.request = request
    return response
