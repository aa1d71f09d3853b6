"""pytest fixtures for the OpenAI emulator, as a real server on a loopback port.

Enable with `pytest_plugins = ["gateway.emulator_openai.pytest_plugin"]`, then:

    def test_sends_chat_completions(openai_emulator):   # reset before the test
        ...point the code under test at openai_emulator.api_base (".../v1")...
        assert openai_emulator.last_body()["model"] == "gpt-4.1-mini"

`openai_upstream_emulator` (session scope) starts `python -m gateway.emulator_openai.server`
once and stops it at the end; `openai_emulator` (function scope) resets it first.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
CONTROL_TIMEOUT_SECONDS = 10.0
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


class OpenAIEmulatorClient:
    """Drives a running OpenAI emulator through its control API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.api_base = base_url + "/v1"
        self._http = httpx.Client(base_url=base_url, timeout=CONTROL_TIMEOUT_SECONDS)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, f"/_emulator/{path}", json=json)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._call("POST", "reset")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Merge settings, e.g. `configure(reply_text="Hi", reasoning_text="Hmm")`."""
        return self._call("POST", "config", settings)

    def inject_fault(
        self, fault: str, *, key: str | None = None, times: int | None = 1
    ) -> list[dict[str, Any]]:
        """Queue a fault (`"429"`, `"503"`, `"drop_mid_stream"`, `"eof_before_finish"`, ...);
        `times=None` keeps it until `clear_faults()` or `reset()`."""
        return self._call("POST", "faults", {"fault": fault, "key": key, "times": times})["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Recorded requests, oldest first."""
        suffix = f"?limit={limit}" if limit is not None else ""
        return self._call("GET", f"requests{suffix}")["requests"]

    def last_request(self) -> dict[str, Any]:
        recorded = self.requests(limit=1)
        if not recorded:
            raise AssertionError("The OpenAI emulator has received no request")
        return recorded[0]

    def last_body(self) -> Any:
        return orjson.loads(self.last_request()["body"])


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"The OpenAI emulator exited with {process.returncode}:\n{log_path.read_text()}"
            )
        try:
            if httpx.get(f"{base_url}/_emulator/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"The OpenAI emulator did not answer in time:\n{log_path.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def openai_upstream_emulator() -> Iterator[OpenAIEmulatorClient]:
    with tempfile.TemporaryDirectory(prefix="openai-emulator-") as log_dir:
        log_path = Path(log_dir) / "emulator.log"
        port = _free_loopback_port()
        base_url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - fixed argv: this interpreter and our module
                [sys.executable, "-m", "gateway.emulator_openai.server", "--port", str(port)],
                cwd=BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = OpenAIEmulatorClient(base_url)
        try:
            _wait_until_ready(process, base_url, log_path)
            yield client
        finally:
            client.close()
            _stop(process)


@pytest.fixture
def openai_emulator(openai_upstream_emulator: OpenAIEmulatorClient) -> OpenAIEmulatorClient:
    openai_upstream_emulator.reset()
    return openai_upstream_emulator
