//! Migrations 3 and 4 on a database that already holds records in the shape
//! of migrations 1 and 2: every record is kept, ids keep their identity (a
//! re-sent record is still a duplicate), rollups keep their sums and gain
//! the count of stored refusals (`denied`).

use super::{count, deadpool_client, record, schema};
use crate::domain::usage_query::UsageQuery;
use crate::store::postgres::migrate::{migrate, MIGRATIONS};
use crate::store::postgres::PostgresStore;
use crate::store::Store;

const OLD_RECORD: &str = "INSERT INTO records (id, ts_ms, duration_ms, ttft_ms, gateway, \
     key_id, auth, tags, labels, provider, operation, model, requested_model, stream, status, \
     error, input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, \
     reasoning_tokens, cost_usd, price_version, series_id) \
     VALUES ($1, $2, 7, NULL, 'envoy', 'k0', 'api_key', '{\"team\":\"t0\"}', '{}', 'openai', \
     'chat', 'm0', NULL, true, $3, $6, $4, 0, 0, 1, 0, 0.5, 'v1', $5)";

#[tokio::test]
async fn records_of_version_2_survive_migration_3() {
    let schema = schema().await;
    let url = schema.url();
    let mut client = deadpool_client(&url).await;

    // A database left by a collector that knew migrations 1 and 2.
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .expect("ledger");
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v <= 2) {
        client.batch_execute(sql).await.expect("old migration");
        client
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .expect("ledger row");
    }
    let series: i64 = client
        .query_one(
            "INSERT INTO series (key_id, tags, model, provider, operation) \
             VALUES ('k0', '{\"team\":\"t0\"}', 'm0', 'openai', 'chat') RETURNING id",
            &[],
        )
        .await
        .expect("series")
        .get(0);
    let hex = "0193a1b2c3d4e5f60718293a4b5c6d7e";
    let t0: i64 = 1_793_491_200_000;
    let refused = Some("rate_limit_exceeded");
    for (id, status, input, error) in [
        (hex, 200, 10i64, None),
        ("old-text-id", 500, 20, None),
        ("refused-id", 429, 0, refused),
    ] {
        client
            .execute(OLD_RECORD, &[&id, &t0, &status, &input, &series, &error])
            .await
            .expect("old record");
    }
    client
        .batch_execute(&format!(
            "INSERT INTO usage_hourly VALUES ({t0}, {series}, 3, 2, 30, 0, 0, 3, 0, 1.5, 0); \
             INSERT INTO usage_daily VALUES ({t0}, {series}, 3, 2, 30, 0, 0, 3, 0, 1.5, 0)"
        ))
        .await
        .expect("old rollups");

    assert_eq!(migrate(&mut client).await.expect("migrate"), vec![3, 4, 8]);
    assert_eq!(
        count(&url, "SELECT count(*) FROM records WHERE id IS NOT NULL").await,
        1
    );
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM records WHERE id_text = 'old-text-id'"
        )
        .await,
        1
    );
    let sql = format!(
        "SELECT input_tokens FROM records_full WHERE id = '{hex}' AND key_id = 'k0' \
         AND tags = '{{\"team\":\"t0\"}}' AND status = 200 AND duration_ms = 7"
    );
    assert_eq!(count(&url, &sql).await, 10);

    // Sent again through the new store: both are duplicates.
    let store = PostgresStore::connect(&url).await.expect("connect");
    let again: Vec<_> = [hex, "old-text-id"]
        .iter()
        .map(|id| {
            let mut r = record(0);
            r.record.id = (*id).to_owned();
            r
        })
        .collect();
    let outcome = store.insert_batch(again).await.expect("insert");
    assert_eq!((outcome.inserted, outcome.duplicates), (0, 2));
    // Migration 4 counted the stored refusal in both rollups: a whole day
    // reads the daily one, a whole hour the hourly one.
    for to in [t0 + 86_400_000, t0 + 3_600_000] {
        let mut q = UsageQuery::parse(Some("group_by=team"), 0).expect("query");
        q.from_ms = t0;
        q.to_ms = to;
        let report = store.usage(q).await.expect("usage");
        let t = &report.totals;
        assert_eq!((t.requests, t.errors, t.denied), (3, 2, 1), "to {to}");
        assert_eq!(t.input_tokens, 30);
    }
}
