//! Virtual keys through the real binary: `aispend-collector keys …` against
//! a started collector, and two PostgreSQL replicas answering the same
//! registry version (and honouring each other's `ETag`) for the same keys.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aispend_collector::domain::keys::sha256_hex;
use aispend_collector::store::postgres::test_schema::TestSchema;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_aispend-collector");

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// One HTTP/1.1 exchange: (status, lowercase head, body).
fn http(port: u16, path: &str, token: &str, extra: &str) -> Option<(u16, String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n{extra}\
         connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((status, head.to_ascii_lowercase(), body.to_owned()))
}

fn etag_of(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .map(str::to_owned)
}

/// A collector process, killed when dropped.
struct Collector {
    child: Child,
    port: u16,
}

impl Collector {
    fn start(database_url: &str) -> Self {
        let port = free_port();
        let child = Command::new(BIN)
            .env("AISPEND_LISTEN", format!("127.0.0.1:{port}"))
            .env("AISPEND_DATABASE_URL", database_url)
            .env("AISPEND_INGEST_TOKEN", "it")
            .env("AISPEND_READ_TOKEN", "rt")
            .env("AISPEND_ADMIN_TOKEN", "at")
            .env("AISPEND_REQUIRED_TAGS", "org,team")
            .env_remove("AISPEND_KEY_MAX_LIFETIME")
            .env_remove("AISPEND_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn collector");
        let mut collector = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "/healthz", "", "").map(|r| r.0) != Some(200) {
            if let Ok(Some(status)) = collector.child.try_wait() {
                panic!("collector exited during start-up: {status}");
            }
            assert!(Instant::now() < deadline, "collector never became healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        collector
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs `aispend-collector keys <args>` against this collector, the
    /// token from the environment as a platform engineer would.
    fn keys(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("keys")
            .args(["--url", &self.url()])
            .args(args)
            .env("AISPEND_ADMIN_TOKEN", "at")
            .env_remove("AISPEND_COLLECTOR_URL")
            .output()
            .expect("run keys command")
    }

    /// Same, expecting success; answers the printed JSON.
    fn keys_ok(&self, args: &[&str]) -> Value {
        let out = self.keys(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "keys {args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    fn registry(&self, if_none_match: Option<&str>) -> (u16, Option<String>, Value) {
        let extra = if_none_match.map_or(String::new(), |t| format!("if-none-match: {t}\r\n"));
        let (status, head, body) =
            http(self.port, "/v1/keys/registry", "it", &extra).expect("registry");
        (
            status,
            etag_of(&head),
            serde_json::from_str(&body).unwrap_or(Value::Null),
        )
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_keys_command_creates_lists_rotates_and_revokes_over_the_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = Collector::start(&format!("sqlite://{}/k.db", dir.path().display()));

    let created = c.keys_ok(&[
        "create",
        "--key-id",
        "cli-1",
        "--tag",
        "org=acme",
        "--tag",
        "team=growth",
        "--rpm",
        "30",
    ]);
    let plain = created["key"].as_str().expect("plain key once").to_owned();
    assert!(plain.starts_with("sk-aispend-"), "{created}");
    assert_eq!(created["limits"], json!({"requests_per_minute": 30}));
    let (_, _, registry) = c.registry(None);
    assert_eq!(
        registry["keys"][0]["sha256"],
        json!(sha256_hex(plain.as_bytes()))
    );

    let listed = c.keys_ok(&["list"]);
    assert_eq!(listed["keys"][0]["key_id"], json!("cli-1"));
    assert!(!listed.to_string().contains(&plain), "list shows no secret");
    let shown = c.keys_ok(&["show", "cli-1"]);
    assert_eq!(shown["hint"], created["hint"]);

    let rotated = c.keys_ok(&["rotate", "cli-1", "--grace-seconds", "600"]);
    assert_ne!(rotated["key"], created["key"]);
    assert_eq!(rotated["previous_secrets"][0]["hint"], created["hint"]);
    assert_eq!(c.registry(None).2["keys"].as_array().map(Vec::len), Some(2));

    let revoked = c.keys_ok(&["revoke", "cli-1"]);
    assert_eq!(revoked["status"], json!("revoked"));
    assert_eq!(c.registry(None).2["keys"], json!([]));

    c.keys_ok(&[
        "create",
        "--key-id",
        "g2",
        "--tag",
        "org=acme",
        "--tag",
        "team=growth",
    ]);
    c.keys_ok(&[
        "create",
        "--key-id",
        "s1",
        "--tag",
        "org=acme",
        "--tag",
        "team=search",
    ]);
    let bulk = c.keys_ok(&["revoke-by-tag", "--tag", "team=growth"]);
    assert_eq!(bulk, json!({"revoked": 1, "key_ids": ["g2"]}));

    // A refusal: exit 1, the collector's error printed.
    let out = c.keys(&["create", "--tag", "org=acme"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("missing_tag") && stdout.contains("team"),
        "{stdout}"
    );
    let out = c.keys(&["show", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not_found"));
    // No token: refused before any call.
    let out = Command::new(BIN)
        .args(["keys", "--url", &c.url(), "list"])
        .env_remove("AISPEND_ADMIN_TOKEN")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AISPEND_ADMIN_TOKEN"));
    // Nothing listening: a clear error, exit 1.
    let out = Command::new(BIN)
        .args([
            "keys",
            "--url",
            &format!("http://127.0.0.1:{}", free_port()),
            "list",
        ])
        .env("AISPEND_ADMIN_TOKEN", "at")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

#[test]
fn two_replicas_answer_the_same_registry_version_for_the_same_keys() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let schema = runtime
        .block_on(TestSchema::create())
        .unwrap_or_else(|e| panic!("{e}"));
    let a = Collector::start(&schema.url());
    let b = Collector::start(&schema.url());

    let (_, empty_a, _) = a.registry(None);
    let (_, empty_b, _) = b.registry(None);
    assert_eq!(empty_a, empty_b, "the empty registry has one version");

    for i in 0..20 {
        a.keys_ok(&[
            "create",
            "--key-id",
            &format!("k{i:02}"),
            "--tag",
            "org=acme",
            "--tag",
            &format!("team=t{}", i % 3),
            "--tpm",
            "1000",
        ]);
    }
    let (status_a, etag_a, body_a) = a.registry(empty_a.as_deref());
    let (status_b, etag_b, body_b) = b.registry(None);
    assert_eq!((status_a, status_b), (200, 200));
    assert_eq!(body_a["keys"].as_array().map(Vec::len), Some(20));
    assert_eq!(etag_a, etag_b, "same data, same version on every replica");
    assert_eq!(body_a, body_b);
    // A gateway that switches replica keeps its 304.
    let (status, etag, _) = b.registry(etag_a.as_deref());
    assert_eq!((status, etag), (304, etag_a.clone()));

    // A change made through B is seen by A's cache at once (shared revision).
    b.keys_ok(&["rotate", "k05", "--grace-seconds", "300"]);
    let (status, etag_a2, body) = a.registry(etag_a.as_deref());
    assert_eq!(status, 200, "A noticed B's rotation");
    assert_eq!(body["keys"].as_array().map(Vec::len), Some(21));
    let (_, etag_b2, _) = b.registry(None);
    assert_eq!(etag_a2, etag_b2);
    a.keys_ok(&["revoke-by-tag", "--tag", "team=t1"]);
    let (_, etag_a3, body_a3) = a.registry(None);
    let (_, etag_b3, body_b3) = b.registry(None);
    assert_eq!(etag_a3, etag_b3);
    assert_eq!(body_a3, body_b3);
    assert_eq!(body_a3["keys"].as_array().map(Vec::len), Some(14));
}
