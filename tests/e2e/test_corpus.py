"""Replay every real-format provider sample of tests/corpus through Envoy and
the compiled filter: the mock serves the recorded response, and the record the
filter ships must match the sample's `.expect.json` (record, usage, error);
what the client receives must be the recorded body (or `client_body_file`), and
what the upstream receives the request (or `upstream_request_body`). A
request is `body` (JSON, sent as json.dumps writes it) or `body_text` (the
exact bytes)."""
import json

import pytest

from helpers import SEARCH_KEY
from procs import ROOT, wait_until

CORPUS = ROOT / "tests" / "corpus"
CASES = sorted(CORPUS.glob("*/*.expect.json"))
TOKEN_FIELDS = ["input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens",
                "reasoning_tokens"]
KEY_HEADER = {"openai": "authorization", "azure": "api-key", "anthropic": "x-api-key", "gemini": "x-goog-api-key"}


def _case_id(path):
    return f"{path.parent.name}/{path.name[:-len('.expect.json')]}"


def _key_headers(provider: str) -> dict:
    header = KEY_HEADER.get(provider, "authorization")
    return {header: f"Bearer {SEARCH_KEY}" if header == "authorization" else SEARCH_KEY}


@pytest.mark.skipif(not CASES, reason="no corpus yet")
@pytest.mark.parametrize("expect_file", CASES, ids=[_case_id(c) for c in CASES])
def test_corpus_case_through_the_gateway(sink_stack, expect_file):
    case = json.loads(expect_file.read_text())
    folder = expect_file.parent
    request, response, want_record, want_usage = case["request"], case["response"], case["record"], case["usage"]
    headers = {**_key_headers(want_record["provider"]), "x-mock-corpus": _case_id(expect_file),
               "x-mock-split": "1"}
    before = len(sink_stack.sink.snapshot())

    # `body_text`: the bytes as a client wrote them (escapes json.dumps would not write).
    sent = request["body_text"].encode() if "body_text" in request else request.get("body")
    status, resp_headers, body = sink_stack.envoy.request(request.get("method", "POST"), request["path"],
                                                          sent, headers)

    assert status == response["status"]
    client_file = folder / case.get("client_body_file", response["body_file"])
    assert body == client_file.read_bytes(), "the client must get the provider's bytes"
    upstream = sink_stack.mock.requests()[-1]
    assert json.loads(upstream["body"]) == case.get("upstream_request_body", request.get("body"))
    assert all(SEARCH_KEY not in v for _, v in upstream["header_list"])

    rid = resp_headers["x-aispend-request-id"]
    records = wait_until(lambda: [r for r in sink_stack.sink.snapshot()[before:] if r["id"] == rid], 10,
                         f"the record of {_case_id(expect_file)}")
    rec = records[0]
    assert {k: rec[k] for k in want_record} == want_record
    assert {k: rec[k] for k in TOKEN_FIELDS} == {k: want_usage[k] for k in TOKEN_FIELDS}
    # CONTRACTS §3: the provider-reported model, falling back to the requested one.
    assert rec["model"] == (want_usage["model"] or want_record["requested_model"])
    if response["status"] >= 400 and want_usage["error"] is None:
        # The corpus has no parse error here; the record may still name the
        # upstream failure (its status is recorded too).
        assert rec["error"] in (None, "upstream_error")
    else:
        assert rec["error"] == want_usage["error"]
    assert rec["status"] == response["status"]
