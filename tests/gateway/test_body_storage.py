"""Where logged bodies go: the recorder's batch (and its spool), and out again by retention."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gateway import body_log
from gateway.body_log import REDACTED, BodyCapture
from gateway.models import Provider, ProviderKind, RequestBody, RequestLog, UpstreamKey
from gateway.recorder import RequestRecorder
from gateway.services import request_bodies_delete_expired
from gateway.tasks import delete_expired_request_bodies

ANTHROPIC_KEY = "sk-ant-api03-SpooledSecret0123456789"
# The recorder gives its connection back after a replay, as its own thread would: committed
# data, not a test transaction.
WRITER_CLOSES_ITS_CONNECTION = pytest.mark.django_db(transaction=True)
UPSTREAM_SECRET = "vertex-like-secret-value-9f8e7d6c"


@pytest.fixture(autouse=True)
def fresh_upstream_secrets(settings):
    """Secrets are read from the database on every batch here, not from a 5-second cache."""
    settings.GATEHOUSE = {**settings.GATEHOUSE, "CACHE_TTL_S": 0}


def row(request_id: str, *, cost_center_id: int | None = None, body: BodyCapture | None = None):
    values = {
        "request_id": request_id,
        "started_at": timezone.now(),
        "finished_at": timezone.now(),
        "endpoint": "/v1/messages",
        "method": "POST",
        "outcome": "ok",
        "attempts": 1,
        "cost_center_id": cost_center_id,
    }
    if body is not None:
        values["body"] = body
    return values


def capture(request: str, response: str, patterns: tuple[str, ...] = ()) -> BodyCapture:
    captured = BodyCapture(request.encode(), max_bytes=1024, patterns=patterns)
    captured.add_response(response.encode())
    return captured


@WRITER_CLOSES_ITS_CONNECTION
def test_a_batch_writes_each_body_beside_its_request_row_redacted(research):
    provider = Provider.objects.create(
        name="vertex", kind=ProviderKind.VERTEX, base_url="http://127.0.0.1:9"
    )
    UpstreamKey.objects.create(provider=provider, label="sa", secret=UPSTREAM_SECRET)
    rows = [
        row(
            "req_with_body",
            cost_center_id=research.pk,
            body=capture(
                f"key {ANTHROPIC_KEY} and {UPSTREAM_SECRET} ref ACME-123456",
                "answer ACME-654321",
                patterns=(r"ACME-\d{6}",),
            ),
        ),
        row("req_without_body", cost_center_id=research.pk),
    ]

    body_log.seal_rows(rows)
    RequestRecorder()._write(rows)

    assert set(RequestLog.objects.values_list("request_id", flat=True)) == {
        "req_with_body",
        "req_without_body",
    }
    stored = RequestBody.objects.get()
    assert (stored.request_id, stored.cost_center, stored.created_at) == (
        "req_with_body",
        research,
        RequestLog.objects.get(request_id="req_with_body").started_at,
    )
    assert stored.request_text == f"key {REDACTED} and {REDACTED} ref {REDACTED}"
    assert stored.response_text == f"answer {REDACTED}"


@WRITER_CLOSES_ITS_CONNECTION
def test_a_spooled_body_is_redacted_on_disk_and_written_once_on_replay(research, tmp_path):
    recorder = RequestRecorder(spool_dir=tmp_path)
    batch = [row("req_spooled", cost_center_id=research.pk, body=capture(ANTHROPIC_KEY, "ok"))]

    body_log.seal_rows(batch)
    recorder._spool(batch)
    recorder._spool(batch)  # the same batch twice, as two processes might
    on_disk = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    recorder._replay_spool()

    assert b"req_spooled" in on_disk
    assert ANTHROPIC_KEY.encode() not in on_disk
    stored = RequestBody.objects.get()
    assert (stored.request_id, stored.request_text, stored.response_text) == (
        "req_spooled",
        REDACTED,
        "ok",
    )
    assert list(tmp_path.glob("*.jsonl")) == []


@WRITER_CLOSES_ITS_CONNECTION
def test_a_body_that_cannot_be_redacted_is_dropped_and_its_request_still_counts(research):
    rows = [row("req_bad_pattern", body=capture("text", "more", patterns=("(",)))]

    body_log.seal_rows(rows)
    RequestRecorder()._write(rows)

    assert RequestLog.objects.filter(request_id="req_bad_pattern").exists()
    assert not RequestBody.objects.exists()


@WRITER_CLOSES_ITS_CONNECTION
def test_a_pattern_that_backtracks_without_end_costs_its_body_not_the_writer(
    research, monkeypatch, caplog
):
    """`(a|aa)+c` on forty a's would take the writer thread years on Python's own engine."""
    monkeypatch.setattr(body_log, "REDACTION_TIMEOUT_S", 0.2)
    rows = [
        row("req_runaway", body=capture("a" * 40, "done", patterns=("(a|aa)+c",))),
        row("req_fine", body=capture("hello", "world")),
    ]

    started = time.monotonic()
    body_log.seal_rows(rows)
    RequestRecorder()._write(rows)
    elapsed = time.monotonic() - started

    assert elapsed < 5
    assert set(RequestLog.objects.values_list("request_id", flat=True)) == {
        "req_runaway",
        "req_fine",
    }
    assert list(RequestBody.objects.values_list("request_id", flat=True)) == ["req_fine"]
    assert "Body of req_runaway could not be redacted; not kept" in caplog.text
    assert "TimeoutError" in caplog.text


def body_created(request_id: str, age: timedelta) -> RequestBody:
    return RequestBody.objects.create(request_id=request_id, created_at=timezone.now() - age)


def test_retention_deletes_old_bodies_in_bounded_batches_and_keeps_recent_ones(db):
    for number in range(5):
        body_created(f"req_old_{number}", timedelta(days=31))
    body_created("req_recent", timedelta(days=29))
    body_created("req_today", timedelta(0))

    with CaptureQueriesContext(connection) as queries:
        deleted = request_bodies_delete_expired(retention_days=30, batch_size=2)

    deletes = [query for query in queries.captured_queries if query["sql"].startswith("DELETE")]
    assert deleted == 5
    assert len(deletes) == 3
    assert sorted(RequestBody.objects.values_list("request_id", flat=True)) == [
        "req_recent",
        "req_today",
    ]


def test_the_retention_task_uses_the_configured_period_and_is_scheduled(db, settings):
    settings.GATEHOUSE = {**settings.GATEHOUSE, "BODY_RETENTION_DAYS": 7}
    body_created("req_eight_days", timedelta(days=8))
    body_created("req_six_days", timedelta(days=6))

    first = delete_expired_request_bodies.delay().get()
    second = delete_expired_request_bodies.delay().get()

    assert (first, second) == (1, 0)
    assert list(RequestBody.objects.values_list("request_id", flat=True)) == ["req_six_days"]
    assert any(
        entry["task"] == "gateway.delete_expired_request_bodies"
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
    )
