"""The shared asyncio Redis client packs commands with hiredis, byte for byte as redis-py."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
import redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.redis_client import HiredisCommandPacking, hiredis_packing, shared_async_client

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12"
ARGUMENTS = (
    "EVALSHA",
    "5f1d7a9c0e",
    3,
    "gatehouse:budget:key:1",
    b"gatehouse:\xffraw",
    "h\u00e9llo \u2603",
    "",
    0,
    -17,
    2**70,
    0.1,
    1 / 3,
    -0.0,
    1e100,
    float("inf"),
    b"",
)


def plain_bytes(connection: Connection, *args: object) -> bytes:
    return b"".join(bytes(piece) for piece in Connection.pack_command(connection, *args))


def packed_bytes(connection: Connection, *args: object) -> bytes:
    return b"".join(bytes(piece) for piece in connection.pack_command(*args))


def test_hiredis_packing_puts_the_same_bytes_on_the_wire_as_redis_py():
    packing = hiredis_packing(Connection)()

    assert packed_bytes(packing, *ARGUMENTS) == plain_bytes(packing, *ARGUMENTS)


@pytest.mark.parametrize("command", ["CONFIG GET", b"CONFIG GET"])
def test_a_command_name_of_two_words_is_sent_as_two_arguments(command):
    packing = hiredis_packing(Connection)()

    packed = packed_bytes(packing, command, "maxmemory")

    assert packed == b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$9\r\nmaxmemory\r\n"
    assert packed == plain_bytes(packing, command, "maxmemory")


def test_a_memoryview_argument_takes_redis_pys_own_path_with_the_same_bytes():
    packing = hiredis_packing(Connection)()

    packed = packed_bytes(packing, "SET", "key", memoryview(b"value"))

    assert packed == b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"


@pytest.mark.parametrize("value", [True, None, object()])
def test_a_value_redis_py_refuses_is_refused_with_redis_pys_error(value):
    packing = hiredis_packing(Connection)()

    with pytest.raises(redis.DataError, match="Invalid input of type"):
        packing.pack_command("SET", "key", value)


def test_another_encoding_than_utf8_is_packed_by_redis_py_in_that_encoding():
    packing = hiredis_packing(Connection)(encoding="latin-1")

    assert (
        packed_bytes(packing, "SET", "k", "\u00e9")
        == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n\xe9\r\n"
    )


@pytest.mark.parametrize(
    ("url", "url_class"),
    [
        ("redis://127.0.0.1:6379/0", Connection),
        ("rediss://127.0.0.1:6380/0", SSLConnection),
        ("unix:///run/redis/redis.sock?db=0", UnixDomainSocketConnection),
    ],
)
def test_the_shared_client_keeps_the_connection_class_its_url_chose(url, url_class):
    client = shared_async_client(url)

    connection_class = client.connection_pool.connection_class
    assert issubclass(connection_class, HiredisCommandPacking)
    assert issubclass(connection_class, url_class)


async def test_a_script_with_many_arguments_reaches_redis_intact():
    client = shared_async_client(REDIS_URL)
    key = f"gatehouse-test:{uuid.uuid4().hex}"
    keys = [key, *(f"{key}:{n}" for n in range(8))]
    args = ["h\u00e9llo \u2603", "", "0", "-17", str(2**70), "0.1", b"\xff\x00raw", "x y"]
    echo = client.register_script("redis.call('SET', KEYS[1], ARGV[1]); return {KEYS, ARGV}")
    try:
        echoed_keys, echoed_args = await echo(keys=keys, args=args)
        stored = await client.get(key)
    finally:
        await client.delete(key)
        await client.aclose()

    assert [k.decode() for k in echoed_keys] == keys
    assert echoed_args == [a if isinstance(a, bytes) else a.encode() for a in args]
    assert stored == "h\u00e9llo \u2603".encode()


async def test_a_connection_redis_closed_while_idle_is_reopened_for_the_next_command():
    """As after a Redis restart or its idle `timeout`, and with retries off (the ledger's: a
    failure there is taken for an outage): the next command goes on a new connection."""
    name = f"gatehouse-test-{uuid.uuid4().hex[:12]}"
    client = shared_async_client(REDIS_URL, retry=Retry(NoBackoff(), 0), client_name=name)
    other = shared_async_client(REDIS_URL)
    key = f"gatehouse-test:idle:{uuid.uuid4().hex}"
    try:
        assert await client.incr(key) == 1
        ours = [c["id"] for c in await other.client_list() if c.get("name") == name]
        assert ours
        for client_id in ours:
            await other.client_kill_filter(_id=client_id)
        await asyncio.sleep(0.1)  # the close has reached this process

        assert await client.incr(key) == 2
    finally:
        await other.delete(key)
        await client.aclose()
        await other.aclose()
