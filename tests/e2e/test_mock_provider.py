"""The mock provider itself: the e2e sums are only as good as its arithmetic."""
import json

from mock_provider import MockProvider, expected_usage
from procs import call


def _post(mock, path, body, headers=None):
    status, hdrs, raw = call("POST", mock.port, path, body, headers)
    return status, hdrs, raw


def test_chat_usage_is_words_and_max_tokens(mock):
    body = {"model": "gpt-4o-mini", "max_tokens": 3,
            "messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": [{"type": "text", "text": "one two three"}]}]}
    status, _, raw = _post(mock, "/v1/chat/completions", body, {"x-mock-cached-tokens": "2"})
    usage = json.loads(raw)["usage"]
    assert status == 200
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (5, 3)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 2
    assert expected_usage(body, {"x-mock-cached-tokens": "2"})["input_tokens"] == 5


def test_anthropic_input_excludes_cache_like_the_real_api(mock):
    body = {"model": "claude-3-5-haiku-latest", "max_tokens": 2, "system": "s1 s2",
            "messages": [{"role": "user", "content": "a b c d"}]}
    headers = {"x-mock-cached-tokens": "3", "x-mock-cache-write-tokens": "1"}
    usage = json.loads(_post(mock, "/v1/messages", body, headers)[2])["usage"]
    assert (usage["input_tokens"], usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]) == (2, 3, 1)
    assert expected_usage(body, headers)["input_tokens"] == 6


def test_stream_ends_with_usage_and_done(mock):
    body = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 2,
            "messages": [{"role": "user", "content": "x y"}]}
    status, hdrs, raw = _post(mock, "/v1/chat/completions", body, {"x-mock-split": "1"})
    events = [e for e in raw.decode().split("\n\n") if e]
    assert status == 200 and hdrs["content-type"] == "text/event-stream"
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][len("data: "):])["usage"]["completion_tokens"] == 2


def test_forced_status_and_recording(mock):
    status, _, raw = _post(mock, "/v1/messages", {"model": "error-529"})
    assert status == 529 and json.loads(raw)["error"]["type"] == "overloaded_error"
    status, _, _ = _post(mock, "/v1/chat/completions", {"model": "m"}, {"x-mock-status": "503"})
    assert status == 503
    seen = json.loads(call("GET", mock.port, "/__mock/requests")[2])
    assert [r["path"] for r in seen] == ["/v1/messages", "/v1/chat/completions"]
    assert call("DELETE", mock.port, "/__mock/requests")[0] == 200
    assert mock.requests() == []


def test_chunked_request_bodies_are_read(mock):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", mock.port)
    body = json.dumps({"model": "text-embedding-3-small", "input": "a b c"}).encode()
    conn.request("POST", "/v1/embeddings", body=iter([body[:10], body[10:]]),
                 headers={"content-type": "application/json"}, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200
    assert json.loads(resp.read())["usage"]["prompt_tokens"] == 3


def test_standalone_instance_gets_its_own_port():
    m = MockProvider().start()
    try:
        assert call("GET", m.port, "/__mock/requests")[2] == b"[]"
    finally:
        m.stop()
