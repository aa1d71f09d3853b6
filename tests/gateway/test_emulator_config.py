"""Emulator configuration: validation, merging and per-key overrides (pure)."""

import pytest

from gateway.emulator.config import EmulatorConfig
from gateway.emulator.errors import EmulatorError
from gateway.emulator.ratelimits import Limits


def test_per_key_settings_override_the_global_ones():
    config = EmulatorConfig()
    config.update(
        {"reply_text": "Global.", "keys": {"sk-a": {"reply_text": "Just for a.", "rpm": 5}}}
    )

    assert config.behaviour_for("sk-a").reply_text == "Just for a."
    assert config.behaviour_for("sk-b").reply_text == "Global."
    assert config.limits_for("sk-a") == Limits(
        rpm=5, itpm=1_000_000_000, otpm=1_000_000_000, tpm=None
    )


def test_updates_merge_and_null_removes_a_key():
    config = EmulatorConfig()
    config.update({"keys": {"sk-a": {"rpm": 5}}})
    config.update({"keys": {"sk-a": {"itpm": 100}}})
    assert config.keys == {"sk-a": {"rpm": 5, "itpm": 100}}

    config.update({"keys": {"sk-a": None}})
    assert config.keys == {}


def test_a_bad_update_changes_nothing():
    config = EmulatorConfig()

    with pytest.raises(EmulatorError) as raised:
        config.update({"text_deltas": 50, "rpm": 0})

    assert raised.value.message == "rpm: expected an integer >= 1"
    assert config.settings["text_deltas"] == 5


def test_unknown_settings_are_rejected():
    with pytest.raises(EmulatorError) as raised:
        EmulatorConfig().update({"keys": {"sk-a": {"rmp": 5}}})

    assert raised.value.message == "keys.sk-a.rmp: unknown setting"


def test_workspace_groups_keys_into_one_cache_scope():
    config = EmulatorConfig()
    config.update({"keys": {"sk-a": {"workspace": "wrkspc_1"}, "sk-b": {"workspace": "wrkspc_1"}}})

    assert config.workspace_for("sk-a") == config.workspace_for("sk-b") == "wrkspc_1"
    assert config.workspace_for("sk-c") == "sk-c"


def test_valid_keys_become_a_set_and_read_back_sorted():
    config = EmulatorConfig()
    config.update({"valid_keys": ["sk-b", "sk-a"]})

    assert config.valid_keys == frozenset({"sk-a", "sk-b"})
    assert config.to_dict()["valid_keys"] == ["sk-a", "sk-b"]
