//! The server's connection limits over real TCP on 127.0.0.1 (an ephemeral
//! port): half-sent requests are cut after the header timeout, connections
//! above the cap wait until idle ones are closed, and graceful shutdown still
//! answers a batch that was in flight. Every wait is bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::server::{self, Limits};
use aispend_collector::{app, store, AppState, Tokens};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A bound on every wait of these tests.
const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(limits: Limits) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/aispend.db", dir.path().display());
    let tokens = Tokens {
        ingest: Some("it".into()),
        read: Some("rt".into()),
        admin: Some("at".into()),
    };
    let state = AppState::new(
        store::open(&url).expect("store"),
        PriceTable::embedded().expect("prices"),
        tokens,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        stopped.await.ok();
    };
    let task = tokio::spawn(server::serve(
        listener,
        app(state.clone()),
        limits,
        shutdown,
    ));
    Server {
        addr,
        state,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

fn limits(header_ms: u64, idle_ms: u64, max_connections: usize) -> Limits {
    Limits {
        header_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        max_connections,
    }
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PATIENCE:?}"))
}

/// Reads until the peer closes (or resets); returns what was read.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// One request on a fresh connection with `connection: close`; the status and body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(body.as_bytes()).await.expect("body");
    parse(&read_to_close(&mut stream).await)
}

fn parse(response: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(response);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn batch(n: usize) -> String {
    let records: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("r{i}"), "ts": "2026-11-24T06:50:00Z", "gateway": "envoy",
                "key_id": "k", "provider": "openai", "operation": "chat", "model": "gpt-4o",
                "status": 200, "input_tokens": 10, "cached_input_tokens": 0,
                "cache_write_input_tokens": 0, "output_tokens": 10, "reasoning_tokens": 0,
                "tags": {"team": "search"}})
        })
        .collect();
    json!({ "records": records }).to_string()
}

#[tokio::test]
async fn a_half_sent_head_is_cut_after_the_header_timeout() {
    let server = start(limits(300, 30_000, 16)).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("half a head");
    let started = Instant::now();
    let answer = bounded("half head", read_to_close(&mut stream)).await;
    let waited = started.elapsed();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(
        waited >= Duration::from_millis(250),
        "cut too early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "cut too late: {waited:?}");
    // The server still answers others.
    assert_eq!(request(server.addr, "GET", "/healthz", "", "").await.0, 200);
}

#[tokio::test]
async fn a_stalled_body_is_cut_and_stores_nothing() {
    let server = start(limits(300, 30_000, 16)).await;
    let body = batch(3);
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST /v1/records HTTP/1.1\r\nhost: x\r\nauthorization: Bearer it\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .expect("half the body");
    let started = Instant::now();
    let answer = bounded("stalled body", read_to_close(&mut stream)).await;
    let waited = started.elapsed();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(waited < Duration::from_secs(3), "cut too late: {waited:?}");
    let month = "/v1/usage?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z";
    let (status, usage) = request(server.addr, "GET", month, "rt", "").await;
    assert_eq!(status, 200, "{usage}");
    assert!(usage.contains(r#""requests":0"#), "{usage}");
}

#[tokio::test]
async fn idle_connections_over_the_cap_do_not_keep_healthz_from_an_answer() {
    // Two slots, both taken by idle connections; eight more idle ones queue.
    // The idle timeout is long: room is made by closing quiet connections.
    let server = start(limits(5_000, 60_000, 2)).await;
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    let started = Instant::now();
    let (status, body) = bounded(
        "healthz behind idle connections",
        request(server.addr, "GET", "/healthz", "", ""),
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(status, 200, "{body}");
    // It had to wait for quiet connections to be closed (the cap held), not
    // for the idle timeout.
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // The first idle connections were closed by the server.
    let first = idle.first_mut().expect("an idle connection");
    assert!(bounded("idle close", read_to_close(first)).await.is_empty());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = start(limits(5_000, 400, 16)).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("request");
    let mut buf = [0u8; 1024];
    let n = bounded("healthz", stream.read(&mut buf))
        .await
        .expect("read");
    assert_eq!(parse(&buf[..n]).0, 200);
    // Kept alive past the header timeout's scale, closed after the idle one.
    let started = Instant::now();
    let rest = bounded("idle close", read_to_close(&mut stream)).await;
    assert!(rest.is_empty());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
}

#[tokio::test]
async fn graceful_shutdown_answers_the_batch_in_flight() {
    let mut server = start(limits(5_000, 30_000, 16)).await;
    let body = batch(2_000);
    let (first, second) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST /v1/records HTTP/1.1\r\nhost: x\r\nauthorization: Bearer it\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(first).await.expect("first half");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Shut down while the batch is half received.
    if let Some(stop) = server.stop.take() {
        stop.send(()).ok();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !server.task.is_finished(),
        "returned with a request in flight"
    );
    stream.write_all(second).await.expect("second half");
    let (status, answer) = parse(&bounded("in-flight batch", read_to_close(&mut stream)).await);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, r#"{"accepted":2000,"duplicates":0,"rejected":[]}"#);
    bounded("serve returns", &mut server.task)
        .await
        .expect("server task");
    // No longer accepting; the batch is stored.
    assert!(TcpStream::connect(server.addr).await.is_err());
    server.state.store.close().await.expect("close");
}

#[tokio::test]
async fn ingest_bodies_beyond_the_memory_bound_wait_their_turn() {
    let server = start(limits(5_000, 30_000, 64)).await;
    let server_state = server.state.clone().with_ingest_memory(64 * 1024);
    // A separate app with a 64 KiB bound, on its own listener.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let gate = server_state.ingest_gate.clone();
    tokio::spawn(server::serve(
        listener,
        app(server_state),
        limits(5_000, 30_000, 64),
        std::future::pending(),
    ));
    // Each batch is ~40 KiB: one fits at a time, the others queue; all are
    // answered, and the whole bound is free again afterwards.
    let body = batch(130);
    assert!(
        body.len() > 33 * 1024 && body.len() < 64 * 1024,
        "{}",
        body.len()
    );
    let posts: Vec<_> = (0..6)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move { request(addr, "POST", "/v1/records", "it", &body).await })
        })
        .collect();
    let mut accepted = 0;
    for post in posts {
        let (status, answer) = bounded("queued batch", post).await.expect("task");
        assert_eq!(status, 200, "{answer}");
        let answer: Value = serde_json::from_str(&answer).expect("json");
        accepted += answer["accepted"].as_u64().unwrap_or(0);
    }
    assert_eq!(accepted, 130, "the same ids: stored once");
    assert_eq!(gate.available_kib(), 64);
}

#[tokio::test]
async fn a_trickled_body_is_cut_after_the_idle_timeout_and_stores_nothing() {
    // Never stalled for the header timeout (a byte every 50 ms), but not in
    // whole within the idle timeout of its head.
    let server = start(limits(500, 800, 16)).await;
    let body = batch(3);
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST /v1/records HTTP/1.1\r\nhost: x\r\nauthorization: Bearer it\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    let mut sent = 0;
    let cut = bounded("trickled body", async {
        for byte in body.as_bytes() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if stream.write_all(&[*byte]).await.is_err() {
                return true;
            }
            sent += 1;
            // A closed connection shows as EOF (or a reset) on read.
            let mut buf = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
            {
                return true;
            }
        }
        false
    })
    .await;
    let waited = started.elapsed();
    assert!(cut, "the whole body was accepted ({sent} bytes)");
    assert!(sent < body.len(), "{sent}");
    assert!(
        waited >= Duration::from_millis(700),
        "cut too early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "cut too late: {waited:?}");
    let month = "/v1/usage?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z";
    let (status, usage) = request(server.addr, "GET", month, "rt", "").await;
    assert_eq!(status, 200, "{usage}");
    assert!(usage.contains(r#""requests":0"#), "{usage}");
}

#[tokio::test]
async fn an_oversized_request_head_is_refused_431() {
    let server = start(limits(2_000, 30_000, 16)).await;
    let send = |extra: String| async move {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let head = format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\n\r\n");
        // The server may answer and close before it has read all of it.
        let _ = stream.write_all(head.as_bytes()).await;
        parse(&bounded("head", read_to_close(&mut stream)).await).0
    };
    let big = |n: usize| format!("x-pad: {}\r\n", "a".repeat(n));
    assert_eq!(send(big(16 * 1024)).await, 200, "a 16 KiB header passes");
    assert_eq!(send(big(server::MAX_HEAD_BYTES)).await, 431);
    let fields = |n: usize| (0..n).map(|i| format!("x-h{i}: v\r\n")).collect::<String>();
    assert_eq!(send(fields(90)).await, 200, "90 fields pass");
    assert_eq!(send(fields(100)).await, 431, "more than 100 fields");
    // The server still answers others.
    assert_eq!(request(server.addr, "GET", "/healthz", "", "").await.0, 200);
}

#[tokio::test]
async fn an_admin_body_over_two_mib_is_refused_413() {
    let server = start(limits(2_000, 30_000, 16)).await;
    let pad = "a".repeat(2 * 1024 * 1024 + 1);
    let body = format!(r#"{{"name":"{pad}"}}"#);
    let (status, answer) = bounded(
        "big admin body",
        request(server.addr, "POST", "/v1/budgets", "at", &body),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
}
