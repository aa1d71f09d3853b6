"""The asyncio Redis client each process shares state through (pool state, budget ledger).

redis-py's default pool refuses a command with `MaxConnectionsError` once 100 are in flight,
and the callers take any Redis error for an outage: a burst of a few hundred concurrent
requests would switch pooling and budgets to in-process counting for seconds, with Redis
up. Here connections are bounded and waited for instead: a command past the bound waits
its turn, up to the Redis timeout, and only then counts as Redis failing.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

MAX_CONNECTIONS = 64  # per client and process; a command takes well under a millisecond


def shared_async_client(url: str, **connection_options: Any) -> Any:
    """A client whose commands wait (bounded by GATEHOUSE_REDIS_TIMEOUT) for a free
    connection; `connection_options` go to each connection (e.g. `retry`)."""
    import redis.asyncio as redis_asyncio

    timeout = settings.GATEHOUSE["REDIS_TIMEOUT_S"]
    pool = redis_asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        **connection_options,
    )
    return redis_asyncio.Redis.from_pool(pool)
