"""Issue 4: the collector's /v1/usage reports exactly what the mock billed."""
from collections import defaultdict

from helpers import (GROWTH_KEY, SEARCH_KEY, auth, chat_body, usage_window_start, wait_for_requests)
from mock_provider import expected_usage, reported_model

TOKEN_FIELDS = ["input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens",
                "reasoning_tokens"]


def test_usage_sums_per_team_and_model(demo):
    since = usage_window_start()
    calls = [
        (SEARCH_KEY, "search", chat_body(3, "gpt-4o-mini"), {}),
        (SEARCH_KEY, "search", chat_body(10, "gpt-4o-mini", max_tokens=2), {"x-mock-cached-tokens": "4"}),
        (SEARCH_KEY, "search", chat_body(7, "gpt-4o"), {"x-mock-reasoning-tokens": "3"}),
        (GROWTH_KEY, "growth", chat_body(5, "gpt-4o-mini"), {}),
        (GROWTH_KEY, "growth", chat_body(6, "gpt-4o-mini", stream=True, stream_options={"include_usage": True}),
         {}),
    ]
    want = defaultdict(lambda: defaultdict(int))
    for key, team, body, headers in calls:
        status, _, resp = demo.chat(key, body, headers)
        assert status == 200, resp
        row = want[(team, reported_model(body["model"]))]
        row["requests"] += 1
        for f, v in expected_usage(body, headers).items():
            row[f] += v

    usage = wait_for_requests(demo.collector, since, len(calls), group_by="team,model")

    assert usage["group_by"] == ["team", "model"]
    got = {(r["team"], r["model"]): r for r in usage["rows"]}
    assert set(got) == set(want)
    for k, expected in want.items():
        for field, value in expected.items():
            assert got[k][field] == value, (k, field, got[k])
        assert got[k]["errors"] == 0
    assert usage["totals"]["input_tokens"] == sum(w["input_tokens"] for w in want.values())
    assert usage["totals"]["output_tokens"] == sum(w["output_tokens"] for w in want.values())


def test_upstream_500_is_recorded_as_an_error(demo):
    since = usage_window_start()
    ok = demo.chat(GROWTH_KEY, chat_body(4))
    failed = demo.chat(GROWTH_KEY, chat_body(4), {"x-mock-status": "500"})
    assert (ok[0], failed[0]) == (200, 500)

    usage = wait_for_requests(demo.collector, since, 2, group_by="team")
    [row] = usage["rows"]
    assert row["team"] == "growth"
    assert (row["requests"], row["errors"]) == (2, 1)
    # The failed call is recorded with zero tokens (CONTRACTS §3).
    assert row["input_tokens"] == 4 and row["output_tokens"] == 5


def test_usage_needs_the_read_token(demo):
    from procs import call
    status, _, _ = call("GET", demo.collector.port, "/v1/usage", headers=auth("demo-ingest-token"))
    assert status in (401, 403)
