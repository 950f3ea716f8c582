//! Dashboard bench (`make bench-dashboard`, or `cargo bench -p
//! aispend-collector --bench dashboard`): a plain `--release` binary printing
//! figures, never asserting on time.
//!
//! Fills SQLite (a temp file) and PostgreSQL (a throw-away schema of
//! AISPEND_TEST_POSTGRES_URL) with AISPEND_BENCH_RECORDS (default 1,000,000)
//! records spread evenly over October and November 2026 (`common::Gen`: 50
//! keys, 8 teams, 6 models), with the collector's clock at 2026-11-30 12:00
//! UTC, so "month to date" covers half the records. Nine budgets (one per
//! team, one for the org). Then times, over HTTP on a real socket, each call
//! the dashboard's overview makes (`collector/ui/app.js`, `overview()`), the
//! median and the worst of AISPEND_BENCH_RUNS (default 20) after one warm-up,
//! and all of them at once as the page fires them (the wall time the page
//! waits for).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::time::parse_rfc3339_ms;
use aispend_collector::store::postgres::test_schema::TestSchema;
use aispend_collector::store::{self, Store};
use aispend_collector::{app, AppState};
use common::{connect, env_u64, send, Gen, BATCH, TEAMS};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;

const NOW: &str = "2026-11-30T12:00:00Z";

/// The overview's calls for NOW, as `app.js` builds them.
const OVERVIEW: [(&str, &str); 6] = [
    ("whoami", "/v1/whoami"),
    (
        "usage month to date by team",
        "/v1/usage?from=2026-11-01T00%3A00%3A00Z&to=2026-11-30T12%3A00%3A00Z&group_by=team",
    ),
    (
        "usage previous month, same point",
        "/v1/usage?from=2026-10-01T00%3A00%3A00Z&to=2026-10-30T12%3A00%3A00Z&group_by=team",
    ),
    (
        "usage by day, 30 days",
        "/v1/usage?from=2026-10-31T00%3A00%3A00Z&to=2026-11-30T12%3A00%3A00Z&group_by=day",
    ),
    ("budgets (spend, state, forecast)", "/v1/budgets"),
    ("forecast by team", "/v1/forecast?group_by=team"),
];

async fn fill(store: &Arc<dyn Store>, gen: &Arc<Gen>, total: u64, lanes: u64) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let (store, gen) = (Arc::clone(store), Arc::clone(gen));
        tasks.push(tokio::spawn(async move {
            let mut first = lane * BATCH;
            while first < total {
                let batch = gen.batch(first, BATCH.min(total - first));
                store.insert_batch(batch).await.expect("insert");
                first += lanes * BATCH;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    started.elapsed()
}

async fn serve(store: &Arc<dyn Store>, now_ms: i64) -> u16 {
    let state = AppState::new(
        Arc::clone(store),
        PriceTable::embedded().expect("prices"),
        aispend_collector::Tokens {
            ingest: Some("it".into()),
            read: Some("rt".into()),
            admin: Some("at".into()),
        },
    )
    .with_clock(Arc::new(move || now_ms));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
    port
}

async fn request(port: u16, method: &str, uri: &str, body: Option<String>) -> (u16, Bytes) {
    let mut sender = connect(port).await;
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", "Bearer at")
        .header("content-type", "application/json")
        .header("host", "bench")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("request");
    send(&mut sender, req).await
}

/// (median, worst) of `runs` calls of `uri` on one keep-alive connection, after a warm-up.
async fn time(port: u16, uri: &str, runs: u64) -> (Duration, Duration, Bytes) {
    let mut sender = connect(port).await;
    let mut times = Vec::new();
    let mut last = Bytes::new();
    for i in 0..=runs {
        let req = Request::get(uri)
            .header("authorization", "Bearer at")
            .header("host", "bench")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let started = Instant::now();
        let (status, body) = send(&mut sender, req).await;
        let elapsed = started.elapsed();
        assert_eq!(status, 200, "{uri}: {body:?}");
        if i > 0 {
            times.push(elapsed);
        }
        last = body;
    }
    times.sort();
    (times[times.len() / 2], times[times.len() - 1], last)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn bench(name: &str, store: Arc<dyn Store>, gen: &Arc<Gen>, total: u64, lanes: u64) {
    let took = fill(&store, gen, total, lanes).await;
    println!(
        "{name}: {total} records stored in {:.1} s ({lanes} batches in flight)",
        took.as_secs_f64()
    );
    let now = parse_rfc3339_ms(NOW).expect("now");
    let port = serve(&store, now).await;
    for (i, team) in TEAMS.iter().enumerate() {
        let body = format!(
            r#"{{"id":"team-{team}","scope":{{"team":"{team}"}},"period":"month","amount_usd":{}}}"#,
            500 + 100 * i
        );
        let (status, answer) = request(port, "POST", "/v1/budgets", Some(body)).await;
        assert_eq!(status, 201, "{answer:?}");
    }
    let org = r#"{"id":"org","scope":{"org":"acme"},"period":"month","amount_usd":5000}"#;
    let (status, answer) = request(port, "POST", "/v1/budgets", Some(org.into())).await;
    assert_eq!(status, 201, "{answer:?}");

    let runs = env_u64("AISPEND_BENCH_RUNS", 20).max(1);
    for (what, uri) in OVERVIEW {
        let (median, worst, body) = time(port, uri, runs).await;
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let rows = ["rows", "budgets"]
            .iter()
            .find_map(|k| v[k].as_array().map(Vec::len))
            .unwrap_or(0);
        println!(
            "{name}: {what:<34} median {:6.1} ms  worst {:6.1} ms  ({rows} rows)",
            ms(median),
            ms(worst)
        );
    }
    // The page fires them at once and renders when the last one answered.
    let mut walls = Vec::new();
    for _ in 0..=runs {
        let started = Instant::now();
        let calls: Vec<_> = OVERVIEW
            .iter()
            .map(|(_, uri)| tokio::spawn(async move { request(port, "GET", uri, None).await }))
            .collect();
        for c in calls {
            let (status, body) = c.await.expect("call");
            assert_eq!(status, 200, "{body:?}");
        }
        walls.push(started.elapsed());
    }
    walls.remove(0);
    walls.sort();
    println!(
        "{name}: all overview calls at once (new connections) median {:6.1} ms  worst {:6.1} ms",
        ms(walls[walls.len() / 2]),
        ms(walls[walls.len() - 1])
    );
    store.close().await.expect("close");
}

#[tokio::main]
async fn main() {
    let total = env_u64("AISPEND_BENCH_RECORDS", 1_000_000);
    let start = parse_rfc3339_ms("2026-10-01T00:00:00Z").expect("ts");
    let end = parse_rfc3339_ms(NOW).expect("ts") - 60_000;
    let gen = Arc::new(Gen {
        month_start: start,
        ms_per_record: (end - start) as f64 / total as f64,
        prices: PriceTable::embedded().expect("prices"),
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/dashboard.db", dir.path().display());
    bench("sqlite", store::open(&url).expect("open"), &gen, total, 1).await;
    if std::env::var("AISPEND_BENCH_SKIP_POSTGRES").is_ok() {
        return;
    }
    let schema = TestSchema::create().await.unwrap_or_else(|e| panic!("{e}"));
    let pg = store::connect(&schema.url()).await.expect("connect");
    bench("postgres", pg, &gen, total, 4).await;
}
