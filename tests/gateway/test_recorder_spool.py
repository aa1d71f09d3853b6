"""The recorder's spool: rows the database cannot take wait on disk and are written once.

The database failure is a real one: the RequestLog table is renamed away for a moment, so
every insert fails in the driver (ProgrammingError on PostgreSQL, OperationalError on
SQLite), as it would during a deploy that has not migrated yet, or an outage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.db import connection
from django.utils import timezone

from gateway.models import RequestLog
from gateway.recorder import ORPHAN_AGE_S, REJECTED_DIR, RequestRecorder

pytestmark = pytest.mark.django_db(transaction=True)


def row(request_id: str) -> dict[str, Any]:
    started_at = timezone.now() - timedelta(seconds=1)
    return {
        "request_id": request_id,
        "started_at": started_at,
        "finished_at": started_at + timedelta(milliseconds=40),
        "endpoint": "/v1/models",
        "method": "GET",
        "status_code": 200,
        "outcome": "ok",
        "latency_ms": 40,
    }


def spool_line(request_id: str) -> bytes:
    return orjson.dumps(row(request_id), default=str)


def logged() -> dict[str, int]:
    counts: dict[str, int] = {}
    for request_id in RequestLog.objects.values_list("request_id", flat=True):
        counts[request_id] = counts.get(request_id, 0) + 1
    return counts


def spool_files(spool_dir: Path) -> list[str]:
    return sorted(path.name for path in spool_dir.iterdir() if path.is_file())


@contextmanager
def request_log_table_gone() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE gateway_requestlog RENAME TO gateway_requestlog_away")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE gateway_requestlog_away RENAME TO gateway_requestlog")


@pytest.fixture
def spool_dir(tmp_path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def recorder(spool_dir) -> Iterator[RequestRecorder]:
    writer = RequestRecorder(batch_size=50, flush_interval_s=0.05, spool_dir=spool_dir)
    yield writer
    writer.stop()


def write_spool_file(spool_dir: Path, name: str, content: bytes, age_s: float = 0.0) -> Path:
    spool_dir.mkdir(parents=True, exist_ok=True)
    path = spool_dir / name
    path.write_bytes(content)
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def test_rows_the_database_cannot_take_wait_on_disk_and_are_written_once_it_can(
    recorder, spool_dir
):
    with request_log_table_gone():
        recorder.record(row("req_during_1"))
        recorder.record(row("req_during_2"))
        recorder.flush_now()
        spooled = [
            orjson.loads(line)["request_id"]
            for path in [*spool_dir.glob("*.jsonl"), *spool_dir.glob(".*.claimed")]
            for line in path.read_bytes().splitlines()
        ]
        assert recorder.database_is_down

    assert sorted(spooled) == ["req_during_1", "req_during_2"]
    assert logged() == {}

    recorder.record(row("req_after"))
    recorder.flush_now()

    assert logged() == {"req_during_1": 1, "req_during_2": 1, "req_after": 1}
    assert spool_files(spool_dir) == []
    assert not recorder.database_is_down


def test_a_row_already_written_is_not_counted_again_when_its_spool_file_is_replayed(
    recorder, spool_dir
):
    recorder.record(row("req_written"))
    recorder.flush_now()
    # A process that died between writing a batch and deleting its spool file, and a file
    # that holds the same row twice.
    write_spool_file(
        spool_dir,
        "1-aaaaaaaa.jsonl",
        spool_line("req_written") + b"\n" + spool_line("req_new") + b"\n",
    )
    write_spool_file(
        spool_dir, "2-bbbbbbbb.jsonl", spool_line("req_new") + b"\n" + spool_line("req_new")
    )

    recorder.flush_now()
    recorder.flush_now()

    assert logged() == {"req_written": 1, "req_new": 1}
    assert spool_files(spool_dir) == []


def test_a_torn_spool_file_gives_up_its_whole_rows_and_sets_the_broken_line_aside(
    recorder, spool_dir
):
    torn = spool_line("req_cut_short")[:37]
    write_spool_file(
        spool_dir,
        "1-cccccccc.jsonl",
        spool_line("req_whole_1") + b"\n" + spool_line("req_whole_2") + b"\n[1, 2]\n" + torn,
    )

    recorder.flush_now()

    assert logged() == {"req_whole_1": 1, "req_whole_2": 1}
    assert spool_files(spool_dir) == []
    set_aside = (spool_dir / REJECTED_DIR / "1-cccccccc.jsonl").read_bytes().splitlines()
    assert set_aside == [b"[1, 2]", torn]


def test_a_row_the_database_refuses_is_set_aside_and_the_rest_are_written(recorder, spool_dir):
    refused = orjson.dumps({**row("req_refused"), "no_such_column": 1}, default=str)
    write_spool_file(
        spool_dir,
        "1-dddddddd.jsonl",
        spool_line("req_fine_1") + b"\n" + refused + b"\n" + spool_line("req_fine_2") + b"\n",
    )
    write_spool_file(spool_dir, "2-eeeeeeee.jsonl", spool_line("req_later") + b"\n")

    recorder.flush_now()

    assert logged() == {"req_fine_1": 1, "req_fine_2": 1, "req_later": 1}
    assert spool_files(spool_dir) == []
    set_aside = (spool_dir / REJECTED_DIR / "1-dddddddd.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["request_id"] for line in set_aside] == ["req_refused"]


def test_spool_files_a_stopped_process_left_claimed_or_half_written_are_taken_back(
    recorder, spool_dir
):
    old = ORPHAN_AGE_S + 5
    write_spool_file(
        spool_dir, ".1-ffffffff.4242.claimed", spool_line("req_claimed") + b"\n", age_s=old
    )
    write_spool_file(
        spool_dir,
        ".2-abababab.tmp",
        spool_line("req_half_written") + b"\n" + spool_line("req_torn")[:20],
        age_s=old,
    )
    # Another process is replaying this one right now.
    in_progress = write_spool_file(
        spool_dir, ".3-cdcdcdcd.4243.claimed", spool_line("req_in_progress") + b"\n"
    )

    recorder.flush_now()

    assert logged() == {"req_claimed": 1, "req_half_written": 1}
    assert spool_files(spool_dir) == [in_progress.name]
    assert len((spool_dir / REJECTED_DIR / "2-abababab.jsonl").read_bytes().splitlines()) == 1
