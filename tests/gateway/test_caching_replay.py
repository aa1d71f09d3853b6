"""Evidence that cache injection pays: agent sessions replayed against the emulator server.

No proxy here: each body goes straight to the emulator (its prompt cache follows the
API's rules), once as the client sent it and once through `inject_cache_markers`, and
every response's usage is priced at the Sonnet 4.6 list price.
"""

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from gateway.caching import inject_cache_markers
from gateway.contracts import PriceRow
from gateway.price_catalog import CATALOG_EFFECTIVE_FROM, catalog_rows
from gateway.pricing import cost_of
from gateway.usage import usage_from_message

MODEL = "claude-sonnet-4-6"
SONNET_4_6 = PriceRow(
    price_id=1,
    provider_id=None,
    effective_from=datetime.fromisoformat(CATALOG_EFFECTIVE_FROM),
    **next(row for row in catalog_rows() if row["model"] == MODEL),
)
SECONDS_BETWEEN_TURNS = 20
ATTRIBUTION = "x-anthropic-billing-header: cc_version=2.1.332.{suffix}; cc_entrypoint=sdk-cli;"
FIVE_MINUTES = {"type": "ephemeral"}

Body = dict[str, Any]
Send = Callable[[Body], Body]


def deterministic_text(size: int, topic: str) -> str:
    lines, length, number = [], 0, 0
    while length < size:
        line = f"{topic} rule {number}: keep module {number % 37} consistent with section {number % 11}.\n"
        lines.append(line)
        length += len(line)
        number += 1
    return "".join(lines)[:size]


SYSTEM_PROMPT = deterministic_text(100_000, "Agent")  # ≈ 25K tokens


def tool_definitions(*names: str) -> list[Body]:
    return [
        {
            "name": name,
            "description": deterministic_text(2_700, name),
            "input_schema": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        }
        for name in names
    ]


TOOLS = tool_definitions("read_file", "run_tests", "edit_file", "search_code")
CLAUDE_CODE_TOOLS = tool_definitions(  # ≈ 32 KB, as in claude-code-traffic §3
    *("Agent", "Bash", "Edit", "ListAgents", "Read", "ReportFindings", "ScheduleWakeup"),
    *("Skill", "ToolSearch", "Workflow", "TodoWrite", "Write"),
)


def tool_output(turn: int) -> str:
    return deterministic_text(1_500, f"file contents at turn {turn}")


def count_markers(body: Body) -> int:
    blocks = [*(body.get("tools") or ())]
    if isinstance(body.get("system"), list):
        blocks += body["system"]
    for message in body["messages"]:
        if isinstance(message["content"], list):
            blocks += message["content"]
    marked = sum(1 for block in blocks if block.get("cache_control") is not None)
    return marked + (1 if body.get("cache_control") is not None else 0)


def next_user_turn(turn: int, previous_reply: Body | None) -> list[Body]:
    """A tool result after a tool call, otherwise a request that makes the model call one."""
    if previous_reply is not None and previous_reply["stop_reason"] == "tool_use":
        tool_use = previous_reply["content"][-1]
        return [
            {"type": "tool_result", "tool_use_id": tool_use["id"], "content": tool_output(turn)}
        ]
    return [{"type": "text", "text": f"Step {turn}: use the read_file tool on module_{turn}.py"}]


class Replay:
    """Posts bodies to the emulator with one API key, optionally injecting markers first."""

    def __init__(self, emulator, api_key: str, *, policy: str) -> None:
        self.emulator = emulator
        self.policy = policy
        self.http = httpx.Client(
            base_url=emulator.base_url,
            headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
            timeout=30,
        )
        self.cost = Decimal(0)
        self.cache_read_tokens = 0
        self.markers_added: list[int] = []

    def send(self, body: Body) -> Body:
        injection = inject_cache_markers(body, policy=self.policy, ttl="5m", model=MODEL)
        self.markers_added.append(injection.markers_added)
        response = self.http.post("/v1/messages", json=injection.payload or body)
        assert response.status_code == 200, response.text
        reply = response.json()
        usage = usage_from_message(reply["usage"]).usage
        self.cost += cost_of(usage, SONNET_4_6)
        self.cache_read_tokens += usage.cache_read_tokens
        self.emulator.advance_clock(SECONDS_BETWEEN_TURNS)
        return reply

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def replay(emulator):
    opened: list[Replay] = []

    def open_replay(api_key: str, *, policy: str) -> Replay:
        opened.append(Replay(emulator, api_key, policy=policy))
        return opened[-1]

    yield open_replay
    for session in opened:
        session.close()


def sdk_agent_session(send: Send, *, turns: int) -> None:
    """An SDK agent without markers: string system prompt, tools, a growing tool loop."""
    messages: list[Body] = []
    reply = None
    for turn in range(turns):
        messages.append({"role": "user", "content": next_user_turn(turn, reply)})
        body = {
            "model": MODEL,
            "max_tokens": 1024,
            "system": SYSTEM_PROMPT,
            "tools": TOOLS,
            "messages": messages,
        }
        reply = send(body)
        messages.append({"role": "assistant", "content": reply["content"]})


def test_auto_injection_cuts_a_fifty_turn_agent_session_by_more_than_sixty_percent(
    replay, emulator
):
    off = replay("sk-replay-off", policy="off")
    auto = replay("sk-replay-auto", policy="auto")

    sdk_agent_session(off.send, turns=50)
    sdk_agent_session(auto.send, turns=50)

    assert off.cache_read_tokens == 0
    assert off.markers_added == [0] * 50
    assert auto.markers_added[0] == 3  # tools, system, the only user turn
    assert auto.markers_added[1:] == [4] * 49
    assert max(count_markers(json.loads(r["body"])) for r in emulator.requests()) == 4
    assert auto.cost <= off.cost * Decimal("0.4"), (auto.cost, off.cost)


def with_marker_on_last_block(message: Body) -> Body:
    content = message["content"]
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    return {**message, "content": [*content[:-1], {**content[-1], "cache_control": FIVE_MINUTES}]}


def claude_code_session(send: Send, *, conversation: str, turns: int) -> None:
    """claude-code-traffic §3-§4: attribution block, markers on system[1], system[2] and the
    last block of the last message (moved every turn), a system-role turn in messages."""
    environment = deterministic_text(9_000, f"Environment of {conversation}")
    messages: list[Body] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>Attribution…</system-reminder>"},
                {"type": "text", "text": f"Fix the failing tool tests in {conversation}."},
            ],
        },
        {"role": "system", "content": environment},
    ]
    reply = None
    for turn in range(turns):
        if turn > 0:
            messages.append({"role": "user", "content": next_user_turn(turn, reply)})
        body = {
            "model": MODEL,
            "max_tokens": 32_000,
            "system": [
                {"type": "text", "text": ATTRIBUTION.format(suffix=conversation)},
                {
                    "type": "text",
                    "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
                    "cache_control": FIVE_MINUTES,
                },
                {"type": "text", "text": SYSTEM_PROMPT[:28_000], "cache_control": FIVE_MINUTES},
            ],
            "tools": CLAUDE_CODE_TOOLS,
            "messages": [*messages[:-1], with_marker_on_last_block(messages[-1])],
        }
        reply = send(body)
        messages.append({"role": "assistant", "content": reply["content"]})


def test_claude_code_markers_are_kept_and_injection_never_costs_more(replay, emulator):
    without = replay("sk-replay-client-only", policy="off")
    with_injection = replay("sk-replay-client-and-gateway", policy="auto")

    for session in (without, with_injection):
        for conversation in ("1c9", "e8f"):
            claude_code_session(session.send, conversation=conversation, turns=12)

    recorded = [json.loads(request["body"]) for request in emulator.requests()]
    assert [count_markers(body) for body in recorded] == [3] * 24 + [4] * 24
    assert with_injection.markers_added == [1] * 24  # only the tools breakpoint fits
    assert all("cache_control" in body["tools"][-1] for body in recorded[24:])
    assert with_injection.cost <= without.cost
    # The tools breakpoint sits before the per-conversation attribution block, so the
    # second conversation reads the tool definitions the first one wrote.
    assert with_injection.cache_read_tokens > without.cache_read_tokens
