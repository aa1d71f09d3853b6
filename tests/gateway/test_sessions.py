from gateway.sessions import session_id_from

SESSION = "3d03682c-acd8-4c1b-bbcf-7b176184d3a9"
DEVICE = "c" * 64


def test_session_header_wins_over_metadata():
    body = {"metadata": {"user_id": f'{{"session_id":"{"0" * 36}"}}'}}
    assert session_id_from(SESSION, body) == SESSION


def test_session_id_is_parsed_from_json_string_user_id():
    user_id = f'{{"device_id":"{DEVICE}","account_uuid":"","session_id":"{SESSION}"}}'
    assert session_id_from(None, {"metadata": {"user_id": user_id}}) == SESSION


def test_session_id_is_parsed_from_legacy_user_id():
    user_id = f"user_{DEVICE}_account__session_{SESSION}"
    assert session_id_from(None, {"metadata": {"user_id": user_id}}) == SESSION


def test_arbitrary_user_id_gives_no_session():
    assert session_id_from(None, {"metadata": {"user_id": "customer-42"}}) == ""
    assert session_id_from(None, {"metadata": {"user_id": "{not json"}}) == ""
    assert session_id_from(None, {"metadata": "nope"}) == ""
    assert session_id_from(None, {}) == ""
