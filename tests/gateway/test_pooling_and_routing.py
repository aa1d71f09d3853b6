"""Evidence for pooling and routing through the real proxy and emulator."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from gateway.models import KeyHealth, Provider, ProviderKind, Route, RouteTarget, UpstreamKey
from tests.gateway.conftest import UPSTREAM_SECRET, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {
    "model": "claude-opus-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Say hello"}],
}
SECRETS = [UPSTREAM_SECRET, "sk-ant-emulator-upstream-0002", "sk-ant-emulator-upstream-0003"]


def post(server, secret, body=BODY, headers=None):
    return httpx.post(
        server.base_url + "/v1/messages",
        content=orjson.dumps(body),
        headers={"x-api-key": secret, "content-type": "application/json", **(headers or {})},
        timeout=30,
    )


def add_keys(upstream, secrets):
    for index, secret in enumerate(secrets, start=2):
        UpstreamKey.objects.create(provider=upstream.provider, label=f"team-{index}", secret=secret)


def test_three_pooled_keys_give_one_virtual_key_three_times_the_rate(
    gatehouse_server, upstream, emulator, alice
):
    rpm = 4
    add_keys(upstream, SECRETS[1:])
    emulator.configure(keys={secret: {"rpm": rpm} for secret in SECRETS})

    statuses = [post(gatehouse_server, alice.secret).status_code for _ in range(3 * rpm)]
    over = post(gatehouse_server, alice.secret)

    assert statuses == [200] * (3 * rpm)
    assert over.status_code == 429
    assert over.json()["error"]["type"] == "rate_limit_error"
    assert 50 <= int(over.headers["retry-after"]) <= 61
    used = [r["headers"]["x-api-key"] for r in emulator.requests() if r["status"] == 200]
    assert sorted(set(used)) == sorted(SECRETS)


def test_a_session_stays_on_one_key(gatehouse_server, upstream, emulator, alice):
    add_keys(upstream, SECRETS[1:])
    session = {"x-claude-code-session-id": "5b0a7a0e-8a7e-4d1e-9c1b-1f3a0d9c2b11"}

    for _ in range(6):
        assert post(gatehouse_server, alice.secret, headers=session).status_code == 200

    assert len({r["headers"]["x-api-key"] for r in emulator.requests()}) == 1


def tried(emulator, secret: str) -> bool:
    return any(request["headers"]["x-api-key"] == secret for request in emulator.requests())


def test_a_key_the_provider_refuses_is_taken_out_and_marked_unhealthy(
    gatehouse_server, upstream, emulator, alice
):
    add_keys(upstream, SECRETS[1:2])
    emulator.inject_fault("401", key=SECRETS[1], times=None)

    # Keys are tried in weighted random order: 4 requests left the refused key untried one
    # time in 16. Post until it has been tried (1 in 2**40 not to), then 3 more after it.
    statuses = []
    while len(statuses) < 40 and not tried(emulator, SECRETS[1]):
        statuses.append(post(gatehouse_server, alice.secret).status_code)
    statuses += [post(gatehouse_server, alice.secret).status_code for _ in range(3)]

    assert tried(emulator, SECRETS[1])
    assert statuses == [200] * len(statuses)
    deadline = time.monotonic() + 5  # the health write happens off the request path
    while (refused := UpstreamKey.objects.get(label="team-2")).health != KeyHealth.UNHEALTHY:
        assert time.monotonic() < deadline, "the refused key was never marked unhealthy"
        time.sleep(0.05)
    assert refused.health_reason.startswith("Provider answered 401")
    assert [r["headers"]["x-api-key"] for r in emulator.requests()].count(SECRETS[1]) == 1


def test_models_are_routed_by_rule_and_a_529_falls_back_to_the_next_target(
    gatehouse_server, upstream, emulator, alice
):
    provider_b = Provider.objects.create(
        name="provider-b", kind=ProviderKind.ANTHROPIC, base_url=emulator.base_url
    )
    UpstreamKey.objects.create(provider=provider_b, label="b", secret="sk-ant-provider-b")
    haiku = Route.objects.create(name="haiku", model_pattern="claude-haiku-*", priority=10)
    RouteTarget.objects.create(route=haiku, position=0, provider=upstream.provider)
    opus = Route.objects.create(name="opus", model_pattern="claude-opus-*", priority=10)
    RouteTarget.objects.create(route=opus, position=0, provider=provider_b)
    RouteTarget.objects.create(
        route=opus, position=1, provider=upstream.provider, upstream_model="claude-opus-4-8"
    )

    post(gatehouse_server, alice.secret, {**BODY, "model": "claude-haiku-4-5"})
    post(gatehouse_server, alice.secret)
    emulator.inject_fault("529", key="sk-ant-provider-b", times=1)
    fallback = post(gatehouse_server, alice.secret)

    requests = emulator.requests()
    assert [(r["headers"]["x-api-key"], orjson.loads(r["body"])["model"]) for r in requests] == [
        (UPSTREAM_SECRET, "claude-haiku-4-5"),
        ("sk-ant-provider-b", "claude-opus-5"),
        ("sk-ant-provider-b", "claude-opus-5"),
        (UPSTREAM_SECRET, "claude-opus-4-8"),
    ]
    assert fallback.status_code == 200
    rows = wait_for_logs(3, user=alice.user)
    assert [(row.route.name, row.provider.name, row.attempts) for row in rows] == [
        ("haiku", "anthropic", 1),
        ("opus", "provider-b", 1),
        ("opus", "anthropic", 2),
    ]
    assert rows[2].model_served == "claude-opus-4-8"
