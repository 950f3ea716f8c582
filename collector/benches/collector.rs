//! Collector benchmark (run with `cargo bench -p aispend-collector`): a plain
//! `--release` binary that prints figures rather than asserting on time.
//!
//! 1. store ingest: `Store::insert_batch` with batches of 1,000 records;
//! 2. HTTP ingest: `POST /v1/records` over a real TCP socket, batches of 1,000,
//!    AISPEND_BENCH_CONNECTIONS (default 4) in flight;
//! 3. `GET /v1/usage` latency over AISPEND_BENCH_RECORDS (default 1,000,000)
//!    stored records spread over one month, `group_by=team,model`.
//!
//! Both ingest phases print this process's CPU time per record (the store
//! runs in it).
//!
//! Records arrive in time order with time-ordered 128-bit ids (as the filter
//! makes them), 50 keys, 8 teams and 6 models, as a gateway would ship them.
//!
//! Profiling the store alone: `AISPEND_BENCH_STORE_ONLY=1` stops after 1, and
//! `AISPEND_BENCH_SPREAD=1200000` keeps a small run at the full run's density.
//! Instructions per record of the SQLite ingest (record generation left out),
//! with a bench binary built with symbols
//! (`CARGO_PROFILE_BENCH_DEBUG=line-tables-only CARGO_PROFILE_BENCH_STRIP=false`):
//! `AISPEND_BENCH_RECORDS=30000 AISPEND_BENCH_SPREAD=1200000
//! AISPEND_BENCH_STORE_ONLY=1 valgrind --tool=callgrind
//! --toggle-collect='*sqlite::insert_blocking' <bench binary>`, then divide
//! the "Collected" count by 30,000.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::time::parse_rfc3339_ms;
use aispend_collector::store::{self, Store};
use common::{env_u64, percentile_ms, post_batches, serve, usage_latencies, Gen, BATCH};
use hyper::body::Bytes;

/// CPU time (user + system) of this process in clock ticks, from
/// /proc/self/stat (Linux only; 0 elsewhere): with SQLite the store runs in
/// this process, so this is the server's CPU, steadier than wall-clock
/// rates on a shared machine.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rfind(')')
        .and_then(|close| stat.get(close + 2..))
        .map(|rest| rest.split(' ').collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Microseconds of CPU per record since `before` (USER_HZ is 100).
fn cpu_us_per_record(before: u64, records: u64) -> f64 {
    cpu_ticks().saturating_sub(before) as f64 * 10_000.0 / records.max(1) as f64
}

/// Inserts `[first, first + count)` one batch at a time; records/s counting
/// only the time inside `insert_batch` (record generation is excluded), and
/// the process CPU per record inside `insert_batch`.
async fn fill(store: &dyn Store, gen: &Gen, first: u64, count: u64) -> (f64, f64) {
    let mut elapsed = Duration::ZERO;
    let mut cpu = 0u64;
    let mut seq = first;
    while seq < first + count {
        let n = BATCH.min(first + count - seq);
        let batch = gen.batch(seq, n);
        let started = Instant::now();
        let before = cpu_ticks();
        let outcome = store.insert_batch(batch).await.expect("insert");
        cpu += cpu_ticks().saturating_sub(before);
        elapsed += started.elapsed();
        assert_eq!(outcome.inserted, n, "bench ids must be unique");
        seq += n;
    }
    let cpu_us = cpu as f64 * 10_000.0 / count.max(1) as f64;
    (count as f64 / elapsed.as_secs_f64(), cpu_us)
}

#[tokio::main]
async fn main() {
    let total = env_u64("AISPEND_BENCH_RECORDS", 1_000_000);
    let spread = env_u64("AISPEND_BENCH_SPREAD", total + 200_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let store: Arc<dyn Store> = store::open(&url).expect("open");
    let month_start = parse_rfc3339_ms("2026-11-01T00:00:00Z").expect("ts");
    let gen = Arc::new(Gen {
        month_start,
        // The store and HTTP phases together cover the month. A profile run
        // with few records sets AISPEND_BENCH_SPREAD (records per month) to
        // keep the full run's density, which sets how many rollup rows a
        // batch touches.
        ms_per_record: 30.0 * 86_400_000.0 / spread as f64,
        prices: PriceTable::embedded().expect("prices"),
    });
    println!("collector bench: SQLite at {url}, batches of {BATCH}");

    // 1. Straight into the store, filling the database for the usage bench.
    let started = Instant::now();
    let (rate, cpu_us) = fill(&*store, &gen, 0, total).await;
    println!(
        "store ingest: {total} records in {:.1} s wall, {:.0} records/s inside insert_batch, \
         {cpu_us:.2} us of CPU per record",
        started.elapsed().as_secs_f64(),
        rate
    );
    // For profiling the store alone (e.g. under callgrind): skip HTTP and usage.
    if std::env::var_os("AISPEND_BENCH_STORE_ONLY").is_some() {
        store.close().await.expect("close");
        return;
    }

    // 2. Through the real HTTP endpoint on a TCP socket.
    let port = serve(&store).await;
    let http_batches = 200u64;
    let bodies: Vec<Bytes> = (0..http_batches)
        .map(|b| gen.json_batch(total + b * BATCH))
        .collect();
    let connections = env_u64("AISPEND_BENCH_CONNECTIONS", 4) as usize;
    let before = cpu_ticks();
    let secs = post_batches(port, &bodies, connections).await.as_secs_f64();
    let sent = http_batches * BATCH;
    println!(
        "HTTP ingest: {sent} records in {secs:.2} s over {connections} keep-alive connections: \
         {:.0} records/s, {:.2} us of CPU per record (server and client in this process)",
        sent as f64 / secs,
        cpu_us_per_record(before, sent)
    );

    // 3. Usage latency over everything stored (month to a non-hour edge).
    let stored = total + sent;
    let (latencies, rows) = usage_latencies(port).await;
    println!(
        "GET /v1/usage over {stored} records (month, group_by=team,model, {rows} rows): \
         p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} calls)",
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.95),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        latencies.len()
    );
    store.close().await.expect("close");
}
