"""The live request feed: rows the recorder has just written, pushed to staff browsers.

The recorder's writer thread calls `publish_requests` after every successful write; each
`LiveFeedConsumer` (gateway/consumers.py) has joined one channel-layer group and forwards
what arrives to its WebSocket.

The writer thread never waits for the channel layer: it hands `group_send` to an event loop
and goes back to writing rows.
- In memory (no `REDIS_URL`): the layer's queues are asyncio objects of the server's event
  loop and must not be touched from another thread, so the send runs on that loop (consumers
  record it when they connect). No consumer in the group (none has connected, or all have
  left): nobody could receive, nothing is built or sent.
- Redis: the send runs on a small publisher loop of its own (one thread, its connections
  reused); consumers in every Gatehouse process receive it. The writer first asks Redis
  whether anyone has joined the group (one ZCOUNT): with nobody watching, a batch costs
  that instead of a model instance and a feed line per row and a username query (a tenth
  of the gateway's instructions a request in `make bench-instructions` with `BENCH_REDIS`).
Sends are bounded by a timeout and by how many may be in flight; failures are logged and
never reach the recorder.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import redis
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from accounts.formatting import format_money
from gateway.dashboard import can_view_traffic, usernames
from gateway.models import RequestLog

logger = logging.getLogger(__name__)

SOCKET_PATH = "/ws/live/requests/"
MESSAGE_TYPE = "feed.requests"  # handled by LiveFeedConsumer.feed_requests
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
SEND_TIMEOUT_S = 2.0
MAX_ENTRIES_PER_MESSAGE = 200
MAX_SENDS_IN_FLIGHT = 50

_server_loop: asyncio.AbstractEventLoop | None = None
_publisher_loop: asyncio.AbstractEventLoop | None = None
_publisher_lock = threading.Lock()
_in_flight = threading.BoundedSemaphore(MAX_SENDS_IN_FLIGHT)


def group_name() -> str:
    """One group per deployment: deployments sharing a Redis keep their feeds apart."""
    prefix = re.sub(r"[^A-Za-z0-9._-]", "-", settings.GATEHOUSE["REDIS_PREFIX"])
    return f"{prefix}.live-requests"[:99]


def refusal_code(user: Any) -> int | None:
    """The WebSocket close code for someone who may not watch; None for staff who may."""
    if user is None or not user.is_authenticated:
        return CLOSE_UNAUTHENTICATED
    return None if can_view_traffic(user) else CLOSE_FORBIDDEN


def attach_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The event loop the consumers of this process run on (in-memory layer only)."""
    global _server_loop
    _server_loop = loop


def feed_entry(log: RequestLog, username: str | None) -> dict[str, Any]:
    """What one line of the feed shows; no secret, no prompt."""
    priced = log.is_priced and log.cost_usd is not None
    return {
        "request_id": log.request_id,
        "started_at": log.started_at.isoformat() if log.started_at else None,
        "user": username or "",
        "model": log.model_served or log.model_requested,
        "status": log.status_code,
        "outcome": log.outcome,
        "input_tokens": log.input_tokens,
        "output_tokens": log.output_tokens,
        "cache_read_tokens": log.cache_read_tokens,
        "cache_write_tokens": log.cache_write_5m_tokens + log.cache_write_1h_tokens,
        "cost": format_money(log.cost_usd, 4) if priced else "unpriced",
        "latency_ms": log.latency_ms,
        "ttfb_ms": log.ttfb_ms,
        "session_id": log.session_id,
    }


def feed_entries(logs: Sequence[RequestLog]) -> list[dict[str, Any]]:
    names = usernames(log.user_id for log in logs)
    return [feed_entry(log, names.get(log.user_id) if log.user_id else None) for log in logs]


def recent_entries(limit: int = 25) -> list[dict[str, Any]]:
    """The newest rows already written, oldest first: what the page shows before it goes live."""
    logs = list(RequestLog.objects.order_by("-started_at", "-pk")[:limit])
    return feed_entries(logs[::-1])


def publish_requests(rows: Sequence[dict[str, Any]]) -> None:
    """Send freshly written rows (RequestLog field values) to every watcher. Called by the
    recorder's writer thread; the rows become model instances only when someone can watch."""
    if not rows:
        return
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        loop = _server_loop if isinstance(layer, InMemoryChannelLayer) else publisher_loop()
        if loop is None or loop.is_closed():
            return
        if isinstance(layer, InMemoryChannelLayer):
            if not layer.groups.get(group_name()):  # a dict lookup is safe from this thread
                return
        elif isinstance(layer, RedisChannelLayer) and not _anyone_watching(layer):
            return
        if not _in_flight.acquire(blocking=False):
            logger.warning(
                "Live feed: %d sends in flight, dropping %d requests",
                MAX_SENDS_IN_FLIGHT,
                len(rows),
            )
            return
        try:
            message = {
                "type": MESSAGE_TYPE,
                "requests": feed_entries(
                    [RequestLog(**row) for row in rows[-MAX_ENTRIES_PER_MESSAGE:]]
                ),
            }
            future = asyncio.run_coroutine_threadsafe(_bounded_group_send(layer, message), loop)
        except BaseException:
            _in_flight.release()
            raise
        future.add_done_callback(_sent)
    except Exception:
        logger.warning("Live feed: could not publish %d requests", len(rows), exc_info=True)


def _anyone_watching(layer: RedisChannelLayer) -> bool:
    """Whether a consumer in any process is in the feed's group, as `group_send` would find
    it: members older than the layer's group expiry do not count (it drops them)."""
    group = group_name()
    address = layer.hosts[layer.consistent_hash(group)].get("address")
    if address is None:  # a host given otherwise than by URL: let group_send find out
        return True
    client = _membership_clients.get(address)
    if client is None:
        client = redis.Redis.from_url(
            address, socket_timeout=SEND_TIMEOUT_S, socket_connect_timeout=SEND_TIMEOUT_S
        )
        _membership_clients[address] = client
    joined_since = int(time.time()) - layer.group_expiry
    return client.zcount(layer._group_key(group), joined_since, "+inf") > 0


_membership_clients: dict[str, redis.Redis] = {}


def publisher_loop() -> asyncio.AbstractEventLoop:
    """An event loop on a daemon thread of its own, started on first use."""
    global _publisher_loop
    with _publisher_lock:
        if _publisher_loop is None or _publisher_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="gatehouse-live-feed", daemon=True
            ).start()
            _publisher_loop = loop
        return _publisher_loop


async def _bounded_group_send(layer: BaseChannelLayer, message: dict[str, Any]) -> None:
    await asyncio.wait_for(layer.group_send(group_name(), message), timeout=SEND_TIMEOUT_S)


def _sent(future: Future[None]) -> None:
    _in_flight.release()
    if not future.cancelled() and future.exception() is not None:
        logger.warning("Live feed: group_send failed", exc_info=future.exception())
