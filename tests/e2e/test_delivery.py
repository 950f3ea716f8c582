"""Issue 26: every call metered, every record delivered — values a client or
provider chose never get a record refused, and ordinary records queued
behind them all arrive."""
from helpers import SEARCH_KEY, chat_body, usage_window_start, wait_for_requests
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
    assert any(m.startswith("g" * 200) and m.endswith("\u2026") for m in models), models
    # Counters reach Envoy's stats on the tick after the acknowledgement.
    wait_until(lambda: stat(s.envoy.stats(), "aispend_records_shipped") == 9, 10,
               "aispend_records_shipped == 9")
    assert stat(s.envoy.stats(), "aispend_records_rejected") == 0
    assert _collector_metric(s.collector, "aispend_records_rejected_total") == 0
