"""`python -m bench` (what `make bench` runs); `python -m bench --profile` for `make profile`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys

import orjson

from bench import report
from bench.scenarios import PROFILED, SCENARIOS, run_growth, run_scenario
from bench.stack import REPO, emulator_server, gateway_description, machine, running_stack


def _git_commit() -> str:
    if os.environ.get("BENCH_COMMIT"):  # benchmarking an exported tree that has no .git
        return os.environ["BENCH_COMMIT"]
    completed = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, fixed args
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (completed.stdout.strip() or "unknown") + (" (+ uncommitted changes)" if dirty else "")


async def bench(names: list[str], long_run: bool) -> int:
    info = machine()
    info["commit"] = _git_commit()
    info["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info["gateway"] = gateway_description()
    info["emulator"] = emulator_server()
    with running_stack() as stack:
        assert stack.gateway is not None
        assert stack.emulator is not None
        info["database"], info["redis"] = stack.database, stack.redis
        print(
            f"bench: emulator pid {stack.emulator.pid} on core {stack.emulator.core}, "
            f"gateway pid {stack.gateway.pid} on core {stack.gateway.core}",
            flush=True,
        )
        results = []
        for name in names:
            scenario = SCENARIOS[name]
            print(f"bench: {scenario.title} …", flush=True)
            results.append(await run_scenario(stack, scenario))
        growth = None
        if long_run:
            total = int(os.environ.get("BENCH_GROWTH_REQUESTS", "100000"))
            print(f"bench: no-growth run ({total:,} requests through the gateway) …", flush=True)
            growth = await run_growth(stack, total=total)
        load = [f"{value:.2f}" for value in os.getloadavg()]
    rows = [row for result in results for row in report.rows_for(result)]
    if growth is not None:
        rows += report.growth_rows(growth)
    print()
    print(
        f"Gatehouse benchmark — {info['date']}, commit {info['commit']}\n"
        f"machine: {info['nproc']} cores × {info['cpu']}, {info['memory']} RAM, "
        f"Linux {info['kernel']}, Python {info['python']}; load average at the end "
        f"{' '.join(load)}\n"
        f"emulator ({info['emulator'].capitalize()}) pinned to core {stack.emulator_core}, "
        f"gateway ({info['gateway']}) to "
        f"core {stack.gateway_core}; {stack.database}, {stack.redis}, "
        "GATEHOUSE_CACHE_TTL default (5 s)\n"
    )
    print(report.table(rows))
    print()
    print(report.resource_table(results, stack))
    print()
    for note in report.bottleneck_notes(results, stack):
        print("· " + note)
    warning = report.noise_warning(results)
    if warning:
        print()
        print(warning)
    failures = [row for row in rows if row.verdict == "FAIL"]
    print()
    print(
        f"{sum(row.verdict == 'PASS' for row in rows)} targets met, {len(failures)} missed"
        + (": " + "; ".join(f"{row.scenario} {row.metric}" for row in failures) if failures else "")
    )
    out_dir = REPO / "var" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out_dir / f"results-{stamp}.json"
    out.write_bytes(orjson.dumps(report.as_json(info, results, growth), option=orjson.OPT_INDENT_2))
    print(f"results: {out.relative_to(REPO)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "scenarios",
        nargs="*",
        choices=[*SCENARIOS, "growth", []],
        help=f"default: all of {', '.join(SCENARIOS)}; 'growth' alone: only the long run",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway (make profile)")
    parser.add_argument(
        "--long",
        action="store_true",
        default=os.environ.get("BENCH_LONG") == "1",
        help="also the 100,000-request no-growth run (or BENCH_LONG=1)",
    )
    options = parser.parse_args(argv)
    if options.profile:
        from bench.profile import profile

        return asyncio.run(profile(list(options.scenarios) or list(PROFILED)))
    names = list(options.scenarios) or list(SCENARIOS)
    long_run = options.long or "growth" in names
    return asyncio.run(bench([name for name in names if name != "growth"], long_run))


if __name__ == "__main__":
    sys.exit(main())
