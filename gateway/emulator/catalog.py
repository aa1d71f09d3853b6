"""The model catalog served by `GET /v1/models` (the first-party list as of 2026-08-22).

Ordered newest first like the real endpoint; pagination with `limit`, `after_id`,
`before_id` and the `first_id`/`last_id`/`has_more` envelope.
"""

from __future__ import annotations

from typing import Any

from gateway.emulator.errors import EmulatorError, invalid_request

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000
ONE_MILLION = 1_000_000

# id, display name, created_at, context window, max output tokens
_MODELS: tuple[tuple[str, str, str, int, int], ...] = (
    ("claude-opus-5", "Claude Opus 5", "2026-07-24T00:00:00Z", ONE_MILLION, 128_000),
    ("claude-sonnet-5", "Claude Sonnet 5", "2026-06-30T00:00:00Z", ONE_MILLION, 128_000),
    ("claude-fable-5", "Claude Fable 5", "2026-06-09T00:00:00Z", ONE_MILLION, 128_000),
    ("claude-opus-4-8", "Claude Opus 4.8", "2026-05-28T00:00:00Z", ONE_MILLION, 128_000),
    ("claude-opus-4-7", "Claude Opus 4.7", "2026-04-16T00:00:00Z", ONE_MILLION, 128_000),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z", ONE_MILLION, 128_000),
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z", ONE_MILLION, 128_000),
    ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-01T00:00:00Z", 200_000, 64_000),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z", 200_000, 64_000),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z", 200_000, 64_000),
)

MODELS: tuple[dict[str, Any], ...] = tuple(
    {
        "type": "model",
        "id": model_id,
        "display_name": display_name,
        "created_at": created_at,
        "max_input_tokens": context_window,
        "max_tokens": max_output,
    }
    for model_id, display_name, created_at, context_window, max_output in _MODELS
)
MODELS_BY_ID = {model["id"]: model for model in MODELS}
_POSITION = {model["id"]: position for position, model in enumerate(MODELS)}


def model_info(model_id: str) -> dict[str, Any]:
    model = MODELS_BY_ID.get(model_id)
    if model is None:
        raise EmulatorError(404, f"model: {model_id}", error_type="not_found_error")
    return model


def model_page(query: dict[str, str]) -> dict[str, Any]:
    limit = _limit(query.get("limit"))
    after_id, before_id = query.get("after_id"), query.get("before_id")
    if after_id and before_id:
        raise invalid_request("Only one of after_id and before_id may be provided")
    if before_id:
        end = _position(before_id, "before_id")
        start = max(0, end - limit)
        page, has_more = MODELS[start:end], start > 0
    else:
        start = _position(after_id, "after_id") + 1 if after_id else 0
        page, has_more = MODELS[start : start + limit], start + limit < len(MODELS)
    return {
        "data": list(page),
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": has_more,
    }


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise invalid_request(f"limit: Input should be between 1 and {MAX_PAGE_SIZE}")
    return int(raw)


def _position(model_id: str, name: str) -> int:
    if model_id not in _POSITION:
        raise invalid_request(f"{name}: unknown model id {model_id!r}")
    return _POSITION[model_id]
