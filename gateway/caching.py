"""Server-side prompt caching: add the `cache_control` breakpoints a client left out. Pure.

Rules (anthropic-protocol.md §7, §7.1; claude-code-traffic.md §3-§4):

- Policy `off` adds nothing; `system` adds a breakpoint at the end of the system prompt and
  one at the end of the tools; `auto` also adds rolling breakpoints on the last user turn
  and the previous one, so every turn of a session reads the whole history from cache.
- A request never carries more than 4 breakpoints, the client's own and a top-level
  `cache_control` included. Client markers are kept as they are. A section (tools, system,
  messages) the client already marks gets nothing more; a client marker anywhere in the
  messages, or a top-level `cache_control`, means the client runs the rolling part. When
  slots run short, the system end goes first, then the last and previous user turns, then
  the tools end (the system breakpoint already covers the tools within a conversation).
- 1h breakpoints must precede 5m ones in prefix order (tools → system → messages): a point
  after a client 5m marker gets 5m, a point before a client 1h marker gets 1h.
- A point whose prefix is shorter than the model's minimum cacheable length (estimated as
  JSON bytes / 4, per block) gets nothing: it would be silently ignored.
- Blocks are never reordered or merged. A string `system` or message content becomes one
  text block only when it receives a marker. Thinking blocks, empty text, deferred tools and
  Claude Code's attribution block (`system[0]`) are never marked.
- A body this module cannot read, or whose markers the API would reject, is left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

POLICY_OFF = "off"
POLICY_SYSTEM = "system"
POLICY_AUTO = "auto"
POLICIES = (POLICY_OFF, POLICY_SYSTEM, POLICY_AUTO)
TTL_5M = "5m"
TTL_1H = "1h"
TTLS = (TTL_5M, TTL_1H)

MAX_BREAKPOINTS = 4
BYTES_PER_TOKEN = 4
DEFAULT_MIN_CACHEABLE_TOKENS = 1024
ATTRIBUTION_PREFIX = "x-anthropic-billing-header:"
UNMARKABLE_BLOCK_TYPES = frozenset({"thinking", "redacted_thinking"})

# anthropic-protocol.md §7, by model id without date or version suffix.
MIN_CACHEABLE_TOKENS: dict[str, int] = {
    "claude-opus-5": 512,
    "claude-fable-5": 512,
    "claude-mythos-5": 512,
    "claude-opus-4-8": 1024,
    "claude-sonnet-5": 1024,
    "claude-sonnet-4-6": 1024,
    "claude-sonnet-4-5": 1024,
    "claude-opus-4-1": 1024,
    "claude-opus-4": 1024,
    "claude-opus-4-0": 1024,
    "claude-sonnet-4": 1024,
    "claude-sonnet-4-0": 1024,
    "claude-opus-4-7": 2048,
    "claude-mythos-preview": 2048,
    "claude-3-5-haiku": 2048,
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
    "claude-haiku-4-5": 4096,
}

_CONTEXT_SUFFIX = re.compile(r"\[[^\]]*\]$")  # Claude Code's `[1m]`
_VERSION_SUFFIX = re.compile(r"-v\d+(:\d+)?$")  # Bedrock's `-v1:0`
_DATE_SUFFIX = re.compile(r"[-@]\d{8}$")  # `-20250929`, Vertex's `@20250929`

_TOOLS = "tools"
_SYSTEM = "system"
_MESSAGES = "messages"


@dataclass(frozen=True)
class CachePolicy:
    policy: str
    ttl: str


@dataclass(frozen=True)
class Injection:
    """`payload` is None when nothing was added: forward the original bytes untouched."""

    payload: dict[str, Any] | None
    markers_added: int


NOTHING_ADDED = Injection(payload=None, markers_added=0)


def resolve_cache_policy(
    route_policy: str,
    route_ttl: str,
    cost_center_policy: str,
    cost_center_ttl: str,
    key_policy: str,
    key_ttl: str,
) -> CachePolicy:
    """The key's setting beats its cost center's, which beats the route's; '' inherits.

    Policy and TTL are inherited separately, so a key may set only its TTL.
    """
    policy = key_policy or cost_center_policy or route_policy
    ttl = key_ttl or cost_center_ttl or route_ttl
    _check_setting(policy, ttl)
    return CachePolicy(policy=policy, ttl=ttl)


def min_cacheable_tokens(model: str) -> int:
    """The model's minimum cacheable prompt; 1024 for a model §7 does not list."""
    return MIN_CACHEABLE_TOKENS.get(model_family(model), DEFAULT_MIN_CACHEABLE_TOKENS)


def model_family(model: str) -> str:
    """`us.anthropic.claude-sonnet-4-5-20250929-v1:0`, `claude-sonnet-4-5@20250929` and
    `claude-sonnet-4-5[1m]` all → `claude-sonnet-4-5`."""
    name = _CONTEXT_SUFFIX.sub("", model.strip().lower())
    name = name.rsplit("/", 1)[-1]
    if "anthropic." in name:
        name = name.split("anthropic.", 1)[1]
    name = _VERSION_SUFFIX.sub("", name)
    name = _DATE_SUFFIX.sub("", name)
    return name.removesuffix("-latest")


def cache_marker(ttl: str) -> dict[str, str]:
    """The marker as clients send it: no `ttl` key for the 5m default."""
    return {"type": "ephemeral"} if ttl == TTL_5M else {"type": "ephemeral", "ttl": ttl}


def inject_cache_markers(
    payload: dict[str, Any], *, policy: str, ttl: str, model: str
) -> Injection:
    """Add the breakpoints `policy` asks for that still fit; never mutates `payload`.

    `model` is the model the upstream will serve (it sets the minimum cacheable length).
    """
    _check_setting(policy, ttl)
    if policy == POLICY_OFF or not isinstance(payload, dict):
        return NOTHING_ADDED
    try:
        survey = _survey(payload)
    except _UnsupportedBodyError:
        return NOTHING_ADDED
    budget = MAX_BREAKPOINTS - survey.breakpoint_count
    minimum = min_cacheable_tokens(model)
    chosen: list[tuple[int, str]] = []
    for number in _candidates(survey, policy):
        if len(chosen) >= budget:
            break
        if survey.blocks[number].cumulative_tokens >= minimum:
            chosen.append((number, _ttl_at(survey, number, ttl)))
    if not chosen:
        return NOTHING_ADDED
    return Injection(payload=_with_markers(payload, survey, chosen), markers_added=len(chosen))


def _check_setting(policy: str, ttl: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"Unknown cache policy {policy!r}; expected one of {POLICIES}.")
    if ttl not in TTLS:
        raise ValueError(f"Unknown cache TTL {ttl!r}; expected one of {TTLS}.")


# --- reading the body ---------------------------------------------------------------------


class _UnsupportedBodyError(Exception):
    """The body is malformed or its markers would be rejected: leave it to the upstream."""


Path = tuple[Any, ...]  # ("tools", 3), ("system",) for a string, ("messages", 5, 1), ...


@dataclass(frozen=True, slots=True)
class _Block:
    """One cacheable block, numbered in prefix order (tools → system → messages)."""

    path: Path
    cumulative_tokens: int
    is_markable: bool
    is_in_user_turn: bool

    @property
    def section(self) -> str:
        return self.path[0]


@dataclass
class _Survey:
    blocks: list[_Block] = field(default_factory=list)
    markers: list[tuple[int, str]] = field(default_factory=list)  # (block number, ttl)
    marked_sections: set[str] = field(default_factory=set)
    automatic_ttl: str | None = None
    last_block_for_automatic: int | None = None
    _tokens: int = 0

    @property
    def breakpoint_count(self) -> int:
        return len(self.markers) + (1 if self.automatic_ttl is not None else 0)

    @property
    def automatic_breakpoint(self) -> int | None:
        """The block a top-level cache_control puts its breakpoint on, if there is one."""
        return self.last_block_for_automatic if self.automatic_ttl is not None else None

    def add(
        self, path: Path, block: Any, *, is_markable: bool, is_in_user_turn: bool = False
    ) -> None:
        self._tokens += _estimated_tokens(block)
        number = len(self.blocks)
        self.blocks.append(_Block(path, self._tokens, is_markable, is_in_user_turn))
        if _lands_automatic_marker(block):
            self.last_block_for_automatic = number
        nested = block.get("content") if isinstance(block, dict) and path[0] == _MESSAGES else None
        for holder in [block, *(nested if isinstance(nested, list) else ())]:
            if isinstance(holder, dict) and holder.get("cache_control") is not None:
                self.markers.append((number, _marker_ttl(holder["cache_control"])))
                self.marked_sections.add(path[0])


def _survey(payload: dict[str, Any]) -> _Survey:
    survey = _Survey()
    tools, system, messages = payload.get(_TOOLS), payload.get(_SYSTEM), payload.get(_MESSAGES)
    if not isinstance(tools, list | None) or not isinstance(system, str | list | None):
        raise _UnsupportedBodyError
    if not isinstance(messages, list):
        raise _UnsupportedBodyError
    for index, tool in enumerate(tools or ()):
        is_deferred = isinstance(tool, dict) and tool.get("defer_loading") is True
        survey.add((_TOOLS, index), tool, is_markable=isinstance(tool, dict) and not is_deferred)
    if isinstance(system, str):
        if system:
            block = {"type": "text", "text": system}
            survey.add((_SYSTEM,), block, is_markable=_is_markable_system_block(0, block))
    else:
        for index, block in enumerate(system or ()):
            survey.add((_SYSTEM, index), block, is_markable=_is_markable_system_block(index, block))
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str | list):
            raise _UnsupportedBodyError
        is_user = message.get("role") == "user"
        content = message["content"]
        if isinstance(content, str):
            content_blocks: list[tuple[Path, Any]] = [
                ((_MESSAGES, index), {"type": "text", "text": content})
            ]
        else:
            content_blocks = [((_MESSAGES, index, at), block) for at, block in enumerate(content)]
        for path, block in content_blocks:
            markable = _is_markable_message_block(block)
            survey.add(path, block, is_markable=markable, is_in_user_turn=is_user)
    if payload.get("cache_control") is not None:
        survey.automatic_ttl = _marker_ttl(payload["cache_control"])
    _check_markers(survey)
    return survey


def _marker_ttl(cache_control: Any) -> str:
    if not isinstance(cache_control, dict) or cache_control.get("type") != "ephemeral":
        raise _UnsupportedBodyError
    ttl = cache_control.get("ttl", TTL_5M)
    if ttl not in TTLS:
        raise _UnsupportedBodyError
    return ttl


def _check_markers(survey: _Survey) -> None:
    """The API's limits: at most 4 breakpoints, 1h before 5m, a top-level marker agreeing
    with an explicit one on the block it lands on."""
    if survey.breakpoint_count > MAX_BREAKPOINTS:
        raise _UnsupportedBodyError
    ttls = [ttl for _number, ttl in survey.markers]
    if survey.automatic_ttl is not None:
        ttls.append(survey.automatic_ttl)
    if TTL_5M in ttls and TTL_1H in ttls[ttls.index(TTL_5M) :]:
        raise _UnsupportedBodyError
    if survey.automatic_ttl is not None and any(
        number == survey.automatic_breakpoint and ttl != survey.automatic_ttl
        for number, ttl in survey.markers
    ):
        raise _UnsupportedBodyError


def _estimated_tokens(block: Any) -> int:
    """ceil(JSON bytes / 4), at least 1, without the block's own marker."""
    if isinstance(block, dict) and "cache_control" in block:
        block = {key: value for key, value in block.items() if key != "cache_control"}
    try:
        size = len(orjson.dumps(block))
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: the body is not ours to edit
        raise _UnsupportedBodyError from None
    return max(1, -(-size // BYTES_PER_TOKEN))


def _has_text(block: dict[str, Any]) -> bool:
    text = block.get("text")
    return isinstance(text, str) and bool(text.strip())


def _is_markable_system_block(index: int, block: Any) -> bool:
    if not isinstance(block, dict) or block.get("type") != "text" or not _has_text(block):
        return False
    return not (index == 0 and block["text"].startswith(ATTRIBUTION_PREFIX))


def _is_markable_message_block(block: Any) -> bool:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return False
    if block["type"] in UNMARKABLE_BLOCK_TYPES:
        return False
    return block["type"] != "text" or _has_text(block)


def _lands_automatic_marker(block: Any) -> bool:
    """Where the API puts a top-level marker: the last block not thinking nor empty text."""
    if not isinstance(block, dict) or block.get("type") in UNMARKABLE_BLOCK_TYPES:
        return False
    return not (block.get("type") == "text" and not block.get("text"))


# --- choosing and placing breakpoints -----------------------------------------------------


def _candidates(survey: _Survey, policy: str) -> list[int]:
    """Block numbers worth a breakpoint, most valuable first."""
    ordered = [_last_markable(survey, (_SYSTEM,))]
    if policy == POLICY_AUTO and _MESSAGES not in survey.marked_sections:
        if survey.automatic_ttl is None:
            user_turns = sorted(
                {block.path[1] for block in survey.blocks if block.is_in_user_turn}, reverse=True
            )
            ordered += [_last_markable(survey, (_MESSAGES, turn)) for turn in user_turns[:2]]
    ordered.append(_last_markable(survey, (_TOOLS,)))
    return [
        number
        for number in ordered
        if number is not None
        and survey.blocks[number].section not in survey.marked_sections
        and number != survey.automatic_breakpoint
    ]


def _last_markable(survey: _Survey, under: Path) -> int | None:
    """The last markable block whose path starts with `under`."""
    for number in range(len(survey.blocks) - 1, -1, -1):
        block = survey.blocks[number]
        if block.is_markable and block.path[: len(under)] == under:
            return number
    return None


def _ttl_at(survey: _Survey, number: int, policy_ttl: str) -> str:
    if any(ttl == TTL_5M and at < number for at, ttl in survey.markers):
        return TTL_5M
    if survey.automatic_ttl == TTL_1H or any(
        ttl == TTL_1H and at > number for at, ttl in survey.markers
    ):
        return TTL_1H
    return policy_ttl


def _with_markers(
    payload: dict[str, Any], survey: _Survey, chosen: list[tuple[int, str]]
) -> dict[str, Any]:
    """A copy of `payload` with the markers placed; only the containers on the way are copied."""
    result = dict(payload)
    copied: set[str] = set()

    def own_list(section: str) -> list[Any]:
        if section not in copied:
            result[section] = list(result[section])
            copied.add(section)
        return result[section]

    for number, ttl in chosen:
        path = survey.blocks[number].path
        marker = cache_marker(ttl)
        if path == (_SYSTEM,):
            result[_SYSTEM] = [{"type": "text", "text": payload[_SYSTEM], "cache_control": marker}]
        elif path[0] != _MESSAGES:
            entries = own_list(path[0])
            entries[path[1]] = {**entries[path[1]], "cache_control": marker}
        else:
            messages = own_list(_MESSAGES)
            message = dict(messages[path[1]])
            if len(path) == 2:  # string content
                text = message["content"]
                message["content"] = [{"type": "text", "text": text, "cache_control": marker}]
            else:
                content = list(message["content"])
                content[path[2]] = {**content[path[2]], "cache_control": marker}
                message["content"] = content
            messages[path[1]] = message
    return result
