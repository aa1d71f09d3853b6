"""The Python floor: a bare ASGI pass-through with no authentication, routing, budgets,
usage tap or logging, to measure Gatehouse against on the same machine.

`BENCH_GATEWAY_ASGI=bench.floor:application make bench` serves it in the gateway's place
(under Daphne, or Granian with BENCH_SERVER=granian). It forwards the request body to the
emulator with aiohttp, the fastest Python client there is, and relays the answer chunk by
chunk, so what Gatehouse adds on top of it is what its features and httpx cost.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAM_HEADERS = {
    "x-api-key": "floor",
    "anthropic-version": "2023-06-01",
    "content-type": "application/json",
}
_session: aiohttp.ClientSession | None = None


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _session
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if _session is None:
        _session = aiohttp.ClientSession(os.environ["BENCH_FLOOR_UPSTREAM"], auto_decompress=False)
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    headers = dict(UPSTREAM_HEADERS)
    for name, value in scope["headers"]:
        if name.startswith(b"x-emulator-"):
            headers[name.decode()] = value.decode()
    async with _session.post(scope["path"], data=body, headers=headers) as upstream:
        content_type = upstream.headers.get("content-type", "application/json").encode()
        await send(
            {
                "type": "http.response.start",
                "status": upstream.status,
                "headers": [(b"content-type", content_type)],
            }
        )
        async for chunk in upstream.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
