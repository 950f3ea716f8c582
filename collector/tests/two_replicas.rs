//! Two collector processes on one PostgreSQL schema, as behind a load
//! balancer: interleaved and duplicated batches go to both at once, and both
//! must then answer exactly the same `/v1/usage` totals, each record counted
//! once. Needs PostgreSQL (see `AISPEND_TEST_POSTGRES_URL`); fails, never
//! skips, when it is not reachable.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::time::{format_rfc3339_ms, now_ms};
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
        Self::start_with(database_url, &[])
    }

    fn start_with(database_url: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_aispend-collector"))
            .envs(env.iter().copied())
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

/// A plain HTTP webhook receiver on a free port: records the event id of
/// every POST and answers 204.
fn receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head, then content-length bytes of body.
                loop {
                    let Ok(n) = stream.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let id = head.lines().find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("x-aispend-event-id")
                                    .then(|| v.trim().to_owned())
                            });
                            sink.lock().expect("lock").push(id.unwrap_or_default());
                            break;
                        }
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
            });
        }
    });
    (port, got)
}

/// Exactly once with two replicas (CONTRACTS §10): both evaluate every
/// 100 ms and both drain the outbox. The database keeps one alert per
/// (budget, level, period) and enqueues its deliveries in the inserting
/// transaction only; deliveries are claimed with `FOR UPDATE SKIP LOCKED`
/// and a lease, so each reaches the receiver once.
#[test]
fn two_replicas_raise_and_deliver_each_alert_once() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let schema = runtime
        .block_on(TestSchema::create())
        .unwrap_or_else(|e| panic!("{e}"));
    let env = [("AISPEND_ALERT_INTERVAL_MS", "100")];
    let mut a = Replica::start_with(&schema.url(), &env);
    let mut b = Replica::start_with(&schema.url(), &env);
    a.wait_healthy();
    b.wait_healthy();
    let (hook_port, got) = receiver();
    let hook = json!({"url": format!("http://127.0.0.1:{hook_port}/hook"),
                      "secret": "two-replicas-secret-0123"});
    let (status, body) =
        http(a.port, "POST", "/v1/webhooks", "at", &hook.to_string()).expect("webhook");
    assert_eq!(status, 201, "{body}");
    // $0.0001: the records below (about $0.0009) cross every tier.
    let budget = json!({"id": "replicas", "scope": {"team": "search"}, "period": "month", "amount_usd": 0.0001});
    let (status, body) =
        http(b.port, "POST", "/v1/budgets", "at", &budget.to_string()).expect("budget");
    assert_eq!(status, 201, "{body}");

    // Records of now, sent to both replicas in turn: each ingest kicks an
    // evaluation on the replica that took it, besides both timers.
    for i in 0..20 {
        let mut r = record(3 * i); // team search, gpt-4o-mini (priced)
        r["id"] = json!(format!("alert-rec-{i}"));
        r["ts"] = json!(format_rfc3339_ms(now_ms() - 1_000));
        let port = if i % 2 == 0 { a.port } else { b.port };
        post(port, &[r]);
        std::thread::sleep(Duration::from_millis(30));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.lock().expect("lock").len() < 4 {
        assert!(
            Instant::now() < deadline,
            "4 deliveries expected, got {:?}",
            got.lock().expect("lock")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Several more evaluation and delivery passes on both: nothing repeats.
    std::thread::sleep(Duration::from_millis(2_500));
    let mut ids = got.lock().expect("lock").clone();
    ids.sort();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids.len(), 4, "each alert delivered once: {ids:?}");
    assert_eq!(unique.len(), 4, "{ids:?}");
    for replica in [&a, &b] {
        let (status, body) = http(
            replica.port,
            "GET",
            "/v1/alerts?budget_id=replicas",
            "rt",
            "",
        )
        .expect("alerts");
        assert_eq!(status, 200, "{body}");
        let listed: Value = serde_json::from_str(&body).expect("json");
        let mut levels: Vec<&str> = listed["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| a["level"].as_str().expect("level"))
            .collect();
        levels.sort_unstable();
        assert_eq!(levels, ["critical", "hard", "info", "warning"], "{body}");
        let mut listed_ids: Vec<String> = listed["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| a["id"].as_str().expect("id").to_owned())
            .collect();
        listed_ids.sort();
        assert_eq!(
            listed_ids, unique,
            "the delivered event ids are the alerts' ids"
        );
    }
    // Both replicas' counters together: 4 stored, 4 delivered, 0 pending.
    let metric = |port: u16, name: &str| -> f64 {
        let (_, text) = http(port, "GET", "/metrics", "", "").expect("metrics");
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let stored = metric(a.port, "aispend_alerts_total{") + metric(b.port, "aispend_alerts_total{");
    assert_eq!(stored, 4.0, "each alert stored by exactly one replica");
    let delivered = metric(a.port, "aispend_webhook_deliveries_total ")
        + metric(b.port, "aispend_webhook_deliveries_total ");
    assert_eq!(delivered, 4.0);
}
