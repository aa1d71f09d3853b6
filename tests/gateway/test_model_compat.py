from gateway.model_compat import adapt_for_model

BASE = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 8000,
    "messages": [{"role": "user", "content": "hi"}],
}


def test_enabled_thinking_becomes_adaptive_on_adaptive_only_models():
    payload = {**BASE, "thinking": {"type": "enabled", "budget_tokens": 4000, "display": "omitted"}}

    adapted = adapt_for_model(payload, "claude-opus-5")

    assert adapted["model"] == "claude-opus-5"
    assert adapted["thinking"] == {"type": "adaptive", "display": "omitted"}
    assert list(adapted) == list(payload)


def test_adaptive_thinking_becomes_a_budget_on_models_without_adaptive():
    payload = {**BASE, "model": "claude-opus-5", "thinking": {"type": "adaptive"}}

    assert adapt_for_model(payload, "claude-haiku-4-5")["thinking"] == {
        "type": "enabled",
        "budget_tokens": 4000,
    }
    small = {**payload, "max_tokens": 1000}
    assert adapt_for_model(small, "claude-sonnet-4-5-20250929")["thinking"] == {"type": "disabled"}
    assert adapt_for_model(payload, "claude-sonnet-4-6")["thinking"] == {"type": "adaptive"}


def test_sampling_knobs_are_dropped_for_models_that_refuse_them():
    payload = {**BASE, "temperature": 0.2, "top_p": 0.9, "top_k": 5}

    assert set(adapt_for_model(payload, "claude-opus-4-7")) == {"model", "max_tokens", "messages"}
    haiku = adapt_for_model(payload, "claude-haiku-4-5")
    assert (haiku["temperature"], "top_p" in haiku, haiku["top_k"]) == (0.2, False, 5)
    assert adapt_for_model(payload, "claude-sonnet-4-6") == {
        **payload,
        "model": "claude-sonnet-4-6",
    }


def test_bedrock_style_ids_are_recognised_and_the_input_is_not_mutated():
    payload = {**BASE, "temperature": 0.5}

    adapted = adapt_for_model(payload, "us.anthropic.claude-opus-5")

    assert "temperature" not in adapted
    assert payload["temperature"] == 0.5
