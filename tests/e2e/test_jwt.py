"""Issue 4: identity from a JWT verified by Envoy's real jwt_authn filter
(local_jwks inlined in the Envoy config, claims in dynamic metadata)."""
import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from helpers import SEARCH_KEY, chat_body, filter_config, usage_window_start, wait_for_requests

ISSUER = "https://idp.example.com"  # envoy/render.py's default jwt issuer


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def signing_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks(key) -> str:
    pub = key.public_key().public_numbers()
    return json.dumps({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "test",
                                 "n": _b64(pub.n), "e": _b64(pub.e)}]})


def _token(key, **claims) -> str:
    payload = {"iss": ISSUER, "sub": "alice", "iat": int(time.time()), "exp": int(time.time()) + 600,
               "org": "acme", "team": "research", "project": "agents", "cost_center": "CC-3003",
               "env": "staging", **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "test"})


@pytest.fixture
def jwt_stack(stack_factory, signing_key):
    cfg = filter_config(identity={
        "sources": ["jwt", "api_key"],
        "jwt": {"claims": {"org": "org", "team": "team", "project": "project",
                           "cost_center": "cost_center", "environment": "env"}},
    })
    return stack_factory(cfg, jwks=_jwks(signing_key))


def test_jwt_claims_become_tags_and_usage(jwt_stack, signing_key):
    since = usage_window_start()
    token = _token(signing_key)
    status, _, body = jwt_stack.chat(token, chat_body(6))
    assert status == 200, body

    up = jwt_stack.mock.requests()[0]
    assert up["headers"]["x-aispend-team"] == "research"
    assert up["headers"]["x-aispend-environment"] == "staging"
    assert up["headers"]["x-aispend-key-id"] == "jwt:alice"
    assert all(token not in v for _, v in up["header_list"])

    usage = wait_for_requests(jwt_stack.collector, since, 1, group_by="team,key_id")
    [row] = usage["rows"]
    assert (row["team"], row["key_id"], row["input_tokens"]) == ("research", "jwt:alice", 6)


def test_virtual_keys_still_work_next_to_jwt(jwt_stack):
    status, _, body = jwt_stack.chat(SEARCH_KEY, chat_body(2))
    assert status == 200, body
    assert jwt_stack.mock.requests()[0]["headers"]["x-aispend-team"] == "search"


def test_jwt_with_a_foreign_signature_is_refused(jwt_stack):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    status, _, body = jwt_stack.chat(_token(other), chat_body(2))
    assert status == 401, body
    assert json.loads(body)["error"]["type"] == "invalid_api_key"
    assert jwt_stack.mock.requests() == []
