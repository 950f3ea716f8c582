//! HTTP-level tests of `app()` over a real SQLite file.

mod common;

use aispend_collector::{app, AppState};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::{INGEST_BEARER as INGEST, READ_BEARER as READ};
use serde_json::{json, Value};

const MONTH: &str = "from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z";

struct Collector {
    router: Router,
    state: AppState,
    db_url: String,
    _dir: tempfile::TempDir,
}

fn start_at(db_url: &str, dir: tempfile::TempDir) -> Collector {
    let state = common::sqlite_state(db_url);
    Collector {
        router: app(state.clone()),
        state,
        db_url: db_url.to_owned(),
        _dir: dir,
    }
}

fn start() -> Collector {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/data/aispend.db", dir.path().display());
    start_at(&url, dir)
}

fn record(id: &str, team: &str, model: &str, input: u64, output: u64) -> Value {
    json!({"id": id, "ts": "2026-11-24T06:50:00.123Z", "duration_ms": 12, "ttft_ms": 5,
        "gateway": "envoy", "key_id": format!("key-{team}"), "auth": "api_key",
        "tags": {"org": "acme", "team": team, "project": "p1", "cost_center": "CC-1", "environment": "prod"},
        "labels": {}, "provider": "openai", "operation": "chat", "model": model,
        "requested_model": "gpt-4o-mini", "stream": false, "status": 200, "error": null,
        "input_tokens": input, "cached_input_tokens": 0, "cache_write_input_tokens": 0,
        "output_tokens": output, "reasoning_tokens": 0})
}

impl Collector {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Body,
    ) -> (StatusCode, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let answer = common::send(&self.router, request.body(body).expect("request")).await;
        (answer.status, answer.text)
    }

    async fn ingest(&self, records: Vec<Value>) -> (StatusCode, Value) {
        let body = json!({ "records": records }).to_string();
        let (status, text) = self
            .call("POST", "/v1/records", Some(INGEST), Body::from(body))
            .await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn usage(&self, query: &str) -> (StatusCode, Value) {
        let uri = format!("/v1/usage?{query}");
        let (status, text) = self.call("GET", &uri, Some(READ), Body::empty()).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn approx(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - expected).abs() < 1e-9)
}

#[tokio::test]
async fn ingest_then_usage_sums_priced_records() {
    let c = start();
    let (status, body) = c
        .ingest(vec![
            record("r1", "search", "gpt-4o-mini-2024-07-18", 1_000_000, 0),
            record("r2", "search", "gpt-4o-mini-2024-07-18", 0, 1_000_000),
            record("r3", "growth", "gpt-4o", 1_000_000, 1_000_000),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 3, "duplicates": 0, "rejected": []})
    );

    let (status, body) = c.usage(&format!("{MONTH}&group_by=team,model")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["group_by"], json!(["team", "model"]));
    assert_eq!(body["from"], "2026-11-01T00:00:00Z");
    let rows = body["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    // gpt-4o: 2.50 + 10.00 per 1M; gpt-4o-mini: 0.15 + 0.60 per 1M.
    assert_eq!(rows[0]["team"], "growth");
    assert_eq!(rows[0]["model"], "gpt-4o");
    assert!(approx(&rows[0]["cost_usd"], 12.5), "{}", rows[0]);
    assert_eq!(rows[1]["team"], "search");
    assert_eq!(rows[1]["requests"], 2);
    assert_eq!(rows[1]["input_tokens"], 1_000_000);
    assert_eq!(rows[1]["output_tokens"], 1_000_000);
    assert!(approx(&rows[1]["cost_usd"], 0.75), "{}", rows[1]);
    let totals = &body["totals"];
    for field in [
        "cached_input_tokens",
        "cache_write_input_tokens",
        "reasoning_tokens",
        "errors",
    ] {
        assert_eq!(totals[field], 0, "{field}");
    }
    assert_eq!(totals["requests"], 3);
    assert!(approx(&totals["cost_usd"], 13.25), "{totals}");
}

#[tokio::test]
async fn retried_batches_store_nothing_twice() {
    let c = start();
    let batch = vec![
        record("a", "search", "gpt-4o", 10, 10),
        record("b", "search", "gpt-4o", 10, 10),
    ];
    let (_, first) = c.ingest(batch.clone()).await;
    assert_eq!(first["accepted"], 2);
    let (status, retry) = c.ingest(batch).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        retry,
        json!({"accepted": 0, "duplicates": 2, "rejected": []})
    );
    let (_, usage) = c.usage(MONTH).await;
    assert_eq!(usage["totals"]["requests"], 2);
    assert_eq!(usage["totals"]["input_tokens"], 20);
}

#[tokio::test]
async fn a_bad_record_is_rejected_alone() {
    let c = start();
    let mut bad = record("bad", "search", "gpt-4o", 10, 10);
    bad["input_tokens"] = json!(-5);
    let (status, body) = c
        .ingest(vec![
            record("ok1", "search", "gpt-4o", 10, 10),
            bad,
            json!("nope"),
            record("ok2", "search", "gpt-4o", 1, 1),
        ])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["accepted"], 2);
    let rejected = body["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["index"], 1);
    assert!(
        rejected[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("input_tokens")),
        "{body}"
    );
    assert_eq!(rejected[1]["index"], 2);
    let (_, usage) = c.usage(MONTH).await;
    assert_eq!(usage["totals"]["requests"], 2);
    let metrics = c.call("GET", "/metrics", None, Body::empty()).await.1;
    assert!(
        metrics.contains("aispend_records_rejected_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aispend_records_accepted_total 2\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_models_are_kept_unpriced_and_counted() {
    let c = start();
    let (_, body) = c
        .ingest(vec![record("u", "search", "my-private-finetune", 10, 10)])
        .await;
    assert_eq!(body["accepted"], 1);
    let (_, usage) = c.usage(&format!("{MONTH}&group_by=model")).await;
    assert_eq!(usage["rows"][0]["model"], "my-private-finetune");
    assert_eq!(usage["rows"][0]["unpriced_requests"], 1);
    assert_eq!(usage["rows"][0]["cost_usd"], 0.0);
    let metrics = c.call("GET", "/metrics", None, Body::empty()).await.1;
    assert!(
        metrics.contains("aispend_records_unpriced_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn tokens_are_required_and_scoped() {
    let c = start();
    let body = || Body::from(json!({"records": [record("x", "t", "gpt-4o", 1, 1)]}).to_string());
    for auth in [None, Some("Bearer wrong"), Some("ingest-secret")] {
        let (status, text) = c.call("POST", "/v1/records", auth, body()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        let v: Value = serde_json::from_str(&text).expect("json error body");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["code"], "invalid_token");
    }
    for auth in [None, Some("Bearer wrong")] {
        let (status, _) = c.call("GET", "/v1/usage", auth, Body::empty()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    // A known token of the wrong role is 403 and says so.
    for (method, uri, auth) in [
        ("POST", "/v1/records", READ),
        ("GET", "/v1/usage", INGEST),
        ("POST", "/v1/budgets", READ),
    ] {
        let b = if method == "POST" {
            body()
        } else {
            Body::empty()
        };
        let (status, text) = c.call(method, uri, Some(auth), b).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri} with {auth}");
        let v: Value = serde_json::from_str(&text).expect("json error body");
        assert_eq!(v["error"]["code"], "insufficient_role", "{text}");
        assert_eq!(v["error"]["type"], "permission_error", "{text}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("role")),
            "{text}"
        );
    }
    // Nothing was stored by the refused calls.
    assert_eq!(c.usage(MONTH).await.1["totals"]["requests"], 0);
    assert_eq!(
        c.call("GET", "/healthz", None, Body::empty()).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_queries_get_400_with_a_message() {
    let c = start();
    for (query, expected) in [
        ("group_by=teams-x", "unknown dimension"),
        ("group_by=team,Model", "unknown dimension"),
        ("from=last-week", "RFC 3339"),
        ("to=2026-13-01T00:00:00Z", "RFC 3339"),
        ("filter.team=a%20b", "must be"),
        ("from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "after"),
        ("bogus=1", "unknown query parameter"),
    ] {
        let (status, body) = c.usage(query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{query}: {body}");
    }
}

#[tokio::test]
async fn usage_defaults_to_month_to_date_and_any_tag_groups() {
    let c = start();
    let mut tagged = record("t1", "search", "gpt-4o", 1, 1);
    tagged["tags"]["region"] = json!("eu");
    tagged["ts"] = json!("2020-01-01T00:00:00Z");
    c.ingest(vec![tagged]).await;
    let (status, body) = c.usage("group_by=region,day").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["from"]
            .as_str()
            .is_some_and(|f| f.ends_with("-01T00:00:00Z")),
        "{body}"
    );
    assert_eq!(body["group_by"], json!(["region", "day"]));
    assert_eq!(body["rows"], json!([]));
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let c = start();
    let (status, text) = c
        .call("POST", "/v1/records", Some(INGEST), Body::from("{not json"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("not valid JSON"));
    let (status, text) = c
        .call(
            "POST",
            "/v1/records",
            Some(INGEST),
            Body::from(r#"{"items":[]}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("`records` array"), "{text}");

    let huge = format!(
        r#"{{"records":[],"pad":"{}"}}"#,
        "x".repeat(9 * 1024 * 1024)
    );
    let (status, text) = c
        .call("POST", "/v1/records", Some(INGEST), Body::from(huge))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(text.contains("payload_too_large"), "{text}");

    let many: Vec<Value> = (0..10_001).map(|_| json!({})).collect();
    let (status, body) = c.ingest(many).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(c.usage(MONTH).await.1["totals"]["requests"], 0);
}

#[tokio::test]
async fn restart_keeps_data() {
    let c = start();
    c.ingest(vec![record("p1", "search", "gpt-4o", 5, 5)]).await;
    c.state.store.close().await.expect("close");
    let Collector {
        db_url,
        _dir,
        state,
        router,
    } = c;
    drop((state, router));
    let again = start_at(&db_url, _dir);
    assert_eq!(again.usage(MONTH).await.1["totals"]["requests"], 1);
    let (_, retry) = again
        .ingest(vec![record("p1", "search", "gpt-4o", 5, 5)])
        .await;
    assert_eq!(retry["duplicates"], 1, "idempotency survives a restart");
}

#[tokio::test]
async fn an_unencoded_plus_in_a_time_gets_the_percent_2b_hint() {
    let c = start();
    // `+01:00` sent as is decodes as ` 01:00`.
    let (status, body) = c.usage("from=2026-11-01T00:00:00+01:00").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("%2B"), "{body}");
    assert!(message.contains("`from`"), "{body}");
    // Encoded, it is accepted.
    let (status, body) = c
        .usage("from=2026-11-01T00:00:00%2B01:00&to=2026-11-02T00:00:00Z")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["from"], "2026-10-31T23:00:00Z");
}

impl Collector {
    /// `GET /v1/usage` with extra headers: (status, content-type, body text).
    async fn usage_raw(
        &self,
        query: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        let mut all = vec![("authorization", READ)];
        all.extend_from_slice(headers);
        let uri = format!("/v1/usage?{query}");
        let answer = common::call_with(&self.router, "GET", &uri, &all, Value::Null).await;
        let content_type = answer.header("content-type").unwrap_or_default();
        (answer.status, content_type, answer.text)
    }
}

#[tokio::test]
async fn tiny_costs_print_as_plain_decimals_in_json_and_csv() {
    let c = start();
    // 23 input tokens of gpt-4o-mini at $0.15 per 1M = $0.00000345.
    c.ingest(vec![record("tiny", "search", "gpt-4o-mini", 23, 0)])
        .await;
    let (status, _, text) = c.usage_raw(&format!("{MONTH}&group_by=team"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains(r#""cost_usd":0.00000345,"#), "{text}");
    assert!(!text.contains("e-"), "no exponent anywhere: {text}");
    let (_, _, csv) = c
        .usage_raw(&format!("{MONTH}&group_by=team&format=csv"), &[])
        .await;
    assert!(csv.contains(",0.00000345,"), "{csv}");
}

#[tokio::test]
async fn csv_by_parameter_or_accept_header() {
    let c = start();
    c.ingest(vec![
        record("c1", "search", "gpt-4o", 1_000_000, 0),
        record("c2", "growth", "gpt-4o-mini", 1_000_000, 0),
        record("c3", "growth", "gpt-4o-mini", 1_000_000, 0),
    ])
    .await;
    let expected = "team,model,requests,errors,denied,input_tokens,cached_input_tokens,\
                    cache_write_input_tokens,output_tokens,reasoning_tokens,cost_usd,\
                    unpriced_requests,coverage\r\n\
                    search,gpt-4o,1,0,0,1000000,0,0,0,0,2.5,0,1.0\r\n\
                    growth,gpt-4o-mini,2,0,0,2000000,0,0,0,0,0.3,0,1.0\r\n";
    let query = format!("{MONTH}&group_by=team,model");
    let (status, content_type, by_param) = c.usage_raw(&format!("{query}&format=csv"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{by_param}");
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    assert_eq!(by_param, expected);
    let (status, content_type, by_accept) = c.usage_raw(&query, &[("accept", "text/csv")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    assert_eq!(by_accept, expected);
    // format=json wins over the header; no header: JSON.
    let (_, content_type, _) = c
        .usage_raw(&format!("{query}&format=json"), &[("accept", "text/csv")])
        .await;
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let (_, content_type, _) = c.usage_raw(&query, &[]).await;
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    // An unknown format is a 400 naming the parameter.
    let (status, _, text) = c.usage_raw("format=xlsx", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("invalid_parameter") && text.contains("format"),
        "{text}"
    );
}

#[tokio::test]
async fn typos_in_dimensions_are_400_naming_the_parameter_and_the_valid_ones() {
    let c = start();
    let mut tagged = record("t1", "search", "gpt-4o", 1, 1);
    tagged["tags"]["region"] = json!("eu");
    c.ingest(vec![tagged]).await;
    for (query, param, name) in [
        ("group_by=teams", "group_by", "teams"),
        ("group_by=team,Model", "group_by", "Model"),
        ("group_by=regoin", "group_by", "regoin"),
        ("filter.teams=search", "filter.teams", "teams"),
        ("filter.label.=x", "filter.label.", "label."),
        ("group_by=day&filter.modle=gpt-4o", "filter.modle", "modle"),
    ] {
        let (status, body) = c.usage(&format!("{MONTH}&{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{query}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{query}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{param}: unknown dimension \"{name}\"")),
            "{query}: {message}"
        );
        for valid in ["team", "requested_model", "week", "label.<name>", "region"] {
            assert!(message.contains(valid), "{query} lists {valid}: {message}");
        }
    }
    let (_, body) = c.usage(&format!("{MONTH}&group_by=teams")).await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("did you mean \"team\""), "{message}");
    // Seen operator tags and canonical tags are valid, used or not.
    for query in [
        "group_by=region",
        "filter.region=eu",
        "group_by=cost_center,org",
    ] {
        let (status, body) = c.usage(&format!("{MONTH}&{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
    }
    let (_, body) = c.usage(&format!("{MONTH}&filter.region=eu")).await;
    assert_eq!(body["totals"]["requests"], 1);
}

/// A record at `ts` with a requested model and labels.
fn timed(id: &str, ts: &str, requested: &str, feature: Option<&str>, input: u64) -> Value {
    let mut r = record(id, "search", "gpt-4o-mini", input, 0);
    r["ts"] = json!(ts);
    r["requested_model"] = json!(requested);
    if let Some(feature) = feature {
        r["labels"] = json!({ "feature": feature });
    }
    r
}

/// (dimension value, requests) per row, sorted by value with nulls last.
fn column<'a>(body: &'a Value, dim: &str) -> Vec<(&'a Value, &'a Value)> {
    let mut rows: Vec<(&Value, &Value)> = body["rows"]
        .as_array()
        .map(|rows| rows.iter().map(|r| (&r[dim], &r["requests"])).collect())
        .unwrap_or_default();
    rows.sort_by_key(|(v, _)| v.as_str().unwrap_or("~").to_owned());
    rows
}

#[tokio::test]
async fn group_by_hour_week_month_requested_model_and_labels() {
    let c = start();
    c.ingest(vec![
        timed("h1", "2026-11-29T23:10:00Z", "fast", Some("summarize"), 10),
        timed("h2", "2026-11-29T23:50:00Z", "fast", Some("chat"), 10),
        timed("h3", "2026-11-30T00:20:00Z", "smart", Some("summarize"), 10),
        timed("h4", "2026-12-01T05:00:00Z", "smart", None, 10),
    ])
    .await;
    let range = "from=2026-11-01T00:00:00Z&to=2027-01-01T00:00:00Z";
    let c = &c;
    let usage = |group: &str| {
        let q = format!("{range}&{group}");
        async move { c.usage(&q).await }
    };
    let (status, body) = usage("group_by=hour").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hours = column(&body, "hour");
    assert_eq!(
        hours,
        vec![
            (&json!("2026-11-29T23:00:00Z"), &json!(2)),
            (&json!("2026-11-30T00:00:00Z"), &json!(1)),
            (&json!("2026-12-01T05:00:00Z"), &json!(1)),
        ]
    );
    // 2026-11-29 is a Sunday (ISO week 48); 2026-11-30 a Monday (week 49).
    let (_, body) = usage("group_by=week").await;
    let weeks = column(&body, "week");
    assert_eq!(
        weeks,
        vec![
            (&json!("2026-W48"), &json!(2)),
            (&json!("2026-W49"), &json!(2))
        ]
    );
    let (_, body) = usage("group_by=month").await;
    let months = column(&body, "month");
    assert_eq!(
        months,
        vec![
            (&json!("2026-11"), &json!(3)),
            (&json!("2026-12"), &json!(1))
        ]
    );
    let (_, body) = usage("group_by=requested_model").await;
    let requested = column(&body, "requested_model");
    assert_eq!(
        requested,
        vec![(&json!("fast"), &json!(2)), (&json!("smart"), &json!(2))]
    );
    let (_, body) = usage("group_by=label.feature").await;
    let features = column(&body, "label.feature");
    assert_eq!(
        features,
        vec![
            (&json!("chat"), &json!(1)),
            (&json!("summarize"), &json!(2)),
            (&Value::Null, &json!(1)),
        ]
    );
    // With filters, alone and mixed with rollup dimensions.
    let (_, body) = usage("group_by=week&filter.label.feature=summarize").await;
    let weeks = column(&body, "week");
    assert_eq!(
        weeks,
        vec![
            (&json!("2026-W48"), &json!(1)),
            (&json!("2026-W49"), &json!(1))
        ]
    );
    let (_, body) = usage("group_by=team&filter.requested_model=smart&filter.month=2026-11").await;
    assert_eq!(body["totals"]["requests"], 1, "{body}");
    assert_eq!(body["rows"][0]["team"], "search");
    let (_, body) = usage("filter.hour=2026-11-29T23:00:00Z").await;
    assert_eq!(body["totals"]["requests"], 2, "{body}");
    assert_eq!(body["totals"]["input_tokens"], 20, "{body}");
    let (_, body) = usage("group_by=label.feature&filter.week=2026-W49").await;
    assert_eq!(body["totals"]["requests"], 2, "{body}");
}

#[tokio::test]
async fn refused_calls_count_as_denied_requests_and_errors() {
    let c = start();
    let refused = |id: &str, team: &str, status: u16, code: &str| {
        let mut r = record(id, team, "gpt-4o", 0, 0);
        r["status"] = json!(status);
        r["error"] = json!(code);
        r
    };
    let mut upstream_429 = record("u429", "search", "gpt-4o", 0, 0);
    upstream_429["status"] = json!(429);
    let (_, body) = c
        .ingest(vec![
            record("ok", "search", "gpt-4o", 10, 10),
            refused("d1", "search", 401, "invalid_api_key"),
            refused("d2", "search", 402, "budget_exceeded"),
            refused("d3", "growth", 429, "rate_limit_exceeded"),
            refused("d4", "growth", 503, "caps_unavailable"),
            upstream_429,
        ])
        .await;
    assert_eq!(body["accepted"], 6, "{body}");
    let (status, body) = c.usage(&format!("{MONTH}&group_by=team")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let totals = &body["totals"];
    assert_eq!(
        (&totals["requests"], &totals["errors"], &totals["denied"]),
        (&json!(6), &json!(5), &json!(4)),
        "{body}"
    );
    for row in body["rows"].as_array().into_iter().flatten() {
        let expected = if row["team"] == "search" {
            (4, 3, 2)
        } else {
            (2, 2, 2)
        };
        assert_eq!(
            (&row["requests"], &row["errors"], &row["denied"]),
            (&json!(expected.0), &json!(expected.1), &json!(expected.2)),
            "{row}"
        );
    }
    let (_, _, csv) = c
        .usage_raw(&format!("{MONTH}&group_by=team&format=csv"), &[])
        .await;
    assert!(csv.starts_with("team,requests,errors,denied,"), "{csv}");
    assert!(csv.contains("\r\ngrowth,2,2,2,0,"), "{csv}");
}
