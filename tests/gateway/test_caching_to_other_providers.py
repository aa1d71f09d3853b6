"""Markers the gateway injects survive routing to Bedrock and Vertex (block-level markers,
which both accept; the emulators validate bodies as those services do). Haiku 4.5 caches
from 4,096 tokens, so the tools alone are too short for a breakpoint: two markers, system
and the last user turn."""

from __future__ import annotations

import orjson
import pytest

from tests.gateway.conftest import wait_for_logs
from tests.gateway.test_caching_replay import SYSTEM_PROMPT, TOOLS
from tests.gateway.test_provider_bedrock_proxy import bedrock_route  # noqa: F401 - fixture
from tests.gateway.test_provider_bedrock_proxy import post as bedrock_post
from tests.gateway.test_provider_vertex_proxy import post as vertex_post
from tests.gateway.test_provider_vertex_proxy import vertex_route  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {
    "model": "claude-haiku-4-5-20251001",
    "max_tokens": 64,
    "system": SYSTEM_PROMPT[:40_000],
    "tools": TOOLS,
    "messages": [{"role": "user", "content": "Say hello"}],
}


def markers_in(body: str) -> int:
    return body.count('"cache_control"')


def test_injected_markers_reach_bedrock(gatehouse_server, bedrock_route, bedrock_emulator, alice):  # noqa: F811
    bedrock_route.route.cache_policy = "auto"
    bedrock_route.route.save()

    response = bedrock_post(gatehouse_server, alice.secret, BODY)

    assert response.status_code == 200, response.text
    forwarded = bedrock_emulator.last_request()["body"]
    assert markers_in(forwarded) == 2
    assert "cache_control" not in orjson.loads(forwarded)  # never top-level on InvokeModel
    [row] = wait_for_logs(1, user=alice.user)
    assert row.cache_markers_injected == 2


def test_injected_markers_reach_vertex(gatehouse_server, vertex_route, vertex_emulator, alice):  # noqa: F811
    vertex_route.route.cache_policy = "auto"
    vertex_route.route.save()

    response = vertex_post(gatehouse_server, alice.secret, BODY)

    assert response.status_code == 200, response.text
    assert markers_in(vertex_emulator.last_request()["body"]) == 2
    [row] = wait_for_logs(1, user=alice.user)
    assert row.cache_markers_injected == 2
