"""What a running gateway holds, counted from outside it: its /metrics gauges, the TCP
sockets of its process and its resident memory. A fault test takes a baseline, runs, then
waits for the gateway to come back to it (or fails with the numbers)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import psutil

from gateway.proxy.metrics import parse
from tests.live_servers import LiveServer

SETTLE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Footprint:
    tasks: int
    in_flight: int
    upstream_in_use: int
    upstream_idle: int
    upstream_sockets: int  # the gateway process's sockets to the upstream
    client_sockets: int  # its sockets from clients (the listening one aside)


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def metrics(server: LiveServer, **headers: str) -> dict[str, float]:
    response = httpx.get(server.base_url + "/metrics", headers=headers, timeout=10)
    response.raise_for_status()
    return parse(response.text)


def footprint(server: LiveServer, upstream_url: str) -> Footprint:
    # Sockets first: the scrape's own connection is open only while it is being answered.
    sockets = psutil.Process(server.pid).net_connections(kind="tcp")
    upstream_port, gateway_port = port_of(upstream_url), port_of(server.base_url)
    gauges = metrics(server)
    return Footprint(
        tasks=int(gauges["gatehouse_asyncio_tasks"]),
        in_flight=int(gauges["gatehouse_requests_in_flight"]),
        upstream_in_use=int(gauges['gatehouse_upstream_connections{state="in_use"}']),
        upstream_idle=int(gauges['gatehouse_upstream_connections{state="idle"}']),
        upstream_sockets=sum(
            1 for sock in sockets if sock.raddr and sock.raddr.port == upstream_port
        ),
        client_sockets=sum(
            1
            for sock in sockets
            if sock.laddr.port == gateway_port and sock.status != psutil.CONN_LISTEN
        ),
    )


def is_quiet(now: Footprint) -> bool:
    """Nothing in flight, and every upstream socket is one the pool knows and keeps idle."""
    return (
        now.in_flight == 0
        and now.upstream_in_use == 0
        and now.upstream_sockets == now.upstream_idle
        and now.client_sockets == 0
    )


def quiet_footprint(server: LiveServer, upstream_url: str) -> Footprint:
    """The footprint once the gateway has finished what it was doing (the baseline)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while not is_quiet(now := footprint(server, upstream_url)):
        if time.monotonic() > deadline:
            raise AssertionError(f"the gateway never went quiet: {now}")
        time.sleep(0.05)
    return now


def assert_back_to(baseline: Footprint, server: LiveServer, upstream_url: str) -> None:
    """No task left behind and no connection leaked, upstream or downstream, since `baseline`."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        now = footprint(server, upstream_url)
        if (
            is_quiet(now)
            and now.tasks <= baseline.tasks
            and now.upstream_idle <= max(baseline.upstream_idle, 1)
        ):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not back to the baseline: before {baseline}, after {now}")
        time.sleep(0.05)


class RssSampler(threading.Thread):
    """The highest resident set size of a process, sampled every `interval_s`."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = self.process.memory_info().rss
        self._finished = threading.Event()

    def run(self) -> None:
        while not self._finished.wait(self.interval_s):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self._finished.set()
        self.join()
        return self.peak
