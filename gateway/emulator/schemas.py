"""Build a small JSON value that satisfies a JSON schema.

Used for structured output (`output_config.format` = json_schema, e.g. Claude Code's
session-title side request) and for `tool_use` inputs built from a tool's `input_schema`.
Strings take a caller-supplied phrase so the value reads like an answer to the prompt.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 8


def sample_from_schema(schema: Any, *, phrase: str) -> Any:
    root = schema if isinstance(schema, dict) else {}
    return _sample(root, root=root, phrase=phrase, depth=0)


def _sample(schema: dict[str, Any], *, root: dict[str, Any], phrase: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        return None
    schema = _resolve_ref(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options and isinstance(options[0], dict):
            return _sample(options[0], root=root, phrase=phrase, depth=depth + 1)
    schema_type = _primary_type(schema)
    if schema_type == "object":
        properties = schema.get("properties") or {}
        return {
            name: _sample(
                sub if isinstance(sub, dict) else {}, root=root, phrase=phrase, depth=depth + 1
            )
            for name, sub in properties.items()
        }
    if schema_type == "array":
        if schema.get("maxItems") == 0:
            return []
        items = schema.get("items")
        if not isinstance(items, dict):
            items = {}
        count = max(1, int(schema.get("minItems") or 1))
        return [_sample(items, root=root, phrase=phrase, depth=depth + 1) for _ in range(count)]
    if schema_type in ("integer", "number"):
        return _number(schema, integer=schema_type == "integer")
    if schema_type == "boolean":
        return True
    if schema_type == "null":
        return None
    return _string(schema, phrase)


def _resolve_ref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow local `#/...` references; anything else is treated as an empty schema."""
    seen = 0
    while isinstance(schema.get("$ref"), str) and seen < MAX_DEPTH:
        reference = schema["$ref"]
        if not reference.startswith("#"):
            return {}
        target: Any = root
        for part in reference.lstrip("#").strip("/").split("/"):
            if not part:
                continue
            target = target.get(part) if isinstance(target, dict) else None
        schema = target if isinstance(target, dict) else {}
        seen += 1
    return schema


def _primary_type(schema: dict[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        declared = next((kind for kind in declared if kind != "null"), "null")
    if isinstance(declared, str):
        return declared
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    value: float = 1
    minimum = schema.get("minimum", schema.get("exclusiveMinimum"))
    maximum = schema.get("maximum", schema.get("exclusiveMaximum"))
    if isinstance(minimum, int | float) and value < minimum:
        value = minimum + (1 if "exclusiveMinimum" in schema else 0)
    if isinstance(maximum, int | float) and value > maximum:
        value = maximum - (1 if "exclusiveMaximum" in schema else 0)
    return int(value) if integer else float(value)


def _string(schema: dict[str, Any], phrase: str) -> str:
    text = phrase or "emulated"
    min_length = schema.get("minLength")
    if isinstance(min_length, int) and len(text) < min_length:
        text = (text + " ") * (min_length // (len(text) + 1) + 1)
    max_length = schema.get("maxLength")
    if isinstance(max_length, int):
        text = text[:max_length]
    return text
