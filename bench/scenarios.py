"""The scenarios, and how one is run: direct and through the gateway, interleaved in rounds."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench import loadgen
from bench.stack import (
    HOST,
    MODEL,
    UPSTREAM_SECRET,
    Stack,
    core_times,
    cpu_seconds,
    reset_peak_rss,
    rss_kib,
    status_kib,
    thread_switches,
)

PROMPT = (
    "Benchmark prompt: summarise the trade-offs of relaying server-sent events through a "
    "gateway without buffering, in about fifty short words, then stop."
)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    concurrency: int
    stream: bool = False
    deltas: int | None = None
    delay_ms: float | None = None
    rounds: int = 5
    round_s: float = 2.0
    round_max: int = 20_000
    warmup_s: float = 0.5
    wave: bool = False  # one wave of `concurrency` streams, all open at once
    stagger_s: float = 0.0  # spread the connections' first requests over this time
    hard_timeout_s: float = 60.0


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("ns_c1", "non-stream, c=1", concurrency=1, rounds=6, round_s=1.5, round_max=4000),
        Scenario("ns_c32", "non-stream, c=32", concurrency=32, rounds=5, round_s=2.0),
        Scenario("st_c32", "stream 50 deltas, c=32", concurrency=32, stream=True, deltas=50),
        Scenario(
            "slow_c64",
            "stream 20 deltas × 20 ms, c=64",
            concurrency=64,
            stream=True,
            deltas=20,
            delay_ms=20,
            rounds=3,
            round_s=3.0,
            # Started all at once, 64 closed-loop clients stay in lockstep: one core takes each
            # wave of 64 arrivals in turn, and the TTFT p99 measures that burst (64 × the CPU
            # before a first byte), not the overhead of one stream. Spread over one stream's
            # length, the arrivals stay spread, as those of independent clients are.
            stagger_s=0.4,
        ),
        Scenario(
            "wave2000",
            "2,000 concurrent slow streams (20 deltas × 1 s)",
            concurrency=2000,
            stream=True,
            deltas=20,
            delay_ms=1000,
            rounds=1,
            wave=True,
            warmup_s=0.0,
            hard_timeout_s=120.0,
        ),
    )
}
PROFILED = ("ns_c32", "st_c32")
REQUEST_PATH = "/v1/messages"  # every scenario's request, over the wire or driven in-process


def request_body(scenario: Scenario) -> bytes:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    if scenario.stream:
        body["stream"] = True
    return orjson.dumps(body)


def request_headers(scenario: Scenario, *, api_key: str) -> dict[str, str]:
    """The scenario's request headers but Host and Content-Length."""
    headers = {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": api_key,
        "user-agent": "gatehouse-bench/1",
    }
    if scenario.deltas is not None:
        headers["x-emulator-deltas"] = str(scenario.deltas)
    if scenario.delay_ms is not None:
        headers["x-emulator-delta-delay-ms"] = str(scenario.delay_ms)
    return headers


def request_bytes(scenario: Scenario, *, port: int, api_key: str) -> bytes:
    return loadgen.build_request(
        host=HOST,
        port=port,
        path=REQUEST_PATH,
        body=request_body(scenario),
        headers=request_headers(scenario, api_key=api_key),
    )


# --- measuring one round -------------------------------------------------------------------


@dataclass
class Usage:
    """CPU seconds used during a round by each party, and by everything else on the cores."""

    wall_s: float
    gateway_s: float
    emulator_s: float
    loadgen_s: float
    core_busy_s: dict[int, float]
    gateway_switches: int = 0  # context switches of the gateway's threads

    @property
    def foreign_s(self) -> float:
        ours = self.gateway_s + self.emulator_s + self.loadgen_s
        return max(0.0, sum(self.core_busy_s.values()) - ours)


class UsageMeter:
    def __init__(self, stack: Stack) -> None:
        assert stack.gateway is not None
        assert stack.emulator is not None
        self.pids = (stack.gateway.pid, stack.emulator.pid)

    def __enter__(self) -> UsageMeter:
        self.start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        self.usage = self._delta(self.start, self._read())

    def _read(self) -> tuple[float, float, float, float, dict[int, tuple[float, float]], int]:
        return (
            time.perf_counter(),
            cpu_seconds(self.pids[0]),
            cpu_seconds(self.pids[1]),
            cpu_seconds("self"),
            core_times(),
            thread_switches(self.pids[0]),
        )

    @staticmethod
    def _delta(before: tuple, after: tuple) -> Usage:
        cores = {core: after[4][core][0] - before[4][core][0] for core in after[4]}
        return Usage(
            wall_s=after[0] - before[0],
            gateway_s=after[1] - before[1],
            emulator_s=after[2] - before[2],
            loadgen_s=after[3] - before[3],
            core_busy_s=cores,
            gateway_switches=after[5] - before[5],
        )


@dataclass
class Side:
    """Everything measured for one side (direct or gateway) of a scenario, over its rounds."""

    samples: list[loadgen.Sample] = field(default_factory=list)
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    usage: list[Usage] = field(default_factory=list)
    peak_in_flight: int = 0
    # wave only: the server's RSS before the wave and at its peak concurrency
    rss_before_kib: int = 0
    rss_at_peak_kib: int = 0
    in_flight_at_peak: int = 0

    def add(self, result: loadgen.RunResult, usage: Usage) -> None:
        self.samples.extend(result.samples)
        self.errors += result.errors
        self.error_examples.extend(result.error_examples[: 3 - len(self.error_examples)])
        self.wall_s += result.wall_s
        self.usage.append(usage)
        self.peak_in_flight = max(self.peak_in_flight, result.peak_in_flight)

    @property
    def count(self) -> int:
        return len(self.samples)

    @property
    def rate(self) -> float:
        return self.count / self.wall_s if self.wall_s else 0.0

    def total(self, name: str) -> float:
        return sum(getattr(usage, name) for usage in self.usage)

    def cpu_share(self, name: str) -> float:
        """Average share of one core used by `name` over this side's rounds."""
        wall = self.total("wall_s")
        return self.total(name) / wall if wall else 0.0

    def core_share(self, core: int) -> float:
        wall = self.total("wall_s")
        return sum(usage.core_busy_s.get(core, 0.0) for usage in self.usage) / wall if wall else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def series(side: Side, metric: str) -> list[float]:
    samples = [s for s in side.samples if s.status == 200]
    if metric == "latency":
        return [s.done - s.sent for s in samples]
    if metric == "ttfb":
        return [s.first_byte - s.sent for s in samples]
    if metric == "ttft":
        return [s.first_delta - s.sent for s in samples if s.first_delta]
    if metric == "spread":
        return [s.last_delta - s.first_delta for s in samples if s.first_delta]
    raise ValueError(metric)


@dataclass
class ScenarioResult:
    scenario: Scenario
    direct: Side = field(default_factory=Side)
    gateway: Side = field(default_factory=Side)
    gateway_rss_start_kib: int = 0
    gateway_rss_peak_kib: int = 0
    emulator_rss_peak_kib: int = 0
    deltas_seen: tuple[int, int] = (0, 0)


# --- running -----------------------------------------------------------------------------


class RssWatch:
    """Samples a process's RSS while a scenario runs; VmHWM (reset first) catches spikes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self.hwm_reset = reset_peak_rss(pid)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.05)

    def sample(self) -> int:
        value = rss_kib(self.pid)
        self.peak_kib = max(self.peak_kib, value)
        return value

    def __enter__(self) -> RssWatch:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.sample()
        if self.hwm_reset:
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmHWM"))


def pin_loadgen(core: int) -> None:
    os.sched_setaffinity(0, {core})


async def run_scenario(
    stack: Stack, scenario: Scenario, *, sides: tuple[str, ...] = ("direct", "gateway")
) -> ScenarioResult:
    assert stack.gateway is not None
    assert stack.emulator is not None
    targets = {
        "direct": (
            stack.emulator.port,
            request_bytes(scenario, port=stack.emulator.port, api_key=UPSTREAM_SECRET),
            stack.gateway_core,  # the gateway idles: the load generator borrows its core
        ),
        "gateway": (
            stack.gateway.port,
            request_bytes(scenario, port=stack.gateway.port, api_key=stack.virtual_key),
            stack.emulator_core,
        ),
    }
    result = ScenarioResult(scenario)
    if scenario.warmup_s:
        for side_name in sides:
            port, request, core = targets[side_name]
            pin_loadgen(core)
            await loadgen.closed_loop(
                host=HOST,
                port=port,
                request=request,
                concurrency=scenario.concurrency,
                max_requests=scenario.round_max,
                duration_s=scenario.warmup_s,
                track_deltas=scenario.stream,
            )
    await asyncio.sleep(0.6)  # let the recorder flush the warm-up's rows
    result.gateway_rss_start_kib = rss_kib(stack.gateway.pid)
    gc.collect()
    gc.disable()  # the load generator's own pauses must not land in the latencies
    try:
        with RssWatch(stack.gateway.pid) as gateway_rss, RssWatch(stack.emulator.pid) as emu_rss:
            for _ in range(scenario.rounds):
                for side_name in sides:
                    side: Side = getattr(result, side_name)
                    port, request, core = targets[side_name]
                    pin_loadgen(core)
                    server_pid = stack.gateway.pid if side_name == "gateway" else stack.emulator.pid
                    if scenario.wave:
                        await _wave_round(stack, scenario, side, port, request, server_pid)
                    else:
                        with UsageMeter(stack) as meter:
                            run = await loadgen.closed_loop(
                                host=HOST,
                                port=port,
                                request=request,
                                concurrency=scenario.concurrency,
                                max_requests=scenario.round_max,
                                duration_s=scenario.round_s,
                                track_deltas=scenario.stream,
                                hard_timeout_s=scenario.hard_timeout_s,
                                stagger_s=scenario.stagger_s,
                            )
                        side.add(run, meter.usage)
                    gc.collect()
                    await asyncio.sleep(0.3)
        result.gateway_rss_peak_kib = gateway_rss.peak_kib
        result.emulator_rss_peak_kib = emu_rss.peak_kib
    finally:
        gc.enable()
        pin_loadgen(stack.emulator_core)
    if scenario.stream:
        result.deltas_seen = (
            min((s.deltas for s in result.direct.samples), default=0),
            min((s.deltas for s in result.gateway.samples), default=0),
        )
    return result


async def _wave_round(
    stack: Stack, scenario: Scenario, side: Side, port: int, request: bytes, server_pid: int
) -> None:
    side.rss_before_kib = rss_kib(server_pid)
    peak = {"in_flight": 0, "rss": 0}

    def on_tick(in_flight: int) -> None:
        rss = rss_kib(server_pid)
        if in_flight > peak["in_flight"] or (in_flight == peak["in_flight"] and rss > peak["rss"]):
            peak["in_flight"], peak["rss"] = in_flight, rss

    with UsageMeter(stack) as meter:
        run = await loadgen.one_wave(
            host=HOST,
            port=port,
            request=request,
            streams=scenario.concurrency,
            connect_concurrency=64,
            hard_timeout_s=scenario.hard_timeout_s,
            on_tick=on_tick,
        )
    side.add(run, meter.usage)
    side.rss_at_peak_kib = peak["rss"]
    side.in_flight_at_peak = peak["in_flight"]


# --- the long run: does the gateway's memory grow? -----------------------------------------


@dataclass
class GrowthResult:
    checkpoints: list[tuple[int, int]] = field(default_factory=list)  # (requests, rss KiB)
    errors: int = 0
    wall_s: float = 0.0

    def rss_at(self, requests: int) -> tuple[int, int]:
        """The first checkpoint at or after `requests`: (requests done, RSS KiB)."""
        return next(point for point in self.checkpoints if point[0] >= requests)


async def run_growth(stack: Stack, *, total: int = 100_000, step: int = 10_000) -> GrowthResult:
    """Gateway only, c=32, alternating non-stream and 50-delta stream batches."""
    assert stack.gateway is not None
    pin_loadgen(stack.emulator_core)
    plain = request_bytes(SCENARIOS["ns_c32"], port=stack.gateway.port, api_key=stack.virtual_key)
    stream = request_bytes(SCENARIOS["st_c32"], port=stack.gateway.port, api_key=stack.virtual_key)
    result = GrowthResult()
    done = 0
    started = time.perf_counter()
    batch = step // 2
    while done < total:
        for request, track in ((plain, False), (stream, True)):
            run = await loadgen.closed_loop(
                host=HOST,
                port=stack.gateway.port,
                request=request,
                concurrency=32,
                max_requests=batch,
                duration_s=120.0,
                track_deltas=track,
            )
            done += len(run.samples)
            result.errors += run.errors
            if not run.samples:
                raise RuntimeError(f"no request completed: {run.error_examples}")
        await asyncio.sleep(1.0)  # the recorder's queue drains before memory is read
        result.checkpoints.append((done, rss_kib(stack.gateway.pid)))
        print(
            f"bench: growth {done:>7,} requests, gateway RSS {result.checkpoints[-1][1] / 1024:.1f} MiB",
            flush=True,
        )
    result.wall_s = time.perf_counter() - started
    return result
