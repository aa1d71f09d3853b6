"""Redaction of logged bodies (gateway/body_log.py): pure, no database."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from accounts.keys import MANAGEMENT_TOKEN_PREFIX, VIRTUAL_KEY_PREFIX, generate_secret
from gateway.body_log import REDACTED, BodyCapture, build_redactor, sealed_body, secret_fragments

TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
token = st.text(alphabet=TOKEN_ALPHABET, min_size=16, max_size=64)
surrounding = st.text(max_size=200)
UPSTREAM_SECRET = "opensecret-7f3a9c2e41d8b6f0"
ACME_PATTERN = r"ACME-\d{6}"

shaped_secrets = st.one_of(
    token.map(lambda value: f"sk-ant-api03-{value}"),
    token.map(lambda value: f"sk-ant-admin01-{value}"),
    st.just(None).map(lambda _: generate_secret(VIRTUAL_KEY_PREFIX).secret),
    st.just(None).map(lambda _: generate_secret(MANAGEMENT_TOKEN_PREFIX).secret),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16).map(
        lambda value: "AKIA" + value
    ),
    st.integers(0, 999_999).map(lambda number: f"ACME-{number:06d}"),
    st.just(UPSTREAM_SECRET),
)


def redactor():
    return build_redactor((ACME_PATTERN,), (UPSTREAM_SECRET,))


@given(before=surrounding, secret=shaped_secrets, after=surrounding)
def test_a_planted_secret_never_survives_anywhere_in_a_body(before, secret, after):
    text = before + secret + after

    assert secret not in redactor().redact(text)


@given(before=surrounding, secret=shaped_secrets, after=surrounding, data=st.data())
def test_a_secret_cut_by_truncation_leaves_no_first_part_behind(before, secret, after, data):
    text = before + " " + secret + after
    cut = data.draw(st.integers(len(before) + 1, len(before) + len(secret)))

    redacted = redactor().redact(text[:cut], truncated=True)

    assert not any(redacted.endswith(secret[:size]) for size in range(4, len(secret) + 1))


@given(st.text(alphabet=' abcdefghij.,:{}[]"\n0123', max_size=300))
def test_text_without_secrets_passes_unchanged(text):
    assert redactor().redact(text) == text


def test_bearer_tokens_and_x_api_key_values_are_redacted_in_headers_and_json():
    text = (
        'Authorization: Bearer abc.DEF-123_xyz\n{"x-api-key": "whatever-it-is", '
        '"headers": {"X-Api-Key": \'k2\'}}\nsent "bearer Bearer tok3n" twice'
    )

    redacted = redactor().redact(text)

    assert redacted == (
        f'Authorization: {REDACTED}\n{{"{REDACTED}", '
        f'"headers": {{"{REDACTED}\'}}}}\nsent "{REDACTED}" twice'
    )


def test_aws_secret_like_strings_are_redacted_but_git_hashes_are_not():
    aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    commit = "c4c2a98e1f0b2d3a4c5b6e7f8091a2b3c4d5e6f7"

    redacted = redactor().redact(f"secret={aws_secret} commit {commit}")

    assert redacted == f"secret={REDACTED} commit {commit}"


def test_json_credentials_are_redacted_field_by_field_and_as_escaped_in_json():
    vertex = orjson.dumps(
        {
            "type": "service_account",
            "project_id": "my-project",
            "private_key_id": "0123456789abcdef0123",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END",
        }
    ).decode()
    body = orjson.dumps(
        {"text": "key: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC id 0123456789abcdef0123 my-project"}
    ).decode()

    redacted = build_redactor((), (vertex,)).redact(body + vertex)

    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in redacted
    assert "0123456789abcdef0123" not in redacted
    assert "my-project" in redacted
    assert secret_fragments("short") == set()


def test_a_pattern_matching_empty_spans_redacts_only_real_matches():
    assert build_redactor((r"x*",)).redact("abxxc") == f"ab{REDACTED}c"


def test_capture_keeps_bodies_up_to_the_limit_and_flags_what_it_cut():
    capture = BodyCapture(b"0123456789", max_bytes=8, patterns=())
    for chunk in (b"abc", b"defgh", b"ijk"):
        capture.add_response(chunk)

    assert (capture.request, capture.is_request_truncated) == (b"01234567", True)
    assert (b"".join(capture.response), capture.is_response_truncated) == (b"abcdefgh", True)


def test_a_body_that_fits_is_kept_whole_and_not_flagged():
    request = b'{"model": "claude"}'
    capture = BodyCapture(request, max_bytes=1024, patterns=())
    capture.add_response(b"ok")

    assert capture.request is request
    assert (capture.is_request_truncated, capture.is_response_truncated) == (False, False)


def test_sealing_decodes_bad_utf8_and_nul_and_drops_a_half_cut_secret():
    secret = "sk-ant-api03-" + "Q" * 40
    capture = BodyCapture(b"hi \xff\x00 " + secret.encode(), max_bytes=30, patterns=())

    sealed = sealed_body(capture, build_redactor(()))

    assert sealed == {
        "request_text": f"hi \ufffd\ufffd {REDACTED}",
        "response_text": "",
        "is_request_truncated": True,
        "is_response_truncated": False,
    }


def sse_stream(text: str, cuts: list[int]) -> str:
    """An Anthropic stream whose text block carries `text` in deltas split at `cuts`."""
    bounds = [0, *sorted(cuts), len(text)]
    frames = [
        'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1"}}\n\n',
        "event: content_block_start\n"
        'data: {"type":"content_block_start","index":0,"content_block":{"type":"text"}}\n\n',
    ]
    for start, end in zip(bounds, bounds[1:], strict=False):
        delta = {"type": "content_block_delta", "index": 0}
        delta["delta"] = {"type": "text_delta", "text": text[start:end]}
        frames.append(f"event: content_block_delta\ndata: {orjson.dumps(delta).decode()}\n\n")
    frames.append('event: message_stop\ndata: {"type":"message_stop"}\n\n')
    return "".join(frames)


def delta_text(sse: str) -> str:
    return "".join(
        event["delta"]["text"]
        for line in sse.split("\n")
        if line.startswith("data:")
        for event in [orjson.loads(line[5:])]
        if event["type"] == "content_block_delta"
    )


@given(
    before=st.text(max_size=60),
    secret=shaped_secrets,
    after=st.text(max_size=60),
    data=st.data(),
)
def test_a_secret_streamed_in_pieces_across_deltas_never_survives(before, secret, after, data):
    text = before + secret + after
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=8))
    capture = BodyCapture(b"{}", max_bytes=1 << 20, patterns=())
    capture.add_response(sse_stream(text, cuts).encode())

    stored = sealed_body(capture, redactor())["response_text"]

    assert secret not in delta_text(stored)
    assert secret not in stored
    assert stored.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')


@given(st.text(alphabet=' abcdefghij.,:{}[]"\n0123', max_size=200), st.data())
def test_a_stream_without_secrets_is_stored_byte_for_byte(text, data):
    sse = sse_stream(text, data.draw(st.lists(st.integers(0, len(text)), max_size=5)))
    capture = BodyCapture(b"{}", max_bytes=1 << 20, patterns=())
    capture.add_response(sse.encode())

    assert sealed_body(capture, redactor())["response_text"] == sse
