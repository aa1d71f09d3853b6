"""Who is calling: the virtual key from x-api-key or Authorization: Bearer, cached briefly."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import UTC, datetime
from functools import partial

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.contracts import KeyContext
from accounts.selectors import virtual_key_resolve
from gateway.database_watch import DATABASE_ERRORS, STALE_WAIT_S, DatabaseWatch
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

    Revocation therefore takes effect within the cache TTL in every process. One lookup per
    key is in flight at a time, however many requests present it. When the database fails,
    keys already seen keep working from their last entry (DESIGN.md §5): a request waits at
    most STALE_WAIT_S for a lookup, and once a lookup has failed nobody waits at all; a
    single lookup every DATABASE_RETRY_S probes the database until one succeeds. A key never
    seen cannot be verified while the database is away.
    """

    def __init__(self, ttl_s: float | None = None) -> None:
        self.ttl_s: float = ttl_s if ttl_s is not None else settings.GATEHOUSE["CACHE_TTL_S"]
        self._entries: dict[str, tuple[float, KeyContext | None]] = {}
        self._lookups: dict[str, asyncio.Future[KeyContext | None]] = {}
        self._database = DatabaseWatch(
            what="key lookups", serving="keys already seen are served from the cache"
        )
        # Closes a connection a failed query left broken before the next lookup uses it.
        self._resolve = database_sync_to_async(virtual_key_resolve)

    def clear(self) -> None:
        self._entries.clear()

    async def authenticate(self, secret: str) -> KeyContext:
        digest = hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()
        entry = self._entries.get(digest)
        if entry is not None and time.monotonic() - entry[0] < self.ttl_s:
            context = entry[1]
        else:
            context = await self._refreshed(digest, secret, entry)
        if context is None:
            raise GatewayError("authentication_error", "Invalid API key.")
        if _has_ended(context):
            raise GatewayError("authentication_error", "This key has expired.")
        return context

    async def _refreshed(
        self, digest: str, secret: str, entry: tuple[float, KeyContext | None] | None
    ) -> KeyContext | None:
        if self._database.is_down:
            # Nobody waits on a database that failed: one lookup at a time probes it.
            if not self._lookups and self._database.probe_due():
                self._start_lookup(digest, secret)
            if entry is None:
                raise _cannot_verify()
            return entry[1]
        lookup = self._lookups.get(digest) or self._start_lookup(digest, secret)
        if entry is None:
            try:
                return await asyncio.shield(lookup)
            except DATABASE_ERRORS:
                raise _cannot_verify() from None
        try:
            return await asyncio.wait_for(asyncio.shield(lookup), STALE_WAIT_S)
        except (TimeoutError, *DATABASE_ERRORS):
            return entry[1]

    def _start_lookup(self, digest: str, secret: str) -> asyncio.Future[KeyContext | None]:
        lookup = asyncio.ensure_future(self._lookup(digest, secret))
        self._lookups[digest] = lookup
        lookup.add_done_callback(partial(self._lookup_done, digest))
        return lookup

    async def _lookup(self, digest: str, secret: str) -> KeyContext | None:
        try:
            context = await self._resolve(secret)
        except DATABASE_ERRORS as error:
            self._database.failed(error)
            raise
        self._database.answered()
        if len(self._entries) > 100_000:
            self._entries.clear()
        self._entries[digest] = (time.monotonic(), context)
        return context

    def _lookup_done(self, digest: str, lookup: asyncio.Future[KeyContext | None]) -> None:
        self._lookups.pop(digest, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved: waiters that gave up must not leave it unlogged


def _cannot_verify() -> GatewayError:
    return GatewayError("api_error", "The gateway cannot verify this key right now; please retry.")


def _has_ended(context: KeyContext) -> bool:
    """Whether the key or the secret it was given by has expired; the clock is read only for
    keys that can expire (timezone.now() reads the settings on every call)."""
    if context.expires_at is None and context.secret_valid_until is None:
        return False
    wall_now = datetime.now(UTC)
    return (context.expires_at is not None and context.expires_at <= wall_now) or (
        context.secret_valid_until is not None and context.secret_valid_until <= wall_now
    )
