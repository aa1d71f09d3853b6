"""The request log behind `GET /_emulator/requests`: what a gateway actually forwarded.

Requests are kept raw (bytes) in a bounded deque and only decoded when a test asks, so
recording costs a benchmark almost nothing. Header names arrive lowercased from Daphne,
which also drops any header whose name contains an underscore (CVE-2015-0219).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl


def _text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query_string: bytes
    raw_headers: list[tuple[bytes, bytes]]
    body: bytes
    timestamp: float
    request_id: str
    status: int | None = None
    # Wall-clock epoch seconds: when the response finished, or when the client hung up.
    finished_at: float | None = None
    disconnected_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        header_pairs = [[_text(name), _text(value)] for name, value in self.raw_headers]
        headers: dict[str, str] = {}
        for name, value in header_pairs:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        query = _text(self.query_string)
        return {
            "method": self.method,
            "path": self.path,
            "query": query,
            "query_params": dict(parse_qsl(query, keep_blank_values=True)),
            "headers": headers,
            "header_list": header_pairs,
            "body": _text(self.body),
            "timestamp": self.timestamp,
            "request_id": self.request_id,
            "finished_at": self.finished_at,
            "disconnected_at": self.disconnected_at,
            "status": self.status,
        }


class RequestLog:
    def __init__(self, limit: int) -> None:
        self._requests: deque[RecordedRequest] = deque(maxlen=limit)

    def resize(self, limit: int) -> None:
        if limit != self._requests.maxlen:
            self._requests = deque(self._requests, maxlen=limit)

    def add(self, request: RecordedRequest) -> None:
        self._requests.append(request)

    def clear(self) -> None:
        self._requests.clear()

    def last(self, count: int | None = None) -> list[dict[str, Any]]:
        """Oldest first, so `[-1]` is the most recent request."""
        recorded = list(self._requests)
        if count is not None:
            recorded = recorded[-count:] if count > 0 else []
        return [request.to_dict() for request in recorded]
