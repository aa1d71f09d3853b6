"""Writes RequestLog rows off the hot path: queued in memory, priced and inserted in batches.

The proxy only appends a plain dict to a queue. A writer thread prices the rows with the
cached price book and bulk-inserts them; if the database is unreachable the batch goes to a
spool file on local disk and is replayed later. Inserts ignore rows whose request_id already
exists, so a replay never counts a request twice. On process exit the queue is drained.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    close_old_connections,
    connection,
    reset_queries,
)
from django.utils.dateparse import parse_datetime

from gateway import live_feed
from gateway.contracts import Usage
from gateway.models import RequestLog
from gateway.pricing import PriceBook, price_request, quantize_cost
from gateway.selectors import price_book_load

logger = logging.getLogger(__name__)

_DATETIME_FIELDS = ("started_at", "finished_at")


def _row_to_json(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row, default=str)


def _row_from_json(raw: bytes) -> dict[str, Any]:
    row = orjson.loads(raw)
    for name in _DATETIME_FIELDS:
        if row.get(name):
            row[name] = parse_datetime(row[name])
    return row


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
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._price_book: PriceBook | None = None
        self._price_book_at = 0.0
        self._stopping = False
        self.written = 0

    # -- the hot path ------------------------------------------------------------------
    def record(self, row: dict[str, Any]) -> None:
        self._ensure_started()
        self._queue.put(row)

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
                atexit.register(self.stop)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Drain the queue and write everything; called at process exit."""
        thread = self._thread
        if thread is None or self._stopping:
            return
        self._stopping = True
        self._queue.put(None)
        thread.join(timeout_s)

    def flush_now(self, timeout_s: float = 10.0) -> None:
        """Block until every row queued so far is written (tests and shutdown)."""
        deadline = time.monotonic() + timeout_s
        done = threading.Event()
        self._queue.put({"__flush__": done})
        self._ensure_started()
        done.wait(max(0.0, deadline - time.monotonic()))

    # -- the writer thread -------------------------------------------------------------
    def _run(self) -> None:
        last_replay = 0.0
        while True:
            pending, waiters, stop = self._collect_batch()
            if pending:
                self._write_or_spool(pending)
            now = time.monotonic()
            if now - last_replay > 5.0 or waiters or stop:
                last_replay = now
                self._replay_spool()
            for waiter in waiters:
                waiter.set()
            if stop:
                close_old_connections()
                return

    def _collect_batch(self) -> tuple[list[dict[str, Any]], list[threading.Event], bool]:
        """Rows until the batch is full or `flush_interval_s` after the first one arrived."""
        pending: list[dict[str, Any]] = []
        waiters: list[threading.Event] = []
        deadline: float | None = None
        timeout = self.flush_interval_s
        while True:
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                return pending, waiters, False
            if item is None:
                return pending, waiters, True
            if "__flush__" in item:
                waiters.append(item["__flush__"])
                return pending, waiters, False
            pending.append(item)
            if len(pending) >= self.batch_size:
                return pending, waiters, False
            if deadline is None:
                deadline = time.monotonic() + self.flush_interval_s
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return pending, waiters, False

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
            row["cost_usd"] = 0
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
        row["cost_usd"] = quantize_cost(priced.cost_usd) if priced.cost_usd is not None else None
        row["is_priced"] = priced.is_priced
        if priced.cache_savings_usd is not None:
            row["cache_savings_usd"] = quantize_cost(priced.cache_savings_usd)
        return row

    def _write_or_spool(self, rows: list[dict[str, Any]]) -> None:
        try:
            self._write(rows)
        except (DatabaseError, InterfaceError, OSError) as error:
            logger.warning(
                "RequestLog write failed (%s); spooling %d rows to disk",
                type(error).__name__,
                len(rows),
            )
            self._spool(rows)
            close_old_connections()
            connection.close()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        objects = []
        key_last_used: dict[int, datetime] = {}
        for row in rows:
            row = self._priced(dict(row))
            objects.append(RequestLog(**row))
            key_id = row.get("virtual_key_id")
            if key_id and row.get("started_at"):
                key_last_used[key_id] = max(
                    key_last_used.get(key_id, row["started_at"]), row["started_at"]
                )
        RequestLog.objects.bulk_create(objects, ignore_conflicts=True, batch_size=500)
        if key_last_used:
            from accounts.models import VirtualKey

            for key_id, used_at in key_last_used.items():
                VirtualKey.objects.filter(pk=key_id).update(last_used_at=used_at)
        self.written += len(objects)
        # Outside Django's request cycle nothing clears DEBUG's query log; without this the
        # writer thread grows by every INSERT it ever ran (make run uses DEBUG=1).
        reset_queries()
        live_feed.publish_requests(objects)

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

    def _replay_spool(self) -> None:
        """Write spooled batches; several processes may share the directory, so each file is
        claimed by an atomic rename first (request ids make a double write harmless anyway)."""
        if not self.spool_dir.is_dir():
            return
        for path in sorted(self.spool_dir.glob("*.jsonl")):
            claimed = path.with_name(f".{path.stem}.{os.getpid()}.claimed")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue
            try:
                rows = [
                    _row_from_json(line)
                    for line in claimed.read_bytes().splitlines()
                    if line.strip()
                ]
                self._write(rows)
            except (DatabaseError, InterfaceError) as error:
                claimed.rename(path)
                logger.info("Spool replay postponed: %s", type(error).__name__)
                close_old_connections()
                return
            claimed.unlink()


_recorder: RequestRecorder | None = None


def recorder() -> RequestRecorder:
    global _recorder
    if _recorder is None:
        _recorder = RequestRecorder()
    return _recorder
