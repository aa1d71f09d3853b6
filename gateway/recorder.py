"""Writes RequestLog rows off the hot path: queued in memory, priced and inserted in batches.

The proxy only appends a plain dict to a queue. A writer thread bulk-inserts the rows; it
prices, with the cached price book, only those the proxy did not price when it settled the
request's budget reservation (`gateway.admission.gate`): refusals, the other endpoints,
a request no price book was loaded for. Inserts ignore rows whose request_id already exists,
so writing a row twice never counts a request twice. On process exit the queue is drained.

When the database cannot take a batch, the batch goes to a spool file on local disk (written
to a temporary name, fsynced, then renamed: a file either holds whole rows or is not there),
and until the database answers again the writer spools every batch without trying it, so
rows reach the disk within the flush interval. A replayer thread writes spooled files back,
oldest first, every few seconds; its first success ends the outage. Several processes may
share the spool directory: a file is claimed by an atomic rename before it is replayed, and
files a dead process left claimed or half-written are taken back after ORPHAN_AGE_S. Lines
that cannot be read and rows the database refuses (not an outage: bad data) are moved to
`rejected/` in the spool directory with an error in the log, so one bad row never blocks
the rest; a file moved back into the spool directory is replayed again.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections import deque
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import (
    InterfaceError,
    OperationalError,
    ProgrammingError,
    close_old_connections,
    reset_queries,
    transaction,
)
from django.utils.dateparse import parse_datetime

from gateway import body_log, live_feed
from gateway.contracts import Usage
from gateway.lean_insert import LeanInsert
from gateway.models import RequestBody, RequestLog
from gateway.pricing import PriceBook, cost_columns, price_request
from gateway.selectors import price_book_load
from gateway.server_tuning import run_in_background

logger = logging.getLogger(__name__)

_DATETIME_FIELDS = ("started_at", "finished_at")
# Errors after which the rows are kept to be written later: the database is unreachable,
# or its schema is not what this code expects (a deploy in progress). Any other error is
# about the rows themselves.
RETRY_LATER_ERRORS = (OperationalError, InterfaceError, ProgrammingError)
REPLAY_INTERVAL_S = 5.0  # how often the spool is looked at while the database is fine
DATABASE_RETRY_S = 2.0  # how often the replayer tries the database while it is failing
ORPHAN_AGE_S = 60.0  # a claimed or temporary spool file older than this lost its process
REJECTED_DIR = "rejected"
# A batch is priced and made into driver values WRITE_SLICE_ROWS rows at a time (about 0.25 ms
# of work on the benchmark VM), with a pause between slices in which this thread wants neither
# the GIL nor the core. Without it, a request arriving during a batch shared the GIL with the
# writer until the batch was done, and took up to twice as long: that was most of make bench's
# non-stream c=1 p99 (+2.3 to +4.1 ms over direct, against +1.8 to +2.3 ms with the slices) and
# of the slow streams' TTFT p99. A writer with a full batch waiting behind the one it writes
# does not pause (`_keeping_up`). The rows are then inserted in one statement: the driver
# gives the GIL up while the database writes each row, and one statement per slice cost
# Django's per-statement work 40 times a batch (a fifth of the writer's instructions).
WRITE_SLICE_ROWS = 5
WRITE_PAUSE_S = 0.0005
# The writer runs at the lowest CPU priority (see `run_in_background`), so on a core the event
# loop keeps saturated it gets almost none, and rows would pile up in memory for as long as the
# load lasts. Past BACKLOG_BATCHES full batches queued, each new row waits BACKLOG_PAUSE_S
# (holding no GIL) before its request ends: the writer gets the core meanwhile, the request
# log keeps up with the traffic and the queue stays bounded. Only an overloaded process pays.
BACKLOG_BATCHES = 10
BACKLOG_PAUSE_S = 0.001

_request_log_insert = LeanInsert(RequestLog)


def _row_to_json(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row, default=str)


def _row_from_json(raw: bytes) -> dict[str, Any]:
    row = orjson.loads(raw)
    if not isinstance(row, dict) or not isinstance(row.get("request_id"), str):
        raise ValueError("not a RequestLog row")
    for name in _DATETIME_FIELDS:
        if row.get(name):
            row[name] = parse_datetime(row[name])
    return row


def read_spool_file(path: Path) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The rows of a spool file, and the lines that are not rows (a torn or damaged file)."""
    rows: list[dict[str, Any]] = []
    unreadable: list[bytes] = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(_row_from_json(line))
        except (ValueError, TypeError):
            unreadable.append(line)
    return rows, unreadable


def _close_connections() -> None:
    """Give back this thread's connection; a broken one is dropped (the pool makes another)."""
    try:
        close_old_connections()
    except (OperationalError, InterfaceError):
        pass


class RequestRecorder:
    def __init__(
        self,
        *,
        batch_size: int | None = None,
        flush_interval_s: float | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        config = settings.GATEHOUSE
        self.batch_size = batch_size or config["LOG_BATCH_SIZE"]
        self.flush_interval_s = flush_interval_s or config["LOG_FLUSH_INTERVAL_S"]
        self.spool_dir = Path(spool_dir or config["SPOOL_DIR"])
        # Rows, in order, with a flush marker ({"__flush__": event}) or the stop marker (None)
        # among them. deque appends and pops are atomic; the writer is woken only to open
        # a batch window, when a batch is full, or for a marker: not once per row.
        self._queue: deque[dict[str, Any] | None] = deque()
        self._wake = threading.Event()
        self._writer_idle = False
        self._markers = 0  # flush and stop markers queued and not yet taken
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._price_book: PriceBook | None = None
        self._price_book_at = 0.0
        self._stopping = False
        self._replayer: threading.Thread | None = None
        self._replay_due = threading.Event()
        self._replay_lock = threading.Lock()
        self.database_is_down = False
        self.written = 0

    # -- the hot path ------------------------------------------------------------------
    def record(self, row: dict[str, Any]) -> None:
        self._ensure_started()
        self._queue.append(row)
        depth = len(self._queue)
        if self._writer_idle or depth >= self.batch_size:
            self._wake.set()
            if depth >= self.batch_size * BACKLOG_BATCHES:
                self._yield_to_the_writer()

    def _yield_to_the_writer(self) -> None:
        time.sleep(BACKLOG_PAUSE_S)  # see BACKLOG_BATCHES

    def _enqueue_marker(self, marker: dict[str, Any] | None) -> None:
        with self._lock:
            self._markers += 1
        self._queue.append(marker)
        self._wake.set()

    @property
    def queue_depth(self) -> int:
        """Rows queued in memory and not yet written or spooled (a gauge)."""
        return len(self._queue)

    # -- lifecycle ---------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="gatehouse-recorder", daemon=True
                )
                self._thread.start()
                self._replayer = threading.Thread(
                    target=self._replay_loop, name="gatehouse-recorder-replay", daemon=True
                )
                self._replayer.start()
                atexit.register(self.stop)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Drain the queue and write everything; called at process exit."""
        thread = self._thread
        if thread is None or self._stopping:
            return
        self._stopping = True
        self._replay_due.set()
        self._enqueue_marker(None)
        thread.join(timeout_s)

    def flush_now(self, timeout_s: float = 10.0) -> None:
        """Block until every row queued so far is written (tests and shutdown)."""
        deadline = time.monotonic() + timeout_s
        done = threading.Event()
        self._enqueue_marker({"__flush__": done})
        self._ensure_started()
        done.wait(max(0.0, deadline - time.monotonic()))

    # -- the writer thread -------------------------------------------------------------
    def _run(self) -> None:
        run_in_background()  # the event loop first: see gateway/server_tuning.py
        while True:
            pending, waiters, stop = self._collect_batch()
            if pending:
                try:
                    body_log.seal_rows(pending)  # redacted before any write or spool
                    self._write_or_spool(pending)
                except Exception:
                    # The thread must outlive any batch, or every later row would be lost.
                    logger.exception("Recorder lost a batch of %d rows", len(pending))
            if waiters or (stop and not self.database_is_down):
                self._replay_logged()
            for waiter in waiters:
                waiter.set()
            if stop:
                _close_connections()
                return

    def _replay_loop(self) -> None:
        run_in_background()
        while not self._stopping:
            self._replay_due.wait(DATABASE_RETRY_S if self.database_is_down else REPLAY_INTERVAL_S)
            self._replay_due.clear()
            if not self._stopping:
                self._replay_logged()

    def _replay_logged(self) -> None:
        try:
            self._replay_spool()
        except Exception:
            logger.exception("Spool replay failed")

    def _collect_batch(self) -> tuple[list[dict[str, Any]], list[threading.Event], bool]:
        """Rows until the batch is full or `flush_interval_s` after the first one arrived,
        or up to a flush or stop marker."""
        rows = self._queue
        while True:  # idle: until anything is queued
            self._wake.clear()
            self._writer_idle = True
            if rows:
                break
            self._wake.wait()
        self._writer_idle = False
        deadline = time.monotonic() + self.flush_interval_s
        while True:  # the batch window
            self._wake.clear()
            if len(rows) >= self.batch_size or self._markers:
                break
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            self._wake.wait(timeout)
        pending: list[dict[str, Any]] = []
        while rows and len(pending) < self.batch_size:
            item = rows.popleft()
            if item is None or "__flush__" in item:
                with self._lock:
                    self._markers -= 1
                if item is None:
                    return pending, [], True
                return pending, [item["__flush__"]], False
            pending.append(item)
        return pending, [], False

    def _prices(self) -> PriceBook | None:
        now = time.monotonic()
        if (
            self._price_book is None
            or now - self._price_book_at > settings.GATEHOUSE["CACHE_TTL_S"]
        ):
            self._price_book = price_book_load()
            self._price_book_at = now
        return self._price_book

    def _priced(self, row: dict[str, Any]) -> dict[str, Any]:
        if "cost_usd" in row:
            return row
        usage = Usage(
            input_tokens=row.get("input_tokens", 0),
            output_tokens=row.get("output_tokens", 0),
            cache_write_5m_tokens=row.get("cache_write_5m_tokens", 0),
            cache_write_1h_tokens=row.get("cache_write_1h_tokens", 0),
            cache_read_tokens=row.get("cache_read_tokens", 0),
            web_search_requests=row.pop("web_search_requests", 0),
        )
        iterations = tuple(
            (item.get("model"), Usage(**{k: v for k, v in item.items() if k != "model"}))
            for item in row.pop("iterations", ())
        )
        if row.get("endpoint") != "/v1/messages" or (usage == Usage() and not iterations):
            # Nothing billable happened (rejections, count_tokens, models): zero, and exact.
            row["cost_usd"] = Decimal(0)
            row["is_priced"] = True
            return row
        model = row.get("model_served") or row.get("model_requested") or ""
        book = self._prices()
        priced = price_request(
            usage=usage,
            iterations=iterations,
            model=model,
            provider_id=row.get("provider_id"),
            at=row["started_at"],
            book=book,
        )
        row.update(cost_columns(priced))
        return row

    def _keeping_up(self) -> bool:
        """No full batch waits behind this one. A writer that fell behind (a saturated core,
        where a thread at nice 19 that gives up the core gets it back late) writes without
        pauses until it has caught up, so the queue stays bounded."""
        return len(self._queue) < self.batch_size

    def _pause_between_slices(self) -> None:
        time.sleep(WRITE_PAUSE_S)  # holding no GIL: the event loop runs meanwhile

    def _write_or_spool(self, rows: list[dict[str, Any]]) -> None:
        if self.database_is_down:
            self._spool(rows)
            return
        try:
            self._write(rows)
        except RETRY_LATER_ERRORS as error:
            self._database_failed(error)
            self._spool(rows)
            _close_connections()
        except Exception:
            # Most likely one bad row: the replayer writes the file row by row.
            logger.exception("RequestLog write failed; spooling %d rows", len(rows))
            self._spool(rows)
            self._replay_due.set()

    def _database_failed(self, error: Exception) -> None:
        if not self.database_is_down:
            logger.warning(
                "RequestLog cannot be written (%s: %s); rows are spooled to %s until it can",
                type(error).__name__,
                str(error).strip().splitlines()[0] if str(error).strip() else "",
                self.spool_dir,
            )
        self.database_is_down = True

    def _write(self, rows: list[dict[str, Any]], *, paced: bool = True) -> None:
        """Price the batch a slice of rows at a time, pausing between slices unless `paced` is
        off (a spool replay is catching up by definition), then insert it in one statement, all
        in one transaction."""
        priced_rows: list[dict[str, Any]] = []
        values: list[tuple[Any, ...]] = []
        bodies: list[RequestBody] = []
        key_last_used: dict[int, datetime] = {}
        with transaction.atomic(savepoint=False):
            for start in range(0, len(rows), WRITE_SLICE_ROWS):
                if start and paced and self._keeping_up():
                    self._pause_between_slices()
                priced = [self._priced(dict(row)) for row in rows[start : start + WRITE_SLICE_ROWS]]
                for row in priced:
                    body = row.pop("body", None)
                    if body is not None:
                        bodies.append(body_log.request_body_row(row, body))
                    key_id = row.get("virtual_key_id")
                    if key_id and row.get("started_at"):
                        key_last_used[key_id] = max(
                            key_last_used.get(key_id, row["started_at"]), row["started_at"]
                        )
                values += _request_log_insert.values(priced)
                priced_rows += priced
            _request_log_insert.insert_values(values)
            if bodies:
                RequestBody.objects.bulk_create(bodies, ignore_conflicts=True, batch_size=50)
            if key_last_used:
                from accounts.models import VirtualKey

                for key_id, used_at in key_last_used.items():
                    VirtualKey.objects.filter(pk=key_id).update(last_used_at=used_at)
        self.written += len(priced_rows)
        # Outside Django's request cycle nothing clears DEBUG's query log; without this the
        # writer thread grows by every INSERT it ever ran (make run uses DEBUG=1).
        reset_queries()
        live_feed.publish_requests(priced_rows)

    def _spool(self, rows: list[dict[str, Any]]) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        tmp = self.spool_dir / f".{name}.tmp"
        with open(tmp, "wb") as handle:
            for row in rows:
                handle.write(_row_to_json(row) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.rename(self.spool_dir / f"{name}.jsonl")
        _fsync_directory(self.spool_dir)

    def _replay_spool(self) -> None:
        """Write spooled files back, oldest first, a batch of files per write; stop at the
        first sign of an outage."""
        if not self.spool_dir.is_dir():
            return
        with self._replay_lock:
            self._take_back_orphans()
            paths = sorted(self.spool_dir.glob("*.jsonl"))
            while paths:
                claimed, rows, unreadable, origin = self._claim_batch(paths)
                try:
                    refused = self._write_row_by_row_if_needed(rows)
                except RETRY_LATER_ERRORS as error:
                    for original, claim in claimed:
                        _put_back(claim, original)
                    self._database_failed(error)
                    break
                for row in refused:
                    unreadable.setdefault(origin[id(row)], []).append(_row_to_json(row))
                for name, lines in unreadable.items():
                    self._reject(name, lines)
                for _, claim in claimed:
                    claim.unlink(missing_ok=True)
                if rows and self.database_is_down:
                    self.database_is_down = False
                    logger.info("RequestLog is writable again; replaying the spool")
            _close_connections()  # the pool's connection goes back until the next replay

    def _claim_batch(
        self, paths: list[Path]
    ) -> tuple[
        list[tuple[Path, Path]], list[dict[str, Any]], dict[str, list[bytes]], dict[int, str]
    ]:
        """Claim files from the front of `paths` (consumed) until about a batch of rows.

        Returns the claims (original, claimed path), their rows, their unreadable lines by
        file name, and which file each row came from (by the row's id())."""
        claimed: list[tuple[Path, Path]] = []
        rows: list[dict[str, Any]] = []
        unreadable: dict[str, list[bytes]] = {}
        origin: dict[int, str] = {}
        while paths and len(rows) < self.batch_size:
            path = paths.pop(0)
            claim = path.with_name(f".{path.stem}.{os.getpid()}.claimed")
            try:
                path.rename(claim)
            except FileNotFoundError:
                continue  # another process claimed it
            os.utime(claim)  # a fresh claim is not an orphan
            claimed.append((path, claim))
            file_rows, file_unreadable = read_spool_file(claim)
            rows += file_rows
            origin.update((id(row), path.stem) for row in file_rows)
            if file_unreadable:
                unreadable[path.stem] = file_unreadable
        return claimed, rows, unreadable, origin

    def _write_row_by_row_if_needed(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write the rows; if the batch fails for a reason other than an outage, write them one
        by one. Returns the rows the database refused."""
        if not rows:
            return []
        try:
            self._write(rows, paced=False)
            return []
        except RETRY_LATER_ERRORS:
            raise
        except Exception:
            _close_connections()
        refused = []
        for row in rows:
            try:
                self._write([row], paced=False)
            except RETRY_LATER_ERRORS:
                raise
            except Exception as error:
                logger.error(
                    "Spooled row %s cannot be written: %s: %s",
                    row.get("request_id"),
                    type(error).__name__,
                    error,
                )
                refused.append(row)
                _close_connections()
        return refused

    def _reject(self, name: str, lines: list[bytes]) -> None:
        rejected_dir = self.spool_dir / REJECTED_DIR
        rejected_dir.mkdir(parents=True, exist_ok=True)
        target = rejected_dir / f"{name}.jsonl"
        with open(target, "ab") as handle:
            handle.write(b"".join(line + b"\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        logger.error(
            "%d spooled RequestLog rows could not be replayed; kept in %s", len(lines), target
        )

    def _take_back_orphans(self) -> None:
        """Claimed or temporary files a dead process left behind go back into the spool."""
        cutoff = time.time() - ORPHAN_AGE_S
        for pattern in (".*.claimed", ".*.tmp"):
            for orphan in self.spool_dir.glob(pattern):
                try:
                    if orphan.stat().st_mtime > cutoff:
                        continue
                except FileNotFoundError:
                    continue
                name = orphan.name[1:].split(".", 1)[0]
                logger.warning("Taking back spool file %s left by a stopped process", orphan.name)
                _put_back(orphan, self.spool_dir / f"{name}.jsonl")


def _put_back(claimed: Path, path: Path) -> None:
    try:
        claimed.rename(path)
    except FileNotFoundError:
        pass  # taken back by another process meanwhile: it will be replayed from there


def _fsync_directory(directory: Path) -> None:
    """Make a rename inside the directory survive a power cut."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


_recorder: RequestRecorder | None = None


def recorder() -> RequestRecorder:
    global _recorder
    if _recorder is None:
        _recorder = RequestRecorder()
    return _recorder
