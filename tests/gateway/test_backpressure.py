"""A slow reader slows the upstream read instead of growing the gateway's memory.

The emulator streams a large reply as fast as loopback allows; the client reads it through
the gateway at a trickle (a tiny receive buffer, small reads, pauses), then drains the rest.
Without backpressure the gateway would hold the whole unsent response in its write buffer.
Runs under both servers `gateway.serve` offers (Daphne and Granian).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import h11
import orjson
import pytest

from gateway.models import RequestOutcome
from tests.gateway.conftest import streamed_text, wait_for_logs
from tests.gateway.footprint import RssSampler
from tests.live_servers import SERVERS, LiveServer, start_gatehouse, stop_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=SERVERS)
def gatehouse_server(request, transactional_db) -> Iterator[LiveServer]:
    server = start_gatehouse(server=request.param)
    yield server
    stop_server(server)


REPLY_BYTES = 32 * 1024 * 1024
DELTAS = 2000
TRICKLE_S = 3.0
TRICKLE_READ_BYTES = 4096
TRICKLE_PAUSE_S = 0.02
# What the gateway may grow by while holding this response for a slow reader: a few write
# buffers and chunks in flight, and allocator noise; far below the 32 MiB being relayed.
RSS_GROWTH_BOUND = 8 * 1024 * 1024


class SlowReader:
    """A raw HTTP/1.1 client with a tiny receive buffer, reading at the pace it is told."""

    def __init__(self, base_url: str) -> None:
        address = urlsplit(base_url)
        self.host = f"{address.hostname}:{address.port}"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((address.hostname, address.port))
        self.sock.settimeout(30)
        self.connection = h11.Connection(our_role=h11.CLIENT)
        self.status: int | None = None
        self.body = bytearray()
        self.is_complete = False

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        request = h11.Request(
            method="POST",
            target=path,
            headers=[
                ("host", self.host),
                ("content-length", str(len(body))),
                *headers.items(),
            ],
        )
        self.sock.sendall(
            self.connection.send(request)
            + self.connection.send(h11.Data(data=body))
            + self.connection.send(h11.EndOfMessage())
        )

    def read(self, size: int) -> None:
        data = self.sock.recv(size)
        self.connection.receive_data(data)
        while True:
            event = self.connection.next_event()
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.is_complete = True
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise AssertionError(f"connection closed after {len(self.body)} body bytes")

    def close(self) -> None:
        self.sock.close()


def test_a_slow_reader_gets_every_byte_while_gateway_memory_stays_bounded(
    gatehouse_server, upstream, emulator, alice
):
    headers = {"x-api-key": alice.secret, "content-type": "application/json"}
    body = orjson.dumps(
        {
            # A cheap model and room for the whole reply (the emulator honours max_tokens).
            "model": "claude-3-haiku-20240307",
            "max_tokens": 9_000_000,
            "messages": [{"role": "user", "content": "Say hello"}],
            "stream": True,
        }
    )
    warm_up = SlowReader(gatehouse_server.base_url)
    warm_up.post("/v1/messages", body, headers)
    while not warm_up.is_complete:
        warm_up.read(65536)
    warm_up.close()
    reply_text = os.urandom(REPLY_BYTES // 2).hex()
    emulator.configure(reply_text=reply_text, text_deltas=DELTAS)
    sampler = RssSampler(gatehouse_server.pid)
    baseline = sampler.peak
    sampler.start()

    reader = SlowReader(gatehouse_server.base_url)
    try:
        reader.post("/v1/messages", body, headers)
        trickle_until = time.monotonic() + TRICKLE_S
        while time.monotonic() < trickle_until and not reader.is_complete:
            reader.read(TRICKLE_READ_BYTES)
            time.sleep(TRICKLE_PAUSE_S)
        received_while_trickling = len(reader.body)
        while not reader.is_complete:
            reader.read(65536)
    finally:
        reader.close()
        peak = sampler.stop()

    text, names = streamed_text(bytes(reader.body))
    print(
        f"gateway RSS: baseline {baseline / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, "
        f"growth {(peak - baseline) / 2**20:.1f} MiB for a {len(reader.body) / 2**20:.1f} MiB "
        f"response ({received_while_trickling / 2**20:.2f} MiB read while trickling)"
    )
    assert reader.status == 200
    assert received_while_trickling < REPLY_BYTES // 4
    assert text == reply_text
    assert names[0] == "message_start"
    assert names.count("content_block_delta") == DELTAS
    assert names[-1] == "message_stop"
    assert peak - baseline < RSS_GROWTH_BOUND
    rows = wait_for_logs(2, user=alice.user)
    assert [row.outcome for row in rows] == [RequestOutcome.OK, RequestOutcome.OK]
