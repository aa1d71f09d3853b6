"""The recorder's batching: rows wait in memory for a batch window and are written together;
the writer thread is woken to open a window, for a full batch or a flush, not once per row."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from gateway.lean_insert import LeanInsert
from gateway.models import RequestLog
from gateway.recorder import BACKLOG_BATCHES, WRITE_SLICE_ROWS, RequestRecorder
from gateway.server_tuning import BACKGROUND_NICENESS
from tests.gateway.test_recorder_spool import row

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for_rows(count: int, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while (written := RequestLog.objects.count()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return written


def context_switches(thread_id: int) -> int:
    """How many times the thread gave up its core to wait (Linux: /proc)."""
    status = Path(f"/proc/self/task/{thread_id}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("voluntary_ctxt"))
    return int(line.split(":")[1])


def test_rows_arriving_within_the_window_are_written_as_one_batch_by_one_wakeup(
    tmp_path, monkeypatch
):
    recorder = RequestRecorder(batch_size=1000, flush_interval_s=3.0, spool_dir=tmp_path)
    batches: list[int] = []
    write = recorder._write_or_spool
    monkeypatch.setattr(
        recorder, "_write_or_spool", lambda rows: (batches.append(len(rows)), write(rows))
    )
    recorder.record(row("first"))
    assert recorder._thread is not None
    writer_id = recorder._thread.native_id
    assert writer_id is not None
    time.sleep(0.05)  # the writer has opened its window and sleeps in it
    switches_before = context_switches(writer_id)

    for n in range(100):
        recorder.record(row(f"row-{n}"))
        time.sleep(0.001)  # as a server does between requests, leave the writer a turn
    switches_during = context_switches(writer_id) - switches_before
    try:
        assert wait_for_rows(101) == 101
    finally:
        recorder.stop()

    assert batches == [101]
    assert switches_during <= 2  # a writer woken per row shows about 100


def test_a_full_batch_is_written_without_waiting_for_the_window_to_close(tmp_path):
    recorder = RequestRecorder(batch_size=10, flush_interval_s=60.0, spool_dir=tmp_path)
    try:
        for n in range(25):
            recorder.record(row(f"row-{n}"))

        assert wait_for_rows(20) == 20
        time.sleep(0.2)
        assert (RequestLog.objects.count(), recorder.queue_depth) == (20, 5)

        recorder.flush_now(timeout_s=5.0)
        assert RequestLog.objects.count() == 25
    finally:
        recorder.stop()


def test_a_flush_writes_what_was_queued_before_it_without_waiting_for_the_window(tmp_path):
    recorder = RequestRecorder(batch_size=1000, flush_interval_s=60.0, spool_dir=tmp_path)
    try:
        for n in range(3):
            recorder.record(row(f"row-{n}"))
        started = time.monotonic()
        recorder.flush_now(timeout_s=30.0)

        assert RequestLog.objects.count() == 3
        assert time.monotonic() - started < 10.0
    finally:
        recorder.stop()


def test_rows_queued_at_stop_are_written_before_the_writer_ends(tmp_path):
    recorder = RequestRecorder(batch_size=1000, flush_interval_s=60.0, spool_dir=tmp_path)
    for n in range(7):
        recorder.record(row(f"row-{n}"))
    recorder.stop(timeout_s=10.0)

    assert RequestLog.objects.count() == 7
    assert recorder._thread is not None
    assert not recorder._thread.is_alive()


def niceness_once_set(thread: threading.Thread | None, timeout_s: float = 5.0) -> int:
    """The thread's niceness once it has lowered it (each thread does so as it starts)."""
    assert thread is not None
    assert thread.native_id is not None
    deadline = time.monotonic() + timeout_s
    while (niceness := os.getpriority(os.PRIO_PROCESS, thread.native_id)) != BACKGROUND_NICENESS:
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    return niceness


def test_the_writer_and_replayer_threads_run_below_the_event_loops_cpu_priority(tmp_path):
    recorder = RequestRecorder(batch_size=10, flush_interval_s=0.05, spool_dir=tmp_path)
    own_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    recorder.record(row("row-0"))
    recorder.flush_now()
    try:
        assert niceness_once_set(recorder._thread) == BACKGROUND_NICENESS
        assert niceness_once_set(recorder._replayer) == BACKGROUND_NICENESS
        # niceness is per thread: the thread that records (the event loop's) keeps its own
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own_niceness
    finally:
        recorder.stop()


class SlicedRecorder(RequestRecorder):
    """Notes, at each pause between slices, how many rows it had priced and how many its
    transaction had inserted; and how many statements inserted rows."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.priced_at_pauses: list[int] = []
        self.inserted_at_pauses: list[int] = []
        self.priced = 0

    def _priced(self, row: dict) -> dict:
        self.priced += 1
        return super()._priced(row)

    def _pause_between_slices(self) -> None:
        self.priced_at_pauses.append(self.priced)
        self.inserted_at_pauses.append(RequestLog.objects.count())  # the writer's connection
        super()._pause_between_slices()


@pytest.fixture
def insert_statements(monkeypatch) -> list[int]:
    """The number of rows each INSERT statement of the request log carried."""
    sizes: list[int] = []
    insert_values = LeanInsert.insert_values

    def counted(self, values, *, using="default"):
        sizes.append(len(values))
        insert_values(self, values, using=using)

    monkeypatch.setattr(LeanInsert, "insert_values", counted)
    return sizes


def test_a_batch_is_priced_a_slice_at_a_time_with_pauses_between_then_inserted_in_one_statement(
    tmp_path, insert_statements
):
    recorder = SlicedRecorder(batch_size=1000, flush_interval_s=60.0, spool_dir=tmp_path)
    for n in range(2 * WRITE_SLICE_ROWS + 2):
        recorder.record(row(f"row-{n}"))
    recorder.flush_now()
    recorder.stop()

    assert recorder.priced_at_pauses == [WRITE_SLICE_ROWS, 2 * WRITE_SLICE_ROWS]
    assert recorder.inserted_at_pauses == [0, 0]
    assert insert_statements == [2 * WRITE_SLICE_ROWS + 2]
    assert RequestLog.objects.count() == 2 * WRITE_SLICE_ROWS + 2


def test_a_writer_with_a_full_batch_waiting_writes_without_pausing_until_it_has_caught_up(
    tmp_path,
):
    recorder = SlicedRecorder(
        batch_size=2 * WRITE_SLICE_ROWS, flush_interval_s=60.0, spool_dir=tmp_path
    )
    batch = [row(f"row-{n}") for n in range(2 * WRITE_SLICE_ROWS + 1)]
    waiting = [row(f"waiting-{n}") for n in range(2 * WRITE_SLICE_ROWS + 1)]
    recorder._queue.extend(waiting)  # behind the batch: the writer is behind

    recorder._write(batch)
    behind = list(recorder.priced_at_pauses)
    recorder._queue.clear()
    recorder._write(waiting)

    assert behind == []
    assert recorder.priced_at_pauses == [
        len(batch) + WRITE_SLICE_ROWS,
        len(batch) + 2 * WRITE_SLICE_ROWS,
    ]
    assert RequestLog.objects.count() == len(batch) + len(waiting)


def test_a_spool_replay_writes_without_pausing_since_it_is_catching_up(tmp_path):
    recorder = SlicedRecorder(batch_size=1000, flush_interval_s=60.0, spool_dir=tmp_path)
    spooled = [row(f"spooled-{n}") for n in range(2 * WRITE_SLICE_ROWS + 1)]
    recorder._spool(spooled)

    recorder._replay_spool()

    assert recorder.priced_at_pauses == []
    assert RequestLog.objects.count() == len(spooled)
    assert list(tmp_path.glob("*.jsonl")) == []


def test_past_ten_batches_behind_each_new_row_gives_the_writer_the_core(tmp_path, monkeypatch):
    recorder = RequestRecorder(batch_size=2, flush_interval_s=60.0, spool_dir=tmp_path)
    # a writer that never gets the core: nothing leaves the queue
    monkeypatch.setattr(recorder, "_ensure_started", lambda: None)
    pauses: list[int] = []
    monkeypatch.setattr(
        recorder, "_yield_to_the_writer", lambda: pauses.append(len(recorder._queue))
    )

    for n in range(25):
        recorder.record(row(f"row-{n}"))

    assert pauses == list(range(2 * BACKLOG_BATCHES, 26))
    assert recorder.queue_depth == 25  # every row kept


def test_a_writer_that_keeps_up_never_holds_a_request(tmp_path, monkeypatch):
    recorder = RequestRecorder(batch_size=2, flush_interval_s=0.01, spool_dir=tmp_path)
    pauses: list[int] = []
    monkeypatch.setattr(recorder, "_yield_to_the_writer", lambda: pauses.append(1))
    try:
        for n in range(40):
            recorder.record(row(f"row-{n}"))
            time.sleep(0.005)  # requests arriving slower than the writer writes
        assert wait_for_rows(40) == 40
    finally:
        recorder.stop()

    assert pauses == []
