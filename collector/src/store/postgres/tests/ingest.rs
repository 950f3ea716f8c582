//! The group-commit ingest path: duplicates inside a group, ids stored
//! already (the COPY fails and the group is written again without them),
//! both id forms, every column as shipped, and closing with batches queued.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{count, deadpool_client, record, schema};
use crate::domain::record::PricedRecord;
use crate::store::postgres::ingest::write_group;
use crate::store::postgres::prepare::Prepared;
use crate::store::postgres::PostgresStore;
use crate::store::{BatchOutcome, Store};

const HEX: &str = "0193a1b2c3d4e5f60718293a4b5c6d7e";

fn with_id(i: u64, id: &str) -> PricedRecord {
    let mut r = record(i);
    r.record.id = id.to_owned();
    r
}

fn prepared(records: Vec<PricedRecord>) -> Prepared {
    // Series ids are not checked against `series` (no foreign key).
    let series = vec![1; records.len()];
    Prepared::new(records, series)
}

fn outcome(inserted: u64, duplicates: u64, unpriced_inserted: u64) -> BatchOutcome {
    BatchOutcome {
        inserted,
        duplicates,
        unpriced_inserted,
    }
}

#[tokio::test]
async fn a_group_skips_repeats_across_batches_and_ids_stored_already() {
    let schema = schema().await;
    let url = schema.url();
    // Creates the tables.
    drop(PostgresStore::connect(&url).await.expect("connect"));
    let mut client = deadpool_client(&url).await;
    // Series 1, which `prepared` gives every record (records_full joins it).
    client
        .batch_execute(
            "INSERT INTO series (key_id, tags, model, provider, operation) \
             VALUES ('k', '{}', 'm', 'openai', 'chat')",
        )
        .await
        .expect("series");
    let hex = |n: u64| {
        format!(
            "{:032x}",
            0x0193_abcd_0000_0000_0000_0000_0000_0000_u128 + u128::from(n)
        )
    };

    // Stored before the group: one uuid id and one text id.
    let before = prepared(vec![with_id(1, &hex(3)), with_id(2, "t-stored")]);
    let done = write_group(&mut client, &[&before]).await.expect("first");
    assert_eq!(done, vec![outcome(2, 0, 0)]);

    // Batch a repeats an id inside itself; batch b repeats ids of a and ids
    // stored above, and holds the uppercase spelling of a stored hex id,
    // which is another id. Record 13 is unpriced (`record` makes every 13th
    // one so).
    let upper = hex(3).to_uppercase();
    let a = prepared(vec![
        with_id(4, &hex(1)),
        with_id(5, &hex(2)),
        with_id(6, "t-1"),
        with_id(7, &hex(1)),
    ]);
    let b = prepared(vec![
        with_id(8, &hex(2)),
        with_id(9, &hex(3)),
        with_id(10, "t-1"),
        with_id(11, "t-stored"),
        with_id(12, &upper),
        with_id(13, "t-2"),
    ]);
    let outcomes = write_group(&mut client, &[&a, &b]).await.expect("group");
    assert_eq!(outcomes, vec![outcome(3, 1, 0), outcome(2, 4, 1)]);

    let stored = count(&url, "SELECT count(*) FROM records").await;
    let hourly = count(&url, "SELECT sum(requests)::int8 FROM usage_hourly").await;
    let daily = count(&url, "SELECT sum(requests)::int8 FROM usage_daily").await;
    assert_eq!((stored, hourly, daily), (7, 7, 7));
    // The first record of a repeated id is the one kept (record 4, whose
    // input_tokens is 4, not record 7's 7).
    let sql = format!(
        "SELECT input_tokens FROM records_full WHERE id = '{}'",
        hex(1)
    );
    assert_eq!(count(&url, &sql).await, 4);
    let sql = format!("SELECT count(*) FROM records_full WHERE id = '{upper}'");
    assert_eq!(count(&url, &sql).await, 1);
}

#[tokio::test]
async fn records_full_shows_every_field_as_shipped() {
    let schema = schema().await;
    let url = schema.url();
    let store = PostgresStore::connect(&url).await.expect("connect");
    let mut full = record(2);
    let r = &mut full.record;
    r.id = HEX.to_owned();
    r.duration_ms = Some(1234);
    r.ttft_ms = Some(56);
    r.auth = None;
    r.labels = BTreeMap::from([("feature".to_owned(), "search/v2".to_owned())]);
    r.requested_model = Some("gpt-4o".to_owned());
    r.stream = Some(true);
    r.status = 503;
    r.error = Some("upstream_reset".to_owned());
    r.tokens.cache_write_input = 1;
    r.tokens.reasoning = 1;
    full.cost_usd = Some(0.125);
    let bare = with_id(3, "plain-id");
    let outcome = store
        .insert_batch(vec![full.clone(), bare])
        .await
        .expect("insert");
    assert_eq!(outcome.inserted, 2);

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT id, ts_ms, duration_ms, ttft_ms, gateway, key_id, auth, tags, labels, \
             provider, operation, model, requested_model, stream, status, error, input_tokens, \
             cached_input_tokens, cache_write_input_tokens, output_tokens, reasoning_tokens, \
             cost_usd, price_version FROM records_full WHERE id = $1",
            &[&HEX],
        )
        .await
        .expect("row");
    let r = &full.record;
    assert_eq!(row.get::<_, String>(0), r.id);
    assert_eq!(row.get::<_, i64>(1), r.ts_ms);
    assert_eq!(row.get::<_, Option<i64>>(2), Some(1234));
    assert_eq!(row.get::<_, Option<i64>>(3), Some(56));
    assert_eq!(row.get::<_, String>(4), r.gateway);
    assert_eq!(row.get::<_, String>(5), r.key_id);
    assert_eq!(row.get::<_, Option<String>>(6), None);
    assert_eq!(row.get::<_, String>(7), r#"{"team":"t2"}"#);
    assert_eq!(row.get::<_, String>(8), r#"{"feature":"search/v2"}"#);
    assert_eq!(row.get::<_, String>(9), r.provider);
    assert_eq!(row.get::<_, String>(10), r.operation);
    assert_eq!(row.get::<_, Option<String>>(11), r.model);
    assert_eq!(row.get::<_, Option<String>>(12), r.requested_model);
    assert_eq!(row.get::<_, Option<bool>>(13), Some(true));
    assert_eq!(row.get::<_, i16>(14), 503);
    assert_eq!(row.get::<_, Option<String>>(15), r.error);
    let tokens: Vec<i64> = (16..21).map(|i| row.get(i)).collect();
    assert_eq!(tokens, vec![2, 1, 1, 1, 1]);
    assert_eq!(row.get::<_, Option<f64>>(21), Some(0.125));
    assert_eq!(row.get::<_, String>(22), full.price_version);

    let bare = client
        .query_one(
            "SELECT duration_ms, stream, labels FROM records_full WHERE id = 'plain-id'",
            &[],
        )
        .await
        .expect("bare row");
    assert_eq!(bare.get::<_, Option<i64>>(0), Some(3));
    assert_eq!(bare.get::<_, Option<bool>>(1), None);
    assert_eq!(bare.get::<_, String>(2), "{}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_stores_what_is_queued_then_refuses_more() {
    let schema = schema().await;
    let url = schema.url();
    let store = Arc::new(PostgresStore::connect(&url).await.expect("connect"));
    let tasks: Vec<_> = (0..8u64)
        .map(|b| {
            let store = Arc::clone(&store);
            let batch: Vec<PricedRecord> = (b * 100..(b + 1) * 100).map(record).collect();
            tokio::spawn(async move { store.insert_batch(batch).await })
        })
        .collect();
    // Let the batches reach the queue, then close while they are written.
    tokio::task::yield_now().await;
    store.close().await.expect("close");
    let mut inserted = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(outcome) => inserted += outcome.inserted,
            // A call that had not queued its batch before the close.
            Err(e) => assert!(e.message().contains("closed"), "{e}"),
        }
    }
    assert_eq!(
        count(&url, "SELECT count(*) FROM records").await,
        inserted as i64
    );
    let late = store.insert_batch(vec![record(9_999)]).await;
    assert!(late.is_err_and(|e| e.message().contains("closed")));
}
