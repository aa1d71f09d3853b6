"""Script calls made in one turn of the event loop go to Redis as one pipeline, each with its
own reply, its own error and exactly one run."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.redis_batch import ScriptBatches
from gateway.redis_client import shared_async_client
from tests.live_servers import free_port

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12"
COUNT_AND_ECHO = "return {redis.call('INCR', KEYS[1]), ARGV[1]}"
FAIL_ON_BAD = "if ARGV[1] == 'bad' then return redis.error_reply('refused ' .. ARGV[1]) end " + (
    "return ARGV[1]"
)


class CountingBatches(ScriptBatches):
    """The batches, counting the pipelines they send and the calls in each."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.pipelines: list[int] = []

    async def _pipeline(self, calls: list[Any]) -> list[Any]:
        self.pipelines.append(len(calls))
        return await super()._pipeline(calls)


async def loaded(client: Any, source: str) -> Any:
    """The script, already known to Redis: the counts of pipelines below would otherwise
    depend on whether an earlier run (or test) left it in Redis's script cache."""
    script = client.register_script(source)
    await client.script_load(source)
    return script


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    client = shared_async_client(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def counter(client: Any) -> AsyncIterator[str]:
    key = f"gatehouse-test:batch:{uuid.uuid4().hex}"
    yield key
    await client.delete(key)


async def test_calls_made_together_go_as_one_pipeline_each_with_its_own_reply(client, counter):
    batches = CountingBatches(client)
    script = await loaded(client, COUNT_AND_ECHO)

    replies = await asyncio.gather(
        *(batches.run(script, keys=[counter], args=[f"call {n}"]) for n in range(32))
    )

    assert batches.pipelines == [32]
    assert [echo for _, echo in replies] == [f"call {n}".encode() for n in range(32)]
    assert [count for count, _ in replies] == list(range(1, 33))  # run once each, in order


async def test_a_call_made_after_a_batch_left_goes_in_the_next_one(client, counter):
    batches = CountingBatches(client)
    script = await loaded(client, COUNT_AND_ECHO)

    first = await batches.run(script, keys=[counter], args=["a"])
    second = await batches.run(script, keys=[counter], args=["b"])

    assert batches.pipelines == [1, 1]
    assert (first, second) == ([1, b"a"], [2, b"b"])


async def test_a_script_error_reaches_only_the_call_that_caused_it(client):
    batches = ScriptBatches(client)
    script = client.register_script(FAIL_ON_BAD)

    good, bad, fine = (
        asyncio.ensure_future(batches.run(script, keys=[], args=[arg]))
        for arg in ("good", "bad", "fine")
    )

    with pytest.raises(ResponseError, match="refused bad"):
        await bad
    assert await good == b"good"
    assert await fine == b"fine"


async def test_a_script_redis_has_forgotten_is_loaded_and_each_call_runs_once(client, counter):
    batches = CountingBatches(client)
    script = await loaded(client, COUNT_AND_ECHO)
    await batches.run(script, keys=[counter], args=["loaded"])
    await client.script_flush()

    replies = await asyncio.gather(
        *(batches.run(script, keys=[counter], args=[str(n)]) for n in range(5))
    )

    assert [count for count, _ in replies] == [2, 3, 4, 5, 6]
    assert int(await client.get(counter)) == 6
    assert batches.pipelines == [1, 5, 5]  # the refused pipeline, then the same calls again


async def test_a_call_cancelled_before_its_batch_left_never_runs(client, counter):
    batches = ScriptBatches(client)
    script = client.register_script(COUNT_AND_ECHO)

    kept = asyncio.ensure_future(batches.run(script, keys=[counter], args=["kept"]))
    dropped = asyncio.ensure_future(batches.run(script, keys=[counter], args=["dropped"]))
    await asyncio.sleep(0)  # both calls are waiting for their batch to leave
    dropped.cancel()

    assert await kept == [1, b"kept"]
    assert dropped.cancelled()
    assert int(await client.get(counter)) == 1


async def test_a_redis_that_cannot_be_reached_fails_every_call_of_the_batch():
    unreachable = shared_async_client(f"redis://127.0.0.1:{free_port()}/0")
    batches = ScriptBatches(unreachable)
    script = unreachable.register_script(COUNT_AND_ECHO)
    try:
        replies = await asyncio.gather(
            *(batches.run(script, keys=["k"], args=[str(n)]) for n in range(3)),
            return_exceptions=True,
        )
    finally:
        await unreachable.aclose()

    assert [type(reply) for reply in replies] == [RedisConnectionError] * 3


def test_a_call_on_a_new_event_loop_is_sent_though_a_batch_died_with_the_old_one():
    """The shared ledger outlives event loops (tests, management commands): a batch left
    waiting on a loop that stopped must not hold back the calls of the next loop."""
    client = shared_async_client(REDIS_URL)
    batches = ScriptBatches(client)
    script = client.register_script(FAIL_ON_BAD)
    old_loop = asyncio.new_event_loop()

    def make_a_call_and_stop() -> None:
        waiting = batches.run(script, keys=[], args=["lost"]).__await__()
        next(waiting)  # the call is made; its batch would leave on the loop's next turn
        old_loop.stop()
        waiting.close()

    old_loop.call_soon(make_a_call_and_stop)
    old_loop.run_forever()
    for task in batches._sending:  # the batch that died with its loop: quietly
        task.get_coro().close()
        task._log_destroy_pending = False  # type: ignore[attr-defined]
    old_loop.close()

    async def one_call() -> Any:
        batches._client = shared_async_client(REDIS_URL)  # a client of this loop's own
        try:
            return await asyncio.wait_for(batches.run(script, keys=[], args=["sent"]), 5)
        finally:
            await batches._client.aclose()

    assert asyncio.run(one_call()) == b"sent"


async def test_a_batch_cancelled_as_its_loop_shuts_down_cancels_its_callers(client, counter):
    batches = ScriptBatches(client)
    script = client.register_script(COUNT_AND_ECHO)
    call = asyncio.ensure_future(batches.run(script, keys=[counter], args=["x"]))
    await asyncio.sleep(0)  # the call is made, its batch is on its way

    [sending] = batches._sending
    sending.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(call, 5)


async def test_a_batch_cut_off_before_its_replies_were_read_leaves_none_for_the_next(
    client, counter
):
    batches = ScriptBatches(client)
    slow = await loaded(client, "local n = 0 for i = 1, 3000000 do n = n + 1 end return 'slow'")
    script = await loaded(client, COUNT_AND_ECHO)
    call = asyncio.ensure_future(batches.run(slow, keys=[], args=[]))
    await asyncio.sleep(0)  # the call is made, its batch is on its way
    [sending] = batches._sending
    await asyncio.sleep(0.005)  # written; Redis is still running the slow script
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    # Its reply, when it comes, must not be read as this call's.
    assert await batches.run(script, keys=[counter], args=["next"]) == [1, b"next"]
