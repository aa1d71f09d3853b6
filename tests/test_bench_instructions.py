"""`make bench-instructions`: the application driven in-process, per-request costs reported."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bench.instructions import (
    SERVED_BATCH_ROWS,
    Measurement,
    callgrind_total,
    drive,
    main,
    rows_logged,
    send_load,
    table,
    whole_batches,
)
from bench.scenarios import SCENARIOS
from bench.stack import PYTHON, REPO


def test_the_driver_sends_each_request_its_body_once_and_counts_the_answers_not_200() -> None:
    seen: list[tuple[bytes, bool]] = []

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        seen.append((message["body"], message["more_body"]))
        number = len(seen)  # every 4th request, warm-up included, fails
        # a second receive waits for a disconnect that does not come while the response runs
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(receive(), timeout=0.01)
        status = 500 if number % 4 == 0 else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    measured, errors, cpu_s = asyncio.run(
        drive(application, SCENARIOS["st_c32"], api_key="k", requests=40, warmup=4, concurrency=8)
    )

    assert (measured, errors) == (40, 10)
    assert len(seen) == 44
    body, more_body = seen[0]
    assert b'"stream":true' in body
    assert more_body is False
    assert cpu_s > 0


def test_the_instruction_count_is_read_from_the_totals_line_not_the_header_summary(
    tmp_path: Path,
) -> None:
    output = tmp_path / "callgrind.out"
    output.write_text("version: 1\nevents: Ir\nsummary: 0\n\nfn=(1) main\n5 12\n\ntotals: 987654\n")
    assert callgrind_total(output) == 987654
    output.write_text("version: 1\nevents: Ir\nsummary: 0\n")
    with pytest.raises(RuntimeError, match="No instruction total"):
        callgrind_total(output)


def test_the_table_reports_what_gatehouse_adds_over_the_floor_in_instructions_when_counted() -> (
    None
):
    counted = table(
        [
            Measurement("st_c32", "gateway", 256, 0, None, 2_179_503),
            Measurement("st_c32", "floor", 256, 0, None, 505_109),
        ]
    )
    assert "Gatehouse adds +1,674,394 instructions per request" in counted
    timed = table(
        [
            Measurement("ns_c32", "gateway", 3200, 0, 874.2),
            Measurement("ns_c32", "floor", 3200, 0, 261.0),
        ]
    )
    assert "Gatehouse adds +613 µs of CPU per request" in timed


def test_bench_instructions_drives_gatehouse_and_the_floor_against_the_emulator() -> None:
    completed = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [PYTHON, "-m", "bench.instructions", "--requests", "64", "--warmup", "8", "st_c32"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = [line.split() for line in completed.stdout.splitlines() if " 64 " in line]
    # scenario title (4 words), application, requests, errors, CPU µs, instructions
    assert [(row[4], row[5], row[6]) for row in rows] == [
        ("gateway", "64", "0"),
        ("floor", "64", "0"),
    ]
    assert "stream 50 deltas, c=32   Gatehouse adds" in completed.stdout


def test_served_counts_are_reported_per_server_with_what_gatehouse_adds_under_it() -> None:
    report = table(
        [
            Measurement("ns_c32", "gateway", 512, 0, None, 2_432_498, server="daphne"),
            Measurement("ns_c32", "floor", 512, 0, None, 1_000_000, server="daphne"),
            Measurement("ns_c32", "gateway", 512, 0, None, 1_637_744),
        ]
    )

    assert "gateway (daphne)" in report
    assert "Gatehouse adds +1,432,498 instructions per request under Daphne" in report
    assert report.count("Gatehouse adds") == 1  # in-process, the floor was not measured


def test_served_runs_cover_whole_request_log_batches() -> None:
    assert SERVED_BATCH_ROWS == 64
    assert [whole_batches(n) for n in (1, 64, 65, 300, 512)] == [64, 64, 128, 320, 512]


def test_a_served_run_counts_instructions_so_it_needs_valgrind(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--server", "daphne", "ns_c32"])

    assert "--server counts instructions: add --valgrind" in capsys.readouterr().err


def test_the_request_log_rows_are_counted_in_the_benchs_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "bench.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE gateway_requestlog (id INTEGER PRIMARY KEY)")
        db.executemany("INSERT INTO gateway_requestlog DEFAULT VALUES", [()] * 3)

    assert rows_logged(f"sqlite:///{path}") == 3


def test_the_served_load_sends_every_request_and_counts_the_answers_not_200(emulator) -> None:
    emulator.inject_fault("529", times=3)
    port = urlsplit(emulator.base_url).port
    assert port is not None

    errors = asyncio.run(
        send_load(port, SCENARIOS["ns_c32"], api_key="sk-ant-bench", requests=20, concurrency=4)
    )

    assert errors == 3
    assert len(emulator.requests()) == 20
