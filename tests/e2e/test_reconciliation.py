"""Issue 21 (SPEC §13) against the real collector binary: providers' exports
imported as downloaded (the fixtures in collector/tests/fixtures/reconcile,
written from the providers' public API references), the same export twice
and a restart change nothing, /v1/reconciliation answers coverage, drift and
unattributed spend per model and day, the month's `coverage.low` alert is
stored, and a price changes file (AISPEND_PRICE_CHANGES) is applied at start
and again without effect."""
from __future__ import annotations

import json

import procs

FIXTURES = procs.ROOT / "collector" / "tests" / "fixtures" / "reconcile"
ADMIN = {"authorization": f"Bearer {procs.ADMIN_TOKEN}"}
READ = {"authorization": f"Bearer {procs.READ_TOKEN}"}


def record(rid: str, ts: str, inp: int, cached: int, out: int) -> dict:
    return {"id": rid, "ts": ts, "gateway": "envoy", "key_id": "k1", "tags": {"team": "search"},
            "labels": {}, "provider": "openai", "operation": "chat",
            "model": "gpt-4o-mini-2024-07-18", "status": 200, "input_tokens": inp,
            "cached_input_tokens": cached, "cache_write_input_tokens": 0, "output_tokens": out,
            "reasoning_tokens": 0, "credential_id": "key_gateway"}


def post_export(port: int, provider: str, name: str) -> dict:
    status, _, body = procs.call("POST", port, f"/v1/provider-usage?provider={provider}",
                                 body=(FIXTURES / name).read_bytes(), headers=ADMIN)
    assert status == 200, body
    return json.loads(body)


def report(port: int) -> dict:
    status, _, body = procs.call("GET", port, "/v1/reconciliation?month=2026-11", headers=READ)
    assert status == 200, body
    return json.loads(body)


def test_exports_reconcile_against_the_real_collector(tmp_path):
    changes = tmp_path / "price-changes.json"
    changes.write_text(json.dumps({"discounts": [
        {"provider": "anthropic", "discount": 0.1, "effective_from": "2026-11-01T00:00:00Z"}]}))
    env = {"AISPEND_PRICE_CHANGES": str(changes), "AISPEND_COVERAGE_MIN": "0.9"}
    collector = procs.Collector(tmp_path, env=env).start()
    try:
        port = collector.port
        status, _, body = procs.call("POST", port, "/v1/records", body={"records": [
            record("a", "2026-11-03T10:00:00Z", 1_000_000, 200_000, 100_000),
            record("b", "2026-11-04T10:00:00Z", 500_000, 0, 50_000)]},
            headers={"authorization": f"Bearer {procs.INGEST_TOKEN}"})
        assert status == 200 and json.loads(body)["accepted"] == 2, body
        assert post_export(port, "openai", "openai_usage_completions.json")["lines"] == 3
        costs = post_export(port, "openai", "openai_costs.json")
        assert costs["source"] == "openai.costs" and len(costs["alerts"]) == 1, costs
        first = report(port)
        totals = first["totals"]
        assert abs(totals["provider_cost_usd"] - 0.385) < 1e-9, totals
        assert abs(totals["gateway_cost_usd"] - 0.3) < 1e-9, totals
        assert abs(totals["unattributed_usd"] - 0.035) < 1e-9, totals
        assert abs(totals["non_token_usd"] - 0.05) < 1e-9, totals
        assert abs(totals["coverage"] - 0.3 / 0.385) < 1e-9, totals
        creds = {c["credential"]: c for c in first["credentials"]}
        assert abs(creds["key_gateway"]["gateway_cost_usd"] - 0.3) < 1e-9, creds
        assert creds["key_laptop"]["gateway_cost_usd"] == 0.0, creds
        # The same export again: nothing changes.
        again = post_export(port, "openai", "openai_costs.json")
        assert again["replaced"] == 7 and again["alerts"] == [], again
        assert report(port) == first
    finally:
        collector.stop()
    # A restart applies the same price changes file again without effect, and
    # keeps everything imported.
    collector = procs.Collector(tmp_path, port=collector.port, env=env).start()
    try:
        port = collector.port
        assert report(port) == first
        status, _, body = procs.call("GET", port, "/v1/prices", headers=READ)
        prices = json.loads(body)
        assert [d["discount"] for d in prices["discounts"]] == [0.1], prices
        status, _, body = procs.call("GET", port, "/v1/alerts", headers=READ)
        kinds = [a["kind"] for a in json.loads(body)["alerts"]]
        assert kinds.count("coverage.low") == 1, kinds
        procs.assert_no_secrets(collector.proc.log_text())
    finally:
        collector.stop()


def test_calls_through_envoy_are_matched_to_the_billed_credential(stack_factory):
    """The filter records the configured provider credential's id with each
    call it sends with that credential; the report matches the bill's key."""
    import datetime as dt

    from helpers import SEARCH_KEY, auth, chat_body, filter_config, usage_window_start, wait_for_requests

    config = filter_config(providers={"openai": {"credential": {"id": "key_gateway"}}})
    stack = stack_factory(config)
    since = usage_window_start()
    for words in (40, 80):
        status, _, _ = stack.envoy.request("POST", "/v1/chat/completions", chat_body(words),
                                           auth(SEARCH_KEY))
        assert status == 200
    usage = wait_for_requests(stack.collector, since, 2, group_by="model")
    totals = usage["totals"]
    assert totals["cost_usd"] > 0, usage
    model = usage["rows"][0]["model"]
    # The provider's export for today (as its usage and costs APIs page it),
    # billing exactly what the gateway measured, for the key it used.
    now = dt.datetime.now(dt.timezone.utc)
    start = int(dt.datetime(now.year, now.month, now.day, tzinfo=dt.timezone.utc).timestamp())
    bucket = {"object": "bucket", "start_time": start, "end_time": start + 86400}
    usage_page = {"object": "page", "has_more": False, "next_page": None, "data": [{**bucket, "results": [
        {"object": "organization.usage.completions.result", "input_tokens": totals["input_tokens"],
         "output_tokens": totals["output_tokens"], "input_cached_tokens": totals["cached_input_tokens"],
         "num_model_requests": 2, "project_id": None, "user_id": None, "api_key_id": "key_gateway",
         "model": model, "batch": None}]}]}
    costs_page = {"object": "page", "has_more": False, "next_page": None, "data": [{**bucket, "results": [
        {"object": "organization.costs.result", "amount": {"value": totals["cost_usd"], "currency": "usd"},
         "line_item": f"{model}, input", "project_id": None}]}]}
    port = stack.collector.port
    for page in (usage_page, costs_page):
        status, _, body = procs.call("POST", port, "/v1/provider-usage?provider=openai",
                                     body=json.dumps(page).encode(), headers=ADMIN)
        assert status == 200, body
    status, _, body = procs.call("GET", port, f"/v1/reconciliation?month={now:%Y-%m}", headers=READ)
    assert status == 200, body
    r = json.loads(body)
    cred = {c["credential"]: c for c in r["credentials"]}["key_gateway"]
    assert abs(cred["gateway_cost_usd"] - totals["cost_usd"]) < 1e-9, r
    # OpenAI counts tokens per API key but bills per project: the key's
    # coverage is read from its tokens.
    assert cred["coverage"] is None and cred["token_coverage"] == 1.0, r
    assert cred["gateway_tokens"] == cred["provider_tokens"] > 0, r
    assert abs(r["totals"]["coverage"] - 1.0) < 1e-9 and abs(r["totals"]["unattributed_usd"]) < 1e-9, r
