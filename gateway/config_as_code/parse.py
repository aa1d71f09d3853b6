"""Reading the file: YAML, then pydantic, with errors that point at an entry and a field.

Every problem is reported as `FILE: section[index] (name): field: message`, so the person
fixing the file never has to guess which of forty users is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from gateway.config_as_code.schema import SECTIONS, GatehouseConfig, PriceConfig

# The field that names an entry of each section in error messages.
ENTRY_NAME_FIELD = {
    "cost_centers": "code",
    "users": "username",
    "providers": "name",
    "routes": "name",
    "prices": "model",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file, located as precisely as we can."""

    where: str
    field: str
    message: str

    def render(self, source: str) -> str:
        return ": ".join(part for part in (source, self.where, self.field, self.message) if part)


class ConfigError(Exception):
    """The file cannot be applied; `str()` lists every problem, one per line."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(problem.render(source) for problem in self.problems))


def entry_label(section: str, index: int, name: object) -> str:
    """`routes[0] (default)`: the section, the position and the entry's own name."""
    if isinstance(name, str | int) and not isinstance(name, bool) and str(name):
        return f"{section}[{index}] ({name})"
    return f"{section}[{index}]"


# --- YAML ------------------------------------------------------------------------------------


class _ConfigLoader(yaml.SafeLoader):
    """YAML 1.2 booleans (`policy: off` stays the string "off") and no duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeConstructor reports unhashable keys itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BOOL_TAG = "tag:yaml.org,2002:bool"
_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _yaml_problem(error: yaml.YAMLError) -> Problem:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        message = error.problem or "invalid YAML"
        if error.context:
            message = f"{message} ({error.context})"
        return Problem(f"line {mark.line + 1}, column {mark.column + 1}", "", message)
    return Problem("", "", f"invalid YAML: {error}")


# --- validation ------------------------------------------------------------------------------


def _field_path(parts: Sequence[int | str]) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _message(error: ErrorDetails) -> str:
    if error["type"] == "missing":
        return "required"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return error["msg"]


def _problem_from_error(error: ErrorDetails, data: Mapping[str, Any]) -> Problem:
    loc = error["loc"]
    if not loc:
        return Problem("", "", _message(error))
    section = str(loc[0])
    if len(loc) == 1 and error["type"] == "extra_forbidden":
        return Problem("", section, f"unknown section; expected one of {', '.join(SECTIONS)}")
    if len(loc) == 1 or not isinstance(loc[1], int):
        return Problem("", _field_path(loc), _message(error))
    index = loc[1]
    entries = data.get(section)
    entry = entries[index] if isinstance(entries, list) and index < len(entries) else None
    name = entry.get(ENTRY_NAME_FIELD[section]) if isinstance(entry, Mapping) else None
    return Problem(entry_label(section, index, name), _field_path(loc[2:]), _message(error))


def _duplicates(
    section: str, entries: Sequence[Any], key: Any, field: str, what: str
) -> list[Problem]:
    first_index: dict[Any, int] = {}
    problems = []
    for index, entry in enumerate(entries):
        identity = key(entry)
        if identity in first_index:
            name = getattr(entry, ENTRY_NAME_FIELD[section])
            problems.append(
                Problem(
                    entry_label(section, index, name),
                    field,
                    f"duplicate of {section}[{first_index[identity]}] ({what})",
                )
            )
        else:
            first_index[identity] = index
    return problems


def _duplicate_key_labels(config: GatehouseConfig) -> list[Problem]:
    problems = []
    for index, provider in enumerate(config.providers):
        first_index: dict[str, int] = {}
        for key_index, upstream_key in enumerate(provider.keys):
            if upstream_key.label in first_index:
                problems.append(
                    Problem(
                        entry_label("providers", index, provider.name),
                        f"keys[{key_index}].label",
                        f"duplicate of keys[{first_index[upstream_key.label]}]",
                    )
                )
            else:
                first_index[upstream_key.label] = key_index
    return problems


def _duplicate_problems(config: GatehouseConfig) -> list[Problem]:
    def effective_key(price: PriceConfig) -> tuple[str | None, str, datetime]:
        return (price.provider, price.model, price.effective_from)

    return [
        *_duplicates("cost_centers", config.cost_centers, lambda e: e.code, "code", "same code"),
        *_duplicates("users", config.users, lambda e: e.username, "username", "same username"),
        *_duplicates("providers", config.providers, lambda e: e.name, "name", "same name"),
        *_duplicate_key_labels(config),
        *_duplicates("routes", config.routes, lambda e: e.name, "name", "same name"),
        *_duplicates(
            "prices",
            config.prices,
            effective_key,
            "effective_from",
            "same provider, model and effective_from",
        ),
    ]


def config_parse(text: str, *, source: str) -> GatehouseConfig:
    """Parse and validate YAML text; `source` names the file in every error message."""
    try:
        data = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError(source, [_yaml_problem(error)]) from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            source, [Problem("", "", f"the top level must be a mapping of {', '.join(SECTIONS)}")]
        )
    try:
        config = GatehouseConfig.model_validate(data)
    except ValidationError as error:
        problems = [
            _problem_from_error(detail, data)
            for detail in error.errors(include_url=False, include_input=False)
        ]
        raise ConfigError(source, problems) from None
    duplicates = _duplicate_problems(config)
    if duplicates:
        raise ConfigError(source, duplicates)
    return config


def config_load(path: Path | str) -> GatehouseConfig:
    """Read, parse and validate a config file (no database access)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(source, [Problem("", "", f"cannot read the file: {reason}")]) from None
    return config_parse(text, source=source)
