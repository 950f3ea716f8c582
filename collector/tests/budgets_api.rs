//! HTTP tests of the budget API and `GET /v1/caps` against `app()` over a
//! real SQLite file.

mod common;

use std::time::Duration;

use aispend_collector::domain::time::{format_rfc3339_ms, now_ms};
use axum::http::StatusCode;
use common::{start, Answer, Collector};
use common::{ADMIN_BEARER as ADMIN, INGEST_BEARER as INGEST, READ_BEARER as READ};
use serde_json::{json, Value};

/// Longer than the caps cache's minimum age, so a poll after an ingest
/// sees the new spend.
const CACHE_AGE: Duration = Duration::from_millis(300);

/// One call for gpt-4o-mini, now, so it falls in the current period.
fn record(id: &str, team: &str) -> Value {
    json!({"id": id, "ts": format_rfc3339_ms(now_ms()), "gateway": "envoy",
        "key_id": format!("key-{team}"), "auth": "api_key",
        "tags": {"org": "acme", "team": team}, "labels": {}, "provider": "openai",
        "operation": "chat", "model": "gpt-4o-mini", "status": 200,
        "input_tokens": 100_000, "cached_input_tokens": 0, "cache_write_input_tokens": 0,
        "output_tokens": 50_000, "reasoning_tokens": 0})
}

impl Collector {
    async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: Value) -> Answer {
        common::call_with(&self.router, method, uri, headers, body).await
    }

    async fn as_admin(&self, method: &str, uri: &str, body: Value) -> Answer {
        self.call(method, uri, &[("authorization", ADMIN)], body)
            .await
    }

    async fn read(&self, uri: &str) -> Answer {
        self.call("GET", uri, &[("authorization", READ)], Value::Null)
            .await
    }

    async fn ingest(&self, records: Vec<Value>) {
        let answer = self
            .call(
                "POST",
                "/v1/records",
                &[("authorization", INGEST)],
                json!({ "records": records }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert!(answer.json["rejected"]
            .as_array()
            .is_some_and(Vec::is_empty));
    }

    /// Cost of one team's calls of the last day, as `/v1/usage` reports it.
    /// `to` is a minute ahead: a record stamped this very millisecond would
    /// fall outside a range ending now.
    async fn team_cost(&self, team: &str) -> f64 {
        let now = now_ms();
        let (from, to) = (
            format_rfc3339_ms(now - 86_400_000),
            format_rfc3339_ms(now + 60_000),
        );
        let uri = format!("/v1/usage?filter.team={team}&from={from}&to={to}");
        let answer = self.read(&uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.json["totals"]["cost_usd"].as_f64().unwrap_or(-1.0)
    }

    async fn caps(&self) -> Answer {
        let answer = self.read("/v1/caps").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer
    }
}

fn flags(caps: &Answer) -> Vec<(String, String)> {
    caps.json["caps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    let field = |k: &str| c[k].as_str().unwrap_or("?").to_owned();
                    (field("budget_id"), field("state"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn budget(id: &str, team: &str, amount: f64) -> Value {
    json!({"id": id, "scope": {"team": team}, "period": "month", "amount_usd": amount})
}

#[tokio::test]
async fn crud_answers_spend_state_and_period() {
    let c = start();
    let created = c
        .as_admin("POST", "/v1/budgets", budget("b1", "search", 100.0))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let b = &created.json;
    assert_eq!(b["id"], "b1");
    assert_eq!(b["scope"], json!({"team": "search"}));
    assert_eq!(b["period"], "month");
    assert_eq!(
        (b["soft"].as_f64(), b["hard"].as_f64()),
        (Some(0.8), Some(1.0))
    );
    assert_eq!(b["spend_usd"].as_f64(), Some(0.0));
    assert_eq!(b["state"], "ok");
    let start = b["period_start"].as_str().unwrap_or_default();
    let end = b["period_end"].as_str().unwrap_or_default();
    let now = format_rfc3339_ms(now_ms());
    assert!(
        start.ends_with("-01T00:00:00Z") && end.ends_with("-01T00:00:00Z"),
        "{b}"
    );
    assert!(
        start <= now.as_str() && now.as_str() < end,
        "{start} {now} {end}"
    );

    let again = c
        .as_admin("POST", "/v1/budgets", budget("b1", "growth", 5.0))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.json["error"]["code"], "conflict");

    c.ingest(vec![record("r1", "search"), record("r2", "growth")])
        .await;
    let cost = c.team_cost("search").await;
    assert!(cost > 0.0, "gpt-4o-mini must be priced");
    let got = c.read("/v1/budgets/b1").await;
    assert_eq!(got.status, StatusCode::OK);
    assert!((got.json["spend_usd"].as_f64().unwrap_or(-1.0) - cost).abs() < 1e-9);

    let put = c
        .as_admin(
            "PUT",
            "/v1/budgets/b1",
            json!({"scope": {"team": "search"}, "period": "day", "amount_usd": cost / 2.0}),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(
        (put.json["period"].as_str(), put.json["state"].as_str()),
        (Some("day"), Some("hard"))
    );
    let day_end = put.json["period_end"].as_str().unwrap_or_default();
    assert!(
        day_end.ends_with("T00:00:00Z") && day_end > now.as_str(),
        "{day_end}"
    );

    let created = c
        .as_admin("POST", "/v1/budgets", budget("a0", "growth", 1000.0))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let list = c.read("/v1/budgets").await;
    let ids: Vec<&str> = list.json["budgets"]
        .as_array()
        .map(|a| a.iter().filter_map(|b| b["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec!["a0", "b1"], "{}", list.text);

    let deleted = c.as_admin("DELETE", "/v1/budgets/b1", Value::Null).await;
    assert_eq!(
        (deleted.status, deleted.json["id"].as_str()),
        (StatusCode::OK, Some("b1"))
    );
    for (method, body) in [
        ("GET", Value::Null),
        ("DELETE", Value::Null),
        ("PUT", budget("b1", "x", 1.0)),
    ] {
        let answer = if method == "GET" {
            c.read("/v1/budgets/b1").await
        } else {
            c.as_admin(method, "/v1/budgets/b1", body).await
        };
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method}: {}",
            answer.text
        );
        assert_eq!(answer.json["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn invalid_budgets_are_400_and_store_nothing() {
    let c = start();
    let cases = [
        json!({"id": "b 1", "scope": {"team": "search"}, "period": "month", "amount_usd": 1}),
        json!({"id": "b1", "scope": {}, "period": "month", "amount_usd": 1}),
        json!({"id": "b1", "scope": {"team": "search"}, "period": "year", "amount_usd": 1}),
        json!({"id": "b1", "scope": {"team": "search"}, "period": "month", "amount_usd": 0}),
        json!({"id": "b1", "scope": {"team": "search"}, "period": "month", "amount_usd": 1,
               "soft": 0.9, "hard": 0.5}),
    ];
    for body in cases {
        let answer = c.as_admin("POST", "/v1/budgets", body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            answer.json["error"]["type"], "invalid_request_error",
            "{}",
            answer.text
        );
        assert!(answer.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let raw = c
        .call(
            "POST",
            "/v1/budgets",
            &[
                ("authorization", ADMIN),
                ("content-type", "application/json"),
            ],
            json!("{not json"),
        )
        .await;
    assert_eq!(raw.status, StatusCode::BAD_REQUEST);
    let mismatch = c
        .as_admin("PUT", "/v1/budgets/b1", budget("b2", "search", 1.0))
        .await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    let list = c.read("/v1/budgets").await;
    assert_eq!(list.json["budgets"], json!([]));
}

#[tokio::test]
async fn reads_take_read_or_admin_token_and_writes_only_admin() {
    let c = start();
    let ok = c
        .as_admin("POST", "/v1/budgets", budget("b1", "search", 1.0))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let wrong = ["Bearer nope", INGEST, "admin-secret", "Basic admin-secret"];
    for (method, uri, body) in [
        ("POST", "/v1/budgets", budget("b2", "search", 1.0)),
        ("PUT", "/v1/budgets/b1", budget("b1", "search", 9.0)),
        ("DELETE", "/v1/budgets/b1", Value::Null),
    ] {
        for auth in wrong.iter().filter(|a| **a != INGEST) {
            let answer = c
                .call(method, uri, &[("authorization", auth)], body.clone())
                .await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {auth}"
            );
            assert_eq!(answer.json["error"]["code"], "invalid_token");
        }
        // Known tokens of another role: 403, naming the problem.
        for auth in [INGEST, READ] {
            let answer = c
                .call(method, uri, &[("authorization", auth)], body.clone())
                .await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{method} {uri} with {auth}"
            );
            assert_eq!(answer.json["error"]["code"], "insufficient_role");
        }
        let none = c.call(method, uri, &[], body.clone()).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    }
    for uri in ["/v1/budgets", "/v1/budgets/b1"] {
        for auth in [READ, ADMIN] {
            let answer = c
                .call("GET", uri, &[("authorization", auth)], Value::Null)
                .await;
            assert_eq!(answer.status, StatusCode::OK, "GET {uri} with {auth}");
        }
        for auth in wrong {
            let answer = c
                .call("GET", uri, &[("authorization", auth)], Value::Null)
                .await;
            let expected = if auth == INGEST {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(answer.status, expected, "GET {uri} with {auth}");
        }
    }
    assert_eq!(
        c.call("GET", "/v1/caps", &[], Value::Null).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Gateways poll caps with their ingest token (CONTRACTS §9).
    let caps = c
        .call("GET", "/v1/caps", &[("authorization", INGEST)], Value::Null)
        .await;
    assert_eq!(caps.status, StatusCode::OK);
    // Nothing an unauthorized call tried went through.
    let b1 = c.read("/v1/budgets/b1").await;
    assert_eq!(b1.json["amount_usd"].as_f64(), Some(1.0));
    assert_eq!(c.read("/v1/budgets/b2").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn spend_raises_flags_soft_then_hard_and_budget_changes_lift_them() {
    let c = start();
    // The cost of one call, measured on a team no budget covers.
    c.ingest(vec![record("probe", "probe")]).await;
    let one = c.team_cost("probe").await;
    assert!(one > 0.0);
    let created = c
        .as_admin("POST", "/v1/budgets", budget("b1", "search", 10.0 * one))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let quiet = c
        .as_admin("POST", "/v1/budgets", budget("other", "growth", one))
        .await;
    assert_eq!(quiet.status, StatusCode::CREATED);

    let empty = c.caps().await;
    // No `poll_interval_ms`: gateways poll at their own configured interval.
    assert!(
        empty.json.get("poll_interval_ms").is_none(),
        "{}",
        empty.json
    );
    assert!(empty.json["generated_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(flags(&empty), vec![]);
    let v0 = empty.json["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!v0.is_empty());
    assert_eq!(empty.etag.as_deref(), Some(format!("\"{v0}\"").as_str()));

    // 9 of 10: soft.
    c.ingest((0..9).map(|i| record(&format!("s{i}"), "search")).collect())
        .await;
    tokio::time::sleep(CACHE_AGE).await;
    let soft = c.caps().await;
    assert_eq!(flags(&soft), vec![("b1".to_owned(), "soft".to_owned())]);
    let flag = &soft.json["caps"][0];
    assert_eq!(flag["scope"], json!({"team": "search"}));
    assert!((flag["spend_usd"].as_f64().unwrap_or(0.0) - 9.0 * one).abs() < 1e-9);
    assert!((flag["amount_usd"].as_f64().unwrap_or(0.0) - 10.0 * one).abs() < 1e-12);
    assert!(flag["period_end"]
        .as_str()
        .is_some_and(|t| t.ends_with("-01T00:00:00Z")));
    let v1 = soft.json["version"].as_str().unwrap_or_default().to_owned();
    assert_ne!(v1, v0);

    // Unchanged flags answer 304 with no body, even after more spend.
    let not_modified = c
        .call(
            "GET",
            "/v1/caps",
            &[
                ("authorization", READ),
                ("if-none-match", &format!("\"{v1}\"")),
            ],
            Value::Null,
        )
        .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.text.is_empty());
    let stale = c
        .call(
            "GET",
            "/v1/caps",
            &[("authorization", READ), ("if-none-match", &v0)],
            Value::Null,
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::OK,
        "an old version gets the new flags"
    );

    // 11 of 10: hard.
    c.ingest(vec![record("s9", "search"), record("s10", "search")])
        .await;
    tokio::time::sleep(CACHE_AGE).await;
    let hard = c.caps().await;
    assert_eq!(flags(&hard), vec![("b1".to_owned(), "hard".to_owned())]);
    let v2 = hard.json["version"].as_str().unwrap_or_default().to_owned();
    assert!(v2 != v1 && v2 != v0);
    let budget_view = c.read("/v1/budgets/b1").await;
    assert_eq!(budget_view.json["state"], "hard");

    // Raising the amount lifts the flag on the very next poll.
    let raised = c
        .as_admin("PUT", "/v1/budgets/b1", budget("b1", "search", 100.0 * one))
        .await;
    assert_eq!(
        (raised.status, raised.json["state"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let lifted = c.caps().await;
    assert_eq!(flags(&lifted), vec![]);
    assert_eq!(
        lifted.json["version"],
        json!(v0),
        "the same (empty) set of flags"
    );

    // Lowering it again flags it; deleting it lifts the flag at once.
    let lowered = c
        .as_admin("PUT", "/v1/budgets/b1", budget("b1", "search", 5.0 * one))
        .await;
    assert_eq!(lowered.json["state"], "hard");
    assert_eq!(
        flags(&c.caps().await),
        vec![("b1".to_owned(), "hard".to_owned())]
    );
    let deleted = c.as_admin("DELETE", "/v1/budgets/b1", Value::Null).await;
    assert_eq!(deleted.status, StatusCode::OK);
    let after = c.caps().await;
    assert_eq!(flags(&after), vec![]);

    let metrics = c.call("GET", "/metrics", &[], Value::Null).await.text;
    for line in [
        "aispend_budgets 1\n",
        "aispend_caps_flags{state=\"soft\"} 0\n",
        "aispend_caps_flags{state=\"hard\"} 0\n",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    let requests = metrics
        .lines()
        .find_map(|l| l.strip_prefix("aispend_caps_requests_total "))
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(
        requests,
        Some(8),
        "every GET /v1/caps is counted, 304s included"
    );
}

#[tokio::test]
async fn key_id_scopes_and_several_pairs_must_all_match() {
    let c = start();
    c.ingest(vec![record("p", "probe")]).await;
    let one = c.team_cost("probe").await;
    assert!(one > 0.0);
    let both = json!({"id": "both", "scope": {"team": "search", "key_id": "key-search"},
                      "period": "day", "amount_usd": one, "soft": 0.5, "hard": 1.0});
    let mismatch = json!({"id": "mismatch", "scope": {"team": "search", "key_id": "key-growth"},
                          "period": "day", "amount_usd": one});
    let by_key = json!({"id": "by-key", "scope": {"key_id": "key-search"},
                        "period": "month", "amount_usd": 4.0 * one});
    for body in [both, mismatch, by_key] {
        assert_eq!(
            c.as_admin("POST", "/v1/budgets", body).await.status,
            StatusCode::CREATED
        );
    }
    c.ingest(vec![record("s1", "search"), record("g1", "growth")])
        .await;
    tokio::time::sleep(CACHE_AGE).await;
    let caps = c.caps().await;
    assert_eq!(
        flags(&caps),
        vec![("both".to_owned(), "hard".to_owned())],
        "{}",
        caps.text
    );
    let list = c.read("/v1/budgets").await;
    let spend = |id: &str| {
        list.json["budgets"]
            .as_array()
            .and_then(|a| a.iter().find(|b| b["id"] == id))
            .and_then(|b| b["spend_usd"].as_f64())
            .unwrap_or(-1.0)
    };
    assert!((spend("both") - one).abs() < 1e-9);
    assert_eq!(spend("mismatch"), 0.0);
    assert!((spend("by-key") - one).abs() < 1e-9);
}
