//! Scale of the key registry: 10,000 keys with five tags and two limits on
//! both stores. Prints the snapshot size and the time of a cold build, a
//! cached 200 and a 304; asserts bounds loose enough for a debug build on a
//! shared machine. Figures for the docs come from
//! `cargo test --release -p aispend-collector --test keys_scale -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aispend_collector::domain::keys::{Key, KeyStatus, Limits, Secret};
use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::domain::time::now_ms;
use aispend_collector::store::postgres::test_schema::TestSchema;
use aispend_collector::store::{self, Expect, KeyWrite, SaveKeys, Store};
use aispend_collector::{app, AppState};
use axum::http::StatusCode;
use common::INGEST_BEARER;
use serde_json::Value;

const KEYS: usize = 10_000;

fn key(i: usize, now: i64) -> Key {
    let tag = |k: &str, v: String| (k.to_owned(), v);
    Key {
        key_id: format!("key-{i:016x}"),
        tags: BTreeMap::from([
            tag("org", "acme".into()),
            tag("team", format!("team-{}", i % 200)),
            tag("project", format!("project-{}", i % 1000)),
            tag("cost_center", format!("CC-{}", 1000 + i % 300)),
            tag("environment", ["prod", "staging", "dev"][i % 3].into()),
        ]),
        limits: Limits {
            requests_per_minute: Some(600),
            tokens_per_minute: Some(200_000),
        },
        status: KeyStatus::Active,
        created_at_ms: now,
        updated_at_ms: now,
        // A third of the keys expire (as non-prod keys would).
        expires_at_ms: (!i.is_multiple_of(3)).then_some(now + 30 * 86_400_000),
        revision: 1,
        secrets: vec![Secret::of_plain(
            &format!("sk-aispend-{:040x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
            now,
        )],
    }
}

async fn measure(name: &str, store: Arc<dyn Store>) {
    let now = now_ms();
    let started = Instant::now();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let writes = chunk
            .iter()
            .map(|&i| KeyWrite {
                key: key(i, now),
                expect: Expect::New,
            })
            .collect();
        assert_eq!(
            store.save_keys(writes).await.expect("save"),
            SaveKeys::Saved
        );
    }
    let stored = started.elapsed();
    let router = app(AppState::new(
        store,
        PriceTable::embedded().expect("prices"),
        common::tokens(),
    ));
    let get = |etag: Option<String>| {
        let router = router.clone();
        async move {
            let mut headers = vec![("authorization", INGEST_BEARER)];
            if let Some(tag) = etag.as_deref() {
                headers.push(("if-none-match", tag));
            }
            let started = Instant::now();
            let answer =
                common::call_with(&router, "GET", "/v1/keys/registry", &headers, Value::Null).await;
            (
                answer.status,
                answer.etag,
                answer.text.len(),
                started.elapsed(),
            )
        }
    };
    let (status, etag, bytes, cold) = get(None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, warm_bytes, warm) = get(None).await;
    assert_eq!((status, warm_bytes), (StatusCode::OK, bytes));
    let (status, _, empty, not_modified) = get(etag).await;
    assert_eq!((status, empty), (StatusCode::NOT_MODIFIED, 0));
    println!(
        "{name}: {KEYS} keys stored in {stored:?}; snapshot {bytes} bytes ({} bytes/key); \
         cold build {cold:?}, cached 200 {warm:?}, 304 {not_modified:?}",
        bytes / KEYS
    );
    // ~330 bytes per key with these tags; a growth past 400 is a regression.
    assert!(bytes < KEYS * 400, "{bytes} bytes");
    assert!(bytes > KEYS * 150, "{bytes} bytes: keys missing?");
    // Loose: a debug build on a shared 2-core machine.
    assert!(cold < Duration::from_secs(20), "cold {cold:?}");
    assert!(
        warm < cold,
        "the cached answer must be cheaper than a build"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keys_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/scale.db", dir.path().display());
    measure("sqlite", store::open(&url).expect("open")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keys_postgres() {
    let schema = TestSchema::create().await.unwrap_or_else(|e| panic!("{e}"));
    let store = store::connect(&schema.url()).await.expect("connect");
    measure("postgres", store).await;
}
