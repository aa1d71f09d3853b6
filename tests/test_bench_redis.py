"""`BENCH_REDIS`: the bench measures Gatehouse sharing its counters through a real Redis, as a
deployment with several workers does, and leaves nothing of its own in that Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from bench.scenarios import SCENARIOS, request_body, request_headers
from bench.stack import HOST, free_port, running_stack, shared_redis
from tests.private_redis import PrivateRedis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_without_bench_redis_the_gateway_counts_in_its_own_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BENCH_REDIS", raising=False)
    env: dict[str, str] = {}
    with shared_redis(env) as words:
        assert words == "no Redis"
        assert env == {}


def test_bench_redis_points_the_gateway_at_it_under_a_prefix_whose_keys_are_deleted_afterwards(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_REDIS", private_redis.url)
    with private_redis.client() as client:
        client.set("gatehouse:limit:7:rpm", "someone else's")
        env: dict[str, str] = {}
        with shared_redis(env) as words:
            prefix = env["GATEHOUSE_REDIS_PREFIX"]
            assert env["REDIS_URL"] == private_redis.url
            assert env["CELERY_BROKER_URL"] == "filesystem://"
            assert words == f"Redis (127.0.0.1:{private_redis.port}, not pinned)"
            assert prefix.startswith("gatehouse-bench-")
            # more keys than one delete call takes
            client.mset({f"{prefix}:budget:key:{n}": n for n in range(2_500)})
        assert private_redis.keys(prefix) == set()
        assert client.get("gatehouse:limit:7:rpm") == b"someone else's"


def test_an_unreachable_bench_redis_stops_the_run_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BENCH_REDIS", f"redis://{HOST}:{free_port()}/0")
    env: dict[str, str] = {}
    with pytest.raises(redis.ConnectionError), shared_redis(env):
        pytest.fail("the run started without its Redis")
    assert env == {}


def test_the_benchs_gateway_settles_its_requests_in_the_shared_redis(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_REDIS", private_redis.url)
    monkeypatch.delenv("BENCH_SERVER", raising=False)
    monkeypatch.delenv("BENCH_GATEWAY_ASGI", raising=False)
    scenario = SCENARIOS["ns_c1"]
    with running_stack() as stack:
        assert stack.gateway is not None
        prefix = stack.env["GATEHOUSE_REDIS_PREFIX"]
        assert stack.redis == f"Redis (127.0.0.1:{private_redis.port}, not pinned)"
        response = httpx.post(
            f"http://{HOST}:{stack.gateway.port}/v1/messages",
            content=request_body(scenario),
            headers=request_headers(scenario, api_key=stack.virtual_key),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        counters = private_redis.keys(prefix)
        assert any(key.startswith(f"{prefix}:budget:") for key in counters), counters
        with private_redis.client() as client:
            spent = [
                int(client.hget(key, "spent") or 0)
                for key in counters
                if key.startswith(f"{prefix}:budget:") and not key.endswith(":leases")
            ]
        assert spent
        assert all(units > 0 for units in spent)
    assert private_redis.keys(prefix) == set()
