//! SQLite-only checks of the ingest encoding; the behaviour every store shares
//! (duplicates, rollups, ranges) is in `store/tests.rs`.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::TempStore;
use crate::domain::record::{PricedRecord, Tokens, UsageRecord};
use crate::domain::usage_query::UsageQuery;
use crate::store::Store;

const HEX_ID: &str = "0123456789abcdef0011223344556677";
const TS_MS: i64 = 1_793_577_600_000; // 2026-11-01T00:00:00Z

fn record(id: &str, model: Option<&str>, labels: &[(&str, &str)]) -> PricedRecord {
    let owned = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    PricedRecord {
        record: UsageRecord {
            duration_ms: Some(7),
            ttft_ms: Some(3),
            key_id: "k1".into(),
            auth: Some("api_key".into()),
            tags: owned(&[("team", "search"), ("org", "acme")]),
            labels: owned(labels),
            model: model.map(str::to_owned),
            requested_model: Some("gpt-x".into()),
            stream: Some(true),
            tokens: Tokens {
                input: 10,
                cached_input: 4,
                cache_write_input: 1,
                output: 20,
                reasoning: 5,
            },
            ..UsageRecord::bare(id, TS_MS + 1_000)
        },
        cost_usd: Some(0.5),
        price_version: "v1".into(),
    }
}

#[tokio::test]
async fn hex_and_text_ids_are_distinct_and_stored_once() {
    let temp = TempStore::new();
    let (store, path) = (temp.open(), temp.path());
    let upper = HEX_ID.to_uppercase();
    let batch = vec![
        record(HEX_ID, Some("gpt-x"), &[("run", "a")]),
        record(HEX_ID, Some("gpt-x"), &[]), // repeated within the batch
        record(&upper, None, &[]),          // another id: ids are case-sensitive
        record("d1", Some("gpt-x"), &[]),
    ];
    let first = store.insert_batch(batch).await.expect("insert");
    assert_eq!((first.inserted, first.duplicates), (3, 1));
    let retry = vec![record(HEX_ID, None, &[]), record("d1", None, &[])];
    let second = store.insert_batch(retry).await.expect("retry");
    assert_eq!((second.inserted, second.duplicates), (0, 2));

    let query = UsageQuery {
        from_ms: TS_MS,
        to_ms: TS_MS + 3_600_000,
        group_by: Vec::new(),
        filters: Vec::new(),
        required_tags: Vec::new(),
    };
    let report = store.usage(query).await.expect("usage");
    assert_eq!(report.totals.requests, 3);
    assert_eq!(report.totals.output_tokens, 60);

    // The view gives every record back as shipped.
    let conn = Connection::open(path).expect("reopen");
    let mut stmt = conn
        .prepare(
            "SELECT id, key_id, tags, labels, model, provider, operation, requested_model, \
             cost_usd FROM records_full ORDER BY id",
        )
        .expect("prepare");
    type Row = (
        String,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        String,
        f64,
    );
    let rows: Vec<Row> = stmt
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
                row.get(7)?,
                row.get(8)?,
            ))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, [upper.as_str(), HEX_ID, "d1"]);
    let hex_row = &rows[1];
    assert_eq!(hex_row.1, "k1");
    assert_eq!(hex_row.2, r#"{"org":"acme","team":"search"}"#);
    assert_eq!(
        hex_row.3, r#"{"run":"a"}"#,
        "the first copy is the one kept"
    );
    assert_eq!(hex_row.4.as_deref(), Some("gpt-x"));
    assert_eq!((hex_row.5.as_str(), hex_row.6.as_str()), ("openai", "chat"));
    assert_eq!(hex_row.7, "gpt-x");
    assert_eq!(hex_row.8, 0.5);
    assert_eq!(rows[0].4, None, "a record without a model has none");

    let kinds: Vec<(String, i64)> = conn
        .prepare("SELECT typeof(id), count(*) FROM records GROUP BY 1 ORDER BY 1")
        .expect("prepare")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(kinds, [("blob".to_owned(), 1), ("text".to_owned(), 2)]);
}
