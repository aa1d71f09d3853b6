"""A minimal HTTP/1.1 keep-alive load generator on asyncio protocols (measurement code only).

Why not httpx or aiohttp: the generator must cost far less CPU than what it measures, and it
must timestamp the first byte, the first and last `content_block_delta` of a stream and the
end of the response without buffering. An `asyncio.Protocol` with a hand-written response
parser (status line, Content-Length or chunked body) does that for ~20–40 µs per request.

It speaks only what the benchmark needs: one request at a time per connection, responses
with Content-Length or `Transfer-Encoding: chunked`. Every run is bounded by a request count
and a deadline; anything still open at the hard deadline is aborted and counted as an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

DELTA_MARK = b"event: content_block_delta"
_TAIL = len(DELTA_MARK) - 1
_HEAD_END = b"\r\n\r\n"
perf = time.perf_counter


@dataclass(slots=True)
class Sample:
    """One request, times in seconds on `time.perf_counter`'s clock."""

    sent: float
    first_byte: float = 0.0
    first_delta: float = 0.0
    last_delta: float = 0.0
    done: float = 0.0
    status: int = 0
    deltas: int = 0
    body_bytes: int = 0


def build_request(
    *, host: str, port: int, path: str, body: bytes, headers: dict[str, str]
) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


class ResponseError(Exception):
    pass


class Connection(asyncio.Protocol):
    """One keep-alive connection that carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Sample] | None = None
        self.started: asyncio.Future[None] | None = None  # resolved at the first byte
        self.sample: Sample | None = None
        self.track_deltas = False
        self.lost = False
        # parser state
        self.in_head = True
        self.chunked = False
        self.remaining = 0  # body bytes left (content-length) or in the current chunk
        self.tail = b""

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.started is not None and not self.started.done():
            self.started.set_result(None)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ResponseError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        now = perf()
        sample = self.sample
        if sample is None:
            return
        if not sample.first_byte:
            sample.first_byte = now
            if self.started is not None and not self.started.done():
                self.started.set_result(None)
        self.buffer += data
        try:
            self._parse(now, sample)
        except Exception as error:  # a malformed response ends this connection
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(ResponseError(str(error)))
            if self.transport is not None:
                self.transport.abort()

    # -- the client side -------------------------------------------------------------------
    def send(
        self, request: bytes, track_deltas: bool, *, notify_start: bool = False
    ) -> asyncio.Future[Sample]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.started = loop.create_future() if notify_start else None
        if self.lost:
            self.waiter.set_exception(ResponseError("connection closed"))
            return self.waiter
        self.track_deltas = track_deltas
        self.in_head = True
        self.tail = b""
        self.sample = Sample(sent=perf())
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- parsing ---------------------------------------------------------------------------
    def _parse(self, now: float, sample: Sample) -> None:
        buffer = self.buffer
        if self.in_head:
            end = buffer.find(_HEAD_END)
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            del buffer[: end + 4]
            sample.status = int(head[9:12])
            self.in_head = False
            if b"\r\ntransfer-encoding: chunked" in head:
                self.chunked = True
                self.remaining = -1  # expecting a chunk-size line
            else:
                self.chunked = False
                marker = head.find(b"\r\ncontent-length:")
                if marker < 0:
                    raise ResponseError("response without Content-Length or chunked encoding")
                line_end = head.find(b"\r\n", marker + 2)
                self.remaining = int(head[marker + 17 : line_end if line_end > 0 else None])
        if self.chunked:
            self._parse_chunked(now, sample, buffer)
        else:
            take = min(self.remaining, len(buffer))
            if take:
                if self.track_deltas:
                    self._scan(now, sample, bytes(buffer[:take]))
                sample.body_bytes += take
                del buffer[:take]
                self.remaining -= take
            if self.remaining == 0:
                self._finish(now, sample)

    def _parse_chunked(self, now: float, sample: Sample, buffer: bytearray) -> None:
        while True:
            if self.remaining == -1:  # chunk-size line
                line_end = buffer.find(b"\r\n")
                if line_end < 0:
                    return
                size = int(bytes(buffer[:line_end]).split(b";", 1)[0], 16)
                del buffer[: line_end + 2]
                if size == 0:
                    self.remaining = -2  # trailer: expect the final CRLF
                else:
                    self.remaining = size + 2  # payload plus its CRLF
            if self.remaining == -2:
                if len(buffer) < 2:
                    return
                del buffer[:2]
                self._finish(now, sample)
                return
            if not buffer:
                return
            payload_left = self.remaining - 2
            take = min(len(buffer), self.remaining)
            payload = min(take, payload_left) if payload_left > 0 else 0
            if payload:
                if self.track_deltas:
                    self._scan(now, sample, bytes(buffer[:payload]))
                sample.body_bytes += payload
            del buffer[:take]
            self.remaining -= take
            if self.remaining == 0:
                self.remaining = -1
            else:
                return

    def _scan(self, now: float, sample: Sample, piece: bytes) -> None:
        data = self.tail + piece if self.tail else piece
        found = data.count(DELTA_MARK)
        if found:
            if not sample.first_delta:
                sample.first_delta = now
            sample.last_delta = now
            sample.deltas += found
        self.tail = data[-_TAIL:]

    def _finish(self, now: float, sample: Sample) -> None:
        sample.done = now
        self.sample = None
        self.in_head = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(sample)


async def connect(host: str, port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(Connection, host, port)
    return protocol


@dataclass
class RunResult:
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    started: float = 0.0
    finished: float = 0.0
    peak_in_flight: int = 0
    error_examples: list[str] = field(default_factory=list)

    @property
    def wall_s(self) -> float:
        return max(self.finished - self.started, 1e-9)

    def note_error(self, error: BaseException) -> None:
        self.errors += 1
        if len(self.error_examples) < 3:
            self.error_examples.append(f"{type(error).__name__}: {error}")


async def closed_loop(
    *,
    host: str,
    port: int,
    request: bytes,
    concurrency: int,
    max_requests: int,
    duration_s: float,
    track_deltas: bool,
    hard_timeout_s: float = 60.0,
    stagger_s: float = 0.0,
) -> RunResult:
    """`concurrency` keep-alive connections, each sending its next request when the last ends.

    Stops starting requests after `max_requests` or `duration_s`, whichever comes first;
    aborts whatever is still open `hard_timeout_s` after that. With `stagger_s`, the
    connections' first requests are spread evenly over that time instead of all leaving at once.
    """
    result = RunResult()
    connections = await asyncio.gather(*(connect(host, port) for _ in range(concurrency)))
    budget = [max_requests]
    result.started = perf()
    deadline = result.started + duration_s

    async def worker(connection: Connection, start_after: float) -> None:
        samples = result.samples
        if start_after:
            await asyncio.sleep(start_after)
        while budget[0] > 0 and perf() < deadline:
            budget[0] -= 1
            try:
                sample = await connection.send(request, track_deltas)
            except ResponseError as error:
                result.note_error(error)
                return
            samples.append(sample)
            if sample.status != 200:
                result.note_error(ResponseError(f"HTTP {sample.status}"))

    tasks = [
        asyncio.ensure_future(worker(connection, index * stagger_s / concurrency))
        for index, connection in enumerate(connections)
    ]
    _, pending = await asyncio.wait(tasks, timeout=duration_s + hard_timeout_s)
    for connection in connections:
        connection.abort() if pending else connection.close()
    for task in pending:
        task.cancel()
        result.errors += 1
    result.finished = max((s.done for s in result.samples), default=perf())
    result.peak_in_flight = concurrency
    return result


async def one_wave(
    *,
    host: str,
    port: int,
    request: bytes,
    streams: int,
    connect_concurrency: int,
    hard_timeout_s: float,
    on_tick: Callable[[int], None] | None = None,
    tick_s: float = 0.1,
) -> RunResult:
    """`streams` connections, one streamed request each, all open at once (ramped in).

    `on_tick(in_flight)` is called every `tick_s` while the wave runs, so the caller can sample
    the server's memory at the moment of peak concurrency.
    """
    result = RunResult()
    gate = asyncio.Semaphore(connect_concurrency)
    in_flight = [0]
    connections: list[Connection] = []

    async def stream_once() -> None:
        async with gate:
            connection = await connect(host, port)
            connections.append(connection)
            waiter = connection.send(request, True, notify_start=True)
            # Hold the gate until the response has started, so the server's accept queue
            # and its upstream connection set-up are never flooded.
            assert connection.started is not None
            await asyncio.wait((connection.started, waiter), return_when=asyncio.FIRST_COMPLETED)
        in_flight[0] += 1
        result.peak_in_flight = max(result.peak_in_flight, in_flight[0])
        try:
            sample = await waiter
        finally:
            in_flight[0] -= 1
        result.samples.append(sample)
        if sample.status != 200:
            result.note_error(ResponseError(f"HTTP {sample.status}"))
        connection.close()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(tick_s)
            if on_tick is not None:
                on_tick(in_flight[0])

    result.started = perf()
    ticking = asyncio.ensure_future(ticker())
    tasks = [asyncio.ensure_future(stream_once()) for _ in range(streams)]
    done, pending = await asyncio.wait(tasks, timeout=hard_timeout_s)
    ticking.cancel()
    for task in done:
        if task.exception() is not None:
            result.note_error(task.exception())  # type: ignore[arg-type]
    for connection in connections:
        connection.abort()
    for task in pending:
        task.cancel()
        result.errors += 1
    result.finished = max((s.done for s in result.samples), default=perf())
    return result
