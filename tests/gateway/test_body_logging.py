"""Prompt and response bodies through the real gateway: off by default, redacted when on.

A Gatehouse of this module's own keeps at most 2 KiB of each body and redacts a global
pattern (`INTERNAL-<digits>`). The emulator answers "Hello from the emulator: <the first
eight words of the prompt>", so a secret planted in the prompt comes back in the response.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from gateway.body_log import REDACTED
from gateway.models import Provider, ProviderKind, RequestBody, UpstreamKey
from tests.gateway.conftest import wait_for_logs
from tests.live_servers import LiveServer, start_gatehouse, stop_server

pytestmark = pytest.mark.django_db(transaction=True)
MAX_BYTES = 2048
ANTHROPIC_KEY = "sk-ant-api03-PlantedInThePrompt0123456789abcdef"
OTHER_PROVIDER_SECRET = "opensecret-4c1f9e7a2b6d8053"
SECRETS = (ANTHROPIC_KEY, OTHER_PROVIDER_SECRET, "ACME-314159", "INTERNAL-42")
PROMPT = f"Remember {ANTHROPIC_KEY} {OTHER_PROVIDER_SECRET} ACME-314159 INTERNAL-42 please"


@pytest.fixture(scope="module")
def body_logging_server(django_db_setup, django_db_blocker) -> Iterator[LiveServer]:
    with django_db_blocker.unblock():
        server = start_gatehouse(
            {
                "GATEHOUSE_BODY_LOG_MAX_BYTES": str(MAX_BYTES),
                "GATEHOUSE_BODY_REDACT_PATTERNS": r"INTERNAL-\d+",
            }
        )
    yield server
    stop_server(server)


@pytest.fixture
def logging_research(upstream, research):
    """research logs bodies with a pattern of its own; another provider's secret is known."""
    research.log_bodies = True
    research.body_redact_patterns = r"ACME-\d{6}"
    research.save()
    other = Provider.objects.create(
        name="other", kind=ProviderKind.OPENAI, base_url="http://127.0.0.1:9", is_enabled=False
    )
    UpstreamKey.objects.create(provider=other, label="spare", secret=OTHER_PROVIDER_SECRET)
    return research


def send(server, secret, content, *, stream=False):
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": content}],
    }
    if stream:
        body["stream"] = True
    raw = orjson.dumps(body)
    response = httpx.post(
        server.base_url + "/v1/messages",
        content=raw,
        headers={"content-type": "application/json", "x-api-key": secret},
        timeout=30,
    )
    return raw.decode(), response


def redacted(text: str) -> str:
    for secret in SECRETS:
        text = text.replace(secret, REDACTED)
    return text


def streamed_text(sse: str) -> str:
    return "".join(
        event["delta"]["text"]
        for line in sse.split("\n")
        if line.startswith("data:")
        for event in [orjson.loads(line[5:])]
        if event["type"] == "content_block_delta"
    )


def wait_for_body(request_id: str, timeout_s: float = 10.0) -> RequestBody:
    deadline = time.monotonic() + timeout_s
    while True:
        body = RequestBody.objects.filter(request_id=request_id).first()
        if body is not None or time.monotonic() > deadline:
            assert body is not None, f"no RequestBody for {request_id}"
            return body
        time.sleep(0.05)


def test_bodies_are_not_logged_unless_the_cost_center_turns_it_on(
    body_logging_server, upstream, alice, charlie, ops
):
    ops.log_bodies = True
    ops.save()

    _, not_logged = send(body_logging_server, alice.secret, PROMPT)
    _, logged = send(body_logging_server, charlie.secret, PROMPT)

    assert (not_logged.status_code, logged.status_code) == (200, 200)
    assert len(wait_for_logs(1, user=alice.user)) == 1
    [charlie_log] = wait_for_logs(1, user=charlie.user)
    # One writer, in order: had alice's body been kept, it would be stored before charlie's.
    wait_for_body(charlie_log.request_id)
    assert list(RequestBody.objects.values_list("request_id", flat=True)) == [
        charlie_log.request_id
    ]


def test_a_message_is_kept_with_credentials_and_patterns_redacted(
    body_logging_server, logging_research, alice
):
    request_text, response = send(body_logging_server, alice.secret, PROMPT)

    assert response.status_code == 200
    assert f"Remember {ANTHROPIC_KEY}" in response.text  # the client gets the bytes untouched
    [log] = wait_for_logs(1, user=alice.user)
    body = wait_for_body(log.request_id)
    assert body.cost_center == logging_research
    assert body.created_at == log.started_at
    assert body.request_text == redacted(request_text)
    assert body.response_text == redacted(response.text)
    assert f"Remember {REDACTED} {REDACTED} {REDACTED} {REDACTED} please" in body.response_text
    assert (body.is_request_truncated, body.is_response_truncated) == (False, False)


def test_a_stream_keeps_the_relayed_sse_bytes_with_secrets_redacted_across_deltas(
    body_logging_server, logging_research, alice, emulator
):
    emulator.configure(text_deltas=6)  # the echoed secrets arrive cut into pieces

    request_text, response = send(body_logging_server, alice.secret, PROMPT, stream=True)

    assert response.status_code == 200
    assert ANTHROPIC_KEY not in response.text  # split over deltas on the wire too
    [log] = wait_for_logs(1, user=alice.user)
    body = wait_for_body(log.request_id)
    assert body.request_text == redacted(request_text)
    assert body.response_text.startswith("event: message_start\n")
    assert body.response_text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert not any(secret in body.response_text for secret in SECRETS)
    # Each piece of a secret is redacted where it travelled; joined, only the secrets are gone.
    answer = re.sub(r"(\[REDACTED\])+", REDACTED, streamed_text(body.response_text))
    assert answer == (
        f"Hello from the emulator: Remember {REDACTED} {REDACTED} {REDACTED} {REDACTED} please"
    )


def test_bodies_over_the_limit_are_cut_and_flagged(
    body_logging_server, logging_research, alice, emulator
):
    emulator.configure(reply_text="many words " * 400)

    _, response = send(body_logging_server, alice.secret, "lorem ipsum " * 400, stream=True)

    assert response.status_code == 200
    [log] = wait_for_logs(1, user=alice.user)
    body = wait_for_body(log.request_id)
    assert (body.is_request_truncated, body.is_response_truncated) == (True, True)
    assert 0 < len(body.request_text) <= MAX_BYTES
    assert body.request_text.startswith('{"model":"claude-sonnet-4-5"')
    assert MAX_BYTES - 16 <= len(body.response_text) <= MAX_BYTES
    assert response.text.startswith(body.response_text)
