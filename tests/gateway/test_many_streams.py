"""500 streams held open together for ~30 s: all complete intact, memory stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import resource

import httpx
import orjson
import pytest

from gateway.models import RequestOutcome
from tests.gateway.conftest import streamed_text, wait_for_logs
from tests.gateway.footprint import RssSampler
from tests.live_servers import LiveServer

pytestmark = pytest.mark.django_db(transaction=True)

STREAMS = 500
DELTAS = 16
DELTA_DELAY_MS = 2000  # 15 pauses: each stream stays open ~30 s
REPLY_TEXT = "Holding this stream open for thirty seconds, one slow delta at a time."
# Growth of the gateway's resident memory while holding all the streams (two sockets, a task,
# buffers and the request's state each): measured ~70 KiB a stream; 200 KiB a stream allowed.
RSS_GROWTH_BOUND = 100 * 1024 * 1024


def _raise_open_files_limit() -> None:
    """The client side holds 500 sockets; servers started by this session inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 4096:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))


_raise_open_files_limit()  # at import, before the session's servers are started


class Streams:
    """Counts how many streams are open at once."""

    def __init__(self) -> None:
        self.open = 0
        self.most_open = 0

    async def run(self, client: httpx.AsyncClient, secret: str) -> tuple[int, bytes]:
        body = b""
        async with client.stream(
            "POST",
            "/v1/messages",
            content=orjson.dumps(
                {
                    "model": "claude-opus-5",
                    "max_tokens": 256,
                    "messages": [{"role": "user", "content": "Say hello"}],
                    "stream": True,
                }
            ),
            headers={
                "x-api-key": secret,
                "content-type": "application/json",
                "x-emulator-deltas": str(DELTAS),
                "x-emulator-delta-delay-ms": str(DELTA_DELAY_MS),
            },
        ) as response:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            try:
                async for chunk in response.aiter_raw():
                    body += chunk
            finally:
                self.open -= 1
        return response.status_code, body

    async def run_all(self, server: LiveServer, secret: str) -> list[tuple[int, bytes]]:
        async with httpx.AsyncClient(
            base_url=server.base_url,
            limits=httpx.Limits(max_connections=STREAMS, max_keepalive_connections=0),
            timeout=httpx.Timeout(120, connect=30, pool=60),
        ) as client:
            return await asyncio.gather(*(self.run(client, secret) for _ in range(STREAMS)))


def test_500_streams_held_for_30_seconds_all_complete_with_bounded_gateway_memory(
    gatehouse_server, upstream, emulator, alice
):
    emulator.configure(reply_text=REPLY_TEXT)
    warm_up = httpx.get(
        gatehouse_server.base_url + "/v1/models", headers={"x-api-key": alice.secret}
    )
    assert warm_up.status_code == 200
    sampler = RssSampler(gatehouse_server.pid, interval_s=0.1)
    baseline = sampler.peak
    sampler.start()
    streams = Streams()

    try:
        results = asyncio.run(streams.run_all(gatehouse_server, alice.secret))
    finally:
        peak = sampler.stop()

    print(
        f"gateway RSS: baseline {baseline / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, "
        f"growth {(peak - baseline) / 2**20:.1f} MiB for {streams.most_open} streams open at once"
    )
    assert streams.most_open == STREAMS
    assert [status for status, _ in results] == [200] * STREAMS
    for _, body in results:
        text, names = streamed_text(body)
        assert text == REPLY_TEXT
        assert names.count("content_block_delta") == DELTAS
        assert names[-1] == "message_stop"
    assert peak - baseline < RSS_GROWTH_BOUND
    rows = wait_for_logs(STREAMS, timeout_s=30, user=alice.user, endpoint="/v1/messages")
    assert len(rows) == STREAMS
    assert {row.outcome for row in rows} == {RequestOutcome.OK}
    assert all(row.output_tokens > 0 for row in rows)
