"""Issue 4: what the upstream and the client see (CONTRACTS §2, CONFIG.md)."""
import json
import re
import time

from helpers import GROWTH_KEY, SEARCH_KEY, SEARCH_TAGS, UPSTREAM_CREDENTIAL, auth, chat_body

REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def test_upstream_gets_canonical_tags_and_not_the_virtual_key(demo):
    spoofed = {"x-aispend-team": "evil", "x-aispend-org": "evil", "x-aispend-key-id": "evil",
               "x-aispend-request-id": "0" * 32, "x-aispend-whatever": "x"}
    status, headers, body = demo.chat(SEARCH_KEY, chat_body(4), spoofed)

    assert status == 200, body
    seen = demo.mock.requests()
    assert len(seen) == 1
    up = seen[0]["headers"]
    assert up["x-aispend-org"] == SEARCH_TAGS["org"]
    assert up["x-aispend-team"] == SEARCH_TAGS["team"]
    assert up["x-aispend-project"] == SEARCH_TAGS["project"]
    assert up["x-aispend-cost-center"] == SEARCH_TAGS["cost_center"]
    assert up["x-aispend-environment"] == SEARCH_TAGS["environment"]
    assert up["x-aispend-key-id"] == "demo-search"
    assert REQUEST_ID.match(up["x-aispend-request-id"]) and up["x-aispend-request-id"] != "0" * 32
    assert "x-aispend-whatever" not in up
    # Each spoofed header appears exactly once, with the filter's value.
    names = [k for k, _ in seen[0]["header_list"]]
    assert names.count("x-aispend-team") == 1 and names.count("x-aispend-request-id") == 1
    # The virtual key is gone; the configured provider credential replaced it.
    assert up["authorization"] == UPSTREAM_CREDENTIAL
    assert all(SEARCH_KEY not in v for _, v in seen[0]["header_list"])
    # The client gets the provider's answer and the same request id.
    assert headers["x-aispend-request-id"] == up["x-aispend-request-id"]
    assert json.loads(body)["model"] == "gpt-4o-mini-2024-07-18"


def test_request_ids_differ_per_call(demo):
    ids = {demo.chat(GROWTH_KEY, chat_body(1))[1]["x-aispend-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_provider_error_status_and_body_reach_the_client(demo):
    status, headers, body = demo.chat(SEARCH_KEY, chat_body(2), {"x-mock-status": "429"})
    assert status == 429
    assert json.loads(body)["error"]["type"] == "rate_limit_exceeded"
    assert REQUEST_ID.match(headers["x-aispend-request-id"])


def test_stream_first_bytes_reach_the_client_before_the_stream_ends(demo):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", demo.envoy.port, timeout=15)
    body = json.dumps(chat_body(3, stream=True, max_tokens=4, stream_options={"include_usage": True}))
    start = time.monotonic()
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={**auth(SEARCH_KEY), "content-type": "application/json", "x-mock-delay-ms": "300"})
    resp = conn.getresponse()
    first = resp.readline()
    t_first = time.monotonic() - start
    rest = resp.read()
    t_end = time.monotonic() - start
    conn.close()
    assert resp.status == 200
    assert first.startswith(b"data: ")
    assert b"data: [DONE]" in rest
    # 8 events x 300 ms: a filter that buffered the stream would deliver the
    # first line only at the end (~2.4 s).
    assert t_end > 2.0
    assert t_first < t_end - 1.5, (t_first, t_end)


def test_allowed_labels_pass_upstream_and_land_in_record_labels(stack_factory):
    s = stack_factory(sink=True)
    status, headers, _ = s.chat(SEARCH_KEY, chat_body(2), {"x-aispend-label-feature": "summarize",
                                                         "x-aispend-label-secret": "nope"})
    assert status == 200
    up = s.mock.requests()[0]["headers"]
    assert up.get("x-aispend-label-feature") == "summarize"
    assert "x-aispend-label-secret" not in up

    from procs import wait_until
    records = wait_until(lambda: s.sink.snapshot(), 10, "a record at the sink")
    assert len(records) == 1
    rec = records[0]
    assert rec["labels"] == {"feature": "summarize"}
    assert "feature" not in rec["tags"] and rec["tags"] == SEARCH_TAGS
    assert rec["id"] == headers["x-aispend-request-id"]
    assert rec["key_id"] == "demo-search" and rec["auth"] == "api_key" and rec["gateway"] == "envoy"
    assert (rec["provider"], rec["operation"], rec["stream"], rec["status"]) == ("openai", "chat", False, 200)
    assert (rec["model"], rec["requested_model"]) == ("gpt-4o-mini-2024-07-18", "gpt-4o-mini")
    assert (rec["input_tokens"], rec["output_tokens"]) == (2, 5)
    assert s.sink.auth_headers[0] == "Bearer demo-ingest-token"


def test_stream_record_has_timings_and_rfc3339_start(sink_stack):
    import datetime as dt

    from procs import wait_until
    started = dt.datetime.now(dt.timezone.utc)
    body = chat_body(3, stream=True, max_tokens=3, stream_options={"include_usage": True})
    # 7 events, each delayed 150 ms by the mock: first byte after >= 150 ms,
    # whole call >= 1050 ms. Lower bounds only: they hold on any machine.
    status, headers, _ = sink_stack.chat(SEARCH_KEY, body, {"x-mock-delay-ms": "150"})
    assert status == 200
    rid = headers["x-aispend-request-id"]
    [rec] = wait_until(lambda: [r for r in sink_stack.sink.snapshot() if r["id"] == rid], 10, "the stream's record")
    assert rec["stream"] is True
    assert rec["ttft_ms"] >= 150
    assert rec["duration_ms"] >= 1050 and rec["duration_ms"] >= rec["ttft_ms"]
    ts = dt.datetime.fromisoformat(rec["ts"].replace("Z", "+00:00"))
    assert abs((ts - started).total_seconds()) < 5


def test_virtual_key_never_reaches_the_provider_in_any_spelling(demo):
    """Issue 26: the key sent again in a cookie, proxy-authorization or a
    query parameter spelled otherwise than `key` is taken out too."""
    extra = {"cookie": f"session=1; token={SEARCH_KEY}", "proxy-authorization": f"Bearer {SEARCH_KEY}",
             "x-forwarded-key": SEARCH_KEY}
    status, _headers, body = demo.chat(SEARCH_KEY, chat_body(2), extra)
    assert status == 200, body
    for path in ("/v1/chat/completions?KEY=" + SEARCH_KEY,
                 "/v1/chat/completions?api_key=" + SEARCH_KEY + "&x=1",
                 "/v1/chat/completions?token=" + SEARCH_KEY):
        status, _headers, body = demo.chat(SEARCH_KEY, chat_body(2), path=path)
        assert status == 200, (path, body)
    seen = demo.mock.requests()
    assert len(seen) == 4
    for request in seen:
        assert all(SEARCH_KEY not in v for _, v in request["header_list"]), request["header_list"]
        assert SEARCH_KEY not in request["path"], request["path"]
    assert seen[2]["path"].endswith("?x=1")
