"""The state of one proxied request, which becomes its RequestLog row."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from accounts.contracts import KeyContext
from gateway.body_log import BodyCapture
from gateway.contracts import Usage
from gateway.errors import GatewayError, new_request_id
from gateway.models import RequestOutcome
from gateway.pricing import PricedCost, cost_columns


class Exchange:
    __slots__ = (
        "row",
        "started",
        "response_started",
        "client_gone",
        "usage",
        "iterations",
        "body",
        "priced",
    )

    def __init__(self, scope: dict[str, Any], endpoint: str) -> None:
        self.started = time.perf_counter()
        self.response_started = False
        self.client_gone = False
        self.usage: Usage | None = None
        self.iterations: tuple[tuple[str | None, Usage], ...] = ()
        self.body: BodyCapture | None = None  # only when the cost center logs bodies
        self.priced: PricedCost | None = None  # set when its settlement priced it
        client = scope.get("client")
        self.row: dict[str, Any] = {
            "request_id": new_request_id(),
            "started_at": datetime.now(UTC),  # timezone.now() reads settings each call
            "endpoint": endpoint[:100],
            "method": scope.get("method", "")[:8],
            "client_ip": client[0] if client else None,
            "outcome": RequestOutcome.OK,
            "attempts": 0,
        }

    @property
    def request_id(self) -> str:
        return self.row["request_id"]

    def set_key(self, key: KeyContext) -> None:
        self.row["virtual_key_id"] = key.key_id
        self.row["user_id"] = key.user_id
        self.row["cost_center_id"] = key.cost_center_id

    def mark_first_byte(self) -> None:
        if "ttfb_ms" not in self.row:
            self.row["ttfb_ms"] = int((time.perf_counter() - self.started) * 1000)

    def fail(self, error: GatewayError, outcome: str = RequestOutcome.GATEWAY_ERROR) -> None:
        self.row["outcome"] = outcome
        self.row["status_code"] = self.row.get("status_code") or error.status
        self.row["error_type"] = error.error_type
        self.row["error_message"] = error.message[:500]

    def finish(self) -> dict[str, Any]:
        row = self.row
        row["finished_at"] = datetime.now(UTC)
        row["latency_ms"] = int((time.perf_counter() - self.started) * 1000)
        if self.body is not None:
            row["body"] = self.body
        if self.usage is not None:
            row["input_tokens"] = self.usage.input_tokens
            row["output_tokens"] = self.usage.output_tokens
            row["cache_write_5m_tokens"] = self.usage.cache_write_5m_tokens
            row["cache_write_1h_tokens"] = self.usage.cache_write_1h_tokens
            row["cache_read_tokens"] = self.usage.cache_read_tokens
        if self.priced is not None:
            row.update(cost_columns(self.priced))
        else:  # what the recorder needs to price the row, and does not store
            if self.usage is not None:
                row["web_search_requests"] = self.usage.web_search_requests
            if self.iterations:
                row["iterations"] = [
                    {"model": model, **asdict(usage)} for model, usage in self.iterations
                ]
        for name in (
            "session_id",
            "agent_id",
            "user_agent",
            "model_requested",
            "model_served",
            "stop_reason",
        ):
            value = row.get(name)
            if isinstance(value, str):
                row[name] = value[:100] if name in ("session_id", "agent_id") else value[:200]
        return row
