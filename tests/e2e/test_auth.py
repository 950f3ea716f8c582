"""Issue 4: refusals (CONTRACTS §5): 401 invalid_api_key, 400 tag_conflict."""
import json

import pytest

from helpers import REVOKED_KEY, SEARCH_KEY, chat_body, filter_config


def _error_type(body: bytes) -> str:
    err = json.loads(body)["error"]
    assert err["message"], err
    return err["type"]


@pytest.mark.parametrize("headers", [
    {},
    {"authorization": "Bearer sk-aispend-not-a-key"},
    {"authorization": f"Bearer {REVOKED_KEY}"},
    {"x-api-key": "sk-aispend-not-a-key"},
], ids=["no-key", "unknown-key", "revoked-key", "unknown-x-api-key"])
def test_bad_keys_get_401_invalid_api_key_and_nothing_reaches_upstream(demo, headers):
    status, resp_headers, body = demo.chat(None, chat_body(3), headers)
    assert status == 401, body
    assert resp_headers["content-type"].startswith("application/json")
    assert _error_type(body) == "invalid_api_key"
    assert demo.mock.requests() == []


def test_reject_mode_answers_400_tag_conflict(stack_factory):
    s = stack_factory(filter_config(tags={"on_conflict": "reject"}))
    status, _, body = s.chat(SEARCH_KEY, chat_body(3), {"x-aispend-team": "someone-else"})
    assert status == 400, body
    assert _error_type(body) == "tag_conflict"
    assert s.mock.requests() == []
    # Without a conflicting header the same key passes.
    assert s.chat(SEARCH_KEY, chat_body(3))[0] == 200
