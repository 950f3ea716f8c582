//! Two collector processes on one PostgreSQL schema, as behind a load
//! balancer: interleaved and duplicated batches go to both at once, and both
//! must then answer exactly the same `/v1/usage` totals, each record counted
//! once. Needs PostgreSQL (see `AISPEND_TEST_POSTGRES_URL`); fails, never
//! skips, when it is not reachable.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::validate::validate_record;
use aispend_collector::store::postgres::test_schema::TestSchema;
use serde_json::{json, Value};

const TEAMS: [&str; 3] = ["search", "growth", "ads"];
const MODELS: [&str; 3] = ["gpt-4o-mini", "gpt-4o", "not-a-priced-model"];

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Minimal HTTP/1.1 exchange; returns (status, body).
fn http(port: u16, method: &str, path: &str, token: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A replica process, killed when dropped (also when an assertion fails).
struct Replica {
    child: Child,
    port: u16,
}

impl Replica {
    fn start(database_url: &str) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_aispend-collector"))
            .env("AISPEND_LISTEN", format!("127.0.0.1:{port}"))
            .env("AISPEND_DATABASE_URL", database_url)
            .env("AISPEND_INGEST_TOKEN", "it")
            .env("AISPEND_READ_TOKEN", "rt")
            .env("AISPEND_ADMIN_TOKEN", "at")
            .env_remove("AISPEND_PRICES")
            .env_remove("AISPEND_CONFIG")
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn collector");
        Self { child, port }
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(self.port, "GET", "/healthz", "", "").map(|r| r.0) != Some(200) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("collector exited during start-up: {status}");
            }
            assert!(Instant::now() < deadline, "collector never became healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn record(i: usize) -> Value {
    json!({
        "id": format!("replica-rec-{i:04}"),
        // Three days, irregular minutes: raw, hourly and daily sources all used.
        "ts": format!("2026-11-{:02}T{:02}:{:02}:{:02}Z", 20 + i % 3, i * 7 % 24, i * 13 % 60, i % 60),
        "gateway": "envoy",
        "key_id": format!("key-{}", i % 4),
        "provider": "openai",
        "operation": "chat",
        "model": MODELS[i % MODELS.len()],
        "status": if i.is_multiple_of(17) { 500 } else { 200 },
        "input_tokens": 100 + i,
        "cached_input_tokens": i % 50,
        "cache_write_input_tokens": 0,
        "output_tokens": 10 + i % 90,
        "reasoning_tokens": 0,
        "tags": {"org": "acme", "team": TEAMS[i % TEAMS.len()]}
    })
}

fn post(port: u16, records: &[Value]) -> (u64, u64) {
    let body = json!({ "records": records }).to_string();
    let (status, answer) = http(port, "POST", "/v1/records", "it", &body).expect("ingest");
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).expect("json answer");
    assert_eq!(answer["rejected"], json!([]), "{answer}");
    let n = |k: &str| answer[k].as_u64().expect("count");
    (n("accepted"), n("duplicates"))
}

#[test]
fn two_replicas_on_one_database_count_every_record_once() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let schema = runtime
        .block_on(TestSchema::create())
        .unwrap_or_else(|e| panic!("{e}"));
    // Both start at once: the migrations must serialize, not collide.
    let mut a = Replica::start(&schema.url());
    let mut b = Replica::start(&schema.url());
    a.wait_healthy();
    b.wait_healthy();

    let records: Vec<Value> = (0..900).map(record).collect();
    // Four senders at once: every record reaches each replica at least once,
    // in batches cut at different places and sent in different orders.
    let plans: Vec<(u16, Vec<Vec<Value>>)> = vec![
        (a.port, records.chunks(50).map(<[_]>::to_vec).collect()),
        (
            b.port,
            records.chunks(70).rev().map(<[_]>::to_vec).collect(),
        ),
        (
            a.port,
            records[25..].chunks(110).map(<[_]>::to_vec).collect(),
        ),
        (
            b.port,
            records[..600].chunks(33).map(<[_]>::to_vec).collect(),
        ),
    ];
    let sent: u64 = plans
        .iter()
        .flat_map(|(_, batches)| batches.iter().map(|b| b.len() as u64))
        .sum();
    let (accepted, duplicates) = std::thread::scope(|scope| {
        let senders: Vec<_> = plans
            .iter()
            .map(|(port, batches)| {
                scope.spawn(move || {
                    batches.iter().fold((0, 0), |(acc, dup), batch| {
                        let (a, d) = post(*port, batch);
                        (acc + a, dup + d)
                    })
                })
            })
            .collect();
        senders
            .into_iter()
            .map(|s| s.join().expect("sender"))
            .fold((0, 0), |(a, d), (a2, d2)| (a + a2, d + d2))
    });
    assert_eq!(accepted, 900, "each record accepted exactly once");
    assert_eq!(duplicates, sent - 900);

    // The exact totals, computed from the records themselves.
    let prices = PriceTable::embedded().expect("prices");
    let (mut input, mut output, mut cached, mut errors, mut unpriced, mut cost) =
        (0i64, 0i64, 0i64, 0i64, 0i64, 0.0f64);
    for r in &records {
        let parsed = validate_record(r).expect("valid record");
        input += parsed.tokens.input as i64;
        output += parsed.tokens.output as i64;
        cached += parsed.tokens.cached_input as i64;
        errors += i64::from(parsed.is_error());
        match prices.cost_of(&parsed) {
            Some(c) => cost += c,
            None => unpriced += 1,
        }
    }
    assert_eq!(unpriced, 300, "one model in three is not priced");
    let ranges = [
        ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        ("2026-11-20T00:00:00Z", "2026-11-23T00:00:00Z"),
        ("2026-11-19T23:59:59Z", "2026-11-22T23:59:59.999Z"),
    ];
    let mut answers = Vec::new();
    for replica in [&a, &b] {
        for (from, to) in ranges {
            let path = format!("/v1/usage?from={from}&to={to}&group_by=team");
            let (status, body) = http(replica.port, "GET", &path, "rt", "").expect("usage");
            assert_eq!(status, 200, "{body}");
            let usage: Value = serde_json::from_str(&body).expect("json");
            let totals = &usage["totals"];
            assert_eq!(totals["requests"], 900, "{from}..{to}: {totals}");
            assert_eq!(totals["errors"], errors, "{totals}");
            assert_eq!(totals["input_tokens"], input, "{totals}");
            assert_eq!(totals["cached_input_tokens"], cached, "{totals}");
            assert_eq!(totals["output_tokens"], output, "{totals}");
            assert_eq!(totals["unpriced_requests"], unpriced, "{totals}");
            let got = totals["cost_usd"].as_f64().expect("cost");
            assert!((got - cost).abs() < 1e-8, "cost {got} vs {cost}");
            let rows = usage["rows"].as_array().expect("rows");
            assert_eq!(rows.len(), 3, "{body}");
            for row in rows {
                assert_eq!(row["requests"], 300, "{row}");
            }
            answers.push(usage["rows"].clone());
        }
    }
    // Both replicas give the same answer for the same range.
    assert_eq!(answers[..3], answers[3..]);
}

/// A token created on one replica works on the other; revoked there, it is
/// refused at once by that replica and by the other within TOKEN_TTL (5 s),
/// the documented bound for a revocation across replicas.
#[test]
fn a_token_revoked_on_one_replica_is_refused_by_the_other_within_the_ttl() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let schema = runtime
        .block_on(TestSchema::create())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut a = Replica::start(&schema.url());
    a.wait_healthy();
    let mut b = Replica::start(&schema.url());
    b.wait_healthy();
    let (status, body) = http(
        a.port,
        "POST",
        "/v1/tokens",
        "at",
        r#"{"role":"viewer","label":"two replicas"}"#,
    )
    .expect("create");
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).expect("json");
    let secret = created["token"].as_str().expect("secret").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    let caps = |port: u16| http(port, "GET", "/v1/caps", &secret, "").map(|r| r.0);
    assert_eq!(caps(a.port), Some(200));
    assert_eq!(
        caps(b.port),
        Some(200),
        "the other replica knows the new token"
    );

    let (status, _) =
        http(a.port, "DELETE", &format!("/v1/tokens/{id}"), "at", "").expect("revoke");
    assert_eq!(status, 200);
    let revoked = Instant::now();
    assert_eq!(
        caps(a.port),
        Some(401),
        "refused at once where it was revoked"
    );
    while caps(b.port) != Some(401) {
        assert!(
            revoked.elapsed() < Duration::from_millis(6_000),
            "the other replica still accepts the token after the 5 s TTL"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "revocation reached the other replica after {} ms",
        revoked.elapsed().as_millis()
    );
}
