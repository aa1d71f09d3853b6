"""Server-side prompt-cache injection: one test per rule, on small exact payloads.

The model is Opus 5 (minimum cacheable prompt 512 tokens ≈ 2 KB of JSON) unless a test is
about the minimum; `LONG` text alone clears it, `SHORT` text never does.
"""

import copy

import pytest

from gateway.caching import (
    CachePolicy,
    Injection,
    inject_cache_markers,
    min_cacheable_tokens,
    resolve_cache_policy,
)

MODEL = "claude-opus-5"
FIVE_MINUTES = {"type": "ephemeral"}
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}
LONG = "L" * 2400
SHORT = "Be terse."
ATTRIBUTION = "x-anthropic-billing-header: cc_version=2.1.332.1c9; cc_entrypoint=sdk-cli;"
NOTHING = Injection(payload=None, markers_added=0)


def tool(name: str = "read_file", description: str = LONG, **extra) -> dict:
    return {"name": name, "description": description, "input_schema": {"type": "object"}, **extra}


def text(value: str, **extra) -> dict:
    return {"type": "text", "text": value, **extra}


def inject(payload: dict, policy: str = "auto", ttl: str = "5m", model: str = MODEL) -> Injection:
    return inject_cache_markers(payload, policy=policy, ttl=ttl, model=model)


# --- resolve_cache_policy -----------------------------------------------------------------


def test_the_route_policy_applies_when_nothing_overrides_it():
    assert resolve_cache_policy("auto", "5m", "", "", "", "") == CachePolicy("auto", "5m")


@pytest.mark.parametrize(
    ("cost_center", "key", "expected"),
    [
        (("system", "1h"), ("", ""), CachePolicy("system", "1h")),
        (("system", "1h"), ("off", "5m"), CachePolicy("off", "5m")),
        (("", ""), ("auto", "1h"), CachePolicy("auto", "1h")),
    ],
)
def test_the_key_overrides_its_cost_center_which_overrides_the_route(cost_center, key, expected):
    assert resolve_cache_policy("off", "5m", *cost_center, *key) == expected


def test_policy_and_ttl_are_inherited_separately():
    resolved = resolve_cache_policy("off", "5m", "system", "", "", "1h")

    assert resolved == CachePolicy(policy="system", ttl="1h")


@pytest.mark.parametrize(("policy", "ttl"), [("everything", "5m"), ("auto", "24h"), ("", "")])
def test_an_unknown_policy_or_ttl_is_refused(policy, ttl):
    with pytest.raises(ValueError, match="Unknown cache"):
        resolve_cache_policy(policy, ttl, "", "", "", "")
    with pytest.raises(ValueError, match="Unknown cache"):
        inject({"messages": []}, policy=policy or "auto", ttl=ttl or "1d")


# --- policies -----------------------------------------------------------------------------


def conversation() -> dict:
    return {
        "model": MODEL,
        "max_tokens": 100,
        "tools": [tool("ping", "p"), tool()],
        "system": SHORT,
        "messages": [
            {"role": "user", "content": LONG},
            {"role": "assistant", "content": [text("Reading it.")]},
            {"role": "user", "content": [text("And now?")]},
        ],
    }


def test_off_adds_nothing():
    assert inject(conversation(), policy="off") == NOTHING


def test_system_policy_marks_the_end_of_the_tools_and_of_the_system_prompt():
    injection = inject(conversation(), policy="system")

    assert injection.markers_added == 2
    assert injection.payload == {
        "model": MODEL,
        "max_tokens": 100,
        "tools": [tool("ping", "p"), tool(cache_control=FIVE_MINUTES)],
        "system": [text(SHORT, cache_control=FIVE_MINUTES)],
        "messages": [
            {"role": "user", "content": LONG},
            {"role": "assistant", "content": [text("Reading it.")]},
            {"role": "user", "content": [text("And now?")]},
        ],
    }


def test_auto_policy_also_marks_the_last_two_user_turns():
    injection = inject(conversation(), policy="auto")

    assert injection.markers_added == 4
    assert injection.payload == {
        "model": MODEL,
        "max_tokens": 100,
        "tools": [tool("ping", "p"), tool(cache_control=FIVE_MINUTES)],
        "system": [text(SHORT, cache_control=FIVE_MINUTES)],
        "messages": [
            {"role": "user", "content": [text(LONG, cache_control=FIVE_MINUTES)]},
            {"role": "assistant", "content": [text("Reading it.")]},
            {"role": "user", "content": [text("And now?", cache_control=FIVE_MINUTES)]},
        ],
    }


def test_one_hour_markers_carry_the_ttl():
    injection = inject(conversation(), policy="system", ttl="1h")

    assert injection.payload["tools"][1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert injection.payload["system"] == [text(SHORT, cache_control=ONE_HOUR)]


def test_only_the_last_two_user_turns_are_marked_and_system_turns_are_skipped():
    payload = {
        "system": LONG,
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "second"},
            {"role": "system", "content": "# Environment"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "third"},
            {"role": "system", "content": [text("Today is Monday.")]},
        ],
    }

    injection = inject(payload)

    assert injection == Injection(
        payload={
            "system": [text(LONG, cache_control=FIVE_MINUTES)],
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": [text("second", cache_control=FIVE_MINUTES)]},
                {"role": "system", "content": "# Environment"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": [text("third", cache_control=FIVE_MINUTES)]},
                {"role": "system", "content": [text("Today is Monday.")]},
            ],
        },
        markers_added=3,
    )


# --- where a marker goes ------------------------------------------------------------------


def test_a_string_system_prompt_stays_a_string_when_it_gets_no_marker():
    payload = {"system": SHORT, "messages": [{"role": "user", "content": "hi"}]}

    assert inject(payload) == NOTHING


def test_the_marker_walks_back_past_empty_text_and_thinking_blocks():
    payload = {
        "system": LONG,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    text(""),
                    text("  \n"),
                ],
            }
        ],
    }

    injection = inject(payload)

    assert injection.payload["messages"][0]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": "42",
            "cache_control": FIVE_MINUTES,
        },
        {"type": "thinking", "thinking": "hm", "signature": "sig"},
        text(""),
        text("  \n"),
    ]


def test_a_turn_with_nothing_markable_gets_no_marker():
    payload = {
        "system": LONG,
        "messages": [{"role": "user", "content": ""}, {"role": "user", "content": [text("")]}],
    }

    injection = inject(payload)

    assert injection.markers_added == 1
    assert injection.payload["messages"] == payload["messages"]


def test_the_attribution_block_is_never_marked():
    payload = {
        "tools": [tool()],
        "system": [text(ATTRIBUTION)],
        "messages": [{"role": "user", "content": "hi"}],
    }

    injection = inject(payload, policy="system")

    assert injection.markers_added == 1
    assert injection.payload["system"] == [text(ATTRIBUTION)]
    assert injection.payload["tools"] == [tool(cache_control=FIVE_MINUTES)]


def test_the_last_system_block_is_marked_and_the_order_kept():
    payload = {
        "system": [text(ATTRIBUTION), text(LONG), text("Project rules."), text("")],
        "messages": [{"role": "user", "content": "hi"}],
    }

    injection = inject(payload, policy="system")

    assert injection.payload["system"] == [
        text(ATTRIBUTION),
        text(LONG),
        text("Project rules.", cache_control=FIVE_MINUTES),
        text(""),
    ]


def test_deferred_tools_are_not_marked():
    payload = {
        "tools": [tool(), tool("Search", "s", defer_loading=True)],
        "messages": [{"role": "user", "content": "hi"}],
    }

    injection = inject(payload, policy="system")

    assert injection.payload["tools"] == [
        tool(cache_control=FIVE_MINUTES),
        tool("Search", "s", defer_loading=True),
    ]


def test_cache_control_null_is_no_marker():
    payload = {
        "system": [text(LONG, cache_control=None)],
        "messages": [{"role": "user", "content": "hi"}],
    }

    injection = inject(payload, policy="system")

    assert injection.payload["system"] == [text(LONG, cache_control=FIVE_MINUTES)]


# --- client markers -----------------------------------------------------------------------


def claude_code_request() -> dict:
    """claude-traffic §3-§4: attribution block, two marked system blocks, marked last block."""
    return {
        "model": MODEL,
        "tools": [tool("Bash"), tool("Read")],
        "system": [
            text(ATTRIBUTION),
            text("You are a Claude agent.", cache_control=FIVE_MINUTES),
            text(LONG, cache_control=FIVE_MINUTES),
        ],
        "messages": [
            {"role": "user", "content": [text("<system-reminder>…</system-reminder>"), text("hi")]},
            {"role": "system", "content": "# Environment"},
            {"role": "assistant", "content": [text("Hello.")]},
            {"role": "user", "content": [text("Fix the bug.", cache_control=FIVE_MINUTES)]},
        ],
    }


def test_a_claude_code_request_gets_only_the_tools_breakpoint_it_lacks():
    injection = inject(claude_code_request())

    expected = claude_code_request()
    expected["tools"][1]["cache_control"] = FIVE_MINUTES
    assert injection == Injection(payload=expected, markers_added=1)


def test_a_client_marker_in_the_messages_leaves_the_rolling_part_to_the_client():
    payload = conversation()
    payload["messages"][0]["content"] = [text(LONG, cache_control=FIVE_MINUTES)]

    injection = inject(payload)

    assert injection.markers_added == 2
    assert injection.payload["messages"] == payload["messages"]
    assert injection.payload["system"] == [text(SHORT, cache_control=FIVE_MINUTES)]


def test_a_section_the_client_marks_gets_no_second_marker():
    payload = conversation()
    payload["tools"][0]["cache_control"] = FIVE_MINUTES

    injection = inject(payload, policy="system")

    assert injection.markers_added == 1
    assert injection.payload["tools"] == payload["tools"]


def test_with_two_slots_left_the_conversation_goes_before_the_tools():
    payload = conversation()
    payload["system"] = [
        text(LONG, cache_control=FIVE_MINUTES),
        text(SHORT, cache_control=FIVE_MINUTES),
    ]

    injection = inject(payload)

    assert injection.markers_added == 2
    assert injection.payload["tools"] == payload["tools"]
    assert injection.payload["messages"][0]["content"] == [text(LONG, cache_control=FIVE_MINUTES)]
    assert injection.payload["messages"][2]["content"] == [
        text("And now?", cache_control=FIVE_MINUTES)
    ]


def test_four_client_markers_are_left_alone():
    payload = claude_code_request()
    payload["tools"][1]["cache_control"] = FIVE_MINUTES

    assert inject(payload) == NOTHING


def test_a_top_level_cache_control_takes_a_slot_and_the_rolling_part():
    payload = {**conversation(), "cache_control": FIVE_MINUTES}

    injection = inject(payload)

    assert injection.markers_added == 2
    assert injection.payload["messages"] == payload["messages"]
    assert injection.payload["cache_control"] == FIVE_MINUTES


def test_the_block_a_top_level_cache_control_lands_on_is_not_marked_again():
    payload = {
        "tools": [tool()],
        "system": LONG,
        "messages": [{"role": "user", "content": ""}],
        "cache_control": ONE_HOUR,
    }

    injection = inject(payload, policy="system")

    assert injection.payload["system"] == LONG
    assert injection.payload["tools"] == [tool(cache_control=ONE_HOUR)]


@pytest.mark.parametrize(
    "invalid",
    [
        pytest.param(
            {"tools": [tool(cache_control=FIVE_MINUTES) for _ in range(5)]}, id="5 markers"
        ),
        pytest.param(
            {
                "tools": [tool(cache_control=FIVE_MINUTES) for _ in range(4)],
                "cache_control": FIVE_MINUTES,
            },
            id="4 markers and top-level",
        ),
        pytest.param(
            {"tools": [tool(cache_control=FIVE_MINUTES), tool(cache_control=ONE_HOUR)]},
            id="1h after 5m",
        ),
        pytest.param({"tools": [tool(cache_control={"type": "persistent"})]}, id="bad type"),
        pytest.param(
            {"tools": [tool(cache_control={"type": "ephemeral", "ttl": "2h"})]}, id="bad ttl"
        ),
        pytest.param({"tools": {"name": "x"}}, id="tools not a list"),
        pytest.param({"system": 42}, id="system not text"),
    ],
)
def test_a_body_the_api_would_reject_is_left_alone(invalid):
    payload = {"system": LONG, "messages": [{"role": "user", "content": "hi"}], **invalid}

    assert inject(payload) == NOTHING


def test_a_body_without_a_message_list_is_left_alone():
    assert inject({"system": LONG, "messages": "hi"}) == NOTHING
    assert inject({"system": LONG, "messages": [{"role": "user"}]}) == NOTHING


# --- TTL ordering -------------------------------------------------------------------------


def test_a_one_hour_policy_uses_five_minutes_after_a_client_five_minute_marker():
    payload = conversation()
    payload["system"] = [text(LONG, cache_control=FIVE_MINUTES), text(SHORT)]

    injection = inject(payload, ttl="1h")

    assert injection.payload["tools"][1]["cache_control"] == ONE_HOUR
    assert injection.payload["messages"][0]["content"] == [text(LONG, cache_control=FIVE_MINUTES)]
    assert injection.payload["messages"][2]["content"] == [
        text("And now?", cache_control=FIVE_MINUTES)
    ]


def test_a_five_minute_policy_uses_one_hour_before_a_client_one_hour_marker():
    payload = conversation()
    payload["messages"][2]["content"] = [text("And now?", cache_control=ONE_HOUR)]

    injection = inject(payload, ttl="5m")

    assert injection.payload["tools"][1]["cache_control"] == ONE_HOUR
    assert injection.payload["system"] == [text(SHORT, cache_control=ONE_HOUR)]


def test_a_top_level_one_hour_marker_makes_every_added_marker_one_hour():
    payload = {**conversation(), "cache_control": ONE_HOUR}

    injection = inject(payload, ttl="5m")

    assert injection.payload["tools"][1]["cache_control"] == ONE_HOUR
    assert injection.payload["system"] == [text(SHORT, cache_control=ONE_HOUR)]


# --- minimum cacheable length -------------------------------------------------------------


def test_a_prefix_below_the_model_minimum_gets_no_marker():
    payload = {
        "tools": [tool("ping", "p")],
        "system": "S" * 3000,
        "messages": [{"role": "user", "content": "U" * 16000}],
    }

    on_opus_5 = inject(payload, model="claude-opus-5")  # 512: every point qualifies but tools
    on_haiku = inject(payload, model="claude-haiku-4-5-20251001")  # 4096: only the user turn

    assert on_opus_5.markers_added == 2
    assert on_opus_5.payload["tools"] == [tool("ping", "p")]
    assert on_haiku.markers_added == 1
    assert on_haiku.payload["system"] == "S" * 3000
    assert on_haiku.payload["messages"][0]["content"] == [
        text("U" * 16000, cache_control=FIVE_MINUTES)
    ]


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ("claude-opus-5", 512),
        ("claude-fable-5", 512),
        ("claude-sonnet-4-6", 1024),
        ("claude-sonnet-4-5-20250929", 1024),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", 1024),
        ("claude-opus-4-20250514", 1024),
        ("claude-opus-4-7", 2048),
        ("claude-3-5-haiku-latest", 2048),
        ("claude-opus-4-6[1m]", 4096),
        ("claude-haiku-4-5@20251001", 4096),
        ("claude-opus-4-5", 4096),
        ("claude-opus-5-5", 1024),
        ("my-gateway-alias", 1024),
    ],
)
def test_minimum_cacheable_tokens_by_model(model, minimum):
    assert min_cacheable_tokens(model) == minimum


# --- copies and repeats -------------------------------------------------------------------


def test_injecting_into_an_injected_payload_adds_nothing():
    once = inject(conversation())

    assert inject(once.payload) == NOTHING


def test_the_input_is_never_mutated_and_untouched_parts_are_shared():
    payload = conversation()
    before = copy.deepcopy(payload)

    injection = inject(payload)

    assert payload == before
    assert injection.payload["messages"][1] is payload["messages"][1]
    assert injection.payload["tools"][0] is payload["tools"][0]
