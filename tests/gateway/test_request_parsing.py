import pytest

from gateway.errors import GatewayError
from gateway.proxy.app import parse_messages_body
from gateway.proxy.auth import presented_secret


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"model":"x"}', "text/plain", "Content-Type must be application/json."),
        (b"", "application/json", "Request body is empty; expected a JSON object."),
        (b"\xff\xfe{}", "application/json", "Request body is not valid UTF-8."),
        (b"[1, 2]", "application/json", "Request body must be a JSON object."),
        (b'{"max_tokens": 5}', "application/json", "model: Field required"),
        (b'{"model": 5}', "application/json", "model: Input should be a non-empty string"),
        (
            b'{"model": "claude-opus-5", "stream": "yes"}',
            "application/json",
            "stream: Input should be a valid boolean",
        ),
    ],
)
def test_bad_request_bodies_are_rejected_with_a_message_that_says_why(body, content_type, message):
    with pytest.raises(GatewayError) as caught:
        parse_messages_body(body, content_type)
    assert (caught.value.status, caught.value.error_type, caught.value.message) == (
        400,
        "invalid_request_error",
        message,
    )


def test_invalid_json_names_the_problem():
    with pytest.raises(GatewayError) as caught:
        parse_messages_body(b'{"model": ', "application/json; charset=utf-8")
    assert caught.value.message.startswith("Request body is not valid JSON")


def test_valid_body_is_parsed_once_into_a_dict():
    assert parse_messages_body(b'{"model":"claude-opus-5","stream":true}', "application/json") == {
        "model": "claude-opus-5",
        "stream": True,
    }


def test_credential_comes_from_either_header_and_disagreeing_headers_are_refused():
    assert presented_secret("gh_live_a", None) == "gh_live_a"
    assert presented_secret(None, "Bearer gh_live_b") == "gh_live_b"
    assert presented_secret("gh_live_c", "Bearer gh_live_c") == "gh_live_c"
    with pytest.raises(GatewayError, match="different keys"):
        presented_secret("gh_live_a", "Bearer gh_live_b")
    with pytest.raises(GatewayError, match="Missing credential"):
        presented_secret(None, None)
    with pytest.raises(GatewayError, match="Bearer"):
        presented_secret(None, "Basic abc")
