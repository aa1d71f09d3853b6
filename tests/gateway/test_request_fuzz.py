"""A hypothesis fuzz of the proxy's /v1/messages request handling, in-process.

Generated requests (arbitrary bytes, arbitrary JSON, near-valid Messages requests with fields
of the wrong type or value, odd content types, header values and body framings) go through the
proxy's ASGI application to the real upstream emulator on a loopback port, on a route that
both injects cache markers and rewrites an aliased model, so every part of the gateway that
reads the body runs. Each answer must be one well-formed HTTP response, never a gateway 500;
every error body is Anthropic's shape with a request id; a request the gateway refuses itself
never reaches the upstream; and every request leaves exactly one RequestLog row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.admission import ledger
from gateway.models import RequestLog, Route, RouteTarget
from gateway.proxy import forward
from gateway.proxy.app import ProxyApp
from gateway.recorder import recorder

pytestmark = pytest.mark.django_db(transaction=True)

# The gateway's own answers to bad input are 4xx. A status ≥ 500 is acceptable only when it
# is the provider's, relayed after the retries (DESIGN.md §5): its request id is the upstream's.
GATEWAY_REQUEST_ID_PREFIX = b"req_gh_"
MODELS = ("claude-opus-5", "claude-sonnet-4-6", "aliased-opus", "claude-", "gpt-5")


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def asgi_request(
    app: Any,
    *,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body_parts: list[bytes],
) -> Response:
    """One HTTP request through an ASGI app, asserting the app speaks the protocol correctly."""
    incoming = [
        {"type": "http.request", "body": part, "more_body": index < len(body_parts) - 1}
        for index, part in enumerate(body_parts or [b""])
    ]
    finished = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        assert not finished.is_set(), f"message sent after the response ended: {message}"
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("latin-1", "replace"),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=30)
    finished.set()

    start, *body_messages = sent
    assert start["type"] == "http.response.start"
    assert isinstance(start["status"], int)
    assert 100 <= start["status"] <= 599
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in start["headers"])
    assert body_messages, "a response without a body message never ends"
    assert all(message["type"] == "http.response.body" for message in body_messages)
    assert body_messages[-1].get("more_body", False) is False
    body = b"".join(message.get("body", b"") for message in body_messages)
    response_headers = {name.lower(): value for name, value in start["headers"]}
    if b"content-length" in response_headers:
        assert int(response_headers[b"content-length"]) == len(body)
    return Response(start["status"], response_headers, body)


@dataclass
class Proxy:
    app: ProxyApp
    loop: asyncio.AbstractEventLoop
    secret: str


@pytest.fixture
def proxy(upstream, alice, monkeypatch) -> Iterator[Proxy]:
    """The proxy app on its own event loop, with process-wide clients made on that loop."""
    upstream.route.cache_policy = "auto"
    upstream.route.save()
    aliased = Route.objects.create(name="aliased", model_pattern="aliased-*", priority=0)
    RouteTarget.objects.create(
        route=aliased, position=0, provider=upstream.provider, upstream_model="claude-opus-4-7"
    )
    monkeypatch.setattr(forward, "_pool_state", None)
    monkeypatch.setattr(ledger, "_shared", None)
    loop = asyncio.new_event_loop()
    app = ProxyApp()
    yield Proxy(app=app, loop=loop, secret=alice.secret)
    loop.run_until_complete(app.client.aclose())
    loop.run_until_complete(sync_to_async(connections.close_all)())
    loop.close()


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
text_blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "thinking", "image", "tool_use"]), "text": st.text()},
    optional={"cache_control": json_values | st.just({"type": "ephemeral", "ttl": "1h"})},
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "system", 5]),
            "content": st.text(max_size=30) | st.lists(text_blocks | json_values, max_size=3),
        }
    )
    | json_values,
    max_size=4,
)
NEAR_VALID_FIELDS = {
    "model": st.sampled_from(MODELS) | st.text(max_size=12) | json_values,
    "max_tokens": st.sampled_from([1, 64, 0, -1, 1.5, "64", True, 2**63 - 1, 2**64 - 1])
    | json_values,
    "messages": messages,
    "system": st.text(max_size=4000) | st.lists(text_blocks | json_values, max_size=3),
    "tools": st.lists(
        st.fixed_dictionaries({"name": st.text(max_size=8), "input_schema": json_values})
        | json_values,
        max_size=3,
    )
    | json_values,
    "stream": st.booleans() | json_values,
    "metadata": st.fixed_dictionaries({"user_id": st.text(max_size=60) | json_values})
    | json_values,
    "cache_control": st.just({"type": "ephemeral"}) | json_values,
    "thinking": st.fixed_dictionaries(
        {"type": st.sampled_from(["enabled", "adaptive", "disabled"]) | json_values},
        optional={"budget_tokens": json_values},
    )
    | json_values,
    "temperature": json_values,
    "top_p": json_values,
}


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> bytes:
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(MODELS)),
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "hello " * draw(st.integers(0, 600))}],
    }
    for name in draw(st.sets(st.sampled_from(sorted(NEAR_VALID_FIELDS)), max_size=5)):
        if draw(st.integers(0, 5)) == 0:
            body.pop(name, None)
        else:
            body[name] = draw(NEAR_VALID_FIELDS[name])
    return orjson.dumps(body)


odd_bodies = (
    json_values.map(orjson.dumps)
    | st.binary(max_size=200)
    | st.sampled_from([b"", b"{", b'{"model": "claude-opus-5"', b"\xef\xbb\xbf{}", b"[" * 2000])
)
odd_content_types = st.sampled_from(
    [
        b"application/json; charset=utf-8",
        b"APPLICATION/JSON",
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"",
        b"application/json\xff",
    ]
)
header_names = st.sampled_from(
    [
        b"anthropic-version",
        b"anthropic-beta",
        b"x-claude-code-session-id",
        b"x-claude-code-agent-id",
        b"user-agent",
        b"authorization",
        b"x-stainless-lang",
    ]
)
printable_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
    str.encode
) | st.sampled_from([b"2023-06-01", b"prompt-caching-2024-07-31"])
odd_headers = st.tuples(
    header_names | st.sampled_from([b"bad header", b"\xfe-name", b""]),
    st.binary(max_size=30) | st.text(max_size=30).map(str.encode),
)


def mostly(draw: st.DrawFn, usual: st.SearchStrategy, odd: st.SearchStrategy) -> Any:
    """The usual value nine times in ten, so most requests get past the first checks."""
    return draw(usual if draw(st.sampled_from(range(10))) < 9 else odd)


@st.composite
def requests(draw: st.DrawFn, secret: str) -> dict[str, Any]:
    body = mostly(draw, near_valid_bodies(), odd_bodies)
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=2)))
    parts = [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    headers = [(b"host", b"gatehouse")]
    content_type = mostly(draw, st.just(b"application/json"), st.none() | odd_content_types)
    if content_type is not None:
        headers.append((b"content-type", content_type))
    credential = mostly(
        draw, st.just(secret.encode()), st.sampled_from([None, b"gh_live_nope", b"\x00\xff"])
    )
    if credential is not None:
        headers.append((b"x-api-key", credential))
    length = mostly(
        draw,
        st.just(str(len(body)).encode()),
        st.sampled_from([None, b"-1", b"\xb2", b"1e3", b"7", b"9" * 30]),
    )
    if length is not None:
        headers.append((b"content-length", length))
    headers += draw(st.lists(st.tuples(header_names, printable_values), max_size=3))
    headers += mostly(draw, st.just([]), st.lists(odd_headers, min_size=1, max_size=2))
    return {
        "method": mostly(draw, st.just("POST"), st.sampled_from(["GET", "PUT", "OPTIONS"])),
        "path": draw(st.sampled_from(["/v1/messages"] * 3 + ["/v1/messages/count_tokens"])),
        "headers": headers,
        "body_parts": parts,
    }


def assert_anthropic_error_body(response: Response) -> None:
    document = orjson.loads(response.body)
    assert document["type"] == "error"
    assert isinstance(document["error"]["type"], str)
    assert isinstance(document["error"]["message"], str)
    assert document["request_id"].startswith("req_")
    assert document["request_id"] == response.headers[b"request-id"].decode()


def test_no_generated_request_crashes_the_proxy_or_gets_a_malformed_answer(proxy, emulator):
    started = timezone.now()
    seen = 0

    @settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests(proxy.secret))
    def one_request(request: dict[str, Any]) -> None:
        nonlocal seen
        forwarded_before = len(emulator.requests())

        response = proxy.loop.run_until_complete(asgi_request(proxy.app, **request))
        seen += 1

        is_gateway_answer = response.headers[b"request-id"].startswith(GATEWAY_REQUEST_ID_PREFIX)
        if is_gateway_answer:
            assert response.status < 500, response
            assert len(emulator.requests()) == forwarded_before
        if response.status >= 400:
            assert_anthropic_error_body(response)
        if response.status == 405:
            assert response.headers[b"allow"] == b"POST"

    one_request()

    recorder().flush_now()
    assert seen >= 200
    assert RequestLog.objects.filter(started_at__gte=started).count() == seen
