"""Issue 6, per-key rate limits through real Envoy: 429 with `retry-after`
and OpenAI's `x-ratelimit-*` headers, the same headers on 200s, one counter
shared by Envoy's workers, and tokens per minute counted from usage."""
from __future__ import annotations

import http.client
import json
import time

from helpers import GROWTH_KEY, SEARCH_KEY, auth, chat_body, filter_config


def limited_config(**limits) -> dict:
    cfg = filter_config()
    cfg["identity"]["keys"][0]["limits"] = limits  # demo-search
    return cfg


def test_requests_per_minute_answers_429_with_openai_headers(stack_factory):
    # Two workers: the counter lives in shared data, so both count together.
    s = stack_factory(limited_config(requests_per_minute=3), concurrency=2)
    answers = [s.chat(SEARCH_KEY, chat_body(2)) for _ in range(5)]
    assert [a[0] for a in answers] == [200, 200, 200, 429, 429]
    for i, (_, headers, _) in enumerate(answers[:3]):
        assert headers["x-ratelimit-limit-requests"] == "3"
        assert headers["x-ratelimit-remaining-requests"] == str(2 - i)
        assert "x-ratelimit-limit-tokens" not in headers, "only the limits the key has"
    status, headers, body = answers[3]
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("rate_limit_exceeded", "rate_limit_exceeded")
    assert len(s.mock.requests()) == 3, "refused calls never reach the provider"


def test_the_keys_standing_replaces_the_providers_headers_of_the_same_name(stack_factory):
    # OpenAI answers with its organization's x-ratelimit-* (shared by every
    # key): the client gets one value per header, the key's own where the
    # key has that limit, the provider's where it has none.
    s = stack_factory(limited_config(requests_per_minute=3))
    conn = http.client.HTTPConnection("127.0.0.1", s.envoy.port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(2)),
                     headers={**auth(SEARCH_KEY), "content-type": "application/json",
                              "x-mock-ratelimit": "1"})
        resp = conn.getresponse()
        resp.read()
        listed = [(k.lower(), v) for k, v in resp.getheaders()]
    finally:
        conn.close()
    assert resp.status == 200

    def values(name):
        return [v for k, v in listed if k == name]

    assert values("x-ratelimit-limit-requests") == ["3"], listed
    assert values("x-ratelimit-remaining-requests") == ["2"], listed
    assert values("x-ratelimit-limit-tokens") == ["30000000"], "no token limit on the key: the provider's"
    assert values("x-ratelimit-remaining-tokens") == ["29999990"]
    assert values("x-ratelimit-reset-requests") == ["6ms"]


def test_workers_count_their_share_and_write_it_within_a_flush(stack_factory):
    # Far from its limit a key is synced once per share of its room per
    # worker; each worker's calls wait on it and reach the shared counter
    # within one flush interval (200 ms here), after which a call sees them
    # all. Lost counts would leave the room near 6,400; double counts below.
    s = stack_factory(limited_config(requests_per_minute=6400), concurrency=2)
    n = 120
    answers = [s.chat(SEARCH_KEY, chat_body(2)) for _ in range(n)]
    assert [a[0] for a in answers] == [200] * n
    remaining = [int(h["x-ratelimit-remaining-requests"]) for _, h, _ in answers]
    assert min(remaining) >= 6400 - n, "no worker counts more than it admitted"
    time.sleep(1.0)
    status, headers, _ = s.chat(SEARCH_KEY, chat_body(2))
    assert status == 200
    # n + 1 calls in the window; a window that rolled meanwhile weighs the
    # earlier ones a little less (at most a sixth in this test's seconds).
    left = int(headers["x-ratelimit-remaining-requests"])
    assert 6400 - (n + 1) <= left <= 6400 - (n + 1) + n // 6, left


def test_unlimited_keys_are_not_limited(stack_factory):
    s = stack_factory(limited_config(requests_per_minute=1))
    statuses = [s.chat(GROWTH_KEY, chat_body(1))[0] for _ in range(4)]
    assert statuses == [200] * 4
    _, headers, _ = s.chat(GROWTH_KEY, chat_body(1))
    assert not any(h.startswith("x-ratelimit-") for h in headers)


def test_tokens_per_minute_stops_the_next_call(stack_factory):
    s = stack_factory(limited_config(tokens_per_minute=50))
    # The mock bills 30 prompt words + max_tokens 5 = 35 tokens per call.
    first = s.chat(SEARCH_KEY, chat_body(30, max_tokens=5))
    assert first[0] == 200 and first[1]["x-ratelimit-remaining-tokens"] == "50"
    second = s.chat(SEARCH_KEY, chat_body(30, max_tokens=5))
    assert second[0] == 200 and second[1]["x-ratelimit-remaining-tokens"] == "15"
    status, headers, body = s.chat(SEARCH_KEY, chat_body(30, max_tokens=5))
    assert status == 429, body
    assert headers["x-ratelimit-limit-tokens"] == "50"
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(headers["retry-after"]) >= 1
