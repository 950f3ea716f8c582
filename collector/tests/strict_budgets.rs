//! Strict budgets (SPEC §6) over HTTP: `"enforce"` on the budget API, and
//! the leases and prices a gateway host gets on `GET /v1/caps?host=…`.

mod common;

use aispend_collector::domain::time::{format_rfc3339_ms, now_ms};
use axum::http::StatusCode;
use common::{start, Answer, Collector};
use common::{ADMIN_BEARER as ADMIN, INGEST_BEARER as INGEST, READ_BEARER as READ};
use serde_json::{json, Value};

/// 100k input + 50k output tokens of gpt-4o-mini: 0.015 + 0.03 = 0.045 USD.
const RECORD_COST: f64 = 0.045;

fn record(id: &str) -> Value {
    json!({"id": id, "ts": format_rfc3339_ms(now_ms()), "gateway": "envoy",
        "key_id": "key-search", "auth": "api_key",
        "tags": {"org": "acme", "team": "search"}, "labels": {}, "provider": "openai",
        "operation": "chat", "model": "gpt-4o-mini", "status": 200,
        "input_tokens": 100_000, "cached_input_tokens": 0, "cache_write_input_tokens": 0,
        "output_tokens": 50_000, "reasoning_tokens": 0})
}

async fn call(c: &Collector, method: &str, uri: &str, token: &str, body: Value) -> Answer {
    common::call_with(&c.router, method, uri, &[("authorization", token)], body).await
}

async fn poll(c: &Collector, query: &str) -> Answer {
    let a = call(c, "GET", &format!("/v1/caps?{query}"), READ, Value::Null).await;
    assert_eq!(a.status, StatusCode::OK, "{query}: {}", a.text);
    a
}

fn lease<'a>(answer: &'a Answer, budget: &str) -> Option<&'a Value> {
    answer.json["leases"]
        .as_array()?
        .iter()
        .find(|l| l["budget_id"] == budget)
}

fn allowance(answer: &Answer, budget: &str) -> f64 {
    lease(answer, budget)
        .and_then(|l| l["allowance_usd"].as_f64())
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn enforce_is_validated_stored_and_shown() {
    let c = start();
    let body = json!({"id": "b1", "scope": {"team": "search"}, "period": "month",
        "amount_usd": 1.0, "enforce": "strict"});
    let created = call(&c, "POST", "/v1/budgets", ADMIN, body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json["enforce"], "strict");
    let got = call(&c, "GET", "/v1/budgets/b1", READ, Value::Null).await;
    assert_eq!(got.json["enforce"], "strict");
    let plain = json!({"id": "b2", "scope": {"team": "x"}, "period": "day", "amount_usd": 1.0});
    let created = call(&c, "POST", "/v1/budgets", ADMIN, plain).await;
    assert_eq!(created.json["enforce"], "flags", "the default");
    let bad = json!({"id": "b3", "scope": {"team": "x"}, "period": "day", "amount_usd": 1.0,
        "enforce": "hard"});
    let refused = call(&c, "POST", "/v1/budgets", ADMIN, bad).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text.contains("enforce"), "{}", refused.text);
}

#[tokio::test]
async fn hosts_get_leases_that_never_add_up_past_the_cap_and_prices() {
    let c = start();
    let before = poll(&c, "").await;
    assert_eq!(before.json["strict"], 0, "{}", before.text);
    for (id, enforce) in [("strict", "strict"), ("flags", "flags")] {
        let body = json!({"id": id, "scope": {"team": "search"}, "period": "month",
            "amount_usd": 1.0, "enforce": enforce});
        let a = call(&c, "POST", "/v1/budgets", ADMIN, body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    }
    let ingested = call(
        &c,
        "POST",
        "/v1/records",
        INGEST,
        json!({"records": [record("r1")]}),
    )
    .await;
    assert_eq!(ingested.status, StatusCode::OK, "{}", ingested.text);

    // A plain poll has no leases; it says strict budgets exist, in a new
    // version (so a gateway holding the old one gets it instead of a 304).
    let plain = poll(&c, "").await;
    assert!(plain.json.get("leases").is_none(), "{}", plain.text);
    assert_eq!(plain.json["strict"], 1);
    assert_ne!(plain.json["version"], before.json["version"]);

    let a1 = poll(
        &c,
        "host=gw-a&model=openai:gpt-4o-mini&model=openai:no-such-model",
    )
    .await;
    assert_eq!(a1.json["host"], "gw-a");
    assert!(lease(&a1, "flags").is_none(), "flags budgets get no lease");
    let room = 1.0 - RECORD_COST;
    let first = allowance(&a1, "strict");
    assert!((first - 0.1 * room).abs() < 1e-9, "{}", a1.text);
    let l = lease(&a1, "strict").cloned().unwrap_or_default();
    assert_eq!(l["seq"], 1);
    assert_eq!(l["scope"], json!({"team": "search"}));
    assert!(l["expires_in_ms"].as_i64().is_some_and(|ms| ms > 0));
    let price = &a1.json["prices"]["openai:gpt-4o-mini"];
    assert_eq!(price["input"].as_f64(), Some(1.5e-7), "{}", a1.text);
    assert_eq!(price["output"].as_f64(), Some(6e-7));
    assert_eq!(price["cached_input"].as_f64(), Some(7.5e-8));
    assert!(a1.json["prices"].get("openai:no-such-model").is_none());
    assert!(a1.json["price_version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    assert!(a1.header("etag").is_none(), "lease answers are never 304");

    let b1 = poll(&c, "host=gw-b").await;
    let second = allowance(&b1, "strict");
    assert!((second - 0.1 * (room - first)).abs() < 1e-9, "{}", b1.text);

    // gw-a used all it had and wants much more: it gets all that is left.
    let a2 = poll(&c, &format!("host=gw-a&lease=strict,1,{first},1000")).await;
    let grown = allowance(&a2, "strict");
    assert!((grown - (room - second)).abs() < 1e-9, "{}", a2.text);
    // gw-b now finds no room beyond what it used.
    let b2 = poll(&c, &format!("host=gw-b&lease=strict,1,{second},1000")).await;
    assert!(
        (allowance(&b2, "strict") - second).abs() < 1e-9,
        "{}",
        b2.text
    );
    // However often they poll, the allowances stay within the cap.
    for round in 0..5 {
        let a = poll(&c, &format!("host=gw-a&lease=strict,{},0.1,5", round + 2)).await;
        let b = poll(&c, &format!("host=gw-b&lease=strict,{},0.05,5", round + 2)).await;
        let total = allowance(&a, "strict") + allowance(&b, "strict");
        assert!(total <= room + 1e-9, "round {round}: {total}");
    }

    // Where the cap is held: one lease per host, adding up to `held_usd`.
    let held = call(&c, "GET", "/v1/budgets/strict/leases", READ, Value::Null).await;
    assert_eq!(held.status, StatusCode::OK, "{}", held.text);
    let hosts: Vec<&str> = held.json["leases"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["host"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(hosts, ["gw-a", "gw-b"], "{}", held.text);
    let committed: f64 = held.json["leases"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["committed_usd"].as_f64()).sum())
        .unwrap_or(-1.0);
    let number = |k: &str| held.json[k].as_f64().unwrap_or(-1.0);
    assert!(
        (number("held_usd") - committed).abs() < 1e-12,
        "{}",
        held.text
    );
    assert_eq!(number("cap_usd"), 1.0);
    assert!(
        (number("base_usd") - RECORD_COST).abs() < 1e-12,
        "{}",
        held.text
    );
    assert!(number("held_usd") <= room + 1e-9);
    assert!((number("unheld_usd") - (room - number("held_usd")).max(0.0)).abs() < 1e-9);
    assert_eq!(held.json["leases"][0]["seq"], 7, "{}", held.text);
    assert_eq!(held.json["leases"][0]["expired"], false);
    // A flags budget has none; an unknown one is 404.
    let none = call(&c, "GET", "/v1/budgets/flags/leases", READ, Value::Null).await;
    assert_eq!(none.json["leases"], json!([]), "{}", none.text);
    let missing = call(&c, "GET", "/v1/budgets/nope/leases", READ, Value::Null).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_poll_parameters_are_400_naming_them() {
    let c = start();
    for (query, needle) in [
        ("host=bad%20id", "host"),
        ("host=h&lease=b,1,-2,0", "lease"),
        ("host=h&whatever=1", "whatever"),
    ] {
        let a = call(&c, "GET", &format!("/v1/caps?{query}"), READ, Value::Null).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(a.text.contains(needle), "{query}: {}", a.text);
    }
}
