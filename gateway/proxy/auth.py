"""Who is calling: the virtual key from x-api-key or Authorization: Bearer, cached briefly."""

from __future__ import annotations

import hashlib
import logging
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from accounts.contracts import KeyContext
from accounts.selectors import virtual_key_resolve
from gateway.errors import GatewayError

logger = logging.getLogger(__name__)


def presented_secret(x_api_key: str | None, authorization: str | None) -> str:
    """The one credential the client sent; both headers with different values is an error."""
    bearer = None
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise GatewayError(
                "authentication_error", "Authorization header must be 'Bearer <key>'."
            )
        bearer = value.strip()
    api_key = x_api_key.strip() if x_api_key else None
    if api_key and bearer and api_key != bearer:
        raise GatewayError(
            "authentication_error",
            "x-api-key and Authorization carry different keys; send one of them.",
        )
    secret = api_key or bearer
    if not secret:
        raise GatewayError(
            "authentication_error",
            "Missing credential: send your Gatehouse key as x-api-key or Bearer token.",
        )
    return secret


class KeyCache:
    """Resolved keys by the hash of their secret, for a few seconds, so steady traffic skips the DB.

    Revocation therefore takes effect within the cache TTL in every process.
    """

    def __init__(self, ttl_s: float | None = None) -> None:
        self.ttl_s: float = ttl_s if ttl_s is not None else settings.GATEHOUSE["CACHE_TTL_S"]
        self._entries: dict[str, tuple[float, KeyContext | None]] = {}
        self._resolve = sync_to_async(virtual_key_resolve)

    def clear(self) -> None:
        self._entries.clear()

    async def authenticate(self, secret: str) -> KeyContext:
        digest = hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is None or now - entry[0] >= self.ttl_s:
            try:
                context = await self._resolve(secret)
            except DatabaseError:
                if entry is None:
                    raise GatewayError(
                        "api_error", "The gateway cannot verify this key right now; please retry."
                    ) from None
                # The database is away: keys already seen keep working (DESIGN.md §5).
                logger.warning(
                    "Key lookup failed; serving the cached key while the database is down"
                )
                context = entry[1]
            else:
                if len(self._entries) > 100_000:
                    self._entries.clear()
                self._entries[digest] = (now, context)
        else:
            context = entry[1]
        if context is None:
            raise GatewayError("authentication_error", "Invalid API key.")
        wall_now = timezone.now()
        if (context.expires_at is not None and context.expires_at <= wall_now) or (
            context.secret_valid_until is not None and context.secret_valid_until <= wall_now
        ):
            raise GatewayError("authentication_error", "This key has expired.")
        return context
