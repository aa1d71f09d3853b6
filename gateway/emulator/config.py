"""Runtime configuration, changed through `POST /_emulator/config`.

Global settings apply to every key; `keys` holds per-key overrides (reply, tool use,
streaming pace, rate limits, the cache workspace). Updates are validated and merged, so a
test can change one thing without restating the rest; unknown names are rejected so a
typo fails loudly instead of silently configuring nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.emulator.errors import invalid_request
from gateway.emulator.ratelimits import Limits

TOOL_USE_MODES = ("auto", "always", "never")
MAX_CACHED_BEHAVIOURS = 10_000


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What one request's reply looks like, after per-key overrides."""

    reply_text: str | None
    tool_use: str
    tool_name: str | None
    tool_input: dict[str, Any] | None
    text_deltas: int
    delta_delay_ms: float


def _non_empty_string(name: str, value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not value):
        raise invalid_request(f"{name}: expected a non-empty string or null")
    return value


def _positive_int(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_request(f"{name}: expected an integer >= 1")
    return value


def _non_negative_int(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_request(f"{name}: expected an integer >= 0")
    return value


def _optional_positive_int(name: str, value: Any) -> Any:
    return None if value is None else _positive_int(name, value)


def _non_negative_number(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise invalid_request(f"{name}: expected a number >= 0")
    return float(value)


def _tool_use_mode(name: str, value: Any) -> Any:
    if value not in TOOL_USE_MODES:
        raise invalid_request(f"{name}: expected one of {', '.join(TOOL_USE_MODES)}")
    return value


def _optional_object(name: str, value: Any) -> Any:
    if value is not None and not isinstance(value, dict):
        raise invalid_request(f"{name}: expected a JSON object or null")
    return value


def _key_list(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(key, str) and key for key in value):
        raise invalid_request(f"{name}: expected a list of non-empty strings or null")
    return frozenset(value)


Validator = Callable[[str, Any], Any]

BEHAVIOUR_FIELDS: dict[str, Validator] = {
    "reply_text": _non_empty_string,
    "tool_use": _tool_use_mode,
    "tool_name": _non_empty_string,
    "tool_input": _optional_object,
    "text_deltas": _positive_int,
    "delta_delay_ms": _non_negative_number,
}
LIMIT_FIELDS: dict[str, Validator] = {
    "rpm": _positive_int,
    "itpm": _positive_int,
    "otpm": _positive_int,
    "tpm": _optional_positive_int,
}
KEY_FIELDS: dict[str, Validator] = {
    **BEHAVIOUR_FIELDS,
    **{name: _optional_positive_int for name in LIMIT_FIELDS},
    "workspace": _non_empty_string,
}
GLOBAL_FIELDS: dict[str, Validator] = {
    **BEHAVIOUR_FIELDS,
    **LIMIT_FIELDS,
    "min_cacheable_tokens": _non_negative_int,
    "valid_keys": _key_list,
    "record_limit": _positive_int,
}

DEFAULTS: dict[str, Any] = {
    "reply_text": None,
    "tool_use": "auto",
    "tool_name": None,
    "tool_input": None,
    "text_deltas": 5,
    "delta_delay_ms": 0.0,
    # Effectively unlimited by default so benchmarks never trip them; tests lower them.
    "rpm": 1_000_000,
    "itpm": 1_000_000_000,
    "otpm": 1_000_000_000,
    "tpm": None,
    "min_cacheable_tokens": 1024,
    "valid_keys": None,
    "record_limit": 1000,
}


class EmulatorConfig:
    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}
        self.keys: dict[str, dict[str, Any]] = {}
        self._behaviours: dict[str, Behaviour] = {}
        self.reset()

    def reset(self) -> None:
        self.settings = copy.deepcopy(DEFAULTS)
        self.keys = {}
        self._behaviours = {}

    def update(self, payload: Any) -> None:
        """Validate everything first, then apply, so a bad update changes nothing."""
        if not isinstance(payload, dict):
            raise invalid_request("config: expected a JSON object")
        settings = {
            name: _validate(GLOBAL_FIELDS, name, value, "")
            for name, value in payload.items()
            if name != "keys"
        }
        keys = payload.get("keys") or {}
        if not isinstance(keys, dict):
            raise invalid_request("keys: expected an object of key -> settings")
        key_updates: dict[str, dict[str, Any] | None] = {}
        for key, overrides in keys.items():
            if overrides is None:
                key_updates[key] = None
                continue
            if not isinstance(overrides, dict):
                raise invalid_request(f"keys.{key}: expected a JSON object or null")
            key_updates[key] = {
                name: _validate(KEY_FIELDS, name, value, f"keys.{key}.")
                for name, value in overrides.items()
            }
        self.settings.update(settings)
        for key, overrides in key_updates.items():
            if overrides is None:
                self.keys.pop(key, None)
            else:
                self.keys.setdefault(key, {}).update(overrides)
        self._behaviours = {}

    def to_dict(self) -> dict[str, Any]:
        settings = dict(self.settings)
        if settings["valid_keys"] is not None:
            settings["valid_keys"] = sorted(settings["valid_keys"])
        return {**settings, "keys": copy.deepcopy(self.keys)}

    @property
    def valid_keys(self) -> frozenset[str] | None:
        return self.settings["valid_keys"]

    @property
    def min_cacheable_tokens(self) -> int:
        return self.settings["min_cacheable_tokens"]

    @property
    def record_limit(self) -> int:
        return self.settings["record_limit"]

    def _value(self, key: str, name: str) -> Any:
        overrides = self.keys.get(key)
        if overrides is not None and overrides.get(name) is not None:
            return overrides[name]
        return self.settings[name]

    def behaviour_for(self, key: str) -> Behaviour:
        behaviour = self._behaviours.get(key)
        if behaviour is None:
            if len(self._behaviours) >= MAX_CACHED_BEHAVIOURS:
                self._behaviours.clear()
            behaviour = Behaviour(**{name: self._value(key, name) for name in BEHAVIOUR_FIELDS})
            self._behaviours[key] = behaviour
        return behaviour

    def limits_for(self, key: str) -> Limits:
        return Limits(**{name: self._value(key, name) for name in LIMIT_FIELDS})

    def workspace_for(self, key: str) -> str:
        """Cache isolation scope: the key itself unless it is configured into a workspace."""
        return self.keys.get(key, {}).get("workspace") or key


def _validate(fields: dict[str, Validator], name: str, value: Any, location: str) -> Any:
    validator = fields.get(name)
    if validator is None:
        raise invalid_request(f"{location}{name}: unknown setting")
    return validator(f"{location}{name}", value)
