"""Properties of cache-marker injection over generated request bodies.

For every policy and TTL: the result passes the emulator's own marker validation (the
API's limits), differs from the input only by added markers (and string → text block
conversions carrying the same text), keeps the client's markers, is a fixed point of a
second injection, and leaves a body the API would reject exactly as it was.
"""

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.caching import NOTHING_ADDED, inject_cache_markers
from gateway.emulator.errors import EmulatorError
from gateway.emulator.prefix import build_prefix

POLICIES = ("off", "system", "auto")
TTLS = ("5m", "1h")
MODELS = ("claude-opus-5", "claude-sonnet-4-6", "claude-opus-4-7", "claude-haiku-4-5", "alias")
ADDED_MARKERS = ({"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"})
CLIENT_MARKERS = ({"type": "ephemeral"}, {"type": "ephemeral", "ttl": "5m"}, *ADDED_MARKERS[1:])
ATTRIBUTION = "x-anthropic-billing-header: cc_version=2.1.332.1c9; cc_entrypoint=cli;"

long_texts = st.builds(
    lambda length, jitter: "w" * (length + jitter),
    st.sampled_from([600, 2100, 4500, 9000, 17000]),
    st.integers(min_value=0, max_value=99),
)
texts = st.one_of(st.sampled_from(["", " ", "\n"]), st.text(max_size=12), long_texts, long_texts)


@st.composite
def maybe_marked(draw, block: dict[str, Any]) -> dict[str, Any]:
    """Marks roughly one block in five; the TTLs are settled later by `settle_ttls`."""
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        block["cache_control"] = dict(draw(st.sampled_from(CLIENT_MARKERS)))
    return block


def text_block(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


content_blocks = st.one_of(
    texts.map(text_block).flatmap(maybe_marked),
    texts.map(lambda value: {"type": "thinking", "thinking": value, "signature": "EmuSig"}),
    st.just({"type": "redacted_thinking", "data": "EncryptedThought"}),
    texts.map(
        lambda value: {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"q": value}}
    ).flatmap(maybe_marked),
    st.one_of(texts, st.lists(texts.map(text_block).flatmap(maybe_marked), max_size=2))
    .map(lambda content: {"type": "tool_result", "tool_use_id": "toolu_1", "content": content})
    .flatmap(maybe_marked),
    st.just(
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVB"}}
    ).flatmap(maybe_marked),
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "user", "assistant", "system"]),
            "content": st.one_of(texts, st.lists(content_blocks, max_size=4)),
        }
    ),
    min_size=1,
    max_size=7,
)
tools = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["Bash", "Read", "Edit"]), "description": texts},
        optional={"defer_loading": st.booleans()},
    )
    .map(lambda tool: {**tool, "input_schema": {"type": "object"}})
    .flatmap(maybe_marked),
    max_size=4,
)
system_blocks = st.lists(texts.map(text_block).flatmap(maybe_marked), max_size=4)
systems = st.one_of(
    st.none(),
    texts,
    system_blocks,
    system_blocks.map(lambda blocks: [text_block(ATTRIBUTION), *blocks]),
)


@st.composite
def request_bodies(draw) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "max_tokens": 64}
    tool_list = draw(tools)
    if tool_list or draw(st.booleans()):
        body["tools"] = tool_list
    system = draw(systems)
    if system is not None:
        body["system"] = system
    body["messages"] = draw(messages)
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        body["cache_control"] = dict(draw(st.sampled_from(CLIENT_MARKERS)))
    settle_ttls(body, draw(st.sampled_from(["as drawn", "5m", "1h", "1h then 5m"])), draw)
    return body


def client_markers(body: dict[str, Any]) -> dict[tuple, dict]:
    """Every marker by its path, in prefix order; the top-level one last."""
    found: dict[tuple, dict] = {}

    def visit(path: tuple, block: Any) -> None:
        if isinstance(block, dict) and block.get("cache_control") is not None:
            found[path] = block["cache_control"]
        nested = block.get("content") if isinstance(block, dict) else None
        for position, inner in enumerate(nested if isinstance(nested, list) else ()):
            visit((*path, "content", position), inner)

    for index, tool in enumerate(body.get("tools") or ()):
        visit(("tools", index), tool)
    if isinstance(body.get("system"), list):
        for index, block in enumerate(body["system"]):
            visit(("system", index), block)
    for index, message in enumerate(body["messages"]):
        if isinstance(message["content"], list):
            for position, block in enumerate(message["content"]):
                visit(("messages", index, position), block)
    if body.get("cache_control") is not None:
        found[("cache_control",)] = body["cache_control"]
    return found


def settle_ttls(body: dict[str, Any], mode: str, draw) -> None:
    """Most bodies get a valid TTL order (1h before 5m); "as drawn" may be invalid."""
    markers = list(client_markers(body).values())
    split = draw(st.integers(min_value=0, max_value=len(markers)))
    for position, marker in enumerate(markers):
        if mode == "as drawn":
            continue
        is_one_hour = mode == "1h" or (mode == "1h then 5m" and position < split)
        marker.pop("ttl", None)
        if is_one_hour:
            marker["ttl"] = "1h"


def api_accepts(body: dict[str, Any]) -> bool:
    try:
        build_prefix(body, body["model"])
    except EmulatorError:
        return False
    return True


def undo_injection(result: dict[str, Any], original: dict[str, Any]) -> tuple[dict, dict]:
    """`result` without the markers injection added (string conversions reverted), and how
    many were removed per section; fails on any other difference in shape."""
    body = copy.deepcopy(result)
    removed = {"tools": 0, "system": 0, "messages": 0}

    def strip(section: str, blocks: list, before: list) -> None:
        assert len(blocks) == len(before)
        for block, old in zip(blocks, before, strict=True):
            is_new = isinstance(block, dict) and block.get("cache_control") is not None
            if is_new and (not isinstance(old, dict) or old.get("cache_control") is None):
                assert block["cache_control"] in ADDED_MARKERS
                if "cache_control" in old:
                    block["cache_control"] = old["cache_control"]
                else:
                    del block["cache_control"]
                removed[section] += 1

    def unstring(section: str, holder: dict, key: str, before: Any) -> None:
        if isinstance(before, str) and holder[key] != before:
            [block] = holder[key]
            assert block == {
                "type": "text",
                "text": before,
                "cache_control": block["cache_control"],
            }
            assert block["cache_control"] in ADDED_MARKERS
            holder[key] = before
            removed[section] += 1

    if "tools" in original:
        strip("tools", body["tools"], original["tools"])
    if "system" in original:
        unstring("system", body, "system", original["system"])
        if isinstance(original["system"], list):
            strip("system", body["system"], original["system"])
    for message, old in zip(body["messages"], original["messages"], strict=True):
        unstring("messages", message, "content", old["content"])
        if isinstance(old["content"], list):
            strip("messages", message["content"], old["content"])
    return body, removed


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=request_bodies(), model=st.sampled_from(MODELS))
def test_injection_keeps_every_request_valid_and_changes_nothing_else(body, model):
    before = copy.deepcopy(body)
    accepted = api_accepts(body)

    for policy in POLICIES:
        for ttl in TTLS:
            injection = inject_cache_markers(body, policy=policy, ttl=ttl, model=model)

            assert body == before
            if injection.payload is None:
                assert injection == NOTHING_ADDED
                continue
            assert accepted, "a body the API rejects must be forwarded unchanged"
            assert policy != "off"
            result = injection.payload
            assert api_accepts(result)
            assert len(client_markers(result)) <= 4
            restored, removed = undo_injection(result, before)
            assert restored == before
            assert sum(removed.values()) == injection.markers_added > 0
            if policy == "system":
                assert removed["messages"] == 0
            kept = client_markers(result)
            assert all(kept[path] == marker for path, marker in client_markers(before).items())
            again = inject_cache_markers(result, policy=policy, ttl=ttl, model=model)
            assert again == NOTHING_ADDED


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=request_bodies(), model=st.sampled_from(MODELS))
def test_a_client_marker_in_the_messages_means_no_marker_is_added_there(body, model):
    has_client_message_marker = any(path[0] == "messages" for path in client_markers(body))
    has_top_level_marker = body.get("cache_control") is not None

    injection = inject_cache_markers(body, policy="auto", ttl="5m", model=model)

    if injection.payload is not None and (has_client_message_marker or has_top_level_marker):
        _restored, removed = undo_injection(injection.payload, body)
        assert removed["messages"] == 0
