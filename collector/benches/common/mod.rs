//! What the SQLite (`collector.rs`) and PostgreSQL (`postgres.rs`) benches
//! share: one synthetic data set, so their figures compare, and the HTTP
//! client that drives `app()` over a real TCP socket.
//!
//! Each bench is compiled as its own crate that includes this module, so an
//! item only one bench uses would warn as dead code in the other one; hence
//! the `allow` below.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::record::{PricedRecord, Tokens, UsageRecord};
use aispend_collector::domain::time::format_rfc3339_ms;
use aispend_collector::store::Store;
use aispend_collector::{app, AppState};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;

/// Records per store batch and per `POST /v1/records` body.
pub const BATCH: u64 = 1_000;
pub const TEAMS: [&str; 8] = [
    "search", "growth", "ads", "infra", "mobile", "web", "data", "support",
];
pub const MODELS: [(&str, &str); 6] = [
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4.1-2025-04-14"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-haiku-4-5-20251001"),
    ("gemini", "gemini-2.5-flash"),
    ("gemini", "gemini-2.5-pro"),
];
/// The usage query both benches time: a month to a non-hour edge.
pub const USAGE_URI: &str =
    "/v1/usage?from=2026-11-01T00:00:00Z&to=2026-11-30T17:23:45Z&group_by=team,model";

/// Deterministic pseudo-random numbers (splitmix64) so runs are comparable.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Records with time-ordered 128-bit ids (48-bit ms timestamp, then 80 random
/// bits, as the filter makes them), 50 keys, 8 teams and 6 models, as a
/// gateway would ship them.
pub struct Gen {
    pub month_start: i64,
    /// Records arrive in time order (a gateway ships them seconds after the
    /// call), spread evenly over the month, with up to a minute of jitter.
    pub ms_per_record: f64,
    pub prices: PriceTable,
}

impl Gen {
    pub fn record(&self, seq: u64) -> UsageRecord {
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
        let ts_ms = self.month_start
            + (seq as f64 * self.ms_per_record) as i64
            + (mix(seq ^ 0x1234) % 60_000) as i64;
        let random = mix(seq ^ 0xABCD);
        UsageRecord {
            id: format!(
                "{:012x}{:04x}{:016x}",
                ts_ms as u64 & 0xFFFF_FFFF_FFFF,
                seq as u16,
                random // mix is a bijection: unique per seq
            ),
            ts_ms,
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

    pub fn priced(&self, seq: u64) -> PricedRecord {
        let record = self.record(seq);
        PricedRecord {
            cost_usd: self.prices.cost_of(&record),
            price_version: self.prices.version().to_owned(),
            record,
        }
    }

    /// Priced records `[first, first + n)`, ready for `Store::insert_batch`.
    pub fn batch(&self, first: u64, n: u64) -> Vec<PricedRecord> {
        (first..first + n).map(|seq| self.priced(seq)).collect()
    }

    /// A `POST /v1/records` body with records `[first, first + BATCH)`.
    pub fn json_batch(&self, first: u64) -> Bytes {
        let records: Vec<_> = (first..first + BATCH)
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

/// Serves `app()` over `store` on a free local port (ingest token `it`, read
/// token `rt`) and returns the port.
pub async fn serve(store: &Arc<dyn Store>) -> u16 {
    let state = AppState::new(
        Arc::clone(store),
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
    port
}

pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub async fn connect(port: u16) -> Sender {
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

pub async fn send(sender: &mut Sender, req: Request<Full<Bytes>>) -> (u16, Bytes) {
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

/// Posts `bodies` to `/v1/records`, spread round-robin over `connections`
/// keep-alive connections, and returns the wall time it took.
pub async fn post_batches(port: u16, bodies: &[Bytes], connections: usize) -> Duration {
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..connections {
        let mine: Vec<Bytes> = bodies
            .iter()
            .skip(c)
            .step_by(connections)
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
    started.elapsed()
}

/// Times `GET USAGE_URI` 60 times on one connection; returns the sorted
/// latencies of the last 55 (the first calls warm caches) and the row count.
pub async fn usage_latencies(port: u16) -> (Vec<Duration>, usize) {
    let mut sender = connect(port).await;
    let mut latencies = Vec::new();
    let mut rows = 0;
    for i in 0..60 {
        let req = Request::get(USAGE_URI)
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
    (latencies, rows)
}

/// The `p` quantile (0..=1) of `sorted`, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
