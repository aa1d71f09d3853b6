"""Injectable faults: what a flaky upstream does, on demand.

Specs (control API queue or the `x-emulator-fault` header, one request):
  `<status>` (`500`, `529`, `429`, `401`, any code in errors.ERROR_TYPES_BY_STATUS;
  `429:<seconds>` sets retry-after), `drop_mid_stream` (the connection closed after the
  first delta), `reset_mid_stream` (the same, but aborted: a TCP reset),
  `error_event_mid_stream`, `slow_first_byte:<ms>`, `silence:<ms>` (after the first
  delta), `endless:<ms>` (a stream that never ends: a delta every <ms>), `malformed_json`
  (half a body, or one delta's JSON cut in half), `malformed_sse` (garbage lines).
Stream-only faults are not consumed by non-streaming requests, so a client's
non-streaming fallback after a broken stream gets a normal answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from gateway.emulator.errors import ERROR_TYPES_BY_STATUS, EmulatorError, invalid_request
from gateway.emulator.responses import OVERLOADED_EVENT, Frame

STREAM_ONLY = frozenset(
    {
        "drop_mid_stream",
        "reset_mid_stream",
        "error_event_mid_stream",
        "silence",
        "endless",
        "malformed_sse",
    }
)
WITH_MILLISECONDS = frozenset({"slow_first_byte", "silence", "endless"})
PLAIN_KINDS = frozenset(
    {
        "drop_mid_stream",
        "reset_mid_stream",
        "error_event_mid_stream",
        "malformed_json",
        "malformed_sse",
    }
)
ENDPOINTS = ("messages", "count_tokens", "models", "any")
DEFAULT_RETRY_AFTER_SECONDS = 1
RESET_AFTER_SECONDS = 0.05

MALFORMED_SSE = (
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n'
    b"event content_block_delta\n"
    b"\xff\xfe not an event stream\n\n"
)


@dataclass(slots=True)
class Fault:
    kind: str
    spec: str
    status: int | None = None
    milliseconds: float = 0.0
    retry_after: int = DEFAULT_RETRY_AFTER_SECONDS
    key: str | None = None
    times: int | None = 1
    endpoint: str = "messages"

    def applies_to(self, *, key: str, endpoint: str, stream: bool) -> bool:
        if self.key is not None and self.key != key:
            return False
        if self.endpoint not in ("any", endpoint):
            return False
        return stream or self.kind not in STREAM_ONLY

    def error(self) -> EmulatorError:
        assert self.status is not None
        headers = [(b"retry-after", str(self.retry_after).encode())] if self.status == 429 else []
        return EmulatorError(self.status, headers=headers)

    def to_dict(self) -> dict[str, Any]:
        return {"fault": self.spec, "key": self.key, "times": self.times, "endpoint": self.endpoint}


def parse_fault(spec: str) -> Fault:
    kind, _, argument = spec.strip().partition(":")
    if kind.isdigit():
        status = int(kind)
        if status not in ERROR_TYPES_BY_STATUS:
            raise invalid_request(f"fault: unsupported status {status}")
        fault = Fault(kind="status", spec=spec, status=status)
        if argument:
            if status != 429 or not argument.isdigit():
                raise invalid_request(f"fault: unexpected argument in {spec!r}")
            fault.retry_after = int(argument)
        return fault
    if kind in WITH_MILLISECONDS:
        try:
            milliseconds = float(argument)
        except ValueError:
            raise invalid_request(f"fault: {kind} needs milliseconds, e.g. {kind}:500") from None
        if milliseconds < 0:
            raise invalid_request(f"fault: {kind} needs milliseconds >= 0")
        return Fault(kind=kind, spec=spec, milliseconds=milliseconds)
    if kind in PLAIN_KINDS and not argument:
        return Fault(kind=kind, spec=spec)
    raise invalid_request(f"fault: unknown fault {spec!r}")


def fault_from_request(payload: Any) -> Fault:
    """`{"fault": "529", "key": null, "times": 1, "endpoint": "messages"}` → Fault."""
    if not isinstance(payload, dict) or not isinstance(payload.get("fault"), str):
        raise invalid_request('faults: expected {"fault": "<spec>", "key"?, "times"?, "endpoint"?}')
    unknown = set(payload) - {"fault", "key", "times", "endpoint"}
    if unknown:
        raise invalid_request(f"faults: unknown field(s) {', '.join(sorted(unknown))}")
    fault = parse_fault(payload["fault"])
    key, times, endpoint = (
        payload.get("key"),
        payload.get("times", 1),
        payload.get("endpoint", "messages"),
    )
    if key is not None and not isinstance(key, str):
        raise invalid_request("faults.key: expected a string or null")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise invalid_request("faults.times: expected an integer >= 1 or null (until cleared)")
    if endpoint not in ENDPOINTS:
        raise invalid_request(f"faults.endpoint: expected one of {', '.join(ENDPOINTS)}")
    fault.key, fault.times, fault.endpoint = key, times, endpoint
    return fault


class FaultQueue:
    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def __bool__(self) -> bool:
        return bool(self._faults)

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()

    def to_list(self) -> list[dict[str, Any]]:
        return [fault.to_dict() for fault in self._faults]

    def take(self, *, key: str, endpoint: str, stream: bool) -> Fault | None:
        """The first queued fault that applies, counting one use of it."""
        for position, fault in enumerate(self._faults):
            if fault.applies_to(key=key, endpoint=endpoint, stream=stream):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._faults[position]
                return fault
        return None


def _truncated_json(frame: bytes) -> bytes:
    """The same SSE frame with its data JSON cut in half: valid framing, invalid JSON."""
    head, separator, payload = frame.partition(b"\ndata: ")
    payload = payload.rstrip(b"\n")
    return head + separator + payload[: len(payload) // 2] + b"\n\n"


class Pause(NamedTuple):
    seconds: float


class Drop(NamedTuple):
    """Close the connection without finishing the response (`reset`: abort it, a TCP RST)."""

    reset: bool = False


Step = bytes | Pause | Drop


def stream_script(
    frames: list[Frame], *, delay_seconds: float, fault: Fault | None
) -> Iterable[Step]:
    """The bytes to send and the pauses between them, with the fault (if any) applied."""
    kind = fault.kind if fault is not None else None
    if kind == "error_event_mid_stream":
        return [frames[0].data, OVERLOADED_EVENT]
    if kind == "malformed_sse":
        return [frames[0].data, MALFORMED_SSE]
    if kind == "endless":
        assert fault is not None
        return _endless(frames, fault.milliseconds / 1000)
    steps: list[Step] = []
    seen_delta = False
    for frame in frames:
        if frame.is_delta:
            if seen_delta and delay_seconds > 0:
                steps.append(Pause(delay_seconds))
            if not seen_delta and kind == "malformed_json":
                steps.append(_truncated_json(frame.data))
                seen_delta = True
                continue
        steps.append(frame.data)
        if frame.is_delta and not seen_delta:
            seen_delta = True
            if kind == "drop_mid_stream":
                steps.append(Drop())
                return steps
            if kind == "reset_mid_stream":
                # Let the bytes so far reach the client first: an abort discards unsent ones.
                steps += [Pause(RESET_AFTER_SECONDS), Drop(reset=True)]
                return steps
            if kind == "silence":
                assert fault is not None
                steps.append(Pause(fault.milliseconds / 1000))
    return steps


def _endless(frames: list[Frame], interval_seconds: float) -> Iterator[Step]:
    """The stream's head, then its first delta again and again, never a message_stop."""
    for frame in frames:
        if frame.is_delta:
            while True:
                yield frame.data
                yield Pause(interval_seconds)
        yield frame.data
