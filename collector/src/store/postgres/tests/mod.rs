//! PostgreSQL-only behaviour: concurrent migrations and two stores (as two
//! replicas would hold) ingesting overlapping batches at once. The behaviour
//! shared with SQLite is in `store/tests.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::test_schema::TestSchema;
use super::PostgresStore;
use crate::domain::record::{PricedRecord, Tokens, UsageRecord};
use crate::domain::usage_query::UsageQuery;
use crate::store::Store;

mod audit_role;
mod ingest;
mod migrate;
mod query;
mod tls;

pub(super) async fn schema() -> TestSchema {
    TestSchema::create().await.unwrap_or_else(|e| panic!("{e}"))
}

pub(super) async fn count(url: &str, sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_apply_each_migration_once() {
    let schema = schema().await;
    let url = schema.url();
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await.map(|_| ()) })
        })
        .collect();
    for start in starts {
        start.await.expect("task").expect("connect and migrate");
    }
    let versions = count(&url, "SELECT count(*) FROM schema_migrations").await;
    assert_eq!(
        versions,
        crate::store::postgres::migrate::MIGRATIONS.len() as i64
    );
    let distinct = count(
        &url,
        "SELECT count(DISTINCT version) FROM schema_migrations",
    )
    .await;
    assert_eq!(distinct, versions);
    // A later start finds nothing to do.
    let mut client = deadpool_client(&url).await;
    assert!(crate::store::postgres::migrate::migrate(&mut client)
        .await
        .expect("migrate")
        .is_empty());
}

pub(super) async fn deadpool_client(url: &str) -> deadpool_postgres::Client {
    let config: tokio_postgres::Config = url.parse().expect("url");
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(1)
        .build()
        .expect("pool");
    pool.get().await.expect("client")
}

/// Record `i`: even ones carry a filter-style id (32 hex digits, stored as a
/// uuid), odd ones a free-form id (stored as text), so both paths are used.
pub(super) fn record(i: u64) -> PricedRecord {
    let id = if i.is_multiple_of(2) {
        format!("{:016x}{i:016x}", 0x0193_0000_0000_u64 + i)
    } else {
        format!("rec-{i:05}")
    };
    PricedRecord {
        record: UsageRecord {
            duration_ms: Some(3),
            key_id: format!("k{}", i % 5),
            auth: Some("api_key".into()),
            tags: BTreeMap::from([("team".to_owned(), format!("t{}", i % 3))]),
            model: Some(format!("m{}", i % 4)),
            status: if i.is_multiple_of(11) { 429 } else { 200 },
            tokens: Tokens {
                input: i,
                cached_input: i / 2,
                cache_write_input: 0,
                output: 1,
                reasoning: 0,
            },
            // Spread over two days so hourly and daily rollups both get rows.
            ..UsageRecord::bare(
                &id,
                1_793_491_200_000 + i64::try_from(i * 97_003).unwrap_or(0),
            )
        },
        cost_usd: (!i.is_multiple_of(13)).then_some(0.5),
        price_version: "t".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_ingesting_overlapping_batches_stay_exact() {
    let schema = schema().await;
    let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&schema.url()).await.expect("a"));
    let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&schema.url()).await.expect("b"));
    let n = 2_000u64;
    let all: Vec<PricedRecord> = (0..n).map(record).collect();
    // Each store gets every record, in batches cut differently and sent in
    // opposite orders, several batches in flight at once.
    let mut tasks = Vec::new();
    for (store, size, reverse) in [(&a, 150, false), (&b, 230, true), (&a, 400, true)] {
        let mut batches: Vec<Vec<PricedRecord>> = all.chunks(size).map(<[_]>::to_vec).collect();
        if reverse {
            batches.reverse();
        }
        for batch in batches {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move { store.insert_batch(batch).await }));
        }
    }
    let (mut inserted, mut duplicates) = (0, 0);
    for task in tasks {
        let outcome = task.await.expect("task").expect("insert");
        inserted += outcome.inserted;
        duplicates += outcome.duplicates;
    }
    assert_eq!((inserted, duplicates), (n, 2 * n));

    let mut q = UsageQuery::parse(Some("group_by=team"), 0).expect("query");
    q.from_ms = 1_793_404_800_000; // a day before the first record
    q.to_ms = 1_793_750_400_000; // whole days: read from the daily rollup
    for store in [&a, &b] {
        let report = store.usage(q.clone()).await.expect("usage");
        assert_eq!(report.totals.requests, 2_000);
        assert_eq!(report.totals.input_tokens, (0..2_000).sum::<i64>());
        assert_eq!(
            report.totals.errors,
            (0..2_000).filter(|i| i % 11 == 0).count() as i64
        );
        let unpriced = (0..2_000).filter(|i| i % 13 == 0).count() as i64;
        assert_eq!(report.totals.unpriced_requests, unpriced);
        assert!((report.totals.cost_usd - 0.5 * (2_000 - unpriced) as f64).abs() < 1e-9);
        assert_eq!(report.rows.len(), 3);
    }
    let raw = count(&schema.url(), "SELECT count(*) FROM records").await;
    let hourly = count(
        &schema.url(),
        "SELECT sum(requests)::int8 FROM usage_hourly",
    )
    .await;
    assert_eq!((raw, hourly), (2_000, 2_000));
}

#[tokio::test]
async fn unreachable_database_is_a_clear_error() {
    let err = PostgresStore::connect("postgres://nobody@127.0.0.1:1/none")
        .await
        .err()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(
        err.contains("cannot connect to PostgreSQL at 127.0.0.1:1/none"),
        "{err}"
    );
    // Unreachable is transient: the HTTP layer answers 503 and the gateway retries.
    let transient = PostgresStore::connect("postgres://nobody@127.0.0.1:1/none")
        .await
        .err()
        .is_some_and(|e| e.is_transient());
    assert!(transient, "an unreachable database is a transient failure");
}

#[test]
fn logged_urls_never_show_the_password() {
    use crate::store::redacted_url;
    assert_eq!(
        redacted_url("postgres://aispend:s3cret@db:5432/aispend?options=x"),
        "postgres://aispend@db:5432/aispend?options=x"
    );
    assert_eq!(redacted_url("postgres://u@db/x"), "postgres://u@db/x");
    assert_eq!(
        redacted_url("sqlite://./data/a@b.db"),
        "sqlite://./data/a@b.db"
    );
}

/// The bench's server CPU per record sums these backends: exactly the
/// connections opened with `named_url()`, none of another store's.
#[tokio::test]
async fn backend_pids_lists_the_named_url_connections_only() {
    let schema = schema().await;
    assert_eq!(
        schema.backend_pids().await.expect("pids"),
        Vec::<i32>::new()
    );
    let other = PostgresStore::connect(&schema.url()).await.expect("other");
    assert_eq!(
        schema.backend_pids().await.expect("pids"),
        Vec::<i32>::new(),
        "a store without the name is not counted"
    );
    let named = PostgresStore::connect(&schema.named_url())
        .await
        .expect("named");
    named.insert_batch(vec![record(1)]).await.expect("insert");
    let pids = schema.backend_pids().await.expect("pids");
    assert!(
        !pids.is_empty(),
        "the named store's pool holds a connection"
    );
    for pid in &pids {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}/stat")).exists(),
            "backend {pid} is a process of this machine"
        );
    }
    named.close().await.expect("close");
    other.close().await.expect("close");
}
