"""The benchmark's upstream: the emulator under Granian answers as it does under Daphne."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from bench import loadgen
from bench.scenarios import SCENARIOS, request_bytes
from bench.stack import HOST, REPO, WAVE_ROOM, emulator_argv, emulator_server
from tests.live_servers import free_port, wait_until_serving

MESSAGE = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello."}],
}
HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-bench-test"}


@pytest.fixture
def granian_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("BENCH_EMULATOR_SERVER", raising=False)
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - the bench's own argv
        emulator_argv(port), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    url = f"http://{HOST}:{port}"
    try:
        wait_until_serving(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_bench_emulator_runs_under_granian_unless_daphne_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BENCH_EMULATOR_SERVER", raising=False)
    assert emulator_server() == "granian"
    argv = emulator_argv(8089)
    assert "granian" in argv[0]
    # Granian's default (1,024 requests at once) would cap the 2,000-stream wave
    assert int(argv[argv.index("--backpressure") + 1]) == WAVE_ROOM >= 2000
    monkeypatch.setenv("BENCH_EMULATOR_SERVER", "daphne")
    assert emulator_argv(8089)[1:3] == ["-m", "gateway.emulator.server"]
    monkeypatch.setenv("BENCH_EMULATOR_SERVER", "nginx")
    with pytest.raises(SystemExit, match="BENCH_EMULATOR_SERVER must be daphne or granian"):
        emulator_server()


def test_the_granian_emulator_answers_a_message_and_streams_every_delta(
    granian_emulator: str,
) -> None:
    with httpx.Client(base_url=granian_emulator, headers=HEADERS, timeout=10) as client:
        message = client.post("/v1/messages", json=MESSAGE)
        assert message.status_code == 200
        assert message.json()["type"] == "message"
        assert message.headers["request-id"].startswith("req_emu_")

        streamed = client.post(
            "/v1/messages",
            json={**MESSAGE, "stream": True},
            headers={"x-emulator-deltas": "50"},
        )
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [line for line in streamed.text.splitlines() if line.startswith("event: ")]
    assert events[0] == "event: message_start"
    assert events.count("event: content_block_delta") == 50
    assert events[-1] == "event: message_stop"


def _first_requests_sent(url: str, *, stagger_s: float) -> list[float]:
    """When each of 8 slow-stream clients sent its one request, from the first."""
    port = urlsplit(url).port
    assert port is not None
    run = asyncio.run(
        loadgen.closed_loop(
            host=HOST,
            port=port,
            request=request_bytes(SCENARIOS["slow_c64"], port=port, api_key="sk-ant-bench"),
            concurrency=8,
            max_requests=8,
            duration_s=5.0,
            track_deltas=True,
            stagger_s=stagger_s,
        )
    )
    assert run.errors == 0
    assert len(run.samples) == 8
    assert all(sample.deltas == 20 for sample in run.samples)
    sent = sorted(sample.sent for sample in run.samples)
    return [moment - sent[0] for moment in sent]


def test_staggered_clients_send_their_first_requests_spread_over_the_stagger(
    granian_emulator: str,
) -> None:
    together = _first_requests_sent(granian_emulator, stagger_s=0.0)
    spread = _first_requests_sent(granian_emulator, stagger_s=0.4)

    assert together[-1] < 0.1
    # client k waits k × 0.4 / 8 s: 0.35 s between the first and the last, 0.05 s apart
    assert 0.3 <= spread[-1] < 0.6
    gaps = [later - earlier for earlier, later in zip(spread, spread[1:], strict=False)]
    assert min(gaps) >= 0.02
