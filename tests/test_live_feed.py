"""The live request feed: staff receive each row the recorder writes; nobody else may
subscribe; publishing never holds up or breaks recording."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client

from accounts.models import User, VirtualKey
from config.asgi import application
from gateway import live_feed
from gateway.live_feed import feed_entries
from gateway.models import RequestLog
from gateway.recorder import RequestRecorder
from tests.ui.traffic import earlier_today, request_log

ORIGIN = (b"origin", b"http://127.0.0.1")


def session_cookie(user: User) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


async def connect(user: User | None, origin: tuple[bytes, bytes] = ORIGIN):
    headers = [origin]
    if user is not None:
        headers.append(await database_sync_to_async(session_cookie)(user))
    communicator = WebsocketCommunicator(application, live_feed.SOCKET_PATH, headers=headers)
    connected, detail = await communicator.connect(timeout=5)
    return communicator, connected, detail


def write_like_the_recorder(rows: list[dict]) -> None:
    """What the recorder's writer thread does with a batch (run it on a thread of its own)."""
    try:
        RequestRecorder()._write(rows)
    finally:
        connection.close()


def logged(request_id_prefix: str) -> int:
    return RequestLog.objects.filter(request_id__startswith=request_id_prefix).count()


def clerk_without_request_log_access() -> User:
    clerk = User.objects.create_user("clerk", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_costcenter"))
    return clerk


def row_for(user: User, request_id: str, **overrides) -> dict:
    """A row as the proxy hands it to the recorder (ids, not objects)."""
    return {
        "request_id": request_id,
        "started_at": earlier_today(1),
        "user_id": user.pk,
        "virtual_key_id": VirtualKey.objects.filter(owner=user).values_list("pk", flat=True)[0],
        "endpoint": "/v1/messages",
        "model_requested": "claude-sonnet-4-5",
        "model_served": "claude-sonnet-4-5",
        "status_code": 200,
        "input_tokens": 1200,
        "output_tokens": 80,
        "cache_read_tokens": 300,
        "cost_usd": Decimal("0.0123"),
        "is_priced": True,
        "latency_ms": 640,
        "ttfb_ms": 120,
        "session_id": "sess-live",
        **overrides,
    }


@pytest.mark.django_db(transaction=True)
async def test_staff_see_each_request_as_soon_as_it_is_written(staff, alice):
    communicator, connected, _ = await connect(staff)
    assert connected
    rows = await database_sync_to_async(
        lambda: [
            row_for(alice.user, "req_live_1"),
            row_for(alice.user, "req_live_2", status_code=529),
        ]
    )()

    written_at = time.monotonic()
    await asyncio.to_thread(write_like_the_recorder, rows)
    message = await communicator.receive_json_from(timeout=1)
    delay = time.monotonic() - written_at

    assert message["type"] == "requests"
    first, second = message["requests"]
    assert first == {
        "request_id": "req_live_1",
        "started_at": rows[0]["started_at"].isoformat(),
        "user": "alice",
        "model": "claude-sonnet-4-5",
        "status": 200,
        "outcome": "ok",
        "input_tokens": 1200,
        "output_tokens": 80,
        "cache_read_tokens": 300,
        "cache_write_tokens": 0,
        "cost": "$0.0123",
        "latency_ms": 640,
        "ttfb_ms": 120,
        "session_id": "sess-live",
    }
    assert (second["request_id"], second["status"]) == ("req_live_2", 529)
    assert delay < 1.0
    assert await database_sync_to_async(logged)("req_live_") == 2
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_non_staff_are_closed_with_4403(alice):
    communicator, connected, _ = await connect(alice.user)

    assert connected
    assert await communicator.receive_output(timeout=5) == {
        "type": "websocket.close",
        "code": live_feed.CLOSE_FORBIDDEN,
    }


@pytest.mark.django_db(transaction=True)
async def test_staff_who_may_not_read_the_request_log_are_closed_with_4403():
    clerk = await database_sync_to_async(clerk_without_request_log_access)()

    communicator, connected, _ = await connect(clerk)

    assert connected
    output = await communicator.receive_output(timeout=5)
    assert output["code"] == live_feed.CLOSE_FORBIDDEN


@pytest.mark.django_db(transaction=True)
async def test_anonymous_visitors_are_closed_with_4401():
    communicator, connected, _ = await connect(None)

    assert connected
    output = await communicator.receive_output(timeout=5)
    assert output["code"] == live_feed.CLOSE_UNAUTHENTICATED


@pytest.mark.django_db(transaction=True)
async def test_a_page_from_another_site_cannot_open_the_feed(staff):
    communicator, connected, _ = await connect(staff, origin=(b"origin", b"https://evil.example"))

    assert not connected


@pytest.mark.django_db(transaction=True)
async def test_refused_and_closed_sockets_receive_nothing(staff, alice):
    watcher, _, _ = await connect(staff)
    outsider, _, _ = await connect(alice.user)
    await outsider.receive_output(timeout=5)  # the close
    await watcher.disconnect()

    rows = await database_sync_to_async(lambda: [row_for(alice.user, "req_nobody")])()
    await asyncio.to_thread(write_like_the_recorder, rows)

    assert await outsider.receive_nothing(timeout=0.3)
    assert await database_sync_to_async(logged)("req_nobody") == 1


def test_recording_goes_on_when_the_channel_layer_fails(db, alice, monkeypatch, caplog):
    def broken_layer():
        raise ConnectionError("redis is down")

    monkeypatch.setattr(live_feed, "get_channel_layer", broken_layer)

    with caplog.at_level(logging.WARNING, logger="gateway.live_feed"):
        RequestRecorder()._write([row_for(alice.user, "req_survives")])

    assert RequestLog.objects.filter(request_id="req_survives").exists()
    assert "Live feed: could not publish 1 requests" in caplog.text


class StuckLayer(BaseChannelLayer):
    """A channel layer whose group_send never finishes (a Redis that stopped answering)."""

    async def group_send(self, group, message):
        await asyncio.sleep(3600)


def test_a_stuck_channel_layer_never_holds_up_the_writer(db, alice, monkeypatch, caplog):
    monkeypatch.setattr(live_feed, "get_channel_layer", StuckLayer)
    monkeypatch.setattr(live_feed, "SEND_TIMEOUT_S", 0.2)
    row = row_for(alice.user, "req_stuck")

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="gateway.live_feed"):
        live_feed.publish_requests([row])
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 5
        while "group_send failed" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)

    assert elapsed < 0.2
    assert "Live feed: group_send failed" in caplog.text


REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/13"


@pytest.fixture
def redis_layer(monkeypatch):
    """A real Redis channel layer of the test's own, as the feed's and the consumers'."""
    layer = RedisChannelLayer(hosts=[REDIS_URL], prefix=f"gatehouse-test-{uuid.uuid4().hex}")
    monkeypatch.setattr(live_feed, "get_channel_layer", lambda: layer)
    return layer


class CountingFeedEntries:
    def __init__(self):
        self.batches = 0

    def __call__(self, logs):
        self.batches += 1
        return feed_entries(logs)


@pytest.mark.django_db(transaction=True)
async def test_with_nobody_watching_through_redis_a_batch_becomes_no_feed_lines(
    alice, redis_layer, monkeypatch
):
    built = CountingFeedEntries()
    monkeypatch.setattr(live_feed, "feed_entries", built)
    rows = await database_sync_to_async(lambda: [row_for(alice.user, "req_unwatched")])()

    await asyncio.to_thread(live_feed.publish_requests, rows)

    assert built.batches == 0


@pytest.mark.django_db(transaction=True)
async def test_a_watcher_in_another_process_receives_the_batch_through_redis(
    alice, redis_layer, monkeypatch
):
    built = CountingFeedEntries()
    monkeypatch.setattr(live_feed, "feed_entries", built)
    # another process's consumer: a layer of its own on the same Redis, joined to the group
    elsewhere = RedisChannelLayer(hosts=[REDIS_URL], prefix=redis_layer.prefix)
    channel = await elsewhere.new_channel()
    await elsewhere.group_add(live_feed.group_name(), channel)
    rows = await database_sync_to_async(lambda: [row_for(alice.user, "req_watched")])()

    try:
        await asyncio.to_thread(live_feed.publish_requests, rows)
        message = await asyncio.wait_for(elsewhere.receive(channel), timeout=5)
    finally:
        await elsewhere.group_discard(live_feed.group_name(), channel)
        await elsewhere.flush()

    assert built.batches == 1
    assert [entry["request_id"] for entry in message["requests"]] == ["req_watched"]


@pytest.mark.django_db(transaction=True)
async def test_once_every_watcher_has_left_a_batch_becomes_no_feed_lines(staff, alice, monkeypatch):
    watcher, connected, _ = await connect(staff)
    assert connected
    await watcher.disconnect()
    built = CountingFeedEntries()
    monkeypatch.setattr(live_feed, "feed_entries", built)

    rows = await database_sync_to_async(lambda: [row_for(alice.user, "req_after_all_left")])()
    await asyncio.to_thread(write_like_the_recorder, rows)

    assert built.batches == 0
    assert await database_sync_to_async(logged)("req_after_all_left") == 1


def test_feed_entries_carry_no_prompt_and_no_secret(db, alice):
    log = request_log(started_at=earlier_today(1), user=alice.user, cost=None)

    [entry] = live_feed.feed_entries([log])

    assert entry["cost"] == "unpriced"
    assert entry["user"] == "alice"
    assert set(entry) == {
        "request_id",
        "started_at",
        "user",
        "model",
        "status",
        "outcome",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost",
        "latency_ms",
        "ttfb_ms",
        "session_id",
    }


def test_the_live_page_is_for_staff_who_may_read_traffic(client, staff, alice):
    client.force_login(alice.user)
    assert client.get("/admin/live/").status_code == 302

    client.force_login(staff)
    response = client.get("/admin/live/")

    assert response.status_code == 200
    assert b'data-socket-path="/ws/live/requests/"' in response.content
    assert b'data-session-url="/admin/sessions/__session__/"' in response.content


def test_group_names_are_valid_for_any_redis_prefix(settings):
    settings.GATEHOUSE = {**settings.GATEHOUSE, "REDIS_PREFIX": "team:a/b"}

    assert live_feed.group_name() == "team-a-b.live-requests"
