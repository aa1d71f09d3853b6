"""`make bench-instructions`: what the proxy's own Python costs per request, in numbers a noisy
machine does not blur.

`make bench` measures through a real server on a real core, the way users see the gateway. On
a shared VM its numbers move by ±20 % from one minute to the next, more than most single
changes are worth. This drives the ASGI application in-process instead (no server, no
loopback client, nothing between the application and its `send`), against the emulator on the
other core: a warm-up, then N requests from 32 concurrent tasks, and it reports

- the CPU time per request of the whole process (the event loop and the request log's writer);
- with `--valgrind`, the instructions per request of the measured requests alone (callgrind,
  instrumentation switched on after the warm-up and off before the exit). On the bench VM
  these repeat within about 1 % from run to run, while the CPU time can move by 20 %.

Both for Gatehouse (as `gateway.serve` runs it: production settings, access log on, the
serving process tuned) and for the bare pass-through `bench.floor`, so what Gatehouse adds is
the difference. Run it before and after a change to see what the change is worth.

With `--server daphne` or `--server granian` (and `--valgrind`), the application runs in the
real server process instead, as `make bench` starts it, and the count covers that process:
the server's own HTTP work included, which the in-process drive leaves out. The load comes
from this process over loopback; the request log writes batches of SERVED_BATCH_ROWS, and the
count starts after the warm-up's rows are written and stops once the measured ones are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.scenarios import REQUEST_PATH, SCENARIOS, Scenario, request_body, request_headers
from bench.stack import (
    HOST,
    PYTHON,
    REPO,
    Server,
    free_port,
    gateway_argv,
    running_stack,
    wait_listening,
)

APPS = ("gateway", "floor")
DEFAULT_SCENARIOS = ("ns_c32", "st_c32")
DRIVABLE = tuple(name for name, scenario in SCENARIOS.items() if not scenario.wave)
CONCURRENCY = 32
WARMUP_REQUESTS = 300
DEFAULT_REQUESTS = 3200
DEFAULT_VALGRIND_REQUESTS = 256  # valgrind runs the process about 70 times slower


# What keeps a run's work the same from run to run, however slowly it goes: the same dict
# layouts; no cache expiring within a run (steady state: no database query per request);
# request log batches formed by size, never by the clock.
STEADY_STATE = {
    "PYTHONHASHSEED": "0",
    "GATEHOUSE_CACHE_TTL": "3600",
    "GATEHOUSE_LOG_FLUSH_INTERVAL": "3600",
}


@dataclass(frozen=True)
class Measurement:
    scenario: str
    app: str
    requests: int
    errors: int
    cpu_us: float | None  # process CPU per request; None under valgrind (not comparable)
    instructions: int | None = None  # per request, under valgrind only
    server: str = ""  # "": driven in-process; else the server process that was counted


# --- the child: one application driven in-process -------------------------------------------


def _scope(scenario: Scenario, api_key: str, body: bytes) -> dict[str, Any]:
    headers = [
        (name.encode(), value.encode())
        for name, value in request_headers(scenario, api_key=api_key).items()
    ]
    headers += [(b"host", HOST.encode()), (b"content-length", str(len(body)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": REQUEST_PATH,
        "raw_path": REQUEST_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": (HOST, 40000),
        "server": (HOST, 8000),
    }


async def one_request(application: Any, scope: dict[str, Any], body: bytes) -> int:
    """One request through `application` as a server would make it; its status (0: none)."""
    status = 0
    received = False
    hang_up = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await hang_up.wait()  # never set: the client stays until the response has ended
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await application(dict(scope), receive, send)
    return status


async def drive(
    application: Any,
    scenario: Scenario,
    *,
    api_key: str,
    requests: int,
    warmup: int = WARMUP_REQUESTS,
    concurrency: int = CONCURRENCY,
    write_out: Callable[[], Awaitable[None]] | None = None,
    on_measuring: Callable[[], None] | None = None,
    on_measured: Callable[[], None] | None = None,
) -> tuple[int, int, float]:
    """`warmup` requests, then `requests` more from `concurrency` tasks in closed loops.
    Returns (requests measured, errors among them, process CPU seconds they took).

    `write_out` (the request log's flush) runs after the warm-up and after the measured
    requests, so the measurement holds the writing of the measured requests' rows, all of
    it and nothing else, wherever the writer's batches happen to fall."""
    body = request_body(scenario)
    scope = _scope(scenario, api_key, body)
    for _ in range(warmup):
        await one_request(application, scope, body)
    errors = 0
    left = requests

    async def worker() -> None:
        nonlocal errors, left
        while left > 0:
            left -= 1
            if await one_request(application, scope, body) != 200:
                errors += 1

    if write_out is not None:
        await write_out()
    if on_measuring is not None:
        on_measuring()
    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if write_out is not None:
        await write_out()
    cpu_s = time.process_time() - started
    if on_measured is not None:
        on_measured()
    return requests, errors, cpu_s


def _callgrind(switch: str) -> None:
    """Instrumentation on or off in this process (which valgrind runs)."""
    subprocess.run(  # noqa: S603 - valgrind's own control tool, fixed arguments
        ["callgrind_control", "--instr=" + switch, str(os.getpid())],  # noqa: S607
        check=True,
        capture_output=True,
        timeout=120,
    )


def _gateway_application() -> Any:
    """Gatehouse as a Granian worker serves it: Django set up, the access log installed, the
    serving process tuned."""
    import django

    django.setup()
    from config.asgi import application
    from gateway.access_log import AccessLog, install
    from gateway.server_tuning import tune_the_serving_process

    install(AccessLog(fd=os.open(os.devnull, os.O_WRONLY)))
    tune_the_serving_process()
    return application


def child(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {args.core})
    write_out: Callable[[], Awaitable[None]] | None = None
    if args.app == "gateway":
        application = _gateway_application()
        from gateway.proxy.lifecycle import flush_request_log

        write_out = flush_request_log  # the floor keeps no log
    else:
        from bench.floor import application
    import uvloop

    async def run() -> tuple[int, int, float]:
        return await drive(
            application,
            SCENARIOS[args.scenarios[0]],
            api_key=args.key,
            requests=args.requests,
            warmup=args.warmup,
            write_out=write_out,
            on_measuring=(lambda: _callgrind("on")) if args.valgrind else None,
            on_measured=(lambda: _callgrind("off")) if args.valgrind else None,
        )

    requests, errors, cpu_s = uvloop.run(run())
    print(orjson.dumps({"requests": requests, "errors": errors, "cpu_s": cpu_s}).decode())
    sys.stdout.flush()
    os._exit(0)  # the floor's and the gateway's clients need no goodbye


# --- through a real server (--server) ------------------------------------------------------

SERVERS = ("daphne", "granian")
FLOOR_APPLICATION = "bench.floor:application"
SERVED_BATCH_ROWS = 64  # warm-up and measured requests are rounded up to whole batches
SERVER_START_S = 600.0  # Python and Django under valgrind start about 50 times slower
POLL_S = 0.2


def whole_batches(count: int) -> int:
    return math.ceil(count / SERVED_BATCH_ROWS) * SERVED_BATCH_ROWS


def rows_logged(database_url: str) -> int:
    """RequestLog rows in the bench's throwaway database (SQLite, or PostgreSQL)."""
    query = "SELECT COUNT(*) FROM gateway_requestlog"
    if database_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as db:
            return int(db.execute(query).fetchone()[0])
    import psycopg

    with psycopg.connect(database_url) as db:
        row = db.execute(query).fetchone()
        return int(row[0]) if row else 0


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"Timed out waiting for {what}")
        time.sleep(POLL_S)


async def send_load(
    port: int, scenario: Scenario, *, api_key: str, requests: int, concurrency: int
) -> int:
    """`requests` requests from `concurrency` closed loops over loopback; the answers not 200."""
    import aiohttp

    body = request_body(scenario)
    headers = request_headers(scenario, api_key=api_key)
    url = f"http://{HOST}:{port}{REQUEST_PATH}"
    left, errors = requests, 0
    timeout = aiohttp.ClientTimeout(total=SERVER_START_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def worker() -> None:
            nonlocal left, errors
            while left > 0:
                left -= 1
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    errors += response.status != 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


def _callgrind_all(pattern: str, switch: str) -> None:
    """Instrumentation on or off in every process valgrind runs for one measurement (the
    server, and Granian's worker)."""
    found = subprocess.run(  # noqa: S603 - fixed arguments
        ["pgrep", "-f", pattern],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )
    for pid in found.stdout.split():
        subprocess.run(  # noqa: S603 - valgrind's own control tool, fixed arguments
            ["callgrind_control", "--instr=" + switch, pid],  # noqa: S607
            check=True,
            capture_output=True,
            timeout=120,
        )


def measure_served(
    env: dict[str, str],
    *,
    scenario: str,
    app: str,
    key: str,
    server: str,
    core: int,
    requests: int,
    warmup: int,
    work_dir: Path,
) -> Measurement:
    """The instructions per request of `app` served by `server` pinned to `core`."""
    requests, warmup = whole_batches(requests), whole_batches(warmup)
    port = free_port()
    out = work_dir / f"callgrind.{server}.{scenario}.{app}"
    argv = gateway_argv(
        port, server=server, application=FLOOR_APPLICATION if app == "floor" else None
    )
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes"]
    served_env = {
        **env,
        **STEADY_STATE,
        "GATEHOUSE_LOG_BATCH_SIZE": str(SERVED_BATCH_ROWS),
    }
    log_path = work_dir / f"{out.name}.log"
    logs = app == "gateway"
    database_url = env["DATABASE_URL"]
    logged_before = rows_logged(database_url) if logs else 0
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own servers, fixed argv
            [*valgrind, f"--callgrind-out-file={out}.%p", *argv],
            cwd=REPO,
            env=served_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    os.sched_setaffinity(process.pid, {core})  # before it starts a thread or a worker
    try:
        wait_listening(
            Server(name=server, process=process, port=port, core=core, log_path=log_path),
            timeout_s=SERVER_START_S,
        )
        load = SCENARIOS[scenario]
        asyncio.run(send_load(port, load, api_key=key, requests=warmup, concurrency=CONCURRENCY))
        if logs:
            done = logged_before + warmup
            _wait_for(lambda: rows_logged(database_url) >= done, SERVER_START_S, "warm-up rows")
        _callgrind_all(str(out), "on")
        errors = asyncio.run(
            send_load(port, load, api_key=key, requests=requests, concurrency=CONCURRENCY)
        )
        if logs:
            done = logged_before + warmup + requests
            _wait_for(lambda: rows_logged(database_url) >= done, SERVER_START_S, "measured rows")
        _callgrind_all(str(out), "off")
    finally:
        process.terminate()
        process.wait(timeout=SERVER_START_S)
    total = sum(callgrind_total(path) for path in work_dir.glob(f"{out.name}.*[0-9]"))
    return Measurement(
        scenario=scenario,
        app=app,
        requests=requests,
        errors=errors,
        cpu_us=None,
        instructions=total // requests,
        server=server,
    )


# --- the parent: the stack, one child per scenario and application --------------------------


def callgrind_total(path: Path) -> int:
    """The instruction count callgrind wrote: its `totals:` line (the `summary:` line in the
    header may be written before the counts and say 0)."""
    for line in path.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"No instruction total in {path}")


def _measure(
    env: dict[str, str],
    *,
    scenario: str,
    app: str,
    key: str,
    core: int,
    requests: int,
    warmup: int,
    valgrind: bool,
    work_dir: Path,
) -> Measurement:
    argv = [PYTHON, "-m", "bench.instructions", "--child", "--app", app, "--key", key]
    argv += ["--core", str(core), "--requests", str(requests), "--warmup", str(warmup), scenario]
    output = work_dir / f"callgrind.{scenario}.{app}.out"
    if valgrind:
        valgrind_argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        argv = [*valgrind_argv, f"--callgrind-out-file={output}", *argv, "--valgrind"]
    completed = subprocess.run(  # noqa: S603 - our own module, fixed argv
        argv,
        cwd=REPO,
        env={**env, **STEADY_STATE},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"{app} / {scenario} failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    result = orjson.loads(lines[-1])
    measured = result["requests"]
    return Measurement(
        scenario=scenario,
        app=app,
        requests=measured,
        errors=result["errors"],
        cpu_us=None if valgrind else result["cpu_s"] / measured * 1e6,
        instructions=callgrind_total(output) // measured if valgrind else None,
    )


def table(measurements: list[Measurement]) -> str:
    lines = [
        f"{'scenario':24} {'application':18} {'requests':>9} {'errors':>7} "
        f"{'CPU µs/request':>15} {'instructions/request':>21}",
        "-" * 98,
    ]
    by_scenario: dict[tuple[str, str], dict[str, Measurement]] = {}
    for item in measurements:
        by_scenario.setdefault((item.scenario, item.server), {})[item.app] = item
        cpu = f"{item.cpu_us:,.0f}" if item.cpu_us is not None else "—"
        instructions = f"{item.instructions:,}" if item.instructions is not None else "—"
        application = f"{item.app} ({item.server})" if item.server else item.app
        lines.append(
            f"{SCENARIOS[item.scenario].title:24} {application:18} {item.requests:>9,} "
            f"{item.errors:>7} {cpu:>15} {instructions:>21}"
        )
    for (name, server), apps in by_scenario.items():
        gateway, floor = apps.get("gateway"), apps.get("floor")
        if gateway is None or floor is None:
            continue
        where = f" under {server.capitalize()}" if server else ""
        if gateway.instructions is not None and floor.instructions is not None:
            added = f"{gateway.instructions - floor.instructions:+,} instructions"
        elif gateway.cpu_us is not None and floor.cpu_us is not None:
            added = f"{gateway.cpu_us - floor.cpu_us:+,.0f} µs of CPU"
        else:
            continue
        lines.append(f"{SCENARIOS[name].title:24} Gatehouse adds {added} per request{where}")
    return "\n".join(lines)


def parent(args: argparse.Namespace) -> int:
    if args.valgrind and not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("--valgrind needs valgrind installed (Debian: apt-get install valgrind)")
    requests = args.requests or (DEFAULT_VALGRIND_REQUESTS if args.valgrind else DEFAULT_REQUESTS)
    apps = APPS if args.app == "both" else (args.app,)
    measurements = []
    with (
        running_stack(with_gateway=False) as stack,
        tempfile.TemporaryDirectory(prefix="gatehouse-instructions-") as work,
    ):
        for scenario in args.scenarios or DEFAULT_SCENARIOS:
            for app in apps:
                print(f"bench: {SCENARIOS[scenario].title}, {app} …", flush=True)
                measure = functools.partial(measure_served, server=args.server)
                if not args.server:
                    measure = functools.partial(_measure, valgrind=args.valgrind)
                measurements.append(
                    measure(
                        stack.env,
                        scenario=scenario,
                        app=app,
                        key=stack.virtual_key,
                        core=stack.gateway_core,
                        requests=requests,
                        warmup=args.warmup,
                        work_dir=Path(work),
                    )
                )
    print()
    print(table(measurements))
    return 1 if any(item.errors for item in measurements) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument(
        "scenarios", nargs="*", metavar="scenario", help=f"default: {' '.join(DEFAULT_SCENARIOS)}"
    )
    parser.add_argument("--app", choices=(*APPS, "both"), default="both")
    parser.add_argument("--requests", type=int, default=0, help="measured requests per run")
    parser.add_argument(
        "--warmup", type=int, default=WARMUP_REQUESTS, help="requests before the measured ones"
    )
    parser.add_argument("--valgrind", action="store_true", help="count instructions")
    parser.add_argument(
        "--server",
        choices=SERVERS,
        help="count the real server process serving the application (needs --valgrind)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in args.scenarios:
        if name not in SCENARIOS or SCENARIOS[name].wave:
            parser.error(f"unknown scenario {name!r}: choose from {', '.join(DRIVABLE)}")
    if args.server and not args.valgrind:
        parser.error("--server counts instructions: add --valgrind")
    if args.child:
        child(args)  # exits the process
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
