//! Reconciliation over HTTP (SPEC §13): providers' exports imported as
//! downloaded (idempotent), the report per provider × model × day against
//! what the gateway measured, per credential, and the `coverage.low` alert.

mod common;

use axum::http::{Request, StatusCode};
use common::{call, send, start, ADMIN, ADMIN_BEARER, INGEST, READ};
use serde_json::{json, Value};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/reconcile/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn import(
    router: &axum::Router,
    provider: &str,
    body: Vec<u8>,
    auth: &str,
) -> common::Answer {
    let request = Request::builder()
        .method("POST")
        .uri(format!("/v1/provider-usage?provider={provider}"))
        .header("authorization", auth)
        .body(axum::body::Body::from(body))
        .expect("request");
    send(router, request).await
}

fn record(id: &str, ts: &str, input: u64, cached: u64, output: u64) -> Value {
    json!({"id": id, "ts": ts, "gateway": "envoy", "key_id": "k1",
        "tags": {"team": "search"}, "labels": {}, "provider": "openai",
        "operation": "chat", "model": "gpt-4o-mini-2024-07-18", "status": 200,
        "input_tokens": input, "cached_input_tokens": cached, "cache_write_input_tokens": 0,
        "output_tokens": output, "reasoning_tokens": 0, "credential_id": "key_gateway"})
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test]
async fn imports_reconcile_per_model_day_and_credential() {
    let c = start();
    let r = &c.router;
    // The gateway saw every gpt-4o-mini call (priced like the bill), never
    // the gpt-4o calls of another key, nor the web searches.
    let batch = json!({"records": [
        record("a", "2026-11-03T10:00:00Z", 1_000_000, 200_000, 100_000),
        record("b", "2026-11-04T10:00:00Z", 500_000, 0, 50_000)]});
    let a = call(r, "POST", "/v1/records", Some(INGEST), batch).await;
    assert_eq!(a.json["accepted"], 2, "{}", a.text);

    // A webhook: the coverage alert is enqueued for it like any alert.
    let hook = call(
        r,
        "POST",
        "/v1/webhooks",
        Some(ADMIN),
        json!({"url": "http://127.0.0.1:9/hook", "secret": "s3cret-s3cret-s3cret"}),
    )
    .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.text);
    let hook_id = hook.json["id"].as_str().expect("id").to_owned();

    let denied = import(
        r,
        "openai",
        fixture("openai_costs.json"),
        "Bearer read-secret",
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let bad = import(r, "bedrock", fixture("openai_costs.json"), ADMIN_BEARER).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("provider"), "{}", bad.text);
    let usage = import(
        r,
        "openai",
        fixture("openai_usage_completions.json"),
        ADMIN_BEARER,
    )
    .await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.text);
    assert_eq!(usage.json["source"], "openai.usage");
    assert_eq!(usage.json["lines"], 3);
    let costs = import(r, "openai", fixture("openai_costs.json"), ADMIN_BEARER).await;
    assert_eq!(costs.status, StatusCode::OK, "{}", costs.text);
    // Coverage 0.3 / 0.385 is under 0.95: the month's alert, once.
    assert_eq!(
        costs.json["alerts"].as_array().map(Vec::len),
        Some(1),
        "{}",
        costs.text
    );

    let get = || {
        call(
            r,
            "GET",
            "/v1/reconciliation?month=2026-11",
            Some(READ),
            Value::Null,
        )
    };
    let first = get().await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    // The same export again changes nothing.
    let again = import(r, "openai", fixture("openai_costs.json"), ADMIN_BEARER).await;
    assert_eq!(again.json["replaced"], 7, "{}", again.text);
    assert_eq!(again.json["alerts"], json!([]));
    let report = get().await.json;
    assert_eq!(report, first.json);

    let t = &report["totals"];
    assert!(close(&t["provider_cost_usd"], 0.385), "{t}");
    assert!(close(&t["gateway_cost_usd"], 0.3), "{t}");
    assert!(close(&t["coverage"], 0.3 / 0.385), "{t}");
    assert!(close(&t["unattributed_usd"], 0.035), "{t}");
    assert!(close(&t["non_token_usd"], 0.05), "{t}");
    assert!(close(&t["drift"], 0.0), "{t}");
    let rows = report["rows"].as_array().expect("rows");
    let row = |day: &str, model: Value| {
        rows.iter()
            .find(|x| x["day"] == day && x["model"] == model && x["line_item"].is_null())
            .unwrap_or_else(|| panic!("{day} {model} in {rows:?}"))
    };
    let mini = row("2026-11-03", json!("gpt-4o-mini"));
    assert!(close(&mini["coverage"], 1.0), "{mini}");
    assert_eq!(mini["gateway_tokens"], 1_100_000);
    assert_eq!(mini["provider_tokens"], 1_100_000);
    let bypass = row("2026-11-03", json!("gpt-4o"));
    assert!(close(&bypass["unattributed_usd"], 0.035), "{bypass}");
    assert!(rows
        .iter()
        .any(|x| x["line_item"] == "Web search tool calls"));
    let creds = report["credentials"].as_array().expect("credentials");
    let cred = |id: &str| {
        creds
            .iter()
            .find(|x| x["credential"] == id)
            .unwrap_or_else(|| panic!("{id}"))
    };
    assert!(close(&cred("key_gateway")["gateway_cost_usd"], 0.3));
    assert_eq!(cred("key_gateway")["provider_tokens"], 1_650_000);
    assert!(close(&cred("key_laptop")["gateway_cost_usd"], 0.0));
    assert!(close(&cred("proj_main")["provider_cost_usd"], 0.385));

    let alerts = call(r, "GET", "/v1/alerts", Some(ADMIN), Value::Null).await;
    let low: Vec<&Value> = alerts.json["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["kind"] == "coverage.low")
        .collect();
    assert_eq!(low.len(), 1, "{}", alerts.text);
    assert_eq!(low[0]["threshold"], 0.95);
    assert_eq!(low[0]["scope"], json!({"month": "2026-11"}));
    let deliveries = call(
        r,
        "GET",
        &format!("/v1/webhooks/{hook_id}/deliveries"),
        Some(ADMIN),
        Value::Null,
    )
    .await;
    let rows = deliveries.json["deliveries"]
        .as_array()
        .expect("deliveries");
    assert_eq!(rows.len(), 1, "{}", deliveries.text);
    assert_eq!(rows[0]["event_id"], low[0]["id"], "{}", deliveries.text);
    // A month without any import: no provider cost, no coverage, no alert.
    let empty = call(
        r,
        "GET",
        "/v1/reconciliation?month=2026-10",
        Some(READ),
        Value::Null,
    )
    .await;
    assert_eq!(empty.json["totals"]["coverage"], Value::Null);
    let audit = call(r, "GET", "/v1/audit", Some(ADMIN), Value::Null).await;
    assert!(audit.text.contains("provider_usage.import"));
}

#[tokio::test]
async fn anthropic_and_gcp_exports_import_and_overlaps_replace() {
    let c = start();
    let r = &c.router;
    for (p, f) in [
        ("anthropic", "anthropic_usage_report.json"),
        ("anthropic", "anthropic_cost_report.json"),
        ("gemini", "gcp_billing_export.csv"),
    ] {
        let a = import(r, p, fixture(f), ADMIN_BEARER).await;
        assert_eq!(a.status, StatusCode::OK, "{f}: {}", a.text);
    }
    let report = call(
        r,
        "GET",
        "/v1/reconciliation?month=2026-11",
        Some(READ),
        Value::Null,
    )
    .await;
    let t = &report.json["totals"];
    // 0.30 + 0.45 + 0.02 (Anthropic, cents) + 0.3 + 0.5 + 0.035 (Gemini).
    assert!(close(&t["provider_cost_usd"], 1.605), "{t}");
    assert!(close(&t["unattributed_usd"], 1.55), "{t}");
    assert!(close(&t["gateway_cost_usd"], 0.0));
    // A corrected billing export for the same hour replaces the rows.
    let corrected = String::from_utf8(fixture("gcp_billing_export.csv"))
        .expect("utf-8")
        .replace(",0.5,USD,200000", ",0.25,USD,200000");
    let a = import(r, "gemini", corrected.into_bytes(), ADMIN_BEARER).await;
    assert_eq!(a.json["replaced"], 3, "{}", a.text);
    let report = call(
        r,
        "GET",
        "/v1/reconciliation?month=2026-11",
        Some(READ),
        Value::Null,
    )
    .await;
    assert!(close(&report.json["totals"]["provider_cost_usd"], 1.355));
}
