"""Flatten a Messages request into the cacheable prefix: tools → system → messages.

Each block becomes a unit with its token estimate and a cumulative hash of everything up
to and including it (the cache key of "the prefix ending here"). The hash is seeded with
the model, and the request settings that invalidate the message cache (`tool_choice`,
`thinking`, `output_config`) are mixed in between system and messages. Markers are
validated here with the API's own limits and messages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.emulator.errors import invalid_request
from gateway.emulator.tokens import canonical_json, tokens_for_bytes

MAX_BREAKPOINTS = 4
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
MESSAGE_CACHE_SETTINGS = ("tool_choice", "thinking", "output_config")
INELIGIBLE_FOR_AUTO_MARKER = frozenset({"thinking", "redacted_thinking"})
TTL_ORDER_MESSAGE = (
    "A ttl='1h' cache_control block must not come after a ttl='5m' cache_control block"
)


@dataclass(frozen=True, slots=True)
class Breakpoint:
    index: int
    ttl: str

    @property
    def ttl_seconds(self) -> float:
        return TTL_SECONDS[self.ttl]


@dataclass(frozen=True, slots=True)
class Prefix:
    hashes: tuple[bytes, ...]
    cumulative_tokens: tuple[int, ...]
    breakpoints: tuple[Breakpoint, ...]

    @property
    def total_tokens(self) -> int:
        return self.cumulative_tokens[-1] if self.cumulative_tokens else 0


class _PrefixBuilder:
    def __init__(self, model: str) -> None:
        self._hash = hashlib.blake2b(model.encode(), digest_size=16)
        self._total = 0
        self.hashes: list[bytes] = []
        self.cumulative: list[int] = []
        self.eligible: list[bool] = []
        self.markers: list[tuple[int, str]] = []

    def mix(self, data: bytes) -> None:
        self._hash.update(data)

    def add(self, tag: bytes, block: Any, location: str) -> None:
        encoded = canonical_json(block)
        self._hash.update(tag)
        self._hash.update(encoded)
        self._total += tokens_for_bytes(len(encoded))
        self.hashes.append(self._hash.copy().digest())
        self.cumulative.append(self._total)
        self.eligible.append(_is_eligible_for_auto_marker(block))
        if isinstance(block, dict) and block.get("cache_control") is not None:
            ttl = marker_ttl(block["cache_control"], f"{location}.cache_control")
            self.markers.append((len(self.hashes) - 1, ttl))


def _is_eligible_for_auto_marker(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    block_type = block.get("type")
    if block_type in INELIGIBLE_FOR_AUTO_MARKER:
        return False
    return not (block_type == "text" and not block.get("text"))


def marker_ttl(cache_control: Any, location: str) -> str:
    """Validate a `cache_control` object and return its TTL ("5m" or "1h")."""
    if not isinstance(cache_control, dict) or cache_control.get("type") != "ephemeral":
        raise invalid_request(f"{location}.type: Input should be 'ephemeral'")
    ttl = cache_control.get("ttl", "5m")
    if ttl not in TTL_SECONDS:
        raise invalid_request(f"{location}.ttl: Input should be '5m' or '1h'")
    return ttl


def build_prefix(body: dict[str, Any], model: str) -> Prefix:
    builder = _PrefixBuilder(model)
    for position, tool in enumerate(body.get("tools") or ()):
        builder.add(b"\x00tool\x00", tool, f"tools.{position}")
    system = body.get("system")
    if isinstance(system, str):
        if system:
            builder.add(b"\x00system\x00", {"type": "text", "text": system}, "system")
    elif isinstance(system, list):
        for position, block in enumerate(system):
            builder.add(b"\x00system\x00", block, f"system.{position}")
    builder.mix(
        orjson.dumps(
            {name: body.get(name) for name in MESSAGE_CACHE_SETTINGS},
            option=orjson.OPT_SORT_KEYS,
        )
    )
    for message_index, message in enumerate(body.get("messages") or ()):
        if not isinstance(message, dict):
            continue
        tag = f"\x00{message.get('role')}:{message_index}\x00".encode()
        content = message.get("content")
        if isinstance(content, str):
            builder.add(tag, {"type": "text", "text": content}, f"messages.{message_index}")
        elif isinstance(content, list):
            for position, block in enumerate(content):
                builder.add(tag, block, f"messages.{message_index}.content.{position}")
    return Prefix(
        hashes=tuple(builder.hashes),
        cumulative_tokens=tuple(builder.cumulative),
        breakpoints=_breakpoints(builder, body.get("cache_control")),
    )


def _breakpoints(builder: _PrefixBuilder, automatic: Any) -> tuple[Breakpoint, ...]:
    markers = list(builder.markers)
    found = len(markers) + (1 if automatic is not None else 0)
    if found > MAX_BREAKPOINTS:
        raise invalid_request(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}."
        )
    if automatic is not None:
        markers.extend(_automatic_marker(builder, automatic))
    seen_five_minutes = False
    for _index, ttl in markers:
        if ttl == "5m":
            seen_five_minutes = True
        elif seen_five_minutes:
            raise invalid_request(TTL_ORDER_MESSAGE)
    by_index: dict[int, str] = {}
    for index, ttl in markers:
        by_index.setdefault(index, ttl)
    return tuple(Breakpoint(index, ttl) for index, ttl in by_index.items())


def _automatic_marker(builder: _PrefixBuilder, automatic: Any) -> list[tuple[int, str]]:
    """Top-level cache_control: a breakpoint on the last eligible block, if any."""
    ttl = marker_ttl(automatic, "cache_control")
    for index in range(len(builder.eligible) - 1, -1, -1):
        if not builder.eligible[index]:
            continue
        for marked_index, marked_ttl in builder.markers:
            if marked_index == index and marked_ttl != ttl:
                raise invalid_request(
                    f"cache_control: the top-level ttl='{ttl}' conflicts with the "
                    f"ttl='{marked_ttl}' cache_control on the last cacheable block"
                )
        return [(index, ttl)]
    return []
