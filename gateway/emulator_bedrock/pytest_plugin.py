"""pytest fixtures for the Bedrock emulator, as a real server on a loopback port.

Enable with `pytest_plugins = ["gateway.emulator_bedrock.pytest_plugin"]`, then:

    def test_signs_requests(bedrock_emulator):      # reset before the test
        provider = ...base_url=bedrock_emulator.base_url, options={"region": bedrock_emulator.region}
        upstream_key = ...secret=bedrock_emulator.upstream_secret()
        assert bedrock_emulator.last_request()["path"].endswith("/invoke")

`bedrock_upstream` (session scope) starts `python -m gateway.emulator_bedrock.server` once;
`bedrock_emulator` (function scope) resets it first (config, credentials, cache, faults, log).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.emulator_bedrock.state import (
    DEFAULT_REGION,
    TEST_ACCESS_KEY_ID,
    TEST_SECRET_ACCESS_KEY,
)

BASE_DIR = Path(__file__).resolve().parents[2]
CONTROL_TIMEOUT_SECONDS = 10.0


class BedrockEmulatorClient:
    """Drives a running Bedrock emulator through its control API."""

    region = DEFAULT_REGION
    access_key_id = TEST_ACCESS_KEY_ID
    secret_access_key = TEST_SECRET_ACCESS_KEY

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url, timeout=CONTROL_TIMEOUT_SECONDS, trust_env=False
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, f"/_emulator/{path}", json=json)
        response.raise_for_status()
        return response.json()

    def upstream_secret(
        self,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
    ) -> str:
        """The JSON an UpstreamKey of a bedrock provider holds (the test credentials by default)."""
        credentials = {
            "access_key_id": access_key_id or self.access_key_id,
            "secret_access_key": secret_access_key or self.secret_access_key,
        }
        if session_token is not None:
            credentials["session_token"] = session_token
        return orjson.dumps(credentials).decode()

    def reset(self) -> None:
        self._call("POST", "reset")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Merge settings: reply settings as for the Anthropic emulator, `region`, and
        `credentials={"AKIA...": {"secret_access_key": ..., "session_token"?: ...}}`."""
        return self._call("POST", "config", settings)

    def inject_fault(
        self, fault: str, *, times: int | None = 1, endpoint: str = "invoke"
    ) -> list[dict[str, Any]]:
        """Queue a fault (`"ThrottlingException"`, `"exception_mid_stream:throttlingException"`,
        `"drop_mid_stream"`, `"corrupt_frame_mid_stream"`, ...)."""
        payload = {"fault": fault, "times": times, "endpoint": endpoint}
        return self._call("POST", "faults", payload)["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def advance_clock(self, seconds: float) -> float:
        return self._call("POST", "clock", {"advance_seconds": seconds})["now"]

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Recorded requests, oldest first."""
        suffix = f"?limit={limit}" if limit is not None else ""
        return self._call("GET", f"requests{suffix}")["requests"]

    def last_request(self) -> dict[str, Any]:
        recorded = self.requests(limit=1)
        if not recorded:
            raise AssertionError("The Bedrock emulator has received no request")
        return recorded[0]


@pytest.fixture(scope="session")
def bedrock_upstream() -> Iterator[BedrockEmulatorClient]:
    # Imported here, after pytest has loaded (and assertion-rewritten) that plugin itself.
    from gateway.emulator.pytest_plugin import _free_loopback_port, _stop, _wait_until_ready

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="bedrock-emulator-") as log_dir:
        log_path = Path(log_dir) / "emulator.log"
        port = _free_loopback_port()
        base_url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - fixed argv: this interpreter and our module
                [sys.executable, "-m", "gateway.emulator_bedrock.server", "--port", str(port)],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = BedrockEmulatorClient(base_url)
        try:
            _wait_until_ready(process, base_url, log_path)
            yield client
        finally:
            client.close()
            _stop(process)


@pytest.fixture
def bedrock_emulator(bedrock_upstream: BedrockEmulatorClient) -> BedrockEmulatorClient:
    bedrock_upstream.reset()
    return bedrock_upstream
