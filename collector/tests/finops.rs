//! FinOps over HTTP (SPEC §11) on BOTH stores: GL accounts, the chargeback
//! and FOCUS exports, showback, closing a month, tag coverage. The numbers
//! of every view agree with `GET /v1/usage` to 1e-9 relative.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::store::postgres::test_schema::TestSchema;
use aispend_collector::store::Store;
use aispend_collector::{app, store, AppState};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::{ADMIN_BEARER as ADMIN, INGEST_BEARER as INGEST, READ_BEARER as READ};
use serde_json::{json, Value};

/// Keeps what the store needs alive (a temp dir, a PostgreSQL schema).
#[allow(dead_code)]
enum Guard {
    Dir(tempfile::TempDir),
    Schema(TestSchema),
}

struct Collector {
    router: Router,
    _guard: Guard,
}

fn with_store(store: Arc<dyn Store>, guard: Guard) -> Collector {
    let state = AppState::new(
        store,
        PriceTable::embedded().expect("prices"),
        common::tokens(),
    );
    Collector {
        router: app(state),
        _guard: guard,
    }
}

async fn sqlite() -> Collector {
    let (dir, url) = common::sqlite_dir();
    with_store(store::open(&url).expect("open"), Guard::Dir(dir))
}

async fn postgres() -> Collector {
    let schema = TestSchema::create().await.unwrap_or_else(|e| panic!("{e}"));
    let store = store::connect(&schema.url()).await.expect("connect");
    with_store(store, Guard::Schema(schema))
}

impl Collector {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: &str,
        body: String,
    ) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .header("authorization", auth)
            .body(Body::from(body))
            .expect("request");
        let answer = common::send(&self.router, request).await;
        (answer.status, answer.text)
    }

    /// Exports and the ledger are finance's (the admin token has every role).
    async fn get(&self, uri: &str) -> (StatusCode, String) {
        self.call("GET", uri, ADMIN, String::new()).await
    }

    async fn json(&self, uri: &str) -> Value {
        let (status, text) = self.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {text}");
        serde_json::from_str(&text).expect("json")
    }

    async fn csv(&self, uri: &str) -> Vec<BTreeMap<String, String>> {
        let (status, text) = self.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {text}");
        parse_csv(&text)
    }

    async fn ingest(&self, records: Vec<Value>) {
        for chunk in records.chunks(5_000) {
            let body = json!({ "records": chunk }).to_string();
            let (status, text) = self.call("POST", "/v1/records", INGEST, body).await;
            assert_eq!(status, StatusCode::OK, "{text}");
            let v: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(v["rejected"], json!([]), "{text}");
        }
    }
}

/// A small RFC 4180 reader (quoted fields with doubled quotes, CRLF).
fn parse_csv(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut field = String::new();
    let mut line = Vec::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => line.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                line.push(std::mem::take(&mut field));
                lines.push(std::mem::take(&mut line));
            }
            (c, _) => field.push(c),
        }
    }
    let mut lines = lines.into_iter();
    let header = lines.next().expect("a header line");
    lines
        .map(|l| {
            assert_eq!(l.len(), header.len(), "{l:?}");
            header.iter().cloned().zip(l).collect()
        })
        .collect()
}

fn num(row: &BTreeMap<String, String>, column: &str) -> f64 {
    row.get(column)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{column} in {row:?}"))
}

fn sum(rows: &[BTreeMap<String, String>], column: &str) -> f64 {
    rows.iter().map(|r| num(r, column)).sum()
}

fn assert_close(what: &str, got: f64, want: f64) {
    let scale = want.abs().max(1e-300);
    assert!(
        ((got - want) / scale).abs() <= 1e-9,
        "{what}: {got} vs {want} (relative {})",
        ((got - want) / scale).abs()
    );
}

/// Deterministic records: `n` calls in the month starting `month_start`
/// (`YYYY-MM`), mixed teams, projects, cost centers (some missing), models
/// (one unpriced), token kinds and workflows.
fn records(prefix: &str, month: &str, n: usize, seed: u64) -> Vec<Value> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    let teams = ["search", "growth", "ads"];
    let models = [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-3-5-haiku-20241022"),
        ("openai", "mystery-model"),
    ];
    (0..n)
        .map(|i| {
            let project = ["p1", "p2"][next(2) as usize];
            let mut tags = json!({"org": "acme", "environment": "prod", "project": project});
            if next(10) < 9 {
                tags["team"] = json!(teams[next(3) as usize]);
            }
            match next(10) {
                0..=4 => tags["cost_center"] = json!("CC-1"),
                5..=7 => tags["cost_center"] = json!("CC-2"),
                _ => {}
            }
            let (provider, model) = models[next(4) as usize];
            let input = 10 + next(20_000);
            let cached = next(input / 2 + 1);
            let write = if provider == "anthropic" {
                next(input - cached + 1)
            } else {
                0
            };
            let workflow = ["triage", "summarize"][next(2) as usize];
            json!({"id": format!("{prefix}-{i}"),
                "ts": format!("{month}-{:02}T{:02}:{:02}:07.5Z", 1 + next(28), next(24), next(60)),
                "duration_ms": 12, "ttft_ms": 5, "gateway": "envoy",
                "key_id": format!("key-{}", next(5)), "auth": "api_key", "tags": tags,
                "labels": {"workflow": workflow},
                "provider": provider, "operation": "chat", "model": model,
                "requested_model": model, "stream": false, "status": 200, "error": null,
                "input_tokens": input, "cached_input_tokens": cached,
                "cache_write_input_tokens": write, "output_tokens": next(4_000),
                "reasoning_tokens": 0})
        })
        .collect()
}

const NOV: &str = "from=2025-11-01T00:00:00Z&to=2025-12-01T00:00:00Z";

async fn numbers_agree(c: Collector) {
    c.ingest(records("nov", "2025-11", 6_000, 1)).await;
    c.ingest(records("oct", "2025-10", 1_500, 2)).await;
    let (status, text) = c
        .call(
            "PUT",
            "/v1/gl-accounts/CC-1",
            ADMIN,
            json!({"gl_account": "6120-AI"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");

    let usage = c.json(&format!("/v1/usage?{NOV}")).await;
    let total = usage["totals"]["cost_usd"].as_f64().expect("cost");
    let requests = usage["totals"]["requests"].as_f64().expect("requests");
    let tokens = usage["totals"]["input_tokens"].as_f64().unwrap_or(0.0)
        + usage["totals"]["output_tokens"].as_f64().unwrap_or(0.0);
    assert!(total > 1.0, "enough cost to compare: {total}");

    let chargeback = c.csv("/v1/export/chargeback?month=2025-11").await;
    assert_close("chargeback cost_usd", sum(&chargeback, "cost_usd"), total);
    assert_close(
        "chargeback requests",
        sum(&chargeback, "requests"),
        requests,
    );
    for line in &chargeback {
        let want = match line["cost_center"].as_str() {
            "CC-1" => "6120-AI",
            "CC-2" | "UNALLOCATED" => "UNMAPPED",
            other => panic!("unexpected cost center {other}"),
        };
        assert_eq!(line["gl_account"], want, "{line:?}");
        assert_eq!(line["line_type"], "usage");
        assert_eq!(line["month"], "2025-11");
    }
    assert!(chargeback.iter().any(|l| l["cost_center"] == "UNALLOCATED"));
    assert!(chargeback.iter().any(|l| l["team"].is_empty()));

    let focus = c.csv("/v1/export/focus?month=2025-11").await;
    assert_close("FOCUS BilledCost", sum(&focus, "BilledCost"), total);
    assert_close("FOCUS EffectiveCost", sum(&focus, "EffectiveCost"), total);
    assert_close(
        "FOCUS ConsumedQuantity",
        sum(&focus, "ConsumedQuantity"),
        tokens,
    );
    for row in focus.iter().take(200) {
        let tags: Value = serde_json::from_str(&row["Tags"]).expect("Tags is JSON");
        assert!(tags.is_object());
        assert_eq!(row["BillingPeriodStart"], "2025-11-01T00:00:00Z");
        assert!(row["ChargePeriodStart"].starts_with("2025-11-"));
        let cc = tags["cost_center"].as_str().unwrap_or("UNALLOCATED");
        let gl = if cc == "CC-1" { "6120-AI" } else { "UNMAPPED" };
        assert_eq!(row["x_GlAccount"], gl);
    }

    let showback = c.json("/v1/reports/showback?month=2025-11").await;
    assert_close(
        "showback total",
        showback["totals"]["cost_usd"].as_f64().unwrap_or(0.0),
        total,
    );
    let teams = showback["teams"].as_array().expect("teams");
    let team_sum: f64 = teams
        .iter()
        .map(|t| t["cost_usd"].as_f64().unwrap_or(0.0))
        .sum();
    assert_close("showback teams", team_sum, total);
    let showback_csv = c.csv("/v1/reports/showback?month=2025-11&format=csv").await;
    assert_close("showback csv", sum(&showback_csv, "cost_usd"), total);
    // The previous month is October.
    let october = c
        .json("/v1/usage?from=2025-10-01T00:00:00Z&to=2025-11-01T00:00:00Z")
        .await;
    assert_close(
        "showback previous",
        showback["totals"]["previous_cost_usd"]
            .as_f64()
            .unwrap_or(0.0),
        october["totals"]["cost_usd"].as_f64().unwrap_or(0.0),
    );
}

#[tokio::test]
async fn numbers_agree_sqlite() {
    numbers_agree(sqlite().await).await;
}

#[tokio::test]
async fn numbers_agree_postgres() {
    numbers_agree(postgres().await).await;
}

async fn empty_and_bad_months(c: Collector) {
    for path in ["/v1/export/chargeback", "/v1/export/focus"] {
        let (status, text) = c.get(&format!("{path}?month=2024-01")).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(text.matches("\r\n").count(), 1, "header only: {text}");
        assert!(text.starts_with("month,") || text.starts_with("AvailabilityZone,"));
        for bad in ["month=2025-13", "month=2025-1", "month=nov", ""] {
            let (status, text) = c.get(&format!("{path}?{bad}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {text}");
            assert!(text.contains("month"), "{text}");
        }
        let (status, text) = c.get(&format!("{path}?month=2025-11&mnth=1")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("mnth"), "{text}");
    }
    let showback = c.json("/v1/reports/showback?month=2024-01").await;
    assert_eq!(showback["totals"]["cost_usd"], json!(0.0));
    assert_eq!(showback["teams"], json!([]));
    let (status, text) = c.get("/v1/reports/showback?week=2025-W54").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("week"), "{text}");
}

#[tokio::test]
async fn empty_and_bad_months_sqlite() {
    empty_and_bad_months(sqlite().await).await;
}

#[tokio::test]
async fn empty_and_bad_months_postgres() {
    empty_and_bad_months(postgres().await).await;
}

async fn closing(c: Collector) {
    c.ingest(records("nov", "2025-11", 800, 3)).await;
    let before = c.csv("/v1/export/chargeback?month=2025-11").await;
    let close = |month: &str| json!({ "month": month }).to_string();
    let (status, text) = c
        .call("POST", "/v1/closed-months", READ, close("2025-11"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "closing is a write: {text}");
    let (status, text) = c
        .call("POST", "/v1/closed-months", ADMIN, close("2025-11"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let (status, _) = c
        .call("POST", "/v1/closed-months", ADMIN, close("2025-11"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, text) = c
        .call("POST", "/v1/closed-months", ADMIN, close("2999-01"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "not ended: {text}");
    let (status, _) = c
        .call("POST", "/v1/closed-months", ADMIN, close("2025-1"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let listed = c.json("/v1/closed-months").await;
    assert_eq!(listed["closed_months"][0]["month"], "2025-11");

    // Late records for November: the booked month does not change…
    let late = records("late", "2025-11", 300, 4);
    c.ingest(late).await;
    let after = c.csv("/v1/export/chargeback?month=2025-11").await;
    assert_same_lines(&after, &before);
    // Served from the snapshot: the same file every time.
    assert_eq!(c.csv("/v1/export/chargeback?month=2025-11").await, after);
    let live = c.json(&format!("/v1/usage?{NOV}")).await;
    let live_total = live["totals"]["cost_usd"].as_f64().unwrap_or(0.0);
    let booked = sum(&before, "cost_usd");
    assert!(live_total > booked);

    // …they are adjustments in December, the next open month.
    let december = c.csv("/v1/export/chargeback?month=2025-12").await;
    assert!(!december.is_empty());
    assert!(december.iter().all(|l| l["line_type"] == "adjustment"
        && l["usage_month"] == "2025-11"
        && l["month"] == "2025-12"));
    assert_close(
        "adjustments",
        sum(&december, "cost_usd"),
        live_total - booked,
    );
    assert_close("adjusted requests", sum(&december, "requests"), 300.0);

    // Closing December books them; a later late record goes to January.
    let (status, text) = c
        .call("POST", "/v1/closed-months", ADMIN, close("2025-12"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_same_lines(
        &c.csv("/v1/export/chargeback?month=2025-12").await,
        &december,
    );
    assert!(c
        .csv("/v1/export/chargeback?month=2026-01")
        .await
        .is_empty());
    c.ingest(records("later", "2025-11", 5, 5)).await;
    let january = c.csv("/v1/export/chargeback?month=2026-01").await;
    assert_close("second adjustment requests", sum(&january, "requests"), 5.0);
    assert!(january.iter().all(|l| l["usage_month"] == "2025-11"));
}

/// The same lines with the same amounts (costs to 1e-12: two live reads may
/// sum the same floats in another order).
fn assert_same_lines(a: &[BTreeMap<String, String>], b: &[BTreeMap<String, String>]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        for (column, value) in x {
            if column == "cost_usd" {
                assert!(
                    (num(x, column) - num(y, column)).abs() < 1e-12,
                    "{x:?} {y:?}"
                );
            } else {
                assert_eq!(Some(value), y.get(column), "{x:?} {y:?}");
            }
        }
    }
}

#[tokio::test]
async fn closing_sqlite() {
    closing(sqlite().await).await;
}

#[tokio::test]
async fn closing_postgres() {
    closing(postgres().await).await;
}

async fn gl_accounts_and_roles(c: Collector) {
    let put = |account: Value| account.to_string();
    let (status, _) = c
        .call(
            "PUT",
            "/v1/gl-accounts/CC-1",
            READ,
            put(json!({"gl_account": "1"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c
        .call(
            "PUT",
            "/v1/gl-accounts/CC-1",
            "Bearer nope",
            put(json!({"gl_account": "1"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = c
        .call(
            "PUT",
            "/v1/gl-accounts/CC-1",
            ADMIN,
            put(json!({"gl_account": "6120-AI"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = c
        .call(
            "PUT",
            "/v1/gl-accounts/CC-1",
            ADMIN,
            put(json!({"gl_account": "6130-AI"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Both writes are in the audit log, the second with what it replaced.
    let (status, text) = c
        .call(
            "GET",
            "/v1/audit?action=gl_account.put",
            ADMIN,
            String::new(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let audit: Value = serde_json::from_str(&text).expect("json");
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{text}");
    assert_eq!(entries[0]["target"], json!("CC-1"));
    assert_eq!(entries[0]["before"]["gl_account"], json!("6120-AI"));
    assert_eq!(entries[0]["after"]["gl_account"], json!("6130-AI"));
    assert_eq!(entries[1]["before"], Value::Null);
    // The exports are finance's: the read token (viewer) may not download them.
    for uri in [
        "/v1/export/chargeback?month=2025-11",
        "/v1/export/focus?month=2025-11",
    ] {
        let (status, _) = c.call("GET", uri, READ, String::new()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
    }
    for (body, field) in [
        (json!({"gl_account": ""}), "gl_account"),
        (json!({"gl_account": "a,b"}), "gl_account"),
        (json!({"gl_account": "UNMAPPED"}), "gl_account"),
        (json!({}), "gl_account"),
        (json!({"gl_account": "x", "extra": 1}), "extra"),
    ] {
        let (status, text) = c
            .call("PUT", "/v1/gl-accounts/CC-2", ADMIN, put(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains(field), "{text}");
    }
    let (status, text) = c
        .call(
            "PUT",
            "/v1/gl-accounts/UNALLOCATED",
            ADMIN,
            put(json!({"gl_account": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let list = c.json("/v1/gl-accounts").await;
    assert_eq!(list["gl_accounts"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["gl_accounts"][0]["cost_center"], "CC-1");
    assert_eq!(list["gl_accounts"][0]["gl_account"], "6130-AI");
    let (status, _) = c
        .call(
            "GET",
            "/v1/export/chargeback?month=2025-11",
            INGEST,
            String::new(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c
        .call(
            "GET",
            "/v1/export/focus?month=2025-11",
            ADMIN,
            String::new(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn gl_accounts_and_roles_sqlite() {
    gl_accounts_and_roles(sqlite().await).await;
}

#[tokio::test]
async fn gl_accounts_and_roles_postgres() {
    gl_accounts_and_roles(postgres().await).await;
}

#[tokio::test]
async fn coverage_in_usage_unattributed_and_metrics() {
    let c = sqlite().await;
    let now = aispend_collector::domain::time::now_ms();
    let ts = aispend_collector::domain::time::format_rfc3339_ms(now - 1000);
    let rec = |id: &str, key: &str, tags: Value| {
        json!({"id": id, "ts": ts, "gateway": "envoy", "key_id": key, "tags": tags,
            "labels": {}, "provider": "openai", "operation": "chat", "model": "gpt-4o",
            "status": 200, "input_tokens": 1_000_000, "cached_input_tokens": 0,
            "cache_write_input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0})
    };
    let full = json!({"org": "acme", "team": "search", "cost_center": "CC-1",
        "environment": "prod"});
    // $2.50 each (1M gpt-4o input tokens): 3 covered, 1 without cost_center.
    c.ingest(vec![
        rec("a", "k-good", full.clone()),
        rec("b", "k-good", full.clone()),
        rec("c", "k-good", full),
        rec(
            "d",
            "k-bad",
            json!({"org": "acme", "team": "ads", "environment": "prod"}),
        ),
    ])
    .await;
    let usage = c.json("/v1/usage?group_by=team").await;
    assert_eq!(usage["totals"]["coverage"], json!(0.75), "{usage}");
    let rows = usage["rows"].as_array().expect("rows");
    let by_team = |team: &str| rows.iter().find(|r| r["team"] == team).expect("row");
    assert_eq!(by_team("search")["coverage"], json!(1.0));
    assert_eq!(by_team("ads")["coverage"], json!(0.0));
    let empty = c
        .json("/v1/usage?from=2024-01-01T00:00:00Z&to=2024-02-01T00:00:00Z")
        .await;
    assert_eq!(empty["totals"]["coverage"], Value::Null);

    let report = c.json("/v1/reports/unattributed").await;
    assert_eq!(report["coverage"], json!(0.75));
    assert_eq!(
        report["keys"],
        json!([{"key_id": "k-bad", "missing_tags": ["cost_center"], "requests": 1,
            "cost_usd": 2.5}])
    );

    let (status, metrics) = c.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("\naispend_tag_coverage_ratio 0.75\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aispend_tag_coverage_by_tag_ratio{tag=\"cost_center\"} 0.75\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aispend_tag_coverage_by_tag_ratio{tag=\"team\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aispend_unattributed_cost_usd 2.5\n"),
        "{metrics}"
    );
}

async fn showback_tree(c: Collector) {
    let rec = |id: &str, month: &str, team: &str, model: &str, flow: &str, input: u64| {
        json!({"id": id, "ts": format!("{month}-10T10:00:00Z"), "gateway": "envoy",
            "key_id": "k", "tags": {"team": team}, "labels": {"workflow": flow},
            "provider": "openai", "operation": "chat", "model": model, "status": 200,
            "input_tokens": input, "cached_input_tokens": 0, "cache_write_input_tokens": 0,
            "output_tokens": 0, "reasoning_tokens": 0})
    };
    c.ingest(vec![
        // November: search $5 (gpt-4o, two workflows) + $0.15 (mini), ads $2.5.
        rec("1", "2025-11", "search", "gpt-4o", "triage", 1_000_000),
        rec("2", "2025-11", "search", "gpt-4o", "summarize", 1_000_000),
        rec("3", "2025-11", "search", "gpt-4o-mini", "triage", 1_000_000),
        rec("4", "2025-11", "ads", "gpt-4o", "triage", 1_000_000),
        // October: search $2.5.
        rec("5", "2025-10", "search", "gpt-4o", "triage", 1_000_000),
    ])
    .await;
    let (status, text) = c
        .call(
            "POST",
            "/v1/budgets",
            ADMIN,
            json!({"id": "search-monthly", "scope": {"team": "search"}, "period": "month",
                "amount_usd": 100.0})
            .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let s = c
        .json("/v1/reports/showback?month=2025-11&label=workflow")
        .await;
    assert_eq!(s["period"], "2025-11");
    assert_eq!(s["previous_period"], "2025-10");
    let teams = s["teams"].as_array().expect("teams");
    assert_eq!(teams[0]["team"], "search");
    assert_eq!(teams[0]["cost_usd"], json!(5.15));
    assert_eq!(teams[0]["previous_cost_usd"], json!(2.5));
    assert_eq!(teams[0]["change_usd"], json!(2.65));
    assert_eq!(teams[0]["budgets"][0]["id"], "search-monthly");
    assert_eq!(teams[0]["budgets"][0]["state"], "ok");
    assert_eq!(teams[0]["models"][0]["model"], "gpt-4o");
    assert_eq!(teams[0]["models"][0]["cost_usd"], json!(5.0));
    let flows = teams[0]["models"][0]["labels"].as_array().expect("labels");
    assert_eq!(flows.len(), 2);
    assert_eq!(teams[1]["team"], "ads");
    assert_eq!(teams[1]["previous_cost_usd"], json!(0.0));
    assert_eq!(teams[1]["change_ratio"], Value::Null);
    assert_eq!(teams[1]["budgets"], json!([]));
    // Without `label`, no label level.
    let s = c.json("/v1/reports/showback?month=2025-11").await;
    assert!(s["teams"][0]["models"][0].get("labels").is_none());
    // An ISO week: 2025-11-10 is in 2025-W46.
    let w = c.json("/v1/reports/showback?week=2025-W46").await;
    assert_eq!(w["totals"]["cost_usd"], json!(7.65));
    assert_eq!(w["previous_period"], "2025-W45");
    let csv = c
        .csv("/v1/reports/showback?month=2025-11&format=csv&label=workflow")
        .await;
    assert_eq!(csv.len(), 4);
    assert_eq!(csv[0]["team_budget_state"], "ok");
    assert_close("csv", sum(&csv, "cost_usd"), 7.65);
}

#[tokio::test]
async fn showback_tree_sqlite() {
    showback_tree(sqlite().await).await;
}

#[tokio::test]
async fn showback_tree_postgres() {
    showback_tree(postgres().await).await;
}
