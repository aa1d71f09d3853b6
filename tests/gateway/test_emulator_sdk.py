"""The official anthropic SDK, pointed at the real emulator server, accepts its answers."""

import anthropic
import httpx2
import pydantic
import pytest

KEY = "sk-test-emulator"
MODEL = "claude-opus-5"
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


@pytest.fixture
def client(emulator):
    with anthropic.Anthropic(
        base_url=emulator.base_url, api_key=KEY, max_retries=0, timeout=10
    ) as sdk:
        yield sdk


def test_messages_create_returns_a_message(client):
    message = client.messages.create(model=MODEL, max_tokens=256, messages=SAY_HELLO)

    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from the emulator: Say hello"
    assert (message.stop_reason, message.usage.input_tokens, message.usage.output_tokens) == (
        "end_turn",
        9,
        9,
    )
    assert message._request_id.startswith("req_emu_")


def test_messages_stream_accumulates_the_text(client):
    with client.messages.stream(model=MODEL, max_tokens=256, messages=SAY_HELLO) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert streamed == final.content[0].text == "Hello from the emulator: Say hello"
    assert (final.stop_reason, final.usage.output_tokens) == ("end_turn", 9)
    assert final.usage.cache_creation.ephemeral_5m_input_tokens == 0


def test_messages_stream_accumulates_a_tool_use(client):
    with client.messages.stream(
        model=MODEL,
        max_tokens=256,
        tools=[READ_TOOL],
        messages=[{"role": "user", "content": "Use a tool to read setup.py"}],
    ) as stream:
        final = stream.get_final_message()

    text, tool_use = final.content
    assert text.text == "I'll use the Read tool."
    assert (tool_use.type, tool_use.name, tool_use.input) == (
        "tool_use",
        "Read",
        {"file_path": "Use a tool to read setup.py"},
    )
    assert final.stop_reason == "tool_use"


def test_messages_stream_accumulates_thinking_with_its_signature(client):
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
    assert text.text == "Hello from the emulator: Say hello"


def test_count_tokens_returns_input_tokens(client):
    counted = client.messages.count_tokens(model=MODEL, messages=SAY_HELLO)

    assert counted.input_tokens == 9


def test_models_list_auto_paginates_and_retrieve_works(client):
    ids = [model.id for model in client.models.list(limit=4)]
    opus = client.models.retrieve("claude-opus-5")

    assert len(ids) == 10
    assert ids[:2] == ["claude-opus-5", "claude-sonnet-5"]
    assert opus.display_name == "Claude Opus 5"


def test_cache_usage_reaches_the_sdk(client):
    system = [{"type": "text", "text": "s" * 8000, "cache_control": {"type": "ephemeral"}}]

    client.messages.create(model=MODEL, max_tokens=64, system=system, messages=SAY_HELLO)
    second = client.messages.create(model=MODEL, max_tokens=64, system=system, messages=SAY_HELLO)

    assert (second.usage.cache_read_input_tokens, second.usage.cache_creation_input_tokens) == (
        2007,
        0,
    )


@pytest.mark.parametrize(
    ("fault", "exception"),
    [
        ("429", anthropic.RateLimitError),
        ("529", anthropic.OverloadedError),
        ("500", anthropic.InternalServerError),
        ("401", anthropic.AuthenticationError),
    ],
)
def test_status_faults_raise_the_sdk_exception(emulator, client, fault, exception):
    emulator.inject_fault(fault)

    with pytest.raises(exception) as raised:
        client.messages.create(model=MODEL, max_tokens=64, messages=SAY_HELLO)

    assert raised.value.request_id.startswith("req_emu_")


def test_sdk_retries_through_a_transient_overload(emulator):
    emulator.inject_fault("529")
    with anthropic.Anthropic(base_url=emulator.base_url, api_key=KEY, max_retries=1) as sdk:
        message = sdk.messages.create(model=MODEL, max_tokens=64, messages=SAY_HELLO)

    assert message.content[0].text == "Hello from the emulator: Say hello"
    assert len(emulator.requests()) == 2


def test_error_event_mid_stream_raises_in_the_sdk(emulator, client):
    emulator.inject_fault("error_event_mid_stream")

    with pytest.raises(anthropic.APIStatusError) as raised:
        with client.messages.stream(model=MODEL, max_tokens=64, messages=SAY_HELLO) as stream:
            stream.get_final_message()

    assert raised.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_dropped_stream_raises_in_the_sdk(emulator, client):
    """Mid-body, the SDK lets its transport's error through instead of APIConnectionError."""
    emulator.inject_fault("drop_mid_stream")

    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
        with client.messages.stream(model=MODEL, max_tokens=64, messages=SAY_HELLO) as stream:
            stream.get_final_message()


class SessionTitle(pydantic.BaseModel):
    title: str
    confidence: int


def test_messages_parse_gets_a_structured_output(client):
    parsed = client.messages.parse(
        model=MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": "Fix the login bug"}],
        output_format=SessionTitle,
    )

    assert parsed.parsed_output == SessionTitle(title="Fix the login bug", confidence=1)
