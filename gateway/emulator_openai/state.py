"""What the emulator remembers between requests: settings, queued faults, a prompt cache
and the request log — all reset at once by `POST /_emulator/reset`."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

from gateway.emulator.recorder import RequestLog
from gateway.emulator_openai.errors import OpenAIError, invalid

TOOL_USE_MODES = ("auto", "always", "never")
USAGE_STYLES = ("openai", "deepseek")
# Faults that only make sense in a stream; a non-streaming request never consumes them.
STREAM_ONLY_FAULTS = frozenset(
    {"drop_mid_stream", "error_chunk_mid_stream", "eof_before_finish", "no_done"}
)
PLAIN_FAULTS = STREAM_ONLY_FAULTS | {"no_usage", "malformed_json"}
MAX_CACHE_ENTRIES = 100_000


@dataclass
class EmulatorConfig:
    """Every field can be set with `POST /_emulator/config` (merged, type-checked)."""

    reply_text: str | None = None  # None: "Hello from the OpenAI emulator: <first words>"
    reasoning_text: str | None = None  # also sent whenever the request has reasoning_effort
    tool_use: str = "auto"  # auto: when the last user text says "tool"; always; never
    tool_calls: int = 1  # how many tools to call at once (parallel tool calls)
    tool_arguments: dict[str, Any] | None = None  # None: sampled from the tool's schema
    tool_call_id_prefix: str = "call_"
    repeat_tool_call_id: bool = False  # id and type on every fragment, as some servers do
    text_fragments: int = 3
    argument_fragments: int = 3
    delta_delay_ms: float = 0.0
    finish_with_content: bool = False  # finish_reason on the last content chunk
    usage_style: str = "openai"  # or "deepseek": prompt_cache_hit_tokens / _miss_tokens
    min_cacheable_tokens: int = 1024
    cache_increment: int = 128
    valid_keys: list[str] | None = None  # None: any Bearer token is accepted
    record_limit: int = 1000

    def update(self, changes: Any) -> None:
        if not isinstance(changes, dict):
            raise invalid("config: expected a JSON object")
        known = {f.name: f for f in dataclasses.fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise invalid(f"config: unknown setting {name!r}")
            _check(name, value)
            setattr(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(name: str, value: Any) -> None:
    def fail(expected: str) -> OpenAIError:
        return invalid(f"config.{name}: expected {expected}")

    if name in ("reply_text", "reasoning_text"):
        if value is not None and not isinstance(value, str):
            raise fail("a string or null")
    elif name == "tool_use":
        if value not in TOOL_USE_MODES:
            raise fail(" or ".join(TOOL_USE_MODES))
    elif name == "usage_style":
        if value not in USAGE_STYLES:
            raise fail(" or ".join(USAGE_STYLES))
    elif name == "tool_arguments":
        if value is not None and not isinstance(value, dict):
            raise fail("an object or null")
    elif name == "tool_call_id_prefix":
        if not isinstance(value, str):
            raise fail("a string")
    elif name in ("repeat_tool_call_id", "finish_with_content"):
        if not isinstance(value, bool):
            raise fail("true or false")
    elif name == "delta_delay_ms":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise fail("milliseconds >= 0")
    elif name == "valid_keys":
        if value is not None and not (
            isinstance(value, list) and all(isinstance(key, str) for key in value)
        ):
            raise fail("a list of strings or null")
    else:
        minimum = 0 if name == "min_cacheable_tokens" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise fail(f"an integer >= {minimum}")


@dataclass
class Fault:
    kind: str
    spec: str
    status: int | None = None
    milliseconds: float = 0.0
    retry_after: int = 1
    key: str | None = None
    times: int | None = 1

    def applies_to(self, *, key: str, stream: bool) -> bool:
        if self.key is not None and self.key != key:
            return False
        return stream or self.kind not in STREAM_ONLY_FAULTS

    def to_dict(self) -> dict[str, Any]:
        return {"fault": self.spec, "key": self.key, "times": self.times}


def parse_fault(spec: Any) -> Fault:
    """`"429"`, `"429:5"` (retry-after), `"503"`, `"slow_first_byte:200"`, or a plain kind."""
    if not isinstance(spec, str):
        raise invalid("fault: expected a string")
    kind, _, argument = spec.strip().partition(":")
    if kind.isdigit():
        status = int(kind)
        if not 400 <= status <= 599:
            raise invalid(f"fault: unsupported status {kind}")
        fault = Fault(kind="status", spec=spec, status=status)
        if argument:
            if status != 429 or not argument.isdigit():
                raise invalid(f"fault: unexpected argument in {spec!r}")
            fault.retry_after = int(argument)
        return fault
    if kind == "slow_first_byte":
        try:
            return Fault(kind=kind, spec=spec, milliseconds=max(0.0, float(argument)))
        except ValueError:
            raise invalid(
                "fault: slow_first_byte needs milliseconds, e.g. slow_first_byte:200"
            ) from None
    if kind in PLAIN_FAULTS and not argument:
        return Fault(kind=kind, spec=spec)
    raise invalid(f"fault: unknown fault {spec!r}")


def fault_from_request(payload: Any) -> Fault:
    if not isinstance(payload, dict) or set(payload) - {"fault", "key", "times"}:
        raise invalid('faults: expected {"fault": "<spec>", "key"?, "times"?}')
    fault = parse_fault(payload.get("fault"))
    key, times = payload.get("key"), payload.get("times", 1)
    if key is not None and not isinstance(key, str):
        raise invalid("faults.key: expected a string or null")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise invalid("faults.times: expected an integer >= 1 or null (until cleared)")
    fault.key, fault.times = key, times
    return fault


class FaultQueue:
    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def take(self, *, key: str, stream: bool) -> Fault | None:
        """The first queued fault that applies, counting one use of it."""
        for position, fault in enumerate(self.faults):
            if fault.applies_to(key=key, stream=stream):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        del self.faults[position]
                return fault
        return None


@dataclass
class PromptCache:
    """OpenAI-style automatic prefix caching, simulated per API key.

    A prompt is a chain of units (model + tools, then each message); a request reads the
    longest chain prefix an earlier request of the same key sent, rounded down to
    `cache_increment`, and nothing below `min_cacheable_tokens`.
    """

    entries: dict[str, dict[bytes, int]] = field(default_factory=dict)

    def account(self, key: str, units: list[tuple[bytes, int]], config: EmulatorConfig) -> int:
        seen = self.entries.setdefault(key, {})
        if len(seen) > MAX_CACHE_ENTRIES:
            seen.clear()
        digest = hashlib.sha256()
        total = cached = 0
        for canonical, tokens in units:
            digest.update(canonical)
            total += tokens
            chain = digest.copy().digest()
            if chain in seen:
                cached = total
            seen[chain] = total
        if cached < config.min_cacheable_tokens:
            return 0
        return cached - cached % config.cache_increment


class EmulatorState:
    def __init__(self) -> None:
        self.config = EmulatorConfig()
        self.faults = FaultQueue()
        self.cache = PromptCache()
        self.log = RequestLog(self.config.record_limit)
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)

    def reset(self) -> None:
        self.config = EmulatorConfig()
        self.faults = FaultQueue()
        self.cache = PromptCache()
        self.log.clear()
        self.log.resize(self.config.record_limit)

    def next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):012x}"
