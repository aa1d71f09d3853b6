"""Which Claude Code session (and subagent) a request belongs to."""

from __future__ import annotations

import re
from typing import Any

import orjson

LEGACY_USER_ID = re.compile(r"^user_([0-9a-f]{64})_account_([0-9a-f-]*)_session_([0-9a-f-]{36})$")
MAX_ID_LENGTH = 100


def session_id_from(header_value: str | None, body: dict[str, Any] | None) -> str:
    """The header wins; else metadata.user_id in its JSON-string or legacy form; else ''."""
    if header_value:
        return header_value[:MAX_ID_LENGTH]
    if not body:
        return ""
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return ""
    user_id = metadata.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        return ""
    if user_id.startswith("{"):
        try:
            decoded = orjson.loads(user_id)
        except orjson.JSONDecodeError:
            return ""
        session = decoded.get("session_id") if isinstance(decoded, dict) else None
        return session[:MAX_ID_LENGTH] if isinstance(session, str) else ""
    match = LEGACY_USER_ID.match(user_id)
    return match.group(3) if match else ""
