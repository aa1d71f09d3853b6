"""`make profile`: py-spy records the gateway while the non-stream and stream c=32 loads run.

For each profiled scenario it writes, under var/profile/:
  <scenario>.svg              flame graph (open in a browser)
  <scenario>.speedscope.json  the same samples for https://www.speedscope.app (drag & drop)
  <scenario>.top.txt          self and inclusive time per function, heaviest first
and prints the top 15 functions by self time.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import orjson

from bench import loadgen
from bench.scenarios import SCENARIOS, pin_loadgen, request_bytes
from bench.stack import HOST, PYTHON, REPO, Stack, running_stack

RECORD_S = 8
RATE_HZ = 250
TOP = 15


def _py_spy() -> str:
    candidate = Path(PYTHON).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: `make profile` installs it into .venv")
    return found


async def _record(stack: Stack, name: str, output: Path, fmt: str) -> None:
    """Load the gateway for RECORD_S (+1) seconds while py-spy samples it."""
    assert stack.gateway is not None
    scenario = SCENARIOS[name]
    request = request_bytes(scenario, port=stack.gateway.port, api_key=stack.virtual_key)
    pin_loadgen(stack.emulator_core)
    spy = await asyncio.create_subprocess_exec(
        _py_spy(),
        "record",
        "--pid",
        str(stack.gateway.pid),
        "--rate",
        str(RATE_HZ),
        "--duration",
        str(RECORD_S),
        "--function",
        "--gil",  # only the thread holding the GIL: where the single core goes
        "--format",
        fmt,
        "--output",
        str(output),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    await asyncio.sleep(0.5)  # py-spy attaches
    run = await loadgen.closed_loop(
        host=HOST,
        port=stack.gateway.port,
        request=request,
        concurrency=scenario.concurrency,
        max_requests=200_000,
        duration_s=RECORD_S + 1,
        track_deltas=scenario.stream,
    )
    _, stderr = await asyncio.wait_for(spy.communicate(), timeout=60)
    if spy.returncode != 0:
        raise SystemExit(f"py-spy failed ({spy.returncode}): {stderr.decode()[-2000:]}")
    print(
        f"profile: {scenario.title}: {len(run.samples):,} requests in {run.wall_s:.1f} s "
        f"({len(run.samples) / run.wall_s:,.0f}/s, {run.errors} errors) → {output.relative_to(REPO)}",
        flush=True,
    )


def _frame_label(frame: dict) -> str:
    path = frame.get("file") or ""
    for marker in ("site-packages/", "/lib/python3.11/", str(REPO) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{frame.get('name', '?')} ({path}:{frame.get('line', '?')})"


def top_functions(speedscope: Path) -> tuple[Counter[str], Counter[str], int]:
    """Self and inclusive sample counts per function, and the total, over all threads."""
    document = orjson.loads(speedscope.read_bytes())
    frames = document["shared"]["frames"]
    labels = [_frame_label(frame) for frame in frames]
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for profile in document["profiles"]:
        for stack in profile["samples"]:
            if not stack:
                continue
            weight = 1
            total += weight
            self_time[labels[stack[-1]]] += weight
            for label in {labels[index] for index in stack}:
                inclusive[label] += weight
    return self_time, inclusive, total


def _write_top(
    path: Path, title: str, self_time: Counter[str], inclusive: Counter[str], total: int
) -> str:
    lines = [
        f"{title}: {total} samples at {RATE_HZ} Hz over {RECORD_S} s of whichever thread held "
        "the GIL (100 % = all samples)",
        "",
    ]
    lines.append(f"top {TOP} by self time:")
    for label, weight in self_time.most_common(TOP):
        lines.append(f"  {weight / total:6.1%}  {label}")
    summary = "\n".join(lines)
    lines += ["", "top 40 by inclusive time:"]
    for label, weight in inclusive.most_common(40):
        lines.append(f"  {weight / total:6.1%}  {label}")
    lines += ["", "all functions by self time:"]
    for label, weight in self_time.most_common():
        lines.append(f"  {weight / total:6.2%}  {label}")
    path.write_text("\n".join(lines) + "\n")
    return summary


async def profile(names: list[str]) -> int:
    out_dir = REPO / "var" / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    with running_stack() as stack:
        assert stack.gateway is not None
        # warm the gateway: caches, the upstream connection pool, the recorder thread
        warm = request_bytes(
            SCENARIOS["ns_c32"], port=stack.gateway.port, api_key=stack.virtual_key
        )
        pin_loadgen(stack.emulator_core)
        await loadgen.closed_loop(
            host=HOST,
            port=stack.gateway.port,
            request=warm,
            concurrency=32,
            max_requests=2000,
            duration_s=2.0,
            track_deltas=False,
        )
        summaries = []
        for name in names:
            await _record(stack, name, out_dir / f"{name}.svg", "flamegraph")
            speedscope = out_dir / f"{name}.speedscope.json"
            await _record(stack, name, speedscope, "speedscope")
            self_time, inclusive, total = top_functions(speedscope)
            summaries.append(
                _write_top(
                    out_dir / f"{name}.top.txt", SCENARIOS[name].title, self_time, inclusive, total
                )
            )
    for summary in summaries:
        print()
        print(summary)
    print(f"\nflame graphs, speedscope files and full listings: {out_dir.relative_to(REPO)}/")
    return 0
