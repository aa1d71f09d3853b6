"""The benchmark's upstream: the emulator under Granian answers as it does under Daphne."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from bench.stack import HOST, REPO, emulator_argv, emulator_server
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
    assert "granian" in emulator_argv(8089)[0]
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
