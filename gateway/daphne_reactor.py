"""Daphne's Server, with the Twisted reactor it installs running on uvloop.

Daphne installs Twisted's asyncio reactor when `daphne.server` is first imported, on an
event loop it makes then with `asyncio.new_event_loop()`: the standard library's, whose
scheduling, selector and socket transports are Python. Everything of the gateway under
Daphne runs on that loop, the upstream client's connections included. Made while uvloop's
policy is in place, it is uvloop's loop (written in C), which Twisted's asyncio reactor drives
through the same calls (the pairing Scrapy documents for its ASYNCIO_EVENT_LOOP setting).
The process's default policy is put back at once: nothing else is changed.

Import `Server` from here, before anything else imports `daphne.server`.
"""

from __future__ import annotations

import asyncio

import uvloop

_default_policy = asyncio.get_event_loop_policy()
asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
try:
    from daphne.server import Server  # noqa: E402 - installs the reactor on uvloop's loop
finally:
    asyncio.set_event_loop_policy(_default_policy)

__all__ = ["Server"]
