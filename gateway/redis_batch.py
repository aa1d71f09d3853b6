"""Lua script calls made together travel together: one pipeline, one write, one reply read.

Under load the proxy's requests move through the event loop together: several admissions
are asked for in the same turn of the loop, and several settlements. Sent one by
one, each pays redis-py's whole per-command path (a pooled connection taken and given back,
a timeout armed, a retry wrapper, a write, a read), which in the Redis shape cost the
gateway nearly as much CPU as all of its own Python code (cProfile, stream c=32). Here the
calls made before the loop turns are sent as one non-transactional pipeline: each script
still runs atomically on its own, in the order asked, and each caller gets its own reply or
its own error.

A call costs no more than one turn of the loop in waiting: the batch leaves as soon as the
callbacks that were ready when the first call came have run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from redis.exceptions import NoScriptError, ResponseError


@dataclass
class _Call:
    script: Any  # redis-py's Script: its `sha`, its source, and the client it belongs to
    keys: list[str]
    args: list[str]
    reply: asyncio.Future[Any] = field(repr=False)


class ScriptBatches:
    """EVALSHA calls on one client, gathered per turn of the event loop."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._waiting: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self, script: Any, *, keys: list[str], args: list[str]) -> Any:
        """`script`'s reply for these keys and arguments, as `await script(keys, args)` gives;
        a Redis error raised here is this call's own, a lost connection every waiting call's."""
        loop = asyncio.get_running_loop()
        call = _Call(script, keys, args, loop.create_future())
        if not self._waiting or self._waiting[0].reply.get_loop() is not loop:
            self._waiting = batch = [call]
            sending = loop.create_task(self._send(batch))
            self._sending.add(sending)
            sending.add_done_callback(partial(self._sent, batch))
        else:
            self._waiting.append(call)
        return await call.reply

    def _sent(self, batch: list[_Call], sending: asyncio.Task[None]) -> None:
        self._sending.discard(sending)
        if sending.cancelled():  # the loop is shutting down, before or while sending
            for call in batch:
                call.reply.cancel()
            if self._waiting is batch:
                self._waiting = []

    async def _send(self, batch: list[_Call]) -> None:
        if self._waiting is batch:
            self._waiting = []  # calls made from now on go in the next batch
        calls = [call for call in batch if not call.reply.done()]  # cancelled: never sent
        try:
            replies = await self._replies(calls)
        except Exception as error:
            for call in calls:
                if not call.reply.done():
                    call.reply.set_exception(error)
            return
        for call, reply in zip(calls, replies, strict=True):
            if call.reply.done():  # its caller was cancelled; the script ran all the same
                continue
            if isinstance(reply, Exception):
                call.reply.set_exception(reply)
            else:
                call.reply.set_result(reply)

    async def _replies(self, calls: list[_Call]) -> list[Any]:
        """Not redis-py's scripts-in-a-pipeline: that asks SCRIPT EXISTS before every
        pipeline, a round trip more; here a script is loaded only when Redis refuses it."""
        replies = await self._pipeline(calls)
        again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if again:
            # A script Redis does not know (restarted, flushed) did not run: load it, resend.
            for source in {calls[i].script.script for i in again}:
                await self._client.script_load(source)
            resent = await self._pipeline([calls[i] for i in again])
            for i, reply in zip(again, resent, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        """The calls written in one go on a pooled connection, their replies read in order,
        what a non-transactional redis-py pipeline does, without building one per batch (its
        command stack, retry wrapper and per-reply callbacks cost 3 % of the instructions of
        a request with Redis). A batch cut off midway (a lost connection, a cancellation)
        leaves no unread reply for the next: redis-py's send and read close the connection
        when anything interrupts them."""
        pool = self._client.connection_pool
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(
                connection.pack_commands(
                    [
                        ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
                        for call in calls
                    ]
                )
            )
            replies: list[Any] = []
            for _ in calls:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as error:  # this call's own (read whole: still in sync)
                    replies.append(error)
        finally:
            await pool.release(connection)
        return replies
