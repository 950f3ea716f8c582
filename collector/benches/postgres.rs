//! PostgreSQL benchmark (`cargo bench -p aispend-collector --bench postgres`):
//! a plain `--release` binary printing figures, never asserting on time.
//!
//! 1. store ingest: `PostgresStore::insert_batch`, batches of 1,000, with 1
//!    and with AISPEND_BENCH_PG_TASKS (default 4) batches in flight;
//! 2. HTTP ingest: `POST /v1/records` on a real socket, batches of 1,000;
//! 3. `GET /v1/usage` latency over AISPEND_BENCH_RECORDS (default 1,000,000)
//!    records spread over one month, `group_by=team,model`.
//!
//! The records are the SQLite bench's (`common::Gen`), so the figures compare.
//!
//! Runs in a throw-away schema of AISPEND_TEST_POSTGRES_URL (default
//! postgres://postgres@127.0.0.1:5432/test), dropped at the end.

mod common;

use std::sync::Arc;
use std::time::Instant;

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::record::PricedRecord;
use aispend_collector::domain::time::parse_rfc3339_ms;
use aispend_collector::store::postgres::test_schema::TestSchema;
use aispend_collector::store::{self, Store};
use common::{env_u64, percentile_ms, post_batches, serve, usage_latencies, Gen, BATCH};
use hyper::body::Bytes;

/// Inserts `[first, first + count)` with `tasks` batches in flight; records/s
/// over the wall time (record generation happens before the clock starts).
async fn ingest(store: &Arc<dyn Store>, gen: &Gen, first: u64, count: u64, tasks: u64) -> f64 {
    let batches: Vec<Vec<PricedRecord>> = (0..count / BATCH)
        .map(|b| gen.batch(first + b * BATCH, BATCH))
        .collect();
    let mut lanes: Vec<Vec<Vec<PricedRecord>>> = (0..tasks).map(|_| Vec::new()).collect();
    for (i, batch) in batches.into_iter().enumerate() {
        if let Some(lane) = lanes.get_mut(i % tasks as usize) {
            lane.push(batch);
        }
    }
    let started = Instant::now();
    let handles: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                for batch in lane {
                    let outcome = store.insert_batch(batch).await.expect("insert");
                    assert_eq!(outcome.inserted, BATCH, "bench ids must be unique");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("task");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let total = env_u64("AISPEND_BENCH_RECORDS", 1_000_000) / BATCH * BATCH;
    let tasks = env_u64("AISPEND_BENCH_PG_TASKS", 4).max(1);
    let schema = TestSchema::create().await.unwrap_or_else(|e| panic!("{e}"));
    let store = store::connect(&schema.url()).await.expect("connect");
    let http_records = 200 * BATCH;
    let gen = Arc::new(Gen {
        month_start: parse_rfc3339_ms("2026-11-01T00:00:00Z").expect("ts"),
        ms_per_record: 30.0 * 86_400_000.0 / (total + http_records) as f64,
        prices: PriceTable::embedded().expect("prices"),
    });
    println!("postgres bench: schema {}, batches of {BATCH}", schema.name);

    // 1. Store ingest: one batch in flight, then `tasks` at once (as several
    // HTTP requests or replicas would), filling the database for step 3.
    let sequential = (total / 10).max(BATCH);
    let rate = ingest(&store, &gen, 0, sequential, 1).await;
    println!("store ingest, 1 batch in flight: {sequential} records, {rate:.0} records/s");
    let rest = total - sequential;
    let rate = ingest(&store, &gen, sequential, rest, tasks).await;
    println!("store ingest, {tasks} batches in flight: {rest} records, {rate:.0} records/s");

    // 2. HTTP ingest through app() on a TCP socket.
    let port = serve(&store).await;
    let bodies: Vec<Bytes> = (0..http_records / BATCH)
        .map(|b| gen.json_batch(total + b * BATCH))
        .collect();
    let secs = post_batches(port, &bodies, tasks as usize)
        .await
        .as_secs_f64();
    println!(
        "HTTP ingest: {http_records} records over {tasks} connections in {secs:.2} s: {:.0} records/s",
        http_records as f64 / secs
    );

    // 3. Usage latency over everything stored, month range with ragged edges.
    let (latencies, rows) = usage_latencies(port).await;
    println!(
        "GET /v1/usage over {} records (month, group_by=team,model, {rows} rows): \
         p50 {:.1} ms, p95 {:.1} ms ({} calls)",
        total + http_records,
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.95),
        latencies.len()
    );
    store.close().await.expect("close");
}
