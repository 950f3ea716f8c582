"""Every provider format through the gateway: the key is taken from where the
provider's SDK puts it, removed before the upstream, and the shipped record
carries provider, operation, model and the exact normalized tokens (CONTRACTS §3).
Records are read at a recording sink standing in for the collector."""
import pytest

from helpers import SEARCH_KEY, SEARCH_TAGS
from mock_provider import expected_usage, reported_model
from procs import wait_until

MSG = [{"role": "user", "content": "one two three four"}]
CASES = [
    # id, path, key header, body, mock headers, provider, operation, stream
    ("openai-chat", "/v1/chat/completions", "authorization",
     {"model": "gpt-4o-mini", "messages": MSG}, {"x-mock-cached-tokens": "2"}, "openai", "chat", False),
    ("openai-chat-stream", "/v1/chat/completions", "authorization",
     {"model": "gpt-4o-mini", "messages": MSG, "stream": True, "stream_options": {"include_usage": True}},
     {"x-mock-split": "1", "x-mock-reasoning-tokens": "2"}, "openai", "chat", True),
    ("openai-responses", "/v1/responses", "authorization",
     {"model": "gpt-4o", "input": "a b c", "max_output_tokens": 3}, {"x-mock-reasoning-tokens": "4"},
     "openai", "responses", False),
    ("openai-responses-stream", "/v1/responses", "authorization",
     {"model": "gpt-4o", "input": "a b c", "stream": True}, {}, "openai", "responses", True),
    ("openai-embeddings", "/v1/embeddings", "authorization",
     {"model": "text-embedding-3-small", "input": ["a b", "c d e"]}, {}, "openai", "embeddings", False),
    ("azure-chat", "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21", "api-key",
     {"messages": MSG}, {}, "azure", "chat", False),
    ("anthropic", "/v1/messages", "x-api-key",
     {"model": "claude-3-5-haiku-latest", "max_tokens": 4, "messages": MSG},
     {"x-mock-cached-tokens": "1", "x-mock-cache-write-tokens": "2"}, "anthropic", "messages", False),
    ("anthropic-stream", "/v1/messages", "x-api-key",
     {"model": "claude-3-5-haiku-latest", "max_tokens": 4, "messages": MSG, "stream": True},
     {"x-mock-cached-tokens": "1", "x-mock-split": "1"}, "anthropic", "messages", True),
    ("gemini", "/v1beta/models/gemini-2.0-flash:generateContent", "x-goog-api-key",
     {"contents": [{"role": "user", "parts": [{"text": "a b c d e"}]}]}, {"x-mock-reasoning-tokens": "3"},
     "gemini", "generate", False),
    ("gemini-stream", "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", "x-goog-api-key",
     {"contents": [{"role": "user", "parts": [{"text": "a b c d e"}]}]}, {"x-mock-cached-tokens": "2"},
     "gemini", "generate", True),
    ("gemini-v1-query-key", "/v1/models/gemini-2.0-flash:generateContent?key=" + SEARCH_KEY, None,
     {"contents": [{"role": "user", "parts": [{"text": "a b"}]}]}, {}, "gemini", "generate", False),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_provider_call_is_recorded_exactly(sink_stack, case):
    _, path, key_header, body, mock_headers, provider, operation, stream = case
    headers = dict(mock_headers)
    if key_header == "authorization":
        headers["authorization"] = f"Bearer {SEARCH_KEY}"
    elif key_header:
        headers[key_header] = SEARCH_KEY
    before = len(sink_stack.sink.snapshot())

    status, resp_headers, resp = sink_stack.envoy.request("POST", path, body, headers)
    assert status == 200, resp

    upstream = sink_stack.mock.requests()[-1]
    assert all(SEARCH_KEY not in v for _, v in upstream["header_list"])
    assert SEARCH_KEY not in upstream["path"]
    assert upstream["headers"]["x-aispend-team"] == "search"

    records = wait_until(lambda: sink_stack.sink.snapshot()[before:], 10, "the call's record")
    [rec] = [r for r in records if r["id"] == resp_headers["x-aispend-request-id"]]
    requested = body.get("model") or ("gemini-2.0-flash" if provider == "gemini" else "gpt-4o-mini")
    assert (rec["provider"], rec["operation"], rec["stream"]) == (provider, operation, stream)
    assert rec["requested_model"] == requested
    assert rec["model"] == reported_model(requested)
    assert rec["tags"] == SEARCH_TAGS and rec["status"] == 200 and rec["error"] is None
    got = {k: rec[k] for k in expected_usage(body)}
    assert got == expected_usage(body, mock_headers, operation)
