//! Collector benchmark (run with `cargo bench -p aispend-collector`): a plain
//! `--release` binary that prints figures rather than asserting on time.
//!
//! 1. store ingest: `Store::insert_batch` with batches of 1,000 records;
//! 2. HTTP ingest: `POST /v1/records` over a real TCP socket, batches of 1,000;
//! 3. `GET /v1/usage` latency over AISPEND_BENCH_RECORDS (default 1,000,000)
//!    stored records spread over one month, `group_by=team,model`.
//!
//! Records arrive in time order with random 128-bit ids, 50 keys, 8 teams and
//! 6 models, as a gateway would ship them.
//!
//! Profiling the store alone: `AISPEND_BENCH_STORE_ONLY=1` stops after 1, and
//! `AISPEND_BENCH_SPREAD=1200000` keeps a small run at the full run's density,
//! e.g. `AISPEND_BENCH_RECORDS=30000 valgrind --tool=callgrind <bench binary>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::record::{PricedRecord, Tokens, UsageRecord};
use aispend_collector::domain::time::{format_rfc3339_ms, parse_rfc3339_ms};
use aispend_collector::store::{self, Store};
use aispend_collector::{app, AppState};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;

const BATCH: usize = 1_000;
const TEAMS: [&str; 8] = [
    "search", "growth", "ads", "infra", "mobile", "web", "data", "support",
];
const MODELS: [(&str, &str); 6] = [
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4.1-2025-04-14"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-haiku-4-5-20251001"),
    ("gemini", "gemini-2.5-flash"),
    ("gemini", "gemini-2.5-pro"),
];

/// Deterministic pseudo-random numbers (splitmix64) so runs are comparable.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

struct Gen {
    month_start: i64,
    /// Records arrive in time order (a gateway ships them seconds after the
    /// call), spread evenly over the month, with up to a minute of jitter.
    ms_per_record: f64,
    prices: PriceTable,
}

impl Gen {
    fn record(&self, seq: u64) -> UsageRecord {
        let r = mix(seq);
        let key = r % 50;
        let (provider, model) = MODELS[(r >> 8) as usize % MODELS.len()];
        let input = 100 + (r >> 16) % 4000;
        let cached = input / 4 * ((r >> 30) % 2);
        let output = 10 + (r >> 32) % 800;
        let tags = BTreeMap::from([
            ("org".to_owned(), "acme".to_owned()),
            (
                "team".to_owned(),
                TEAMS[key as usize % TEAMS.len()].to_owned(),
            ),
            ("project".to_owned(), format!("p{}", key % 12)),
            ("cost_center".to_owned(), format!("CC-{}", 1000 + key % 8)),
            (
                "environment".to_owned(),
                if key.is_multiple_of(3) { "dev" } else { "prod" }.to_owned(),
            ),
        ]);
        UsageRecord {
            id: format!("{:016x}{:016x}", mix(seq ^ 0xABCD), seq),
            ts_ms: self.month_start
                + (seq as f64 * self.ms_per_record) as i64
                + (mix(seq ^ 0x1234) % 60_000) as i64,
            duration_ms: Some(200 + (r >> 40) % 3000),
            ttft_ms: Some(50),
            gateway: "envoy".into(),
            key_id: format!("key-{key}"),
            auth: Some("api_key".into()),
            tags,
            labels: BTreeMap::new(),
            provider: provider.into(),
            operation: "chat".into(),
            model: Some(model.into()),
            requested_model: Some(model.into()),
            stream: Some(r.is_multiple_of(2)),
            status: if r.is_multiple_of(50) { 429 } else { 200 },
            error: None,
            tokens: Tokens {
                input,
                cached_input: cached,
                cache_write_input: 0,
                output,
                reasoning: 0,
            },
        }
    }

    fn priced(&self, seq: u64) -> PricedRecord {
        let record = self.record(seq);
        PricedRecord {
            cost_usd: self.prices.cost_of(&record),
            price_version: self.prices.version().to_owned(),
            record,
        }
    }

    fn json_batch(&self, first: u64) -> Bytes {
        let records: Vec<_> = (first..first + BATCH as u64)
            .map(|seq| {
                let r = self.record(seq);
                json!({"id": r.id, "ts": format_rfc3339_ms(r.ts_ms), "duration_ms": r.duration_ms,
                    "ttft_ms": r.ttft_ms, "gateway": r.gateway, "key_id": r.key_id, "auth": r.auth,
                    "tags": r.tags, "labels": r.labels, "provider": r.provider,
                    "operation": r.operation, "model": r.model, "requested_model": r.requested_model,
                    "stream": r.stream, "status": r.status, "error": r.error,
                    "input_tokens": r.tokens.input, "cached_input_tokens": r.tokens.cached_input,
                    "cache_write_input_tokens": 0, "output_tokens": r.tokens.output,
                    "reasoning_tokens": 0})
            })
            .collect();
        Bytes::from(json!({ "records": records }).to_string())
    }
}

async fn fill(store: &dyn Store, gen: &Gen, first: u64, count: u64) -> f64 {
    let mut elapsed = Duration::ZERO;
    let mut seq = first;
    while seq < first + count {
        let n = BATCH.min((first + count - seq) as usize) as u64;
        let batch: Vec<_> = (seq..seq + n).map(|s| gen.priced(s)).collect();
        let started = Instant::now();
        let outcome = store.insert_batch(batch).await.expect("insert");
        elapsed += started.elapsed();
        assert_eq!(outcome.inserted, n, "bench ids must be unique");
        seq += n;
    }
    count as f64 / elapsed.as_secs_f64()
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(port: u16) -> Sender {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.set_nodelay(true).ok();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn send(sender: &mut Sender, req: Request<Full<Bytes>>) -> (u16, Bytes) {
    sender.ready().await.expect("ready");
    let response = sender.send_request(req).await.expect("send");
    let status = response.status().as_u16();
    (
        status,
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes(),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let total: u64 = std::env::var("AISPEND_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let spread: u64 = std::env::var("AISPEND_BENCH_SPREAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(total + 200_000);
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
    let rate = fill(&*store, &gen, 0, total).await;
    println!(
        "store ingest: {total} records in {:.1} s wall, {:.0} records/s inside insert_batch",
        started.elapsed().as_secs_f64(),
        rate
    );
    // For profiling the store alone (e.g. under callgrind): skip HTTP and usage.
    if std::env::var_os("AISPEND_BENCH_STORE_ONLY").is_some() {
        store.close().await.expect("close");
        return;
    }

    // 2. Through the real HTTP endpoint on a TCP socket.
    let state = AppState::new(
        Arc::clone(&store),
        PriceTable::embedded().expect("prices"),
        aispend_collector::Tokens {
            ingest: Some("it".into()),
            read: Some("rt".into()),
            admin: Some("at".into()),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
    let http_batches = 200u64;
    let bodies: Vec<Bytes> = (0..http_batches)
        .map(|b| gen.json_batch(total + b * BATCH as u64))
        .collect();
    let connections = 2;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mine: Vec<Bytes> = bodies
            .iter()
            .skip(c)
            .step_by(connections)
            .cloned()
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(port).await;
            for body in mine {
                let req = Request::post("/v1/records")
                    .header("authorization", "Bearer it")
                    .header("content-type", "application/json")
                    .header("host", "bench")
                    .body(Full::new(body))
                    .expect("request");
                let (status, answer) = send(&mut sender, req).await;
                assert_eq!(status, 200, "{answer:?}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    let secs = started.elapsed().as_secs_f64();
    let sent = http_batches * BATCH as u64;
    println!(
        "HTTP ingest: {sent} records in {secs:.2} s over {connections} keep-alive connections: {:.0} records/s",
        sent as f64 / secs
    );

    // 3. Usage latency over everything stored (month to a non-hour edge).
    let stored = total + sent;
    let mut sender = connect(port).await;
    let uri = "/v1/usage?from=2026-11-01T00:00:00Z&to=2026-11-30T17:23:45Z&group_by=team,model";
    let mut latencies = Vec::new();
    let mut rows = 0;
    for i in 0..60 {
        let req = Request::get(uri)
            .header("authorization", "Bearer rt")
            .header("host", "bench")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let started = Instant::now();
        let (status, body) = send(&mut sender, req).await;
        let elapsed = started.elapsed();
        assert_eq!(status, 200);
        if i >= 5 {
            latencies.push(elapsed); // the first calls warm the page cache
        }
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        rows = v["rows"].as_array().map_or(0, Vec::len);
    }
    latencies.sort();
    println!(
        "GET /v1/usage over {stored} records (month, group_by=team,model, {rows} rows): \
         p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} calls)",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.95).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        latencies.len()
    );
    store.close().await.expect("close");
}
