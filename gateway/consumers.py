"""WebSocket consumers (Channels), mounted under /ws/ by config/asgi.py."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from gateway import live_feed


class LiveFeedConsumer(AsyncJsonWebsocketConsumer):
    """Pushes every recorded request to staff who may read the request log.

    Anyone else is accepted only to be closed at once with a code that says why
    (4401 not signed in, 4403 not allowed), which a browser can show, unlike a refused
    handshake. The feed is one-way: whatever the client sends is ignored.
    """

    joined_group: str | None = None

    async def connect(self) -> None:
        refusal = await database_sync_to_async(live_feed.refusal_code)(self.scope.get("user"))
        if refusal is not None:
            await self.accept()
            await self.close(code=refusal)
            return
        live_feed.attach_server_loop(asyncio.get_running_loop())
        self.joined_group = live_feed.group_name()
        await self.channel_layer.group_add(self.joined_group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.joined_group is not None:
            await self.channel_layer.group_discard(self.joined_group, self.channel_name)
            self.joined_group = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return None

    async def feed_requests(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "requests", "requests": event["requests"]})
