"""A TCP relay for tests that can cut a service off and put it back.

    cutter = TcpCutter("127.0.0.1", 5432)   # listens on a free loopback port
    ...point the code under test at 127.0.0.1:cutter.port...
    cutter.cut()       # every live connection is reset; new ones are reset on arrival
    cutter.restore()   # new connections reach the service again
    cutter.close()

The relay runs an asyncio loop in a thread of its own, so a synchronous test drives it.
A cut aborts both sides of each connection with SO_LINGER 0 (a TCP reset, as when a
database host dies or a firewall drops the session), and while cut, a new connection is
accepted and reset at once: the client fails fast, exactly like a refused connection.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from typing import Any

_CHUNK = 64 * 1024


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class TcpCutter:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.is_cut = False
        self.connections_reset = 0
        self._live: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port: int = self._call(self._listen())

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        if self.is_cut:
            self.connections_reset += 1
            _reset(client_writer)
            return
        try:
            service_reader, service_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            _reset(client_writer)
            return
        pair = (client_writer, service_writer)
        self._live.add(pair)
        try:
            await asyncio.gather(
                self._pipe(client_reader, service_writer),
                self._pipe(service_reader, client_writer),
            )
        finally:
            self._live.discard(pair)
            for writer in pair:
                writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(_CHUNK):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def _cut(self) -> None:
        self.is_cut = True
        for pair in list(self._live):
            self.connections_reset += 1
            for writer in pair:
                _reset(writer)
        self._live.clear()

    async def _restore(self) -> None:
        self.is_cut = False

    def cut(self) -> None:
        """Reset every live connection and every new one until `restore()`."""
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._restore())

    @property
    def live_connections(self) -> int:
        return len(self._live)

    async def _close(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def close(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
