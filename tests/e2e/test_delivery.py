"""Issue 26: every call metered, every record delivered — values a client or
provider chose never get a record refused, and ordinary records queued
behind them all arrive."""
from helpers import SEARCH_KEY, chat_body, filter_config, usage_window_start, wait_for_requests
from procs import call, wait_until
from test_resilience import stat


def _collector_metric(collector, name: str) -> float:
    status, _, body = call("GET", collector.port, "/metrics")
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_poisoned_calls_then_ordinary_calls_all_arrive(stack_factory):
    s = stack_factory()
    since = usage_window_start()
    poisoned = [
        # a huge client-sent model, answered 400 by the provider
        (chat_body(2, model="m" * 900_000), {"x-mock-status": "400"}),
        # a control character the provider echoes back
        (chat_body(2, model="gpt-4o-mini\u0001"), {}),
        # a 300-character model name
        (chat_body(2, model="g" * 300), {}),
        # absurd token counts from the provider
        (chat_body(2), {"x-mock-reasoning-tokens": str(10**15)}),
    ]
    for body, headers in poisoned:
        status, _, answer = s.chat(SEARCH_KEY, body, headers)
        assert status in (200, 400), answer[:200]
    for _ in range(5):
        status, _, answer = s.chat(SEARCH_KEY, chat_body(3))
        assert status == 200, answer
    usage = wait_for_requests(s.collector, since, 9, timeout=30, group_by="model")
    models = {r["model"] for r in usage["rows"]}
    assert "gpt-4o-mini-2024-07-18" in models
    assert "gpt-4o-mini\\u0001" in models, models
    # The 900 kB body is past usage.max_buffered_body_bytes and its error answer
    # names no model: that record has none (null), which the test must not trip on.
    assert any(m and m.startswith("g" * 200) and m.endswith("\u2026") for m in models), models
    # Counters reach Envoy's stats on the tick after the acknowledgement.
    wait_until(lambda: stat(s.envoy.stats(), "aispend_records_shipped") == 9, 10,
               "aispend_records_shipped == 9")
    assert stat(s.envoy.stats(), "aispend_records_rejected") == 0
    assert _collector_metric(s.collector, "aispend_records_rejected_total") == 0


PATH_FORMS = ["//v1/chat/completions", "/v1//chat/completions", "/./v1/chat/completions",
              "/v1/./chat/completions", "/v1/x/../chat/completions", "/v1/chat/completions/",
              "/v1%2Fchat%2Fcompletions", "/v1/chat%2fcompletions", "/V1/chat/completions",
              "/v1/Chat/Completions"]


def test_every_path_form_is_metered(stack_factory):
    """Issue 26: path spellings the provider would accept are LLM calls;
    each one is recorded (as chat), none goes through unmetered."""
    s = stack_factory()
    since = usage_window_start()
    for path in PATH_FORMS:
        status, _, body = s.chat(SEARCH_KEY, chat_body(2), path=path)
        # The mock (like a provider may) answers 404 to a trailing slash or
        # capitals; what matters is that the call is recorded.
        assert status in (200, 404), (path, body[:200])
    # An unknown path on the LLM route is metered too, as `unknown`.
    status, _, _ = s.chat(SEARCH_KEY, chat_body(2), path="/v1/completions")
    usage = wait_for_requests(s.collector, since, len(PATH_FORMS) + 1, timeout=30,
                              group_by="provider,operation")
    rows = {(r["provider"], r["operation"]): r["requests"] for r in usage["rows"]}
    assert rows == {("openai", "chat"): len(PATH_FORMS), ("unknown", "unknown"): 1}, rows
    # Envoy normalised what it could; the provider saw a canonical path for the rest.
    seen = [r["path"] for r in s.mock.requests()]
    assert all("//" not in p and "/./" not in p and "%2f" not in p.lower() for p in seen), seen


def test_unknown_paths_can_be_refused(stack_factory):
    s = stack_factory(filter_config(usage={"unknown_paths": "reject"}))
    status, _, body = s.chat(SEARCH_KEY, chat_body(2), path="/v1/completions")
    assert status == 404 and b"unknown_path" in body
    assert s.mock.requests() == []
    status, _, _ = s.envoy.request("GET", "/v1/models", None, {"authorization": f"Bearer {SEARCH_KEY}"})
    assert len(s.mock.requests()) == 1, "free calls pass"


def test_a_5_mb_request_passes_and_is_metered(stack_factory):
    """Issue 26: bodies over Envoy's 1 MiB buffer pass (the filter streams
    what it does not need to hold) and are recorded."""
    s = stack_factory()
    since = usage_window_start()
    words = 2_500_000  # ~5 MB of prompt
    body = {"messages": [{"role": "user", "content": "w " * words}], "model": "gpt-4o-mini"}
    status, _, answer = s.chat(SEARCH_KEY, body)
    assert status == 200, answer[:300]
    usage = wait_for_requests(s.collector, since, 1, timeout=30, group_by="model")
    assert usage["rows"][0]["model"] == "gpt-4o-mini-2024-07-18"
    assert usage["totals"]["input_tokens"] == words


def test_sigterm_after_a_graceful_drain_loses_nothing(stack_factory):
    """Issue 26: Envoy 1.40 calls the root context's on_done at SIGTERM, but
    its event loop has stopped, so a dispatch made there never leaves (seen
    here: the call is started, the collector gets nothing). A rolling restart
    therefore drains first (`POST /drain_listeners?graceful`, as `make run`
    does on Ctrl-C and the README's preStop hook): the VM keeps ticking and
    ships everything, then SIGTERM loses no record."""
    s = stack_factory(concurrency=2)
    since = usage_window_start()
    n = 20
    for _ in range(n):
        status, _, body = s.chat(SEARCH_KEY, chat_body(2))
        assert status == 200, body
    status, _, _ = call("POST", s.envoy.admin_port, "/drain_listeners?graceful")
    assert status == 200
    # One flush interval (200 ms here) plus the collector's answer.
    wait_until(lambda: stat(s.envoy.stats(), "aispend_records_shipped") == n, 10,
               "every record shipped during the drain")
    s.envoy.stop()
    usage = wait_for_requests(s.collector, since, n, timeout=15, group_by="team")
    assert usage["totals"]["requests"] == n


def test_refused_calls_are_counted_as_denied(stack_factory):
    """Issue 25: a call refused for its rate limit leaves a record, so
    /v1/usage shows how often the team hit its limit."""
    s = stack_factory()
    since = usage_window_start()
    statuses = [s.chat("sk-aispend-demo-limited", chat_body(2))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429], statuses
    usage = wait_for_requests(s.collector, since, 4, timeout=30, group_by="team")
    [row] = usage["rows"]
    assert (row["team"], row["requests"], row["denied"]) == ("research", 4, 1), row
    assert usage["totals"]["denied"] == 1
