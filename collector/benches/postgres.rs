//! PostgreSQL benchmark (`cargo bench -p aispend-collector --bench postgres`):
//! a plain `--release` binary printing figures, never asserting on time.
//!
//! 1. store ingest: `PostgresStore::insert_batch`, batches of 1,000, with 1
//!    batch in flight, then AISPEND_BENCH_PG_TASKS (default 4), then twice
//!    that; each phase also reports CPU time per record of this process
//!    (client), of the server backends of the bench's own connections
//!    (server; found in `pg_stat_activity` by `application_name`) and of
//!    every `postgres` process (other sessions, WAL writer, checkpointer),
//!    steadier than wall-clock figures on a shared machine;
//! 2. HTTP ingest: `POST /v1/records` on a real socket, batches of 1,000;
//! 3. `GET /v1/usage` latency over AISPEND_BENCH_RECORDS (default 1,000,000)
//!    records spread over one month, `group_by=team,model`.
//!
//! AISPEND_BENCH_PG_LANES (comma list) replaces the batches-in-flight
//! phases of step 1 and AISPEND_BENCH_PG_STORE_ONLY=1 stops after it, for
//! profiling one phase (e.g. with `perf record -a`, counting per process).
//!
//! The records are the SQLite bench's (`common::Gen`), so the figures compare.
//!
//! Runs in a throw-away schema of AISPEND_TEST_POSTGRES_URL (default
//! postgres://postgres@127.0.0.1:5432/test), dropped at the end unless
//! AISPEND_BENCH_KEEP_SCHEMA=1.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::record::PricedRecord;
use aispend_collector::domain::time::parse_rfc3339_ms;
use aispend_collector::store::postgres::test_schema::TestSchema;
use aispend_collector::store::{self, Store};
use common::{env_u64, percentile_ms, post_batches, serve, usage_latencies, Gen, BATCH};
use hyper::body::Bytes;

/// CPU time (user + system, clock ticks) of this process, of each server
/// backend of the bench's own connections (found by `application_name`, see
/// `TestSchema::named_url`) and of every process named `postgres` (the other
/// sessions', WAL writer and checkpointer too), from /proc (Linux only;
/// zeros elsewhere).
struct CpuTicks {
    me: u64,
    backends: HashMap<i32, u64>,
    all_postgres: u64,
}

fn ticks(stat: &str) -> Option<(&str, u64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((stat.get(open + 1..close)?, utime + stime))
}

async fn cpu_ticks(schema: &TestSchema) -> CpuTicks {
    let me = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks(&s).map(|(_, t)| t))
        .unwrap_or(0);
    let backends = schema
        .backend_pids()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, ticks(&stat)?.1))
        })
        .collect();
    let all_postgres = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter_map(|s| ticks(&s).filter(|(n, _)| *n == "postgres").map(|(_, t)| t))
                .sum()
        })
        .unwrap_or(0);
    CpuTicks {
        me,
        backends,
        all_postgres,
    }
}

/// "client X µs, server Y µs (own backends), Z µs (all postgres)" of CPU per
/// record since `before`. A backend opened since `before` counts from zero
/// (the pool connects lazily); the bench's pool never closes one.
async fn cpu_per_record(schema: &TestSchema, before: &CpuTicks, records: u64) -> String {
    let after = cpu_ticks(schema).await;
    let own: u64 = after
        .backends
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.backends.get(pid).copied().unwrap_or(0)))
        .sum();
    // Linux reports in USER_HZ, 100 per second on every mainstream arch.
    let us = |ticks: u64| ticks as f64 * 10_000.0 / records.max(1) as f64;
    format!(
        "CPU per record: client {:.2} us, server {:.2} us ({} own backends), \
         all postgres processes {:.2} us",
        us(after.me.saturating_sub(before.me)),
        us(own),
        after.backends.len(),
        us(after.all_postgres.saturating_sub(before.all_postgres))
    )
}

/// Inserts `[first, first + count)` with `tasks` batches in flight; records/s
/// over the wall time and CPU per record (record generation happens before
/// the clock starts).
async fn ingest(
    schema: &TestSchema,
    store: &Arc<dyn Store>,
    gen: &Gen,
    first: u64,
    count: u64,
    tasks: u64,
) -> (f64, String) {
    let batches: Vec<Vec<PricedRecord>> = (0..count / BATCH)
        .map(|b| gen.batch(first + b * BATCH, BATCH))
        .collect();
    let mut lanes: Vec<Vec<Vec<PricedRecord>>> = (0..tasks).map(|_| Vec::new()).collect();
    for (i, batch) in batches.into_iter().enumerate() {
        if let Some(lane) = lanes.get_mut(i % tasks as usize) {
            lane.push(batch);
        }
    }
    let before = cpu_ticks(schema).await;
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
    let rate = count as f64 / started.elapsed().as_secs_f64();
    (rate, cpu_per_record(schema, &before, count).await)
}

#[tokio::main]
async fn main() {
    let total = env_u64("AISPEND_BENCH_RECORDS", 1_000_000) / BATCH * BATCH;
    let tasks = env_u64("AISPEND_BENCH_PG_TASKS", 4).max(1);
    let schema = TestSchema::create().await.unwrap_or_else(|e| panic!("{e}"));
    let store = store::connect(&schema.named_url()).await.expect("connect");
    let http_records = 200 * BATCH;
    let gen = Arc::new(Gen {
        month_start: parse_rfc3339_ms("2026-11-01T00:00:00Z").expect("ts"),
        ms_per_record: 30.0 * 86_400_000.0 / (total + http_records) as f64,
        prices: PriceTable::embedded().expect("prices"),
    });
    println!("postgres bench: schema {}, batches of {BATCH}", schema.name);

    // 1. Store ingest: one batch in flight, then `tasks` and `2 * tasks` at
    // once (as several HTTP requests would), filling the database for step 3.
    // AISPEND_BENCH_PG_LANES (e.g. "8") replaces that list; the first phase
    // gets a tenth of the records when there are several.
    let lanes: Vec<u64> = std::env::var("AISPEND_BENCH_PG_LANES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|l: &Vec<u64>| !l.is_empty() && l.iter().all(|n| *n > 0))
        .unwrap_or_else(|| vec![1, tasks, 2 * tasks]);
    let phases = lanes.len() as u64;
    let head = if phases > 1 {
        (total / 10).max(BATCH)
    } else {
        total
    };
    let each = (total - head) / (phases - 1).max(1) / BATCH * BATCH;
    let mut first = 0;
    for (i, in_flight) in lanes.iter().enumerate() {
        let count = if i == 0 {
            head
        } else if i + 1 == lanes.len() {
            total - first
        } else {
            each
        };
        let (rate, cpu) = ingest(&schema, &store, &gen, first, count, *in_flight).await;
        let batches = if *in_flight == 1 { "batch" } else { "batches" };
        println!(
            "store ingest, {in_flight} {batches} in flight: {count} records, {rate:.0} records/s; \
             {cpu}"
        );
        first += count;
    }
    if env_u64("AISPEND_BENCH_PG_STORE_ONLY", 0) == 1 {
        store.close().await.expect("close");
        return;
    }

    // 2. HTTP ingest through app() on a TCP socket.
    let port = serve(&store).await;
    let bodies: Vec<Bytes> = (0..http_records / BATCH)
        .map(|b| gen.json_batch(total + b * BATCH))
        .collect();
    let before = cpu_ticks(&schema).await;
    let secs = post_batches(port, &bodies, tasks as usize)
        .await
        .as_secs_f64();
    println!(
        "HTTP ingest: {http_records} records over {tasks} connections in {secs:.2} s: \
         {:.0} records/s; {}",
        http_records as f64 / secs,
        cpu_per_record(&schema, &before, http_records).await
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
    if env_u64("AISPEND_BENCH_KEEP_SCHEMA", 0) == 1 {
        // Left in place for EXPLAIN and friends; drop it by hand.
        println!("schema {} kept", schema.name);
        std::mem::forget(schema);
    }
}
