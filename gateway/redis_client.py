"""The asyncio Redis client each process shares state through (pool state, budget ledger).

redis-py's default pool refuses a command with `MaxConnectionsError` once 100 are in flight,
and the callers take any Redis error for an outage: a burst of a few hundred concurrent
requests would switch pooling and budgets to in-process counting for seconds, with Redis
up. Here connections are bounded and waited for instead: a command past the bound waits
its turn, up to the Redis timeout, and only then counts as Redis failing.

Each connection packs its commands with hiredis (see `HiredisCommandPacking`).

Redis's maintenance notifications (a Redis Enterprise feature over RESP3; these clients
speak RESP2) are switched off: redis-py 8 leaves them at "auto", and while they are on, its
asyncio pool hands out an idle connection without checking it, so after Redis closed it (a
restart, its idle `timeout`) the next command on it fails, and a failure here is taken for
an outage.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import hiredis
from django.conf import settings

MAX_CONNECTIONS = 64  # per client and process; a command takes well under a millisecond


class HiredisCommandPacking:
    """Packs a command in one call to hiredis instead of redis-py's per-argument Python loop.

    redis-py's synchronous client does this whenever hiredis is installed; its asyncio client
    does not, and a budget admission (EVALSHA with two dozen keys and arguments) spent about
    a fifth of its client-side CPU there. The bytes on the wire are the same: hiredis
    formats str (UTF-8), bytes, int and float exactly as redis-py's encoder does. Anything
    else (an encoding other than UTF-8, a value redis-py refuses) takes redis-py's own path,
    so its errors stay its own."""

    encoder: Any

    def pack_command(self, *args: Any) -> list[bytes]:
        encoder = self.encoder
        if encoder.encoding == "utf-8" and encoder.encoding_errors == "strict":
            # Like redis-py: a multi-word command name ('CONFIG GET') goes as separate words.
            first = args[0]
            if isinstance(first, str):
                args = (*first.encode().split(), *args[1:])
            elif b" " in first:
                args = (*first.split(), *args[1:])
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass  # a memoryview, or a value redis-py refuses with its own DataError
        return super().pack_command(*args)  # type: ignore[misc]


@cache
def hiredis_packing(connection_class: type) -> type:
    """`connection_class` (plain, TLS or Unix socket, as the URL chose) packing with hiredis."""
    return type(
        f"HiredisPacked{connection_class.__name__}",
        (HiredisCommandPacking, connection_class),
        {},
    )


def shared_async_client(url: str, **connection_options: Any) -> Any:
    """A client whose commands wait (bounded by GATEHOUSE_REDIS_TIMEOUT) for a free
    connection; `connection_options` go to each connection (e.g. `retry`)."""
    import redis.asyncio as redis_asyncio
    from redis.maint_notifications import MaintNotificationsConfig

    timeout = settings.GATEHOUSE["REDIS_TIMEOUT_S"]
    pool = redis_asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
        **connection_options,
    )
    url_class: type = pool.connection_class
    pool.connection_class = hiredis_packing(url_class)
    return redis_asyncio.Redis.from_pool(pool)
