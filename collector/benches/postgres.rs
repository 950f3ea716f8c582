//! PostgreSQL benchmark (`cargo bench -p aispend-collector --bench postgres`):
//! a plain `--release` binary printing figures, never asserting on time.
//!
//! 1. store ingest: `PostgresStore::insert_batch`, batches of 1,000, with 1
//!    and with AISPEND_BENCH_PG_TASKS (default 4) batches in flight;
//! 2. HTTP ingest: `POST /v1/records` on a real socket, batches of 1,000;
//! 3. `GET /v1/usage` latency over AISPEND_BENCH_RECORDS (default 1,000,000)
//!    records spread over one month, `group_by=team,model`.
//!
//! Runs in a throw-away schema of AISPEND_TEST_POSTGRES_URL (default
//! postgres://postgres@127.0.0.1:5432/test), dropped at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::record::{PricedRecord, Tokens, UsageRecord};
use aispend_collector::domain::time::{format_rfc3339_ms, parse_rfc3339_ms};
use aispend_collector::store::postgres::test_schema::TestSchema;
use aispend_collector::store::{self, Store};
use aispend_collector::{app, AppState};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;

const BATCH: u64 = 1_000;
const TEAMS: [&str; 8] = [
    "search", "growth", "ads", "infra", "mobile", "web", "data", "sre",
];
const MODELS: [(&str, &str); 4] = [
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4.1-2025-04-14"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("gemini", "gemini-2.5-flash"),
];

/// splitmix64: deterministic, so runs compare.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

struct Gen {
    month_start: i64,
    ms_per_record: f64,
    prices: PriceTable,
}

impl Gen {
    /// Records in time order with random ids, 50 keys, 8 teams, 4 models.
    fn record(&self, seq: u64) -> UsageRecord {
        let r = mix(seq);
        let key = r % 50;
        let (provider, model) = MODELS[(r >> 8) as usize % MODELS.len()];
        let tags = BTreeMap::from([
            ("org".to_owned(), "acme".to_owned()),
            (
                "team".to_owned(),
                TEAMS[key as usize % TEAMS.len()].to_owned(),
            ),
            ("project".to_owned(), format!("p{}", key % 12)),
        ]);
        UsageRecord {
            id: format!("{:016x}{:016x}", mix(seq ^ 0xABCD), seq),
            ts_ms: self.month_start + (seq as f64 * self.ms_per_record) as i64,
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
                input: 100 + (r >> 16) % 4000,
                cached_input: 0,
                cache_write_input: 0,
                output: 10 + (r >> 32) % 800,
                reasoning: 0,
            },
        }
    }

    fn batch(&self, first: u64, n: u64) -> Vec<PricedRecord> {
        (first..first + n)
            .map(|seq| {
                let record = self.record(seq);
                PricedRecord {
                    cost_usd: self.prices.cost_of(&record),
                    price_version: self.prices.version().to_owned(),
                    record,
                }
            })
            .collect()
    }

    fn json_batch(&self, first: u64) -> Bytes {
        let records: Vec<_> = (first..first + BATCH)
            .map(|seq| {
                let r = self.record(seq);
                json!({"id": r.id, "ts": format_rfc3339_ms(r.ts_ms), "duration_ms": r.duration_ms,
                    "gateway": r.gateway, "key_id": r.key_id, "auth": r.auth, "tags": r.tags,
                    "provider": r.provider, "operation": r.operation, "model": r.model,
                    "stream": r.stream, "status": r.status, "input_tokens": r.tokens.input,
                    "cached_input_tokens": 0, "cache_write_input_tokens": 0,
                    "output_tokens": r.tokens.output, "reasoning_tokens": 0})
            })
            .collect();
        Bytes::from(json!({ "records": records }).to_string())
    }
}

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
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let bodies: Vec<Bytes> = (0..http_records / BATCH)
        .map(|b| gen.json_batch(total + b * BATCH))
        .collect();
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..tasks as usize {
        let mine: Vec<Bytes> = bodies
            .iter()
            .skip(c)
            .step_by(tasks as usize)
            .cloned()
            .collect();
        clients.push(tokio::spawn(async move {
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
    for client in clients {
        client.await.expect("client");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "HTTP ingest: {http_records} records over {tasks} connections in {secs:.2} s: {:.0} records/s",
        http_records as f64 / secs
    );

    // 3. Usage latency over everything stored, month range with ragged edges.
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
        assert_eq!(status, 200, "{body:?}");
        if i >= 5 {
            latencies.push(elapsed);
        }
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        rows = v["rows"].as_array().map_or(0, Vec::len);
    }
    latencies.sort();
    println!(
        "GET /v1/usage over {} records (month, group_by=team,model, {rows} rows): \
         p50 {:.1} ms, p95 {:.1} ms ({} calls)",
        total + http_records,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies.len()
    );
    store.close().await.expect("close");
}
