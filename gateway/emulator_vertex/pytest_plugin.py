"""pytest fixtures for the Vertex emulator, as a real server on a loopback port.

Enable with `pytest_plugins = ["gateway.emulator_vertex.pytest_plugin"]`, then:

    def test_calls_raw_predict(vertex_emulator):     # reset, test service account registered
        provider = ...base_url=vertex_emulator.api_root, options={"project": vertex_emulator.project}
        upstream_key = ...secret=vertex_emulator.upstream_secret()
        assert vertex_emulator.last_request()["path"].endswith(":rawPredict")

`vertex_upstream` (session scope) starts `python -m gateway.emulator_vertex.server` once and
generates the test service account's RSA key; `vertex_emulator` (function scope) resets the
emulator and registers that account, whose key JSON points google-auth at the emulator's
`/token`.
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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

BASE_DIR = Path(__file__).resolve().parents[2]
CONTROL_TIMEOUT_SECONDS = 10.0
TEST_PROJECT = "gatehouse-test"
TEST_CLIENT_EMAIL = f"gateway@{TEST_PROJECT}.iam.gserviceaccount.com"
TEST_PRIVATE_KEY_ID = "0123456789abcdef0123456789abcdef01234567"


class TestServiceAccount:
    """An RSA key pair and the service-account key JSON Google would hand out for it."""

    __test__ = False  # not a test class, whatever its name

    def __init__(
        self,
        *,
        client_email: str = TEST_CLIENT_EMAIL,
        project_id: str = TEST_PROJECT,
        private_key_id: str = TEST_PRIVATE_KEY_ID,
    ) -> None:
        self.client_email = client_email
        self.project_id = project_id
        self.private_key_id = private_key_id
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def public_key_pem(self) -> str:
        return (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def key_info(self, token_uri: str) -> dict[str, Any]:
        private_pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": private_pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }


class VertexEmulatorClient:
    """Drives a running Vertex emulator through its control API."""

    def __init__(self, base_url: str, service_account: TestServiceAccount) -> None:
        self.base_url = base_url
        self.service_account = service_account
        self.project = service_account.project_id
        self._http = httpx.Client(
            base_url=base_url, timeout=CONTROL_TIMEOUT_SECONDS, trust_env=False
        )

    @property
    def api_root(self) -> str:
        """What a vertex Provider's base_url is set to (Google's `https://...googleapis.com/v1`)."""
        return f"{self.base_url}/v1"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, f"/_emulator/{path}", json=json)
        response.raise_for_status()
        return response.json()

    def service_account_info(self, account: TestServiceAccount | None = None) -> dict[str, Any]:
        return (account or self.service_account).key_info(self.token_uri)

    def upstream_secret(self, account: TestServiceAccount | None = None) -> str:
        """The service-account key JSON an UpstreamKey of a vertex provider holds."""
        return orjson.dumps(self.service_account_info(account)).decode()

    def register(self, account: TestServiceAccount) -> None:
        self._call(
            "POST",
            "service_accounts",
            {
                "client_email": account.client_email,
                "project_id": account.project_id,
                "public_key_pem": account.public_key_pem,
                "private_key_id": account.private_key_id,
            },
        )

    def reset(self) -> None:
        self._call("POST", "reset")
        self.register(self.service_account)

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Merge settings: reply settings as for the Anthropic emulator, `token_lifetime_s`."""
        return self._call("POST", "config", settings)

    def inject_fault(
        self, fault: str, *, times: int | None = 1, endpoint: str = "messages"
    ) -> list[dict[str, Any]]:
        """Queue a fault: `"google:429"`, `"anthropic:529"`, `"error_event_mid_stream"`,
        `"drop_mid_stream"`; `endpoint` is `messages`, `count_tokens` or `any`."""
        payload = {"fault": fault, "times": times, "endpoint": endpoint}
        return self._call("POST", "faults", payload)["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def advance_clock(self, seconds: float) -> float:
        return self._call("POST", "clock", {"advance_seconds": seconds})["now"]

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Recorded requests (token grants included), oldest first."""
        suffix = f"?limit={limit}" if limit is not None else ""
        return self._call("GET", f"requests{suffix}")["requests"]

    def token_requests(self) -> list[dict[str, Any]]:
        return [request for request in self.requests() if request["path"] == "/token"]

    def last_request(self) -> dict[str, Any]:
        recorded = self.requests(limit=1)
        if not recorded:
            raise AssertionError("The Vertex emulator has received no request")
        return recorded[0]


@pytest.fixture(scope="session")
def vertex_upstream() -> Iterator[VertexEmulatorClient]:
    # Imported here, after pytest has loaded (and assertion-rewritten) that plugin itself.
    from gateway.emulator.pytest_plugin import _free_loopback_port, _stop, _wait_until_ready

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="vertex-emulator-") as log_dir:
        log_path = Path(log_dir) / "emulator.log"
        port = _free_loopback_port()
        base_url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - fixed argv: this interpreter and our module
                [sys.executable, "-m", "gateway.emulator_vertex.server", "--port", str(port)],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = VertexEmulatorClient(base_url, TestServiceAccount())
        try:
            _wait_until_ready(process, base_url, log_path)
            yield client
        finally:
            client.close()
            _stop(process)


@pytest.fixture
def vertex_emulator(vertex_upstream: VertexEmulatorClient) -> VertexEmulatorClient:
    vertex_upstream.reset()
    return vertex_upstream
