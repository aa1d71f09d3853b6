"""The official `anthropic` Python SDK, pointed at Gatehouse (Daphne) in front of the emulator.

What a team member does with `base_url=<gatehouse>` and their virtual key: every call the
SDK makes must come back as the SDK's own types, and every failure as its typed exception.
"""

from __future__ import annotations

from decimal import Decimal

import anthropic
import pytest

from accounts.services import virtual_key_issue
from gateway.models import RequestOutcome
from gateway.price_catalog import catalog_rows
from tests.gateway.conftest import UPSTREAM_SECRET, wait_for_logs

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-opus-5"
REPLY = "Gatehouse relayed this reply."
SAY_HELLO = [{"role": "user", "content": "Say hello"}]
READ_TOOL = {
    "name": "Read",
    "description": "Read a file",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}},
        "required": ["file_path"],
    },
}


class GatewayClients:
    """Builds SDK clients for the live gateway and counts the answers they got.

    Every answer has a RequestLog row written off the hot path; the test waits for all of
    them before the database is flushed, so no row (and no price-book load) lands in the
    next test.
    """

    def __init__(self, server) -> None:
        self.server = server
        self.answers = 0
        self._clients: list[anthropic.Anthropic] = []

    def _count(self, response) -> None:
        self.answers += 1

    def __call__(self, **credentials) -> anthropic.Anthropic:
        http_client = anthropic.DefaultHttpxClient(event_hooks={"response": [self._count]})
        sdk = anthropic.Anthropic(
            base_url=self.server.base_url,
            max_retries=0,
            timeout=30,
            http_client=http_client,
            **credentials,
        )
        self._clients.append(sdk)
        return sdk

    def close(self) -> None:
        for sdk in self._clients:
            sdk.close()


@pytest.fixture
def sdk_client(transactional_db, gatehouse_server, upstream):
    clients = GatewayClients(gatehouse_server)
    yield clients
    clients.close()
    rows = wait_for_logs(clients.answers)
    assert len(rows) == clients.answers, "the gateway wrote fewer RequestLog rows than it answered"


@pytest.fixture
def client(sdk_client, alice):
    return sdk_client(api_key=alice.secret)


def test_messages_create_returns_the_emulators_content_and_usage(client, emulator):
    emulator.configure(reply_text=REPLY)

    message = client.messages.create(model=MODEL, max_tokens=256, messages=SAY_HELLO)

    assert message.type == "message"
    assert message.model == MODEL
    assert [(block.type, block.text) for block in message.content] == [("text", REPLY)]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 8)
    assert message.id.startswith("msg_emu_")
    assert message._request_id.startswith("req_emu_")
    forwarded = emulator.last_request()
    assert (forwarded["path"], forwarded["headers"]["x-api-key"]) == (
        "/v1/messages",
        UPSTREAM_SECRET,
    )


def test_a_create_call_is_logged_for_its_user_with_tokens_and_a_positive_cost(
    client, emulator, alice
):
    emulator.configure(reply_text=REPLY)

    message = client.messages.create(model=MODEL, max_tokens=256, messages=SAY_HELLO)

    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.OK
    assert (row.endpoint, row.model_requested, row.is_stream) == ("/v1/messages", MODEL, False)
    assert (row.input_tokens, row.output_tokens) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    assert row.cost_center.code == "research"
    assert row.upstream_request_id == message._request_id
    assert row.is_priced is True
    # claude-opus-5 list price: $5 per million input tokens, $25 per million output tokens.
    assert row.cost_usd == Decimal(9 * 5 + 8 * 25) / 1_000_000
    assert row.cost_usd > 0


def test_a_bearer_auth_token_is_accepted_like_an_api_key(sdk_client, emulator, alice):
    emulator.configure(reply_text=REPLY)

    sdk = sdk_client(auth_token=alice.secret)

    message = sdk.messages.create(model=MODEL, max_tokens=256, messages=SAY_HELLO)

    assert message.content[0].text == REPLY
    forwarded = emulator.last_request()["headers"]
    assert forwarded["x-api-key"] == UPSTREAM_SECRET
    assert "authorization" not in forwarded
    [row] = wait_for_logs(1, user=alice.user)
    assert row.outcome == RequestOutcome.OK


def test_messages_stream_accumulates_the_emulators_text(client, emulator, alice):
    emulator.configure(reply_text=REPLY, text_deltas=4)

    with client.messages.stream(model=MODEL, max_tokens=256, messages=SAY_HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) == 4
    assert "".join(pieces) == REPLY
    assert [(block.type, block.text) for block in final.content] == [("text", REPLY)]
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == (
        "end_turn",
        9,
        8,
    )
    [row] = wait_for_logs(1, user=alice.user)
    assert (row.is_stream, row.outcome, row.output_tokens) == (True, RequestOutcome.OK, 8)


def test_messages_stream_accumulates_a_tool_use_with_a_dict_input(client, emulator):
    with client.messages.stream(
        model=MODEL,
        max_tokens=256,
        tools=[READ_TOOL],
        messages=[{"role": "user", "content": "Use a tool to read setup.py"}],
    ) as stream:
        final = stream.get_final_message()

    text, tool_use = final.content
    assert text.text == "I'll use the Read tool."
    assert (tool_use.type, tool_use.name) == ("tool_use", "Read")
    assert tool_use.id.startswith("toolu_emu_")
    assert isinstance(tool_use.input, dict)
    assert tool_use.input == {"file_path": "Use a tool to read setup.py"}
    assert final.stop_reason == "tool_use"


def test_thinking_arrives_as_a_block_with_its_signature(client, emulator):
    emulator.configure(reply_text=REPLY)

    with client.messages.stream(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=SAY_HELLO,
    ) as stream:
        final = stream.get_final_message()

    thinking, text = final.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "The user wrote: Say hello. A short, friendly answer will do."
    assert thinking.signature.startswith("EmuSig")
    assert text.text == REPLY


def test_count_tokens_is_forwarded_and_returns_input_tokens(client, emulator):
    counted = client.messages.count_tokens(model=MODEL, messages=SAY_HELLO)

    assert counted.input_tokens == 9
    [forwarded] = emulator.requests()
    assert forwarded["path"] == "/v1/messages/count_tokens"
    assert "max_tokens" not in forwarded["body"]


def test_models_list_shows_routed_models_with_pagination_fields(client):
    page = client.models.list(limit=3)

    ids = [model.id for model in page.data]
    assert len(ids) == 3
    assert page.first_id == ids[0]
    assert page.last_id == ids[-1]
    assert page.has_more is True
    every_id = [model.id for model in client.models.list(limit=3)]  # the SDK follows last_id
    priced_claude_models = {
        row["model"] for row in catalog_rows() if row["model"].startswith("claude-")
    }
    assert every_id == sorted(priced_claude_models, reverse=True)
    assert every_id[:3] == ids


def test_models_retrieve_returns_one_model(client):
    model = client.models.retrieve(MODEL)

    assert (model.type, model.id, model.display_name) == ("model", MODEL, "Claude Opus 5")


def test_an_unknown_key_raises_authentication_error(sdk_client, emulator):
    sdk = sdk_client(api_key="gh_live_not-a-real-key")

    with pytest.raises(anthropic.AuthenticationError) as raised:
        sdk.messages.create(model=MODEL, max_tokens=64, messages=SAY_HELLO)

    assert raised.value.status_code == 401
    assert raised.value.body["error"]["type"] == "authentication_error"
    assert raised.value.request_id.startswith("req_gh_")
    assert wait_for_logs(1, request_id=raised.value.request_id)
    assert emulator.requests() == []


def test_a_model_outside_the_keys_patterns_raises_permission_denied(sdk_client, emulator, alice):
    haiku_only = virtual_key_issue(
        owner=alice.user, name="haiku only", allowed_models=["claude-haiku-*"]
    )
    sdk = sdk_client(api_key=haiku_only.secret)

    with pytest.raises(anthropic.PermissionDeniedError) as raised:
        sdk.messages.create(model=MODEL, max_tokens=64, messages=SAY_HELLO)

    assert raised.value.status_code == 403
    assert raised.value.body["error"] == {
        "type": "permission_error",
        "message": "This key may not use model 'claude-opus-5'.",
    }
    assert raised.value.request_id.startswith("req_gh_")
    [row] = wait_for_logs(1, request_id=raised.value.request_id)
    assert row.user == alice.user
    assert emulator.requests() == []


def test_a_model_without_a_route_raises_not_found_naming_the_model(client, emulator):
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.messages.create(model="gpt-5", max_tokens=64, messages=SAY_HELLO)

    assert raised.value.status_code == 404
    assert "No route for model 'gpt-5' on this gateway." in raised.value.message
    assert raised.value.body["error"] == {
        "type": "not_found_error",
        "message": "No route for model 'gpt-5' on this gateway.",
    }
    assert raised.value.request_id.startswith("req_gh_")
    assert emulator.requests() == []


def test_an_upstream_429_raises_rate_limit_error_with_a_request_id(client, emulator, alice):
    emulator.inject_fault("429", times=None)

    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model=MODEL, max_tokens=64, messages=SAY_HELLO)

    error = raised.value
    assert error.status_code == 429
    assert error.body["error"]["type"] == "rate_limit_error"
    assert error.response.headers["retry-after"] == "1"  # the emulator's retry-after
    assert error.request_id
    assert error.request_id == error.body["request_id"] == error.response.headers["request-id"]
    assert len(emulator.requests()) == 1  # one upstream key: nothing to fail over to
    [row] = wait_for_logs(1, user=alice.user)
    assert (row.status_code, row.error_type) == (429, "rate_limit_error")
    assert row.upstream_request_id == emulator.last_request()["request_id"]
