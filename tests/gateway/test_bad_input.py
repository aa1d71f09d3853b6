"""Bad input through the real server: a clean 4xx in Anthropic's shape, never a 500, never
forwarded, and logged; what the HTTP server refuses before the gateway sees it, measured.

Daphne's HTTP layer (Twisted's HTTPChannel) answers some requests itself, before any ASGI
application runs: a header line longer than 16,384 bytes closes the connection without a
response; request line plus headers over 16,384 bytes, more than 500 headers, a NUL in a header
or a malformed Content-Length get a bare `400 Bad Request` with no body. The gateway cannot
shape those answers; these tests pin them and prove the server keeps serving afterwards.

Granian's HTTP layer (hyper) answers a bare `400` to control bytes (other than tab) in a
header value, a NUL or a malformed Content-Length, and a bare `431` to more than 100 headers;
longer headers reach the gateway, which refuses (431, Anthropic's shape) anything over the
16,384 bytes Twisted allows, so both servers forward the same requests.
"""

from __future__ import annotations

import re
import socket
import time

import httpx
import orjson
import pytest

from gateway.models import RequestLog, RequestOutcome, RouteTarget
from tests.gateway.conftest import wait_for_logs
from tests.gateway.test_proxy_endpoints import BODY, assert_anthropic_error, call

pytestmark = pytest.mark.django_db(transaction=True)
TWISTED_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"
# hyper's own refusals carry no body and close the connection
HYPER_BARE_ANSWER = re.compile(
    rb"HTTP/1\.1 (400 Bad Request|431 Request Header Fields Too Large)\r\n"
    rb"connection: close\r\ncontent-length: 0\r\ndate: [^\r]+\r\n\r\n\Z"
)


def raw_exchange(server, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send `request` on a fresh connection and read until the server closes it."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def raw_messages_request(secret: str | bytes, extra_headers: bytes = b"") -> bytes:
    body = orjson.dumps(BODY)
    return (
        b"POST /v1/messages HTTP/1.1\r\nhost: gatehouse\r\ncontent-type: application/json\r\n"
        + b"x-api-key: "
        + (secret if isinstance(secret, bytes) else secret.encode())
        + b"\r\n"
        + extra_headers
        + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        + body
    )


def parse_raw_response(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split(" ")[1]), headers, orjson.loads(body)


def assert_still_serving(server, secret: str) -> None:
    response = call(server, "POST", "/v1/messages", secret=secret, content=orjson.dumps(BODY))
    assert response.status_code == 200
    assert response.json()["type"] == "message"


def test_a_chunked_body_that_grows_past_the_limit_gets_413_and_is_not_forwarded(
    gatehouse_server_fast_ping, upstream, emulator, alice
):
    def chunks():  # no Content-Length: httpx sends Transfer-Encoding: chunked
        yield b'{"model": "claude-opus-5", "padding": "'
        for _ in range(30):
            yield b"x" * 5_000

    response = httpx.post(
        gatehouse_server_fast_ping.base_url + "/v1/messages",
        content=chunks(),
        headers={"x-api-key": alice.secret, "content-type": "application/json"},
        timeout=30,
    )

    assert "content-length" not in response.request.headers
    assert_anthropic_error(
        response,
        413,
        "request_too_large",
        "Request body exceeds the gateway's limit of 100000 bytes.",
    )
    assert emulator.requests() == []
    [row] = wait_for_logs(1, status_code=413)
    assert (row.outcome, row.error_type) == (RequestOutcome.GATEWAY_ERROR, "request_too_large")


def assert_refused_naming_the_header(server, emulator, secret: str, header: bytes, value: bytes):
    raw = raw_exchange(server, raw_messages_request(secret, header + b": " + value + b"\r\n"))

    status, headers, body = parse_raw_response(raw)
    assert status == 400
    assert body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": f"Header '{header.decode()}' must be printable ASCII text.",
        },
        "request_id": headers["request-id"],
    }
    assert emulator.requests() == []
    [row] = wait_for_logs(1, status_code=400)
    assert (row.status_code, row.outcome, row.error_type) == (
        400,
        RequestOutcome.GATEWAY_ERROR,
        "invalid_request_error",
    )


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (b"anthropic-beta", b"prompt-caching-\xff\xfe"),
        (b"anthropic-version", "2023-06-01é".encode()),
        (b"x-claude-code-agent-id", b"\xc3\x28"),
    ],
    ids=["beta-latin1", "version-utf8", "agent-invalid-utf8"],
)
def test_a_header_value_that_is_not_printable_ascii_gets_400_naming_the_header(
    gatehouse_server, upstream, emulator, alice, header, value
):
    assert_refused_naming_the_header(gatehouse_server, emulator, alice.secret, header, value)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (b"x-claude-code-session-id", b"3d03682c\x01"),
        (b"user-agent", b"claude-cli/2.1 \x7f"),
    ],
    ids=["session-control", "ua-delete"],
)
def test_under_daphne_control_bytes_in_a_header_value_get_400_naming_the_header(
    daphne_server, upstream, emulator, alice, header, value
):
    """Granian's parser refuses these itself (a bare 400, tested below)."""
    assert_refused_naming_the_header(daphne_server, emulator, alice.secret, header, value)


def test_a_credential_with_non_ascii_bytes_gets_400_that_never_echoes_it(
    gatehouse_server, upstream, emulator
):
    raw = raw_exchange(gatehouse_server, raw_messages_request(b"gh_live_\xff\xfe-secret"))

    status, _headers, body = parse_raw_response(raw)
    assert (status, body["error"]) == (
        400,
        {
            "type": "invalid_request_error",
            "message": "Header 'x-api-key' must be printable ASCII text.",
        },
    )
    assert b"-secret" not in raw
    assert emulator.requests() == []


@pytest.mark.parametrize(
    "extra_headers",
    [
        b"anthropic-beta: a\x00b\r\n",
        b"content-length: 12\xb2\r\n",
        b"".join(b"x-filler-%d: value\r\n" % number for number in range(1_000)),
        b"x-one: " + b"a" * 10_000 + b"\r\nx-two: " + b"b" * 10_000 + b"\r\n",
    ],
    ids=["nul-in-value", "non-digit-content-length", "1000-headers", "20kb-of-headers"],
)
def test_daphne_refuses_unparseable_or_oversized_headers_with_a_bare_400_and_keeps_serving(
    daphne_server, upstream, emulator, alice, extra_headers
):
    raw = raw_exchange(daphne_server, raw_messages_request(alice.secret, extra_headers))

    assert raw == TWISTED_BAD_REQUEST
    assert emulator.requests() == []
    assert_still_serving(daphne_server, alice.secret)


def test_a_100kb_header_makes_daphne_close_the_connection_at_once_and_it_keeps_serving(
    daphne_server, upstream, emulator, alice
):
    started = time.monotonic()

    raw = raw_exchange(
        daphne_server, raw_messages_request(alice.secret, b"x-big: " + b"a" * 100_000 + b"\r\n")
    )

    assert raw == b""  # Twisted drops a header line over 16,384 bytes without an answer
    assert time.monotonic() - started < 5
    assert emulator.requests() == []
    assert_still_serving(daphne_server, alice.secret)


@pytest.mark.parametrize(
    ("extra_headers", "status_line"),
    [
        (b"x-claude-code-session-id: 3d03682c\x01\r\n", b"400 Bad Request"),
        (b"user-agent: claude-cli/2.1 \x7f\r\n", b"400 Bad Request"),
        (b"anthropic-beta: a\x00b\r\n", b"400 Bad Request"),
        (b"content-length: 12\xb2\r\n", b"400 Bad Request"),
        (
            b"".join(b"x-filler-%d: value\r\n" % number for number in range(1_000)),
            b"431 Request Header Fields Too Large",
        ),
    ],
    ids=[
        "session-control",
        "ua-delete",
        "nul-in-value",
        "non-digit-content-length",
        "1000-headers",
    ],
)
def test_granian_refuses_unparseable_headers_or_too_many_with_a_bare_answer_and_keeps_serving(
    granian_server, upstream, emulator, alice, extra_headers, status_line
):
    raw = raw_exchange(granian_server, raw_messages_request(alice.secret, extra_headers))

    assert HYPER_BARE_ANSWER.match(raw)
    assert raw.startswith(b"HTTP/1.1 " + status_line)
    assert emulator.requests() == []
    assert_still_serving(granian_server, alice.secret)


@pytest.mark.parametrize(
    "extra_headers",
    [
        b"x-one: " + b"a" * 10_000 + b"\r\nx-two: " + b"b" * 10_000 + b"\r\n",
        b"x-big: " + b"a" * 100_000 + b"\r\n",
    ],
    ids=["20kb-of-headers", "100kb-header"],
)
def test_under_granian_headers_over_16_kib_get_431_in_anthropic_shape_and_are_never_forwarded(
    granian_server, upstream, emulator, alice, extra_headers
):
    raw = raw_exchange(granian_server, raw_messages_request(alice.secret, extra_headers))

    status, headers, body = parse_raw_response(raw)
    assert status == 431
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].endswith("the gateway's limit is 16384.")
    assert emulator.requests() == []
    [row] = wait_for_logs(1, status_code=431)
    assert (row.outcome, row.error_type) == (RequestOutcome.GATEWAY_ERROR, "invalid_request_error")
    assert_still_serving(granian_server, alice.secret)


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("POST", "/v1", 404, None),
        ("POST", "/v1/", 404, None),
        ("POST", "/v1/messages/batches", 404, None),
        ("POST", "/v1/messages/", 404, None),
        ("GET", "/v1/complete", 404, None),
        ("PUT", "/v1/messages/count_tokens", 405, "POST"),
        ("PATCH", "/v1/messages", 405, "POST"),
        ("POST", "/v1/models", 405, "GET"),
        ("POST", "/api/hello", 405, "HEAD"),
    ],
)
def test_unknown_paths_and_wrong_methods_get_anthropic_shaped_404_or_405(
    gatehouse_server, upstream, emulator, alice, method, path, status, allow
):
    response = call(gatehouse_server, method, path, secret=alice.secret, content=b"{}")

    assert_anthropic_error(
        response, status, "not_found_error" if status == 404 else "invalid_request_error"
    )
    assert response.headers.get("allow") == allow
    assert emulator.requests() == []


def test_a_nul_in_the_path_gets_404_and_its_log_row_is_still_written(
    gatehouse_server, upstream, emulator, alice
):
    response = call(gatehouse_server, "POST", "/v1/x%00y", secret=alice.secret, content=b"{}")

    assert_anthropic_error(response, 404, "not_found_error", "Not found: POST /v1/x\x00y")
    [row] = wait_for_logs(1, status_code=404)
    assert (row.endpoint, row.error_message) == ("/v1/xy", "Not found: POST /v1/xy")


@pytest.mark.parametrize(
    ("max_tokens", "message"),
    [
        (-1, "max_tokens: Input should be an integer greater than or equal to 1"),
        (0, "max_tokens: Input should be an integer greater than or equal to 1"),
        (1.5, "max_tokens: Input should be an integer greater than or equal to 1"),
        ("64", "max_tokens: Input should be an integer greater than or equal to 1"),
        (True, "max_tokens: Input should be an integer greater than or equal to 1"),
        (None, "max_tokens: Field required"),
        (b"1" + b"0" * 30, "max_tokens: Input should be an integer greater than or equal to 1"),
    ],
    ids=["negative", "zero", "float", "string", "bool", "null", "10**30"],
)
def test_an_absurd_max_tokens_is_the_providers_400_relayed_unchanged(
    gatehouse_server, upstream, emulator, alice, max_tokens, message
):
    body = orjson.dumps({**BODY, "max_tokens": "MAX"})
    literal = max_tokens if isinstance(max_tokens, bytes) else orjson.dumps(max_tokens)
    body = body.replace(b'"MAX"', literal)  # orjson cannot write 10**30; the client can

    response = call(gatehouse_server, "POST", "/v1/messages", secret=alice.secret, content=body)

    assert_anthropic_error(response, 400, "invalid_request_error", message)
    assert len(emulator.requests()) == 1
    [row] = wait_for_logs(1, user=alice.user)
    assert (row.status_code, row.outcome) == (400, RequestOutcome.UPSTREAM_ERROR)


def test_a_max_tokens_no_budget_can_cover_is_refused_before_forwarding(
    gatehouse_server, upstream, emulator, alice
):
    body = orjson.dumps({**BODY, "max_tokens": 2**63 - 1})

    response = call(gatehouse_server, "POST", "/v1/messages", secret=alice.secret, content=body)

    assert_anthropic_error(response, 400, "invalid_request_error")
    assert response.json()["error"]["message"].startswith(
        "Monthly budget of cost center 'research' (500.00 USD) cannot cover this request"
    )
    assert emulator.requests() == []


WRONG_TYPES = {
    "messages-string": {"messages": "hello"},
    "messages-null": {"messages": None},
    "message-content-int": {"messages": [{"role": "user", "content": 5}]},
    "message-not-object": {"messages": ["hello"]},
    "system-int": {"system": 5},
    "system-list-of-strings": {"system": ["a", "b"]},
    "tools-object": {"tools": {"name": "Read"}},
    "tools-of-strings": {"tools": ["Read"]},
    "metadata-string": {"metadata": "user"},
    "metadata-user-id-int": {"metadata": {"user_id": 5}},
    "metadata-user-id-json-list": {"metadata": {"user_id": "[1, 2]"}},
    "cache-control-string": {"cache_control": "ephemeral"},
    "cache-control-bad-ttl": {"cache_control": {"type": "ephemeral", "ttl": 5}},
    "block-cache-control-list": {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": []}]}
        ]
    },
    "thinking-list": {"thinking": ["enabled"]},
    "thinking-enabled-string-budget": {"thinking": {"type": "enabled", "budget_tokens": "x"}},
    "thinking-adaptive": {"thinking": {"type": "adaptive"}},
    "temperature-string": {"temperature": "hot"},
    "top-level-unknown": {"frobnicate": {"deep": [1, 2, 3]}},
}


@pytest.mark.parametrize("fields", list(WRONG_TYPES.values()), ids=list(WRONG_TYPES))
def test_wrong_types_in_fields_the_gateway_reads_never_crash_it(
    gatehouse_server, upstream, emulator, alice, fields
):
    # Cache injection and the alias rewrite both read the body on this route.
    upstream.route.cache_policy = "auto"
    upstream.route.save()
    RouteTarget.objects.filter(route=upstream.route).update(upstream_model="claude-opus-4-7")
    padding = [{"role": "user", "content": "long context " * 2_000}]
    body = {**BODY, "messages": padding + BODY["messages"], **fields}

    response = call(
        gatehouse_server, "POST", "/v1/messages", secret=alice.secret, content=orjson.dumps(body)
    )

    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert_anthropic_error(response, 400, "invalid_request_error")
    assert len(emulator.requests()) == 1
    assert wait_for_logs(1, user=alice.user)[0].status_code == response.status_code


def with_deep_field(body: dict, depth: int = 600) -> bytes:
    """`body` plus a field nested `depth` lists deep, which orjson reads but cannot write."""
    return orjson.dumps({**body, "frobnicate": "DEEP"}).replace(
        b'"DEEP"', b"[" * depth + b"]" * depth
    )


def test_json_nested_too_deep_to_rewrite_gets_400_on_an_aliased_route(
    gatehouse_server, upstream, emulator, alice
):
    RouteTarget.objects.filter(route=upstream.route).update(upstream_model="claude-opus-4-7")
    body = with_deep_field(BODY)

    response = call(gatehouse_server, "POST", "/v1/messages", secret=alice.secret, content=body)

    assert_anthropic_error(
        response,
        400,
        "invalid_request_error",
        "Request body nests JSON too deeply for the gateway to rewrite it for this route.",
    )
    assert emulator.requests() == []


def test_json_nested_too_deep_to_rewrite_is_forwarded_untouched_when_only_caching_would_change_it(
    gatehouse_server, upstream, emulator, alice
):
    upstream.route.cache_policy = "auto"
    upstream.route.save()
    body = with_deep_field({**BODY, "system": "you are terse " * 2_000})

    response = call(gatehouse_server, "POST", "/v1/messages", secret=alice.secret, content=body)

    assert response.status_code == 200
    assert emulator.last_request()["body"] == body.decode()
    assert RequestLog.objects.filter(status_code__gte=500).count() == 0


@pytest.mark.parametrize("limit", ["%C2%B2", "-1", "0", "1001", "ten", "1e3"])
def test_a_models_page_size_that_is_not_1_to_1000_gets_400(
    gatehouse_server, upstream, alice, limit
):
    response = call(gatehouse_server, "GET", f"/v1/models?limit={limit}", secret=alice.secret)

    assert_anthropic_error(
        response,
        400,
        "invalid_request_error",
        "limit: Input should be an integer between 1 and 1000",
    )
