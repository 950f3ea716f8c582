//! The real binary, started the way the end-to-end tests start it: settings
//! from the environment, `/healthz` polled until 200, SIGTERM to stop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Minimal HTTP/1.1 exchange; returns (status, body).
fn http(port: u16, method: &str, path: &str, token: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
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

#[test]
fn starts_from_env_serves_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_aispend-collector"))
        .env("AISPEND_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "AISPEND_DATABASE_URL",
            format!("sqlite://{}/db/aispend.db", dir.path().display()),
        )
        .env("AISPEND_INGEST_TOKEN", "it")
        .env("AISPEND_READ_TOKEN", "rt")
        .env("AISPEND_ADMIN_TOKEN", "at")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn collector");

    let deadline = Instant::now() + Duration::from_secs(20);
    while http(port, "GET", "/healthz", "", "").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "collector never became healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
    let record = r#"{"records":[{"id":"b1","ts":"2026-11-24T06:50:00Z","gateway":"envoy",
        "key_id":"k","provider":"openai","operation":"chat","model":"gpt-4o","status":200,
        "input_tokens":1000,"cached_input_tokens":0,"cache_write_input_tokens":0,
        "output_tokens":1000,"reasoning_tokens":0,"tags":{"team":"search"}}]}"#;
    let (status, body) = http(port, "POST", "/v1/records", "it", record).expect("ingest");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"accepted":1,"duplicates":0,"rejected":[]}"#)
    );
    let (status, body) = http(
        port,
        "GET",
        "/v1/usage?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z&group_by=team",
        "rt",
        "",
    )
    .expect("usage");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""team":"search","requests":1"#), "{body}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let output = child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}: {log}", output.status);
    assert!(log.contains("stopped cleanly"), "{log}");
    // The WAL was checkpointed into the database file on shutdown.
    let wal = dir.path().join("db/aispend.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "WAL not checkpointed");
}

#[test]
fn refuses_to_start_without_tokens() {
    let output = Command::new(env!("CARGO_BIN_EXE_aispend-collector"))
        .env_remove("AISPEND_INGEST_TOKEN")
        .env_remove("AISPEND_READ_TOKEN")
        .env_remove("AISPEND_ADMIN_TOKEN")
        .env(
            "AISPEND_DATABASE_URL",
            "sqlite:///nonexistent-dir-never-created/x.db",
        )
        .output()
        .expect("run");
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("refusing to start") && log.contains("AISPEND_INGEST_TOKEN"),
        "{log}"
    );
}
