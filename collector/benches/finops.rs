//! FinOps export bench (`cargo bench -p aispend-collector --bench finops`):
//! a plain `--release` binary printing figures, never asserting on time.
//!
//! Fills SQLite (a temp file) and PostgreSQL (a throw-away schema of
//! AISPEND_TEST_POSTGRES_URL) with AISPEND_BENCH_RECORDS (default 1,000,000)
//! records of November 2026 (`common::Gen`: 50 keys, 8 teams, 6 models; one
//! record in 10 without a cost center), then times, over HTTP on a real
//! socket, each FinOps view of that month (median of AISPEND_BENCH_RUNS,
//! default 5, after one warm-up) and checks that their totals agree with
//! `GET /v1/usage` (relative difference printed).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::time::parse_rfc3339_ms;
use aispend_collector::store::postgres::test_schema::TestSchema;
use aispend_collector::store::{self, Store};
use common::{connect, env_u64, send, serve, Gen, BATCH};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;

const MONTH: &str = "2026-11";

async fn fill(store: &Arc<dyn Store>, gen: &Arc<Gen>, total: u64, lanes: u64) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let (store, gen) = (Arc::clone(store), Arc::clone(gen));
        tasks.push(tokio::spawn(async move {
            let mut first = lane * BATCH;
            while first < total {
                let mut batch = gen.batch(first, BATCH.min(total - first));
                // One record in ten has no cost center: UNALLOCATED lines,
                // coverage below 1.
                for r in batch.iter_mut().step_by(10) {
                    r.record.tags.remove("cost_center");
                }
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

/// Times `uri` (admin token: the exports are finance's) `runs` times after
/// a warm-up; the median, the last body.
async fn time(port: u16, uri: &str, runs: u64) -> (Duration, Bytes) {
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
    (times[times.len() / 2], last)
}

/// The sum of CSV column `index` (the columns before it are never quoted).
fn csv_sum(body: &[u8], index: usize) -> (f64, usize) {
    let text = String::from_utf8_lossy(body);
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    lines.next();
    let mut n = 0;
    let sum = lines
        .map(|l| {
            n += 1;
            l.split(',')
                .nth(index)
                .and_then(|v| v.parse::<f64>().ok())
                .expect("a number")
        })
        .sum();
    (sum, n)
}

async fn bench(name: &str, store: Arc<dyn Store>, gen: &Arc<Gen>, total: u64, lanes: u64) {
    let took = fill(&store, gen, total, lanes).await;
    println!(
        "{name}: {total} records stored in {:.1} s ({lanes} batches in flight)",
        took.as_secs_f64()
    );
    let port = serve(&store).await;
    let runs = env_u64("AISPEND_BENCH_RUNS", 5).max(1);
    let usage_uri = "/v1/usage?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z";
    let (t, body) = time(port, usage_uri, runs).await;
    let usage: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let want = usage["totals"]["cost_usd"].as_f64().expect("cost");
    println!(
        "{name}: GET /v1/usage (month totals)        {:7.1} ms  cost {want:.6}, coverage {}",
        t.as_secs_f64() * 1e3,
        usage["totals"]["coverage"]
    );
    let rel = |got: f64| ((got - want) / want).abs();
    let (t, body) = time(port, &format!("/v1/export/chargeback?month={MONTH}"), runs).await;
    let (sum, lines) = csv_sum(&body, 8);
    println!(
        "{name}: GET /v1/export/chargeback         {:7.1} ms  {lines} lines, {} bytes, cost relative diff {:.1e}",
        t.as_secs_f64() * 1e3,
        body.len(),
        rel(sum)
    );
    let (t, body) = time(port, &format!("/v1/export/focus?month={MONTH}"), runs).await;
    let (sum, lines) = csv_sum(&body, 1);
    println!(
        "{name}: GET /v1/export/focus              {:7.1} ms  {lines} rows, {} bytes, BilledCost relative diff {:.1e}",
        t.as_secs_f64() * 1e3,
        body.len(),
        rel(sum)
    );
    let (t, body) = time(port, &format!("/v1/reports/showback?month={MONTH}"), runs).await;
    let showback: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let sum = showback["totals"]["cost_usd"].as_f64().expect("cost");
    println!(
        "{name}: GET /v1/reports/showback          {:7.1} ms  {} teams, total relative diff {:.1e}",
        t.as_secs_f64() * 1e3,
        showback["teams"].as_array().map_or(0, Vec::len),
        rel(sum)
    );
    let (t, _) = time(
        port,
        &format!("/v1/reports/unattributed?month={MONTH}"),
        runs,
    )
    .await;
    println!(
        "{name}: GET /v1/reports/unattributed      {:7.1} ms",
        t.as_secs_f64() * 1e3
    );
    let (t, _) = time(
        port,
        &format!("/v1/reports/showback?month={MONTH}&label=workflow"),
        1,
    )
    .await;
    println!(
        "{name}: GET /v1/reports/showback&label=…  {:7.1} ms  (reads the month's raw records)",
        t.as_secs_f64() * 1e3
    );
    store.close().await.expect("close");
}

#[tokio::main]
async fn main() {
    let total = env_u64("AISPEND_BENCH_RECORDS", 1_000_000);
    let gen = Arc::new(Gen {
        month_start: parse_rfc3339_ms("2026-11-01T00:00:00Z").expect("ts"),
        ms_per_record: 29.0 * 86_400_000.0 / total as f64,
        prices: PriceTable::embedded().expect("prices"),
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/finops.db", dir.path().display());
    bench("sqlite", store::open(&url).expect("open"), &gen, total, 1).await;
    let schema = TestSchema::create().await.unwrap_or_else(|e| panic!("{e}"));
    let pg = store::connect(&schema.url()).await.expect("connect");
    bench("postgres", pg, &gen, total, 4).await;
}
