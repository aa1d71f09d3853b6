"""Process gauges for operators: `GET /metrics` on the proxy, in Prometheus' text format.

Counted inside the gateway process, so that leaks can be seen from outside it: requests in
flight, upstream connections held by the shared client (in use and idle), asyncio tasks,
resident memory, open file descriptors, the RequestLog writer's queue and spool, and finished
requests by outcome.

Who may read it (`metrics_refusal`):
- a client on a loopback address that did not come through a proxy (no `Forwarded`,
  `X-Forwarded-For` or `X-Real-IP` header), unless `GATEHOUSE_METRICS_LOOPBACK=0`;
- anyone presenting a usable management token as `Authorization: Bearer gh_mgmt_…`
  (the read scope is enough: the endpoint only reads).
Everyone else gets a 401 (no or unknown credential) in Anthropic's error shape.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError

from accounts.keys import MANAGEMENT_TOKEN_PREFIX
from accounts.selectors import management_token_resolve
from gateway.errors import GatewayError, new_request_id
from gateway.models import RequestOutcome
from gateway.proxy.io import Send, send_bytes, send_error
from gateway.recorder import recorder

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
FORWARDING_HEADERS = frozenset({b"forwarded", b"x-forwarded-for", b"x-real-ip"})


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    kind: str  # "gauge" or "counter"
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


class OutcomeCounter:
    """Finished proxied requests by outcome, since the process started."""

    def __init__(self) -> None:
        self.finished: Counter[str] = Counter()

    def count(self, outcome: str) -> None:
        self.finished[str(outcome)] += 1


def upstream_connections(client: httpx.AsyncClient | None) -> tuple[int, int] | None:
    """(in use, idle) connections the upstream client holds; None for an unknown transport.

    Reads the pool of whichever transport the client runs on: aiohttp's connector (through
    httpx-aiohttp) or httpcore's connection pool.
    """
    if client is None:
        return 0, 0
    transport: Any = client._transport
    session: Any = getattr(transport, "client", None)
    if isinstance(session, aiohttp.ClientSession):
        if session.closed:
            return 0, 0
        connector: Any = session.connector
        idle = sum(len(entries) for entries in connector._conns.values())
        return len(connector._acquired), idle
    if callable(session):
        return 0, 0  # httpx-aiohttp makes its session on the first request
    pool = getattr(transport, "_pool", None)
    connections = getattr(pool, "connections", None)
    if connections is None:
        return None
    in_use = idle = 0
    for connection in connections:
        if connection.is_closed():
            continue
        if connection.is_idle():
            idle += 1
        else:
            in_use += 1
    return in_use, idle


def spooled(spool_dir: Path) -> tuple[int, int]:
    """(files, rows) waiting in the RequestLog spool for the database to come back."""
    files = rows = 0
    try:
        paths = list(spool_dir.glob("*.jsonl"))
    except OSError:
        return 0, 0
    for path in paths:
        try:
            rows += path.read_bytes().count(b"\n")
        except OSError:
            continue  # replayed (renamed) between the listing and the read
        files += 1
    return files, rows


def collect(
    *,
    in_flight: int,
    outcomes: OutcomeCounter,
    client: httpx.AsyncClient | None,
    recorder_queue_depth: int,
    spool_dir: Path,
) -> list[Sample]:
    process = psutil.Process()
    samples = [
        Sample(
            "gatehouse_requests_in_flight",
            "gauge",
            "Proxied requests being handled now.",
            in_flight,
        ),
        Sample(
            "gatehouse_asyncio_tasks",
            "gauge",
            "asyncio tasks alive in the server's event loop.",
            len(asyncio.all_tasks()),
        ),
        Sample(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            process.memory_info().rss,
        ),
        Sample("process_open_fds", "gauge", "Open file descriptors.", _open_fds(process)),
        Sample(
            "gatehouse_recorder_queue_rows",
            "gauge",
            "RequestLog rows queued in memory, not yet written.",
            recorder_queue_depth,
        ),
    ]
    files, rows = spooled(spool_dir)
    samples += [
        Sample(
            "gatehouse_recorder_spooled_files",
            "gauge",
            "Spool files on local disk waiting for the database.",
            files,
        ),
        Sample(
            "gatehouse_recorder_spooled_rows",
            "gauge",
            "RequestLog rows spooled on local disk waiting for the database.",
            rows,
        ),
    ]
    connections = upstream_connections(client)
    if connections is not None:
        in_use, idle = connections
        for state, value in (("in_use", in_use), ("idle", idle)):
            samples.append(
                Sample(
                    "gatehouse_upstream_connections",
                    "gauge",
                    "Connections to upstream providers held by the shared client.",
                    value,
                    (("state", state),),
                )
            )
    for outcome in RequestOutcome.values:
        samples.append(
            Sample(
                "gatehouse_requests_total",
                "counter",
                "Proxied requests finished since the process started, by outcome.",
                outcomes.finished.get(outcome, 0),
                (("outcome", outcome),),
            )
        )
    return samples


def _open_fds(process: psutil.Process) -> int:
    try:
        return process.num_fds()
    except (AttributeError, psutil.Error):  # not on POSIX
        return len(process.open_files())


def render(samples: Iterable[Sample]) -> bytes:
    """Prometheus text exposition format 0.0.4: HELP and TYPE once per metric name."""
    lines: list[str] = []
    described: set[str] = set()
    for sample in samples:
        if sample.name not in described:
            described.add(sample.name)
            lines.append(f"# HELP {sample.name} {sample.help}")
            lines.append(f"# TYPE {sample.name} {sample.kind}")
        labels = ",".join(f'{name}="{_escaped(value)}"' for name, value in sample.labels)
        value = int(sample.value) if float(sample.value).is_integer() else sample.value
        lines.append(f"{sample.name}{{{labels}}} {value}" if labels else f"{sample.name} {value}")
    return ("\n".join(lines) + "\n").encode()


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def parse(text: str) -> dict[str, float]:
    """`{'name' or 'name{labels}': value}`: the exposition read back (tests and tooling)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def is_direct_loopback(scope: dict[str, Any]) -> bool:
    """A client on this machine that did not come through a (possibly local) reverse proxy."""
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if not address.is_loopback:
        return False
    return not any(name.lower() in FORWARDING_HEADERS for name, _ in scope.get("headers", ()))


def _is_usable_management_token(secret: str) -> bool:
    return management_token_resolve(secret) is not None


_token_is_usable = sync_to_async(_is_usable_management_token)


async def metrics_refusal(
    scope: dict[str, Any], authorization: str | None, *, loopback_open: bool
) -> GatewayError | None:
    """None when the caller may read the gauges, else the error to answer with."""
    if loopback_open and is_direct_loopback(scope):
        return None
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(MANAGEMENT_TOKEN_PREFIX):
        return GatewayError(
            "authentication_error",
            "The metrics endpoint needs a management token: Authorization: Bearer gh_mgmt_….",
        )
    try:
        usable = await _token_is_usable(token)
    except DatabaseError:
        logger.warning("Could not verify a management token for /metrics")
        return GatewayError("api_error", "The gateway cannot verify this token right now.")
    if not usable:
        return GatewayError("authentication_error", "Invalid management token.")
    return None


async def respond(
    scope: dict[str, Any],
    send: Send,
    *,
    client: httpx.AsyncClient | None,
    in_flight: int,
    outcomes: OutcomeCounter,
) -> None:
    """Answer `GET /metrics` (or HEAD) for a caller `metrics_refusal` lets in."""
    method = scope["method"]
    request_id = new_request_id()
    if method not in ("GET", "HEAD"):
        error = GatewayError(
            "invalid_request_error",
            f"Method {method} not allowed on {METRICS_PATH}.",
            status=405,
            headers={"allow": "GET, HEAD"},
        )
        await send_error(send, error, request_id)
        return
    authorization = next(
        (value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"),
        None,
    )
    config = settings.GATEHOUSE
    refusal = await metrics_refusal(
        scope, authorization, loopback_open=config["METRICS_LOOPBACK_OPEN"]
    )
    if refusal is not None:
        await send_error(send, refusal, request_id)
        return
    body = render(
        collect(
            in_flight=in_flight,
            outcomes=outcomes,
            client=client,
            recorder_queue_depth=recorder().queue_depth,
            spool_dir=Path(config["SPOOL_DIR"]),
        )
    )
    headers = [(b"content-type", CONTENT_TYPE), (b"cache-control", b"no-store")]
    await send_bytes(send, 200, body, headers, head_only=method == "HEAD")
