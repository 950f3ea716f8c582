//! SQLite-only checks of sealed days and record spans: a time-ordered stream
//! over several days (so days get sealed), then late records for sealed
//! days and retried duplicates; every range must still be exact. The
//! behaviour every store shares is in `store/tests.rs`.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::TempStore;
use crate::domain::aggregate::Sums;
use crate::domain::record::{PricedRecord, Tokens, UsageRecord};
use crate::domain::time::{DAY_MS, HOUR_MS};
use crate::domain::usage_query::UsageQuery;
use crate::store::sqlite::SqliteStore;
use crate::store::tests::expected_totals as expected;
use crate::store::Store;

const DAY0: i64 = 1_793_577_600_000; // 2026-11-01T00:00:00Z

fn record(i: i64, ts_ms: i64) -> PricedRecord {
    let n = u64::try_from(i % 37).unwrap_or(0) + 1;
    PricedRecord {
        record: UsageRecord {
            duration_ms: Some(5),
            key_id: format!("k{}", i % 3),
            auth: Some("api_key".into()),
            tags: BTreeMap::from([("team".to_owned(), format!("t{}", i % 2))]),
            model: Some("m".into()),
            stream: Some(false),
            status: if i % 11 == 0 { 500 } else { 200 },
            tokens: Tokens {
                input: n,
                cached_input: n / 2,
                cache_write_input: 0,
                output: 2 * n,
                reasoning: 0,
            },
            ..UsageRecord::bare(&format!("{:012x}{:020x}", ts_ms, i), ts_ms)
        },
        cost_usd: (i % 5 != 0).then_some(n as f64 / 1000.0),
        price_version: "test".into(),
    }
}

async fn totals(store: &SqliteStore, from: i64, to: i64) -> Sums {
    let mut query = UsageQuery::parse(Some("group_by=key_id"), to).expect("valid query");
    query.from_ms = from;
    query.to_ms = to;
    store.usage(query).await.expect("usage").totals
}

fn assert_close(actual: Sums, expected: Sums, context: &str) {
    assert!(
        (actual.cost_usd - expected.cost_usd).abs() < 1e-9,
        "{context}: {actual:?} vs {expected:?}"
    );
    let zero_cost = |s: Sums| Sums { cost_usd: 0.0, ..s };
    assert_eq!(zero_cost(actual), zero_cost(expected), "{context}");
}

fn sealed_before(path: &str) -> Option<i64> {
    let conn = Connection::open(path).expect("open");
    conn.query_row(
        "SELECT daily_before_ms FROM rollup_state WHERE id = 1",
        [],
        |row| row.get(0),
    )
    .ok()
}

#[tokio::test]
async fn sealed_days_late_records_and_retries_stay_exact() {
    let temp = TempStore::new();
    let (store, path) = (temp.open(), temp.path());

    // Four days, one record every 7 minutes, shipped in time order.
    let mut stored: Vec<PricedRecord> = (0..820)
        .map(|i| record(i, DAY0 + i * 7 * 60_000 + i % 13))
        .collect();
    for batch in stored.chunks(50) {
        let outcome = store.insert_batch(batch.to_vec()).await.expect("insert");
        assert_eq!(outcome.inserted, 50.min(batch.len() as u64));
    }
    let sealed = sealed_before(path).expect("days were sealed");
    assert!(sealed >= DAY0 + 2 * DAY_MS, "sealed before {sealed}");
    // The daily rollup holds the sealed days only, and decodes (view).
    let (first_day, last_day, requests): (i64, i64, i64) = Connection::open(path)
        .expect("open")
        .query_row(
            "SELECT min(day_ms), max(day_ms), sum(requests) FROM usage_daily_rows",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .expect("daily rows");
    assert_eq!((first_day, last_day), (DAY0, sealed - DAY_MS));
    assert_eq!(
        requests,
        expected(&stored, DAY0, sealed).requests,
        "sealed days sum their records"
    );

    // Late records for a sealed day and an unsealed one, with a retried
    // record of the stream among them.
    let late = vec![
        record(10_001, DAY0 + 3 * HOUR_MS + 17),
        record(10_002, DAY0 + DAY_MS + 20 * HOUR_MS),
        record(10_003, sealed + 5 * HOUR_MS + 1),
        stored[3].clone(),
    ];
    let outcome = store.insert_batch(late.clone()).await.expect("late");
    assert_eq!((outcome.inserted, outcome.duplicates), (3, 1));
    stored.extend(late.into_iter().take(3));

    let edges = [
        DAY0 - DAY_MS,
        DAY0,
        DAY0 + 3 * HOUR_MS + 17,
        DAY0 + 3 * HOUR_MS + 18,
        DAY0 + DAY_MS,
        DAY0 + DAY_MS + 20 * HOUR_MS + 30 * 60_000,
        sealed,
        sealed + 5 * HOUR_MS + 30_000,
        DAY0 + 4 * DAY_MS + 1,
        DAY0 + 6 * DAY_MS,
    ];
    for (i, &from) in edges.iter().enumerate() {
        for &to in &edges[i + 1..] {
            assert_close(
                totals(&store, from, to).await,
                expected(&stored, from, to),
                &format!("{from}..{to}"),
            );
        }
    }

    // Reopened, the file answers the same.
    drop(store);
    let store = SqliteStore::open(path).expect("reopen");
    let (from, to) = (DAY0, DAY0 + 6 * DAY_MS);
    assert_close(
        totals(&store, from, to).await,
        expected(&stored, from, to),
        "after reopen",
    );
}

/// A file of schema version 3 (rollups without `denied`) is migrated in
/// place: every sum is kept, and sealed days, hourly rows and raw records
/// all count the refusals already stored.
#[tokio::test]
async fn a_version_3_file_is_migrated_and_counts_stored_refusals() {
    let temp = TempStore::new();
    let (store, path) = (temp.open(), temp.path());
    let stored: Vec<PricedRecord> = (0..600)
        .map(|i| {
            let mut r = record(i, DAY0 + i * 9 * 60_000 + i % 13);
            if i % 4 == 0 {
                r.record.status = 429;
                r.record.error = Some("rate_limit_exceeded".into());
            }
            r
        })
        .collect();
    for batch in stored.chunks(50) {
        store.insert_batch(batch.to_vec()).await.expect("insert");
    }
    drop(store);
    assert!(sealed_before(path).is_some(), "days were sealed");
    // Back to the version 3 shape.
    Connection::open(path)
        .expect("open")
        .execute_batch(
            "DROP VIEW usage_hourly_rows; DROP VIEW usage_daily_rows;
             ALTER TABLE usage_hourly DROP COLUMN denied;
             ALTER TABLE usage_daily DROP COLUMN denied;
             ALTER TABLE budgets DROP COLUMN alerts;
             ALTER TABLE budgets DROP COLUMN enforce;
             DROP TABLE alerts;
             PRAGMA user_version = 3;",
        )
        .expect("downgrade");

    let store = SqliteStore::open(path).expect("migrated");
    let version: i64 = Connection::open(path)
        .expect("open")
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("version");
    assert_eq!(version, crate::store::sqlite::schema::SCHEMA_VERSION);
    for (from, to) in [
        (DAY0, DAY0 + 5 * DAY_MS),
        (DAY0 + 3 * HOUR_MS + 17, DAY0 + DAY_MS + 20 * HOUR_MS),
        (DAY0 + 2 * DAY_MS, DAY0 + 2 * DAY_MS + 5 * HOUR_MS),
    ] {
        let actual = totals(&store, from, to).await;
        assert!(actual.denied > 0, "{from}..{to}: {actual:?}");
        assert_close(
            actual,
            expected(&stored, from, to),
            &format!("{from}..{to}"),
        );
    }
    // New refusals keep counting after the migration.
    let mut late = record(50_000, DAY0 + 7 * 60_000 + 1);
    late.record.error = Some("budget_exceeded".into());
    store.insert_batch(vec![late]).await.expect("insert");
    let after = totals(&store, DAY0, DAY0 + 5 * DAY_MS).await;
    assert_eq!(
        after.denied,
        expected(&stored, DAY0, DAY0 + 5 * DAY_MS).denied + 1
    );
}

/// A file of schema version 9 gains the budgets' alert tiers (a budget
/// stored before reads the defaults) and the anomalies' z-score.
#[tokio::test]
async fn a_version_9_file_gains_alert_tiers_and_z_scores() {
    use crate::domain::alerts::{anomaly, Tiers};
    use crate::domain::budgets::Scope;

    let temp = TempStore::new();
    let (store, path) = (temp.open(), temp.path());
    drop(store);
    Connection::open(path)
        .expect("open")
        .execute_batch(
            "ALTER TABLE budgets DROP COLUMN alerts;
             ALTER TABLE budgets DROP COLUMN enforce;
             ALTER TABLE alerts DROP COLUMN z_score;
             INSERT INTO budgets (id, scope, period, amount_usd, soft, hard)
                 VALUES ('old', '{\"team\":\"a\"}', 'month', 10, 0.8, 1.0);
             PRAGMA user_version = 9;",
        )
        .expect("downgrade");
    let store = SqliteStore::open(path).expect("migrated");
    let old = store
        .get_budget("old".into())
        .await
        .expect("get")
        .expect("old");
    assert_eq!(old.alerts, Tiers::default());
    let scope = Scope::from([("team".to_owned(), "a".to_owned())]);
    let history: Vec<f64> = (0..30).map(|i| f64::from(i % 2) + 1.0).collect();
    let alert = anomaly(&scope, 0, &history, 20.0, 1.0, 5).expect("anomaly");
    assert!(store
        .insert_alert(alert.clone(), "{}".into())
        .await
        .expect("insert"));
    let back = store
        .get_alert(alert.id.clone())
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(back, alert, "z_score and the missing budget round-trip");
}
