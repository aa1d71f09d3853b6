"""pytest fixtures for the upstream emulator, as a real server on a loopback port.

Enable with `pytest_plugins = ["gateway.emulator.pytest_plugin"]`, then:

    def test_forwards_the_body(emulator):          # reset before the test
        ...point the code under test at emulator.base_url...
        assert emulator.last_request()["path"] == "/v1/messages"

`upstream_emulator` (session scope) starts `manage.py emulate_upstream --port N` in a
subprocess once and stops it at the end; `emulator` (function scope) resets it first.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
CONTROL_TIMEOUT_SECONDS = 10.0


class EmulatorClient:
    """Drives a running emulator through its control API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
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
        """Merge settings, e.g. `configure(reply_text="Hi", keys={"sk-a": {"rpm": 2}})`."""
        return self._call("POST", "config", settings)

    def config(self) -> dict[str, Any]:
        return self._call("GET", "config")

    def inject_fault(
        self,
        fault: str,
        *,
        key: str | None = None,
        times: int | None = 1,
        endpoint: str = "messages",
    ) -> list[dict[str, Any]]:
        """Queue a fault (`"529"`, `"drop_mid_stream"`, `"silence:500"`, ...); `times=None`
        keeps it until `clear_faults()` or `reset()`."""
        payload = {"fault": fault, "key": key, "times": times, "endpoint": endpoint}
        return self._call("POST", "faults", payload)["faults"]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Recorded upstream requests, oldest first."""
        suffix = f"?limit={limit}" if limit is not None else ""
        return self._call("GET", f"requests{suffix}")["requests"]

    def clear_requests(self) -> None:
        self._call("DELETE", "requests")

    def last_request(self) -> dict[str, Any]:
        recorded = self.requests(limit=1)
        if not recorded:
            raise AssertionError("The upstream emulator has received no request")
        return recorded[0]

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator's clock (cache TTLs, rate windows); returns its new `now`."""
        return self._call("POST", "clock", {"advance_seconds": seconds})["now"]


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"The upstream emulator exited with {process.returncode}:\n{log_path.read_text()}"
            )
        try:
            if httpx.get(f"{base_url}/_emulator/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"The upstream emulator did not answer in time:\n{log_path.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def upstream_emulator() -> Iterator[EmulatorClient]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
    with tempfile.TemporaryDirectory(prefix="emulator-") as log_dir:
        log_path = Path(log_dir) / "emulator.log"
        port = _free_loopback_port()
        base_url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - fixed argv: this interpreter and manage.py
                [
                    sys.executable,
                    str(BASE_DIR / "manage.py"),
                    "emulate_upstream",
                    "--port",
                    str(port),
                ],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = EmulatorClient(base_url)
        try:
            _wait_until_ready(process, base_url, log_path)
            yield client
        finally:
            client.close()
            _stop(process)


@pytest.fixture
def emulator(upstream_emulator: EmulatorClient) -> EmulatorClient:
    upstream_emulator.reset()
    return upstream_emulator
