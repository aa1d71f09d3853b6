"""GET /v1/models[/{id}]: the models this key may use, in Anthropic's list shape."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote

import orjson

from accounts.contracts import KeyContext
from gateway.errors import GatewayError
from gateway.routing import model_allowed, select_route
from gateway.snapshot import GatewaySnapshot

GLOB_CHARS = frozenset("*?[")
CATALOG_CREATED_AT = "2025-01-01T00:00:00Z"


def visible_models(key: KeyContext, snapshot: GatewaySnapshot) -> list[str]:
    """Catalog models and literal route patterns that this key is allowed and routed for."""
    candidates = set(snapshot.known_models)
    candidates.update(
        r.model_pattern for r in snapshot.routes if not GLOB_CHARS.intersection(r.model_pattern)
    )
    return sorted(
        (
            model
            for model in candidates
            if model_allowed(model, key.allowed_models)
            and select_route(snapshot.routes, model, key.cost_center_id, key.tags) is not None
        ),
        reverse=True,
    )


def model_info(model: str) -> dict[str, str]:
    return {
        "type": "model",
        "id": model,
        "display_name": display_name(model),
        "created_at": CATALOG_CREATED_AT,
    }


def display_name(model: str) -> str:
    words = [word for word in model.split("-") if not (word.isdigit() and len(word) == 8)]
    if words and words[0] == "claude":
        words = words[1:]
    return "Claude " + " ".join(word.capitalize() if not word.isdigit() else word for word in words)


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise GatewayError(
            "invalid_request_error", "limit: Input should be an integer between 1 and 1000"
        )
    return int(raw)


def respond(
    path: str, query_string: bytes, key: KeyContext, snapshot: GatewaySnapshot
) -> tuple[int, bytes]:
    models = visible_models(key, snapshot)
    if path != "/v1/models":
        model_id = unquote(path[len("/v1/models/") :])
        if model_id not in models:
            raise GatewayError("not_found_error", f"model: {model_id}")
        return 200, orjson.dumps(model_info(model_id))
    query = {name: values[-1] for name, values in parse_qs(query_string.decode("latin-1")).items()}
    limit = _limit(query.get("limit"))
    after_id, before_id = query.get("after_id"), query.get("before_id")
    if after_id is not None and before_id is not None:
        raise GatewayError("invalid_request_error", "Use either after_id or before_id, not both.")
    if after_id is not None:
        start = models.index(after_id) + 1 if after_id in models else len(models)
        page = models[start : start + limit]
        has_more = start + limit < len(models)
    elif before_id is not None:
        end = models.index(before_id) if before_id in models else 0
        page = models[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        page = models[:limit]
        has_more = limit < len(models)
    data = [model_info(model) for model in page]
    return 200, orjson.dumps(
        {
            "data": data,
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
            "has_more": has_more,
        }
    )
