"""Redis dies while traffic flows, then comes back on the same port (issue 9, data safety).

End to end: Gatehouse under Daphne with REDIS_URL pointing at a private redis-server. The
ledger and pool-state units of the fallback are tested in test_admission_ledger.py and
test_pool.py; this shows the running gateway keeps serving, keeps limiting in-process with
a warning in its log, and puts its shared state back into Redis once Redis answers again.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import httpx
import pytest

from accounts.models import VirtualKey
from gateway.pool_state import READ_TTL_S
from tests.conftest import Person
from tests.live_servers import start_gatehouse, stop_server
from tests.private_redis import PrivateRedis

MODEL = "claude-sonnet-4-5"
SESSION = "session-redis-outage"
# How long each Redis client leaves Redis alone after a failure (ledger and pool state).
REDIS_RETRY_AFTER_S = 5.0


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    assert shutil.which("redis-server"), "redis-server is needed (installed here and by CI)"
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def send(client: httpx.Client, person: Person) -> int:
    response = client.post(
        "/v1/messages",
        headers={
            "x-api-key": person.secret,
            "anthropic-version": "2023-06-01",
            "x-claude-code-session-id": SESSION,
        },
        json={"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
    )
    return response.status_code


def test_the_gateway_serves_through_a_redis_outage_and_returns_its_state_to_redis(
    upstream, alice, bob, private_redis
):
    # Given alice (a generous rate limit) and bob (3 requests a minute), and Redis up,
    alice_key = VirtualKey.objects.get(owner=alice.user)
    bob_key = VirtualKey.objects.get(owner=bob.user)
    VirtualKey.objects.filter(pk=alice_key.pk).update(rpm_limit=1000)
    VirtualKey.objects.filter(pk=bob_key.pk).update(rpm_limit=3)
    prefix = f"gh-redis-outage-{os.getpid()}"
    shared_state = {
        f"{prefix}:limit:{alice_key.pk}:rpm",
        f"{prefix}:pool:key:{upstream.upstream_key.pk}",
        f"{prefix}:pool:session:{SESSION}",
    }
    server = start_gatehouse({"REDIS_URL": private_redis.url, "GATEHOUSE_REDIS_PREFIX": prefix})
    try:
        with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
            before = [send(client, alice) for _ in range(3)]
            in_redis_before = private_redis.keys(prefix)

            # when Redis dies while they keep sending,
            private_redis.kill()
            time.sleep(READ_TTL_S)  # what the pool state read from Redis is stale by now
            during = [send(client, alice) for _ in range(10)]
            bob_during = [send(client, bob) for _ in range(4)]
            log_during = server.log_text()

            # and comes back, empty, on the same port,
            private_redis.start()
            came_back_at = time.monotonic()
            after: list[int] = []
            while not shared_state <= private_redis.keys(prefix):
                assert time.monotonic() - came_back_at < 3 * REDIS_RETRY_AFTER_S, after
                after.append(send(client, alice))
                time.sleep(0.25)
            bob_after = send(client, bob)
            in_redis_after = private_redis.keys(prefix)
    finally:
        stop_server(server)

    assert before == [200, 200, 200]
    assert shared_state <= in_redis_before
    # then every request was served, and the limits held in the process, with a warning;
    assert during == [200] * 10
    assert bob_during == [200, 200, 200, 429]
    assert "Redis unavailable for admission" in log_during
    assert "Redis unavailable for pool state" in log_during
    # once Redis answers, limits and pool state live there again: bob's fresh Redis bucket
    # admits him although the in-process one he emptied would still refuse.
    assert set(after) <= {200}
    assert bob_after == 200
    assert f"{prefix}:limit:{bob_key.pk}:rpm" in in_redis_after
