"""Rewrite request fields a target model would reject when a route aliases the model.

A client that asked for one model may be routed to another family (the route's upstream
model). Fields that are valid for the model the client named can be refused by the target:
`thinking.type: "enabled"` on adaptive-only models, `adaptive` on models without it, and
non-default sampling parameters on models that refuse them (protocol reference §3).
Only the fields that need it change; everything else keeps its order and value.
"""

from __future__ import annotations

import re
from typing import Any

# Families whose thinking is adaptive only (enabled → 400) and which refuse sampling knobs.
_ADAPTIVE_ONLY = re.compile(
    r"^claude-(fable-5|mythos-5|opus-5|sonnet-5|opus-4-8|opus-4-7)(\b|[-@.])"
)
# Families that understand adaptive thinking (4.6 and later).
_ADAPTIVE_CAPABLE = re.compile(r"^claude-(fable|mythos|opus-5|sonnet-5|opus-4-[678]|sonnet-4-6)")
_HAIKU_4_5 = re.compile(r"^claude-haiku-4-5")
MIN_THINKING_BUDGET = 1024


def _normalise(model: str) -> str:
    """Provider ids (`anthropic.claude-opus-5`, `us.anthropic…`, `…@2025…`) to the family id."""
    return model.rsplit(".", 1)[-1] if "anthropic." in model else model


def adapt_for_model(payload: dict[str, Any], target_model: str) -> dict[str, Any]:
    """A copy of `payload` with `model` set to `target_model` and incompatible fields rewritten."""
    model = _normalise(target_model)
    adapted = {**payload, "model": target_model}
    thinking = payload.get("thinking")
    if isinstance(thinking, dict):
        kind = thinking.get("type")
        if kind == "enabled" and _ADAPTIVE_ONLY.match(model):
            adapted["thinking"] = {
                "type": "adaptive",
                **{k: v for k, v in thinking.items() if k == "display"},
            }
        elif kind == "adaptive" and not _ADAPTIVE_CAPABLE.match(model):
            max_tokens = payload.get("max_tokens")
            if isinstance(max_tokens, int) and max_tokens > MIN_THINKING_BUDGET:
                budget = max(MIN_THINKING_BUDGET, min(max_tokens // 2, max_tokens - 1))
                adapted["thinking"] = {"type": "enabled", "budget_tokens": budget}
            else:
                adapted["thinking"] = {"type": "disabled"}
    if _ADAPTIVE_ONLY.match(model):
        for knob in ("temperature", "top_p", "top_k"):
            adapted.pop(knob, None)
    elif _HAIKU_4_5.match(model) and "temperature" in payload and "top_p" in payload:
        adapted.pop("top_p")
    return adapted
