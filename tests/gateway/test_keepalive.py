"""The stream writer's pings: only in silence, only between events, never across a write."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.proxy.keepalive import PING_EVENT, KeepAlive
from gateway.sse import SSETap

INTERVAL = 0.1
START = b'event: message_start\ndata: {"type":"message_start","message":{"usage":{}}}\n\n'
HALF = b'event: content_block_delta\ndata: {"type":"content_bl'
REST = b'ock_delta"}\n\n'
DELTA = HALF + REST
STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


class Client:
    """An ASGI `send` that records each body, optionally taking its time over some."""

    def __init__(self, ping_takes: float = 0.0, delta_takes: float = 0.0) -> None:
        self.bodies: list[bytes] = []
        self.takes = {PING_EVENT: ping_takes, DELTA: delta_takes}

    async def send(self, message: dict[str, Any]) -> None:
        if self.takes.get(message["body"]):
            await asyncio.sleep(self.takes[message["body"]])
        self.bodies.append(message["body"])


async def relay(writer: KeepAlive, tap: SSETap, chunk: bytes) -> None:
    tap.feed(chunk)
    await writer.write(chunk)


async def test_silence_between_events_is_filled_with_pings_and_a_busy_stream_gets_none():
    tap, client = SSETap(), Client()
    writer = KeepAlive(client.send, tap, INTERVAL * 2)
    await relay(writer, tap, START)
    for _ in range(20):  # a chunk every tenth of the interval: never silent long enough
        await asyncio.sleep(INTERVAL / 5)
        await relay(writer, tap, DELTA)
    assert PING_EVENT not in client.bodies

    await asyncio.sleep(INTERVAL * 7)
    writer.stop()

    assert client.bodies[:21] == [START] + [DELTA] * 20
    assert 2 <= client.bodies[21:].count(PING_EVENT) == len(client.bodies) - 21


async def test_no_ping_lands_inside_a_half_sent_event():
    tap, client = SSETap(), Client()
    writer = KeepAlive(client.send, tap, INTERVAL)
    await relay(writer, tap, START + HALF)

    await asyncio.sleep(INTERVAL * 3)
    await relay(writer, tap, REST)
    await asyncio.sleep(INTERVAL * 2.5)
    writer.stop()

    assert client.bodies[:2] == [START + HALF, REST]
    assert set(client.bodies[2:]) == {PING_EVENT}


async def test_a_write_waits_for_the_ping_being_sent_and_a_stopped_writer_pings_no_more():
    tap, client = SSETap(), Client(ping_takes=INTERVAL * 3)
    writer = KeepAlive(client.send, tap, INTERVAL)
    await relay(writer, tap, START)

    await asyncio.sleep(INTERVAL * 2)  # the first ping is being written from 1 to 4 intervals
    await relay(writer, tap, STOP)
    writer.stop()
    await asyncio.sleep(INTERVAL * 3)

    assert client.bodies == [START, PING_EVENT, STOP]


async def test_a_write_cut_by_cancellation_is_remembered_so_the_error_event_starts_clean():
    tap, client = SSETap(), Client(delta_takes=INTERVAL * 10)
    writer = KeepAlive(client.send, tap, INTERVAL)
    await relay(writer, tap, START)
    assert not writer.write_cut

    write = asyncio.ensure_future(relay(writer, tap, DELTA))
    await asyncio.sleep(INTERVAL / 2)
    write.cancel()
    await asyncio.gather(write, return_exceptions=True)
    writer.stop()

    assert writer.write_cut
    assert client.bodies == [START]
