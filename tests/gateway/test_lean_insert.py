"""The recorder's lean INSERT writes exactly what bulk_create would, on SQLite and PostgreSQL."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connection

from gateway.lean_insert import LeanInsert
from gateway.models import Provider, RequestLog

STARTED = datetime(2026, 11, 26, 9, 30, 15, 123456, tzinfo=UTC)


def every_field(request_id: str, **overrides) -> dict:
    row = {
        "request_id": request_id,
        "started_at": STARTED,
        "finished_at": datetime(2026, 11, 26, 9, 30, 16, 654321, tzinfo=UTC),
        "virtual_key_id": 7,
        "user_id": 8,
        "cost_center_id": 9,
        "session_id": "session-ü",
        "agent_id": "agent",
        "user_agent": "claude-cli/2.0.14 (external, cli)",
        "client_ip": "2001:db8::1",
        "endpoint": "/v1/messages",
        "method": "POST",
        "model_requested": "claude-sonnet-4-5",
        "model_served": "claude-sonnet-4-5-20250929",
        "provider_id": 3,
        "upstream_key_id": 4,
        "route_id": 5,
        "is_stream": True,
        "status_code": 200,
        "outcome": "ok",
        "error_type": "",
        "error_message": "",
        "stop_reason": "end_turn",
        "attempts": 2,
        "input_tokens": 1_234_567,
        "output_tokens": 89,
        "cache_write_5m_tokens": 10,
        "cache_write_1h_tokens": 20,
        "cache_read_tokens": 30,
        "cost_usd": Decimal("12.3456789012"),
        "is_priced": True,
        "cache_markers_injected": 3,
        "cache_savings_usd": Decimal("-0.0000000001"),
        "latency_ms": 1200,
        "ttfb_ms": 310,
        "upstream_request_id": "req_011CPq",
    }
    row.update(overrides)
    return row


def stored(request_id: str) -> dict:
    values = RequestLog.objects.filter(request_id=request_id).values().get()
    del values["id"], values["request_id"]
    return values


def written_both_ways(**fields) -> tuple[dict, dict]:
    LeanInsert(RequestLog).insert([{"request_id": "req_lean", **fields}])
    RequestLog.objects.bulk_create([RequestLog(request_id="req_orm", **fields)])
    return stored("req_lean"), stored("req_orm")


def test_a_row_with_every_field_reads_back_as_bulk_create_writes_it(db):
    lean, orm = written_both_ways(
        **{k: v for k, v in every_field("x").items() if k != "request_id"}
    )

    assert lean == orm
    assert lean["cost_usd"] == Decimal("12.3456789012")
    assert lean["cache_savings_usd"] == Decimal("-0.0000000001")
    assert lean["started_at"] == STARTED
    assert lean["client_ip"] == "2001:db8::1"


def test_fields_left_out_get_the_model_defaults(db):
    lean, orm = written_both_ways(started_at=STARTED, endpoint="/v1/models")

    assert lean == orm
    assert lean["method"] == "POST"
    assert lean["outcome"] == "ok"
    assert lean["session_id"] == ""
    assert lean["cost_usd"] is None
    assert lean["is_priced"] is False


def test_values_of_another_type_are_converted_by_the_field(db):
    lean, orm = written_both_ways(
        started_at=STARTED, endpoint="/v1/messages", attempts="3", is_stream=1, client_ip="10.0.0.1"
    )

    assert lean == orm
    assert lean["attempts"] == 3
    assert lean["is_stream"] is True


@pytest.mark.parametrize(
    ("started_at", "cost_usd"),
    [
        (datetime(2026, 11, 26, 9, 30, 15, 123456, tzinfo=UTC), Decimal("12.3456789012")),
        (
            datetime(2026, 11, 26, 23, 59, 59, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            Decimal("-0.0000000001"),
        ),
        (datetime(2026, 11, 26, 9, 30, 15), Decimal("0E-10")),  # noqa: DTZ001 - naive: the field's way
        (datetime(2026, 11, 26, 9, 30, 15, tzinfo=UTC), 0.1),  # a float: the field's way
    ],
)
def test_datetimes_and_decimals_reach_the_driver_exactly_as_the_field_prepares_them(
    db, started_at, cost_usd
):
    row = every_field("req_prepared", started_at=started_at, cost_usd=cost_usd)
    insert = LeanInsert(RequestLog)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # Django's naive-datetime warning
        (lean,) = insert.values([row])
        by_field = tuple(
            field.get_db_prep_save(row[field.attname], connection)
            for field in RequestLog._meta.concrete_fields
            if not field.primary_key
        )

    assert lean == by_field
    columns = [f.attname for f in RequestLog._meta.concrete_fields if not f.primary_key]
    for name in ("started_at", "finished_at", "cost_usd", "cache_savings_usd"):
        at = columns.index(name)
        assert type(lean[at]) is type(by_field[at]), name


def test_a_decimal_that_is_not_finite_is_refused_as_the_field_refuses_it(db):
    with pytest.raises(ValidationError):
        LeanInsert(RequestLog).values([every_field("req_nan", cost_usd=Decimal("NaN"))])


def test_a_request_id_already_written_is_skipped_and_the_first_row_kept(db):
    insert = LeanInsert(RequestLog)
    insert.insert([every_field("req_twice", output_tokens=1)])

    insert.insert([every_field("req_twice", output_tokens=2), every_field("req_new")])

    assert RequestLog.objects.get(request_id="req_twice").output_tokens == 1
    assert RequestLog.objects.count() == 2


def test_many_rows_in_one_call_are_all_written(db):
    LeanInsert(RequestLog).insert(every_field(f"req_{n}", latency_ms=n) for n in range(1_500))

    assert RequestLog.objects.count() == 1_500
    assert sorted(RequestLog.objects.values_list("latency_ms", flat=True)) == list(range(1_500))


def test_a_key_that_is_not_a_field_is_refused_before_anything_is_written(db):
    rows = [every_field("req_good"), every_field("req_bad", web_search_requests=1)]

    with pytest.raises(TypeError, match="RequestLog has no field web_search_requests"):
        LeanInsert(RequestLog).insert(rows)

    assert not RequestLog.objects.exists()


def test_a_model_whose_fields_set_themselves_is_refused():
    with pytest.raises(ImproperlyConfigured, match="Provider.updated_at needs bulk_create"):
        LeanInsert(Provider)
